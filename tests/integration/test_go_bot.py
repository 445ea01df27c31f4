"""GoWorld's own Go test bot (``test_client -strict``) against examples/test_game, as GoWorld's CI.

One cluster (2 dispatchers, 2 games, 2 gates) started by ``goworld start``: gate1 is plain,
gate2 compresses (snappy) and encrypts (TLS, a key pair made by openssl). The bot is built
from GoWorld's sources by goworld.gobot (cached in .cache/gobot; no Go toolchain FAILS the
module: scripts/install-test-deps installs Debian's golang-go). Runs, each N bots for
DURATION s in strict mode and judged by :meth:`goworld.gobot.BotResult.verdict`:

* at once, six processes: gate1 over TCP, WebSocket and KCP; gate2 over TCP+TLS+snappy,
  WSS (the bot dials wss:// on http_addr) and KCP+TLS+snappy;
* then both gates (each bot picks one at random) over TCP, with a ``goworld reload`` in the
  middle.

Running the six at once (120 bots) gives the same figures per run as two groups of three
(105-132 things per run against ~120 at full speed) and takes the module from 95 s to 58 s.
Concurrent runs use distinct ``-S`` ranges (user names are ``test<id>``). A KCP bot that exits
leaves its session open on the gate (KCP has no close), so the gates close clients silent for
HEARTBEAT_CHECK s, and each group of runs first waits until the gates have no client left: a
stale avatar in a space would never echo the next run's DoTestCallAll. ``pytest -s`` prints
each run's figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from goworld import gobot
from goworld.testing import ClusterRunner, make_key_pair

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "test_game"
N = 20
DURATION = 20
#: The reload run: the reload starts RELOAD_AT s into it.
RELOAD_DURATION = 24
RELOAD_AT = 8
SERVICE_SHARDS = 3 + 3 + 1 + 3  # OnlineService, SpaceService, MailService, PublishSubscribeService
HEARTBEAT_CHECK = 5
PLAIN_GATE, SECURE_GATE = 1, 2
SECURE = "compress_connection = 1\nencrypt_connection = 1\nrsa_key = rsa.key\nrsa_certificate = rsa.crt"


@dataclass(frozen=True)
class Run:
    name: str
    transport: str
    gates: tuple[int, ...]
    first_id: int
    duration: int = DURATION


PLAIN_RUNS = [
    Run("tcp", "tcp", (PLAIN_GATE,), 1),
    Run("ws", "ws", (PLAIN_GATE,), 101),
    Run("kcp", "kcp", (PLAIN_GATE,), 201),
]
SECURE_RUNS = [
    Run("tls-tcp", "tcp", (SECURE_GATE,), 301),
    Run("wss", "ws", (SECURE_GATE,), 401),
    Run("tls-kcp", "kcp", (SECURE_GATE,), 501),
]
RELOAD_RUN = Run("tcp-across-reload", "tcp", (PLAIN_GATE, SECURE_GATE), 601, RELOAD_DURATION)



@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    directory = tmp_path_factory.mktemp("gobot")
    make_key_pair(directory)
    runner = ClusterRunner(
        directory, APP,
        gate_extra=f"heartbeat_check_interval = {HEARTBEAT_CHECK}",
        gate_extras={SECURE_GATE: SECURE},
    )
    runner.start()
    try:
        # No waiting here: `goworld start` returns once every game serves (all service shards
        # exist), so the bots start right away, as an operator's would.
        assert len(runner.grep("created here")) == SERVICE_SHARDS
        yield runner
    finally:
        stop = runner.stop()
        runner.kill()
        if stop.returncode != 0:
            print(stop.stdout, stop.stderr)
        print_cluster_complaints(runner)


def print_cluster_complaints(runner: ClusterRunner) -> None:
    """The cluster's WARNING/ERROR/Traceback lines, for the record (pytest -s)."""
    hits = [h for word in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback") for h in runner.grep(word)]
    print(f"---- cluster log complaints: {len(hits)}")
    for line in hits[:40]:
        print(line)


def wait_until_the_gates_have_no_client(runner: ClusterRunner, timeout: float = 4 * HEARTBEAT_CHECK) -> None:
    """Every client that connected to a gate has gone (stale KCP sessions time out)."""
    deadline = time.monotonic() + timeout
    while True:
        gate_lines = [h for h in runner.grep("goworld.gate: client ") if h.startswith("gate")]
        connected = sum(" connected over " in h for h in gate_lines)
        gone = sum(h.endswith(" disconnected") for h in gate_lines)
        if connected == gone:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{connected - gone} clients still on the gates after {timeout} s\n" + runner.logs())
        time.sleep(0.2)


def start_run(binary: Path, runner: ClusterRunner, run: Run) -> gobot.BotProcess:
    workdir = runner.dir / "gobot" / run.name
    ini = gobot.write_bot_ini(runner.config(), workdir / "bot.ini", gates=run.gates)
    return gobot.start_bot(
        binary, ini, workdir, n=N, start=run.first_id, duration=run.duration,
        transport=run.transport, name=run.name,
    )


def run_group(binary: Path, runner: ClusterRunner, runs: list[Run]) -> dict[str, gobot.BotResult]:
    wait_until_the_gates_have_no_client(runner)
    started = time.monotonic()
    processes: list[gobot.BotProcess] = []
    try:
        for run in runs:
            processes.append(start_run(binary, runner, run))
        results = gobot.wait_all(processes)
    finally:
        for process in processes:
            process.kill()
    print(f"\n---- go bot runs {', '.join(r.name for r in runs)} at once: {time.monotonic() - started:.1f} s")
    for result in results:
        print(result.summary())
    return {r.name: r for r in results}


def check(result: gobot.BotResult, runner: ClusterRunner) -> None:
    verdict = result.verdict()
    assert verdict, verdict.message + "\n---- cluster logs\n" + runner.logs()


@pytest.fixture(scope="module")
def transport_runs(test_client: Path, cluster: ClusterRunner) -> dict[str, gobot.BotResult]:
    return run_group(test_client, cluster, PLAIN_RUNS + SECURE_RUNS)


@pytest.mark.slow
@pytest.mark.parametrize("name", [run.name for run in PLAIN_RUNS])
def test_plain_gate(transport_runs: dict[str, gobot.BotResult], cluster: ClusterRunner, name: str) -> None:
    check(transport_runs[name], cluster)


@pytest.mark.slow
@pytest.mark.parametrize("name", [run.name for run in SECURE_RUNS])
def test_tls_and_snappy_gate(
    transport_runs: dict[str, gobot.BotResult], cluster: ClusterRunner, name: str
) -> None:
    check(transport_runs[name], cluster)


@pytest.mark.slow
def test_a_run_across_a_reload(test_client: Path, cluster: ClusterRunner) -> None:
    wait_until_the_gates_have_no_client(cluster)
    process = start_run(test_client, cluster, RELOAD_RUN)
    with process:
        time.sleep(RELOAD_AT)
        began = time.monotonic()
        reload = cluster.cli("reload")
        took = time.monotonic() - began
        result = process.wait()
    print(f"\n---- reload at {RELOAD_AT} s took {took:.1f} s (exit {reload.returncode})\n{result.summary()}")
    assert reload.returncode == 0, reload.stdout + reload.stderr + cluster.logs()
    assert reload.stdout.count("restoring game") == 2, reload.stdout
    check(result, cluster)
    assert cluster.grep("Traceback") == [], "\n".join(cluster.grep("Traceback"))

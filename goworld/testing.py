"""Testing helpers for game developers and our own tests: a real cluster on loopback.

``ClusterRunner`` writes a goworld.ini into a directory (SQLite storage and KVDB there too,
unless ``storage=``/``kvdb=`` give other sections) with ephemeral ports, runs
``goworld start APP --ini ...`` as a subprocess, and stops (then kills) what it started.
Pair it with :class:`goworld.client.GoWorldClient` as the bot::

    runner = ClusterRunner(tmp_path, Path("examples/chatroom_demo"))
    runner.start()
    try:
        client = await GoWorldClient.connect("127.0.0.1", runner.gate(0, "tcp"))
        ...
    finally:
        runner.stop(); runner.kill()
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from goworld import config as gwconfig

GOWORLD = str(Path(sys.executable).with_name("goworld"))

__all__ = ["ClusterRunner", "free_port", "make_key_pair", "write_ini"]


def make_key_pair(directory: Path, name: str = "rsa") -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate (CN goworld, 2 days) and its unencrypted key, made
    by openssl as ``directory/NAME.key`` and ``directory/NAME.crt``; returns (key, crt)."""
    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         "/CN=goworld", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )
    return key, crt


def free_port(udp_too: bool = False) -> int:
    """A port free for TCP (and UDP when asked) on 127.0.0.1."""
    return _free_port(udp_too)


def _free_port(udp_too: bool) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not udp_too:
            return port
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def write_ini(
    directory: Path,
    *,
    dispatchers: int = 2,
    games: int = 2,
    gates: int = 2,
    gate_extra: str = "",
    gate_extras: Mapping[int, str] | None = None,
    game_extra: str = "",
    dispatcher_extra: str = "",
    storage: str = "type = sqlite\npath = entities.db",
    kvdb: str = "type = sqlite\npath = kv.db",
    position_sync_interval_ms: int = 50,
    lockstep: str | None = None,
) -> dict[str, list[int]]:
    """Write ``directory/goworld.ini``; return the ports chosen.

    ``storage`` and ``kvdb`` are the bodies of the ``[storage]`` and ``[kvdb]`` sections
    (default: SQLite files in ``directory``), e.g. ``"type = redis\\nurl = redis://…"``.
    ``gate_extra`` goes into ``[gate_common]``, ``dispatcher_extra`` into ``[dispatcher_common]``; ``gate_extras`` maps a gate id (1-based) to
    lines for that gate's own section, e.g. ``{2: "encrypt_connection = 1\\n..."}``.
    ``lockstep`` (lines, possibly empty) adds a ``[lockstep]`` section on free ports
    (``ports["lockstep_kcp"]``, ``ports["lockstep_http"]``).
    """
    unknown = sorted(set(gate_extras or {}) - set(range(1, gates + 1)))
    if unknown:
        raise ValueError(f"gate_extras names gates {unknown}, but there are {gates}")
    ports: dict[str, list[int]] = {"dispatcher": [], "gate_tcp": [], "gate_http": []}
    taken: set[int] = set()

    def unique_port(udp_too: bool = False) -> int:
        """A free port not given to another key of this ini (the OS may hand out a port it
        just released twice; `goworld start` refuses an ini that names one address twice)."""
        for _ in range(100):
            port = _free_port(udp_too)
            if port not in taken:
                taken.add(port)
                return port
        raise RuntimeError("no free port")

    lines = [
        "[deployment]",
        f"desired_dispatchers = {dispatchers}",
        f"desired_games = {games}",
        f"desired_gates = {gates}",
        "[storage]",
        storage,
        "[kvdb]",
        kvdb,
        "[dispatcher_common]",
        "log_level = info",
        dispatcher_extra,
        "[game_common]",
        "boot_entity = Account",
        "save_interval = 600",
        "log_level = info",
        f"position_sync_interval_ms = {position_sync_interval_ms}",
        game_extra,
        "[gate_common]",
        "log_level = info",
        f"position_sync_interval_ms = {position_sync_interval_ms}",
        gate_extra,
    ]
    for i in range(1, dispatchers + 1):
        port = unique_port()
        ports["dispatcher"].append(port)
        lines += [
            f"[dispatcher{i}]",
            f"listen_addr = 127.0.0.1:{port}",
            f"advertise_addr = 127.0.0.1:{port}",
            f"http_addr = 127.0.0.1:{unique_port()}",
            f"log_file = dispatcher{i}.log",
        ]
    for i in range(1, games + 1):
        lines += [f"[game{i}]", f"http_addr = 127.0.0.1:{unique_port()}", f"log_file = game{i}.log"]
    for i in range(1, gates + 1):
        tcp, http = unique_port(udp_too=True), unique_port()
        ports["gate_tcp"].append(tcp)
        ports["gate_http"].append(http)
        lines += [
            f"[gate{i}]",
            f"listen_addr = 127.0.0.1:{tcp}",
            f"http_addr = 127.0.0.1:{http}",
            f"log_file = gate{i}.log",
        ]
        if gate_extras and gate_extras.get(i):
            lines.append(gate_extras[i])
    if lockstep is not None:
        kcp, http = unique_port(udp_too=True), unique_port()
        ports["lockstep_kcp"], ports["lockstep_http"] = [kcp], [http]
        lines += [
            "[lockstep]",
            f"listen_addr = 127.0.0.1:{kcp}",
            f"http_addr = 127.0.0.1:{http}",
            "log_file = lockstep1.log",
            lockstep,
        ]
    (directory / "goworld.ini").write_text("\n".join(lines) + "\n")
    return ports


class ClusterRunner:
    def __init__(self, directory: Path, app: Path, **ini_options: object) -> None:
        self.dir = directory
        self.app = app
        self.ports = write_ini(directory, **ini_options)  # type: ignore[arg-type]
        self.ini = directory / "goworld.ini"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        return subprocess.run(
            [GOWORLD, *args, "--ini", str(self.ini)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
            env=env,
        )

    def start(self) -> None:
        result = self.cli("start", str(self.app))
        if result.returncode != 0:
            self.kill()
            raise AssertionError(f"goworld start failed:\n{result.stdout}\n{result.stderr}")

    def stop(self) -> subprocess.CompletedProcess[str]:
        return self.cli("stop")

    def kill(self) -> None:
        self.cli("kill", timeout=60)

    def config(self) -> gwconfig.ClusterConfig:
        """The cluster's goworld.ini, as the processes read it."""
        return gwconfig.load(self.ini)

    def gate(self, index: int, transport: str) -> int:
        if transport == "ws":
            return self.ports["gate_http"][index]
        return self.ports["gate_tcp"][index]

    def logs(self) -> str:
        out = []
        for path in sorted(self.dir.glob("*.log")) + sorted((self.dir / ".goworld").glob("*.stderr")):
            text = path.read_text(errors="replace").splitlines()
            out.append(f"==== {path.name}\n" + "\n".join(text[-40:]))
        return "\n".join(out)

    def wait_for_log(self, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``needle`` appears ``count`` times across the cluster's log files."""
        deadline = time.monotonic() + timeout
        while len(self.grep(needle)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{needle!r} seen {len(self.grep(needle))}/{count} times after {timeout} s\n"
                    + self.logs()
                )
            time.sleep(0.1)

    def grep(self, needle: str) -> list[str]:
        hits = []
        for path in sorted(self.dir.glob("*.log")):
            hits += [f"{path.name}: {line}" for line in path.read_text(errors="replace").splitlines() if needle in line]
        return hits


#: :func:`parse_metrics`'s result: sample name -> {sorted (label, value) pairs: value}
Scraped = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse_metrics(text: str) -> Scraped:
    """Prometheus text (a /metrics page) read with prometheus_client's own parser: sample name
    (``_total`` included) -> {its labels but ``role`` and ``id``, sorted: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Scraped = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("role", "id")))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


@contextlib.contextmanager
def running_cluster(directory: Path, app: Path, **ini: object) -> Iterator[ClusterRunner]:
    """A cluster started by the CLI, stopped (and killed, whatever is left) afterwards."""
    runner = ClusterRunner(directory, app, **ini)
    runner.start()
    try:
        yield runner
    finally:
        result = runner.stop()
        runner.kill()
        if result.returncode != 0:
            print(result.stdout, result.stderr)


async def login(
    runner: ClusterRunner,
    name: str,
    transport: str = "tcp",
    gate: int = 0,
    *,
    boot_type: str = "Account",
    player_type: str = "Avatar",
) -> Any:
    """Connect a :class:`~goworld.client.GoWorldClient` to gate ``gate`` and log in as ``name``.

    For game packages whose boot entity has a ``Login(name)`` RPC that hands the client to a
    ``player_type`` entity (tests/apps/cluster_app does); returns the client once it has it.
    """
    from goworld.client import GoWorldClient

    client = await GoWorldClient.connect("127.0.0.1", runner.gate(gate, transport), transport=transport)
    account = await client.wait_player(boot_type)
    client.call(account.id, "Login", name)
    await client.wait_player(player_type)
    return client

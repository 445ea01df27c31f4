"""A cluster spread over three hosts: Linux network namespaces with their own addresses.

Host A runs dispatcher1 (listening on every interface, advertising 198.18.0.1), host B game1,
host C gate1 (listening on 198.18.0.3); each host has its own copy of the app's directory and
ini (separate machines have separate disks) and starts its share with ``goworld start APP
--only NAMES``. GoWorld's Go bot then plays through gate1 from a fourth host, D, in strict
mode, and each host stops its share with ``goworld stop --only NAMES``.

The network: five namespaces with random names, hosts A-D each joined by a veth pair to a
bridge in the fifth; addresses from 198.18.0.0/15 (RFC 2544, benchmarking) only, loopback up
in each. Nothing is created in, or changed of, the root namespace, and the hosts have no route
but their /24: nothing can leave for another address. Everything is removed afterwards, even
on failure: every process left in a namespace is killed, then the namespaces are deleted
(which deletes the veth pairs and the bridge). Needs root and iproute2's ``ip`` (CI runs as
root); skipped otherwise. The ports are fixed: each namespace is fresh, nothing else listens
there.

Then two "hosts" on loopback that share one directory (an NFS mount, say): each one's
supervisor watches and restarts its own share only, and each stops its own share.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from goworld import gobot, runctl
from goworld.cluster import auth
from goworld.config import load
from goworld.testing import ClusterRunner

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "test_game"
GOWORLD = str(Path(sys.executable).with_name("goworld"))
IP = shutil.which("ip")
SERVICE_SHARDS = 3 + 3 + 1 + 3  # test_game: OnlineService, SpaceService, MailService, PublishSubscribeService
N = 10
DURATION = 16

pytestmark = pytest.mark.slow
needs_netns = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)"),
    pytest.mark.skipif(IP is None, reason="iproute2's `ip` is not installed"),
]


@dataclass(frozen=True)
class Host:
    letter: str
    netns: str
    address: str
    processes: tuple[str, ...]  #: its share of the ini (--only)


SUBNET_PREFIX = 24
ADDRESSES = {"A": "198.18.0.1", "B": "198.18.0.2", "C": "198.18.0.3", "D": "198.18.0.4"}
SHARES = {"A": ("dispatcher1",), "B": ("game1",), "C": ("gate1",), "D": ()}
DISPATCHER_PORT, GATE_PORT, GATE_HTTP_PORT = 13000, 14000, 24000
DISPATCHER_HTTP_PORT, GAME_HTTP_PORT = 23000, 25000

INI = """; one cluster, three hosts (tests/integration/test_multihost.py)
[deployment]
desired_dispatchers = 1
desired_games = 1
desired_gates = 1
cluster_secret = {secret}
ops_token = {token}
[storage]
type = sqlite
path = entities.db
[kvdb]
type = sqlite
path = kv.db
[game_common]
boot_entity = Account
save_interval = 600
[dispatcher1]
; host A
listen_addr = 0.0.0.0:{dport}
advertise_addr = {a}:{dport}
; every interface: `goworld status --cluster` on another host asks advertise_addr's host
http_addr = 0.0.0.0:{dhport}
log_file = dispatcher1.log
[game1]
; host B
http_addr = {b}:{ghport}
log_file = game1.log
[gate1]
; host C
listen_addr = {c}:{gport}
http_addr = {c}:{hport}
log_file = gate1.log
"""


def ip(*args: str) -> None:
    assert IP is not None
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=30)


class Network:
    """The hosts' namespaces around a bridge namespace; :meth:`remove` undoes everything."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.bridge = f"gwbr-{tag}"
        self.hosts = {
            letter: Host(letter, f"gw{letter.lower()}-{tag}", ADDRESSES[letter], SHARES[letter])
            for letter in ADDRESSES
        }
        self.created: list[str] = []

    def build(self) -> None:
        for ns in (self.bridge, *(h.netns for h in self.hosts.values())):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        for h in self.hosts.values():
            port = f"port{h.letter.lower()}"  # the bridge's end; the host's end is eth0
            ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", h.netns)
            ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
            ip("-n", h.netns, "addr", "add", f"{h.address}/{SUBNET_PREFIX}", "dev", "eth0")
            ip("-n", h.netns, "link", "set", "eth0", "up")

    def pids(self, ns: str) -> list[int]:
        assert IP is not None
        out = subprocess.run([IP, "netns", "pids", ns], capture_output=True, text=True, timeout=30)
        return [int(p) for p in out.stdout.split()]

    def remove(self) -> None:
        """Kill what still runs in a namespace, then delete the namespaces."""
        for ns in self.created:
            for pid in self.pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(self.pids(ns) for ns in self.created) and time.monotonic() < deadline:
            time.sleep(0.05)
        for ns in reversed(self.created):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "delete", ns)
        self.created.clear()


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network()
    try:
        try:
            net.build()
        except subprocess.CalledProcessError as exc:
            if net.created:
                raise
            # root without CAP_SYS_ADMIN (an unprivileged container): no namespace at all
            pytest.skip(f"cannot create a network namespace: {exc.stderr.decode(errors='replace').strip()}")
        yield net
    finally:
        net.remove()


def host_env() -> dict[str, str]:
    """The environment of what runs on a host: no proxy (gRPC would send the cluster's
    traffic to it), the secret from the ini."""
    drop = {"http_proxy", "https_proxy", "grpc_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in drop}
    env.pop("GOWORLD_CLUSTER_SECRET", None)
    return env


def goworld(host: Host, directory: Path, *args: str, timeout: float = 120) -> subprocess.Popen[str]:
    """``goworld ARGS --ini`` that host's ini, run in its namespace (not waited for)."""
    assert IP is not None
    return subprocess.Popen(
        [IP, "netns", "exec", host.netns, GOWORLD, *args, "--ini", str(directory / "goworld.ini")],
        cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=host_env(),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out + err


def logs(directories: dict[str, Path]) -> str:
    out = []
    for letter, d in directories.items():
        for path in sorted(d.glob("*.log")) + sorted((d / ".goworld").glob("*.stderr")) + sorted(
            (d / ".goworld").glob("supervisor*.log")
        ):
            lines = path.read_text(errors="replace").splitlines()[-30:]
            out.append(f"==== host {letter}: {path.name}\n" + "\n".join(lines))
    return "\n".join(out)


def bot_wrapper(binary: Path, host: Host, directory: Path) -> Path:
    """A script running the Go bot in ``host``'s namespace (``ip netns exec`` execs, so the
    pid is the bot's)."""
    script = directory / "test_client-in-netns"
    script.write_text(f'#!/bin/sh\nexec {IP} netns exec {host.netns} {binary} "$@"\n')
    script.chmod(0o755)
    return script



@needs_netns[0]
@needs_netns[1]
def test_dispatcher_game_and_gate_on_three_hosts(test_client: Path, network: Network, tmp_path: Path) -> None:
    t0 = time.monotonic()
    hosts = network.hosts
    ini = INI.format(secret=secrets.token_hex(16), token=secrets.token_hex(16), a=ADDRESSES["A"],
                     b=ADDRESSES["B"], c=ADDRESSES["C"], dport=DISPATCHER_PORT, gport=GATE_PORT,
                     hport=GATE_HTTP_PORT, dhport=DISPATCHER_HTTP_PORT, ghport=GAME_HTTP_PORT)
    dirs: dict[str, Path] = {}
    for letter in "ABC":  # each host its own copy: separate machines, separate disks
        dirs[letter] = tmp_path / f"host{letter}"
        dirs[letter].mkdir()
        (dirs[letter] / "goworld.ini").write_text(ini)
    try:
        started = {}
        code, out = finish(goworld(hosts["A"], dirs["A"], "start", str(APP), "--only", "dispatcher1"))
        assert code == 0, out + logs(dirs)
        assert "starting dispatcher1" in out and "waiting for services" not in out, out
        # B's start returns once game1 serves, which needs gate1 (host C) joined: both at once.
        b = goworld(hosts["B"], dirs["B"], "start", str(APP), "--only", "game1")
        c = goworld(hosts["C"], dirs["C"], "start", str(APP), "--only", "gate1")
        for letter, proc in (("C", c), ("B", b)):
            started[letter] = finish(proc)
            assert started[letter][0] == 0, f"host {letter}: {started[letter][1]}\n{logs(dirs)}"
        assert "waiting for services" in started["B"][1]
        assert f"gate1: tcp/kcp {ADDRESSES['C']}:{GATE_PORT}" in started["C"][1]
        print(f"\n---- three hosts serving after {time.monotonic() - t0:.1f} s")
        game_log = (dirs["B"] / "game1.log").read_text()
        assert game_log.count("created here") == SERVICE_SHARDS, game_log[-3000:]
        assert f"dispatcher1 at {ADDRESSES['A']}:{DISPATCHER_PORT}: connected" in game_log

        for letter in "ABC":  # each host sees and supervises its own share only
            code, out = finish(goworld(hosts[letter], dirs[letter], "status", "--json"))
            assert code == 0, f"host {letter}: {out}"
            report = json.loads(out)
            assert [p["name"] for p in report["processes"]] == list(hosts[letter].processes)
            assert all(p.get("status_error") is None for p in report["processes"]), report  # figures
            assert report["supervisor"]["up"], report
            sup = runctl.supervisor_name(hosts[letter].processes)
            assert (dirs[letter] / ".goworld" / runctl.supervisor_log(sup)).exists()
        for letter in "AC":  # --cluster: the others' shares are asked over the network
            code, out = finish(goworld(hosts[letter], dirs[letter], "status", "--cluster", "--json"))
            assert code == 0, f"host {letter}: {out}"
            report = json.loads(out)
            seen = {p["name"]: p for p in report["processes"]}
            assert list(seen) == ["dispatcher1", "game1", "gate1"], report
            for name, p in seen.items():
                here = name in hosts[letter].processes
                assert p["up"] and p["here"] == here and p["status_error"] is None, (letter, p)
                assert p["cpu_seconds"] is not None and isinstance(p["pid"], int), (letter, p)
            assert seen["game1"]["address"] == f"http://{ADDRESSES['B']}:{GAME_HTTP_PORT}/status"
            assert seen["game1"]["entities"] >= SERVICE_SHARDS, seen["game1"]
            if letter == "C":  # 0.0.0.0 in http_addr: advertise_addr's host is asked
                assert seen["dispatcher1"]["address"] == f"http://{ADDRESSES['A']}:{DISPATCHER_HTTP_PORT}/status"
        code, out = finish(goworld(hosts["C"], dirs["C"], "status", "--cluster"))
        assert code == 0 and "2 of them on other hosts" in out, out
        assert f"at http://{ADDRESSES['B']}:{GAME_HTTP_PORT}/status" in out, out

        workdir = tmp_path / "hostD"
        bot_ini = gobot.write_bot_ini(load(dirs["C"] / "goworld.ini"), workdir / "bot.ini")
        run = gobot.start_bot(
            bot_wrapper(test_client, hosts["D"], tmp_path), bot_ini, workdir, n=N,
            duration=DURATION, server=ADDRESSES["C"], name="three-hosts", env=host_env(),
        )
        with run:
            result = run.wait()
        print(result.summary())
        verdict = result.verdict()
        assert verdict, verdict.message + "\n" + logs(dirs)
        gate_log = (dirs["C"] / "gate1.log").read_text()
        assert gate_log.count(f"connected over tcp from {ADDRESSES['D']}") == N, gate_log[-3000:]

        pids = {letter: _pids(dirs[letter]) for letter in "ABC"}
        assert all(len(p) == 2 for p in pids.values()), pids  # a process and its supervisor each
        # B first, with --cluster: C's gate is drained (through A's dispatcher) before game1
        # stops; then C and A stop their shares, each on its own
        for letter in "BCA":
            only = ",".join(hosts[letter].processes)
            extra = ("--cluster",) if letter == "B" else ()
            code, out = finish(goworld(hosts[letter], dirs[letter], "stop", "--only", only, *extra))
            assert code == 0, f"host {letter}: {out}\n{logs(dirs)}"
            if letter == "B":
                assert "draining every gate through dispatcher1 (1 connected)" in out, out
                assert re.search(r"draining gate1 +new clients refused; 0 of 0 clients told .*\(elsewhere\)", out), out
                assert "on other hosts: dispatcher1, gate1 (their gates drained)" in out, out
            for name, pid in pids[letter].items():
                assert not runctl.alive(pid), f"host {letter}: {name} (pid {pid}) still runs after stop"
        for letter in "ABC":
            assert network.pids(hosts[letter].netns) == [], f"host {letter}: something still runs"
        print(f"---- the whole test: {time.monotonic() - t0:.1f} s")
    finally:
        for letter, d in dirs.items():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                finish(goworld(hosts[letter], d, "kill"), timeout=60)


def _pids(directory: Path) -> dict[str, int]:
    """Every pid file in the host's run directory (its processes and its supervisor)."""
    run_dir = runctl.run_dir(directory)
    found = {}
    for path in run_dir.glob("*.pid"):
        pid = runctl.read_pid(run_dir, path.stem)
        if pid is not None and runctl.alive(pid):
            found[path.stem] = pid
    return found


def test_two_hosts_sharing_a_run_directory(tmp_path: Path) -> None:
    runner = ClusterRunner(tmp_path, ROOT / "tests" / "apps" / "cluster_app", dispatchers=1,
                           games=1, gates=1)
    with open(runner.ini, "a") as f:
        f.write("[supervisor]\nrestart_backoff = 0.2\n")
    shares = {"A": "dispatcher1", "BC": "game1,gate1"}
    supervisors = {k: runctl.supervisor_name(v.split(",")) for k, v in shares.items()}
    run_dir = runctl.run_dir(tmp_path)
    try:
        for share in shares.values():
            result = runner.cli("start", str(runner.app), "--only", share)
            assert result.returncode == 0, result.stdout + result.stderr + runner.logs()
        sup_pids = {k: pid_of(run_dir, name) for k, name in supervisors.items()}

        game1 = pid_of(run_dir, "game1")
        os.kill(game1, signal.SIGKILL)
        deadline = time.monotonic() + 60  # a bound for a stuck test, not a measurement
        while runctl.read_status(run_dir, "game1", runctl.ProcFile.SERVING) is None or (
            runctl.read_pid(run_dir, "game1") in (None, game1)
        ):
            assert time.monotonic() < deadline, runner.logs()
            time.sleep(0.1)
        logs = {k: (run_dir / runctl.supervisor_log(n)).read_text() for k, n in supervisors.items()}
        assert "restarted game1" in logs["BC"], logs["BC"]
        assert "game1" not in logs["A"], logs["A"]  # the other host's supervisor left it alone

        status = json.loads(runner.cli("status", "--json", "--only", shares["A"]).stdout)
        assert [p["name"] for p in status["processes"]] == ["dispatcher1"]
        assert status["ok"] and status["supervisor"]["pid"] == sup_pids["A"], status

        result = runner.cli("stop", "--only", shares["BC"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert not runctl.alive(sup_pids["BC"])
        assert runctl.alive(sup_pids["A"])
        assert runctl.read_pid(run_dir, "dispatcher1") is not None
        result = runner.cli("stop", "--only", shares["A"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert not runctl.alive(sup_pids["A"])
        assert list(run_dir.glob("*.pid")) == []
    finally:
        runner.cli("kill", "--only", "dispatcher1,game1,gate1", timeout=60)


def pid_of(run_dir: Path, name: str) -> int:
    pid = runctl.read_pid(run_dir, name)
    assert pid is not None and runctl.alive(pid), f"{name} does not run"
    return pid


def test_status_cluster_asks_the_other_hosts_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two "hosts" on loopback, each its own directory (its own run directory): `goworld
    status --cluster` on one shows the other's process as up elsewhere, with its pid and
    figures from its /status, and as down, saying why, once it stopped."""
    monkeypatch.setenv(auth.SECRET_ENV, secrets.token_hex(16))  # both hosts' processes: one secret
    for letter in "AB":
        (tmp_path / letter).mkdir()
    host_a = ClusterRunner(tmp_path / "A", ROOT / "tests" / "apps" / "cluster_app", dispatchers=1,
                           games=1, gates=1)
    host_b = ClusterRunner(tmp_path / "B", host_a.app, dispatchers=1, games=1, gates=1)
    host_b.ini.write_text(host_a.ini.read_text())  # one cluster: the same ini on both hosts
    gate_http = host_a.ports["gate_http"][0]
    try:
        with ThreadPoolExecutor(2) as pool:  # game1 serves once gate1 joined: both at once
            a = pool.submit(host_a.cli, "start", str(host_a.app), "--only", "dispatcher1,game1")
            b = pool.submit(host_b.cli, "start", str(host_b.app), "--only", "gate1")
            for result in (a.result(), b.result()):
                assert result.returncode == 0, result.stdout + result.stderr + host_a.logs() + host_b.logs()
        gate_pid = pid_of(runctl.run_dir(host_b.dir), "gate1")

        result = host_a.cli("status", "--json")  # this host's share only
        assert [p["name"] for p in json.loads(result.stdout)["processes"]] == ["dispatcher1", "game1"]
        result = host_a.cli("status", "--cluster", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        seen = {p["name"]: p for p in json.loads(result.stdout)["processes"]}
        assert [seen[n]["here"] for n in ("dispatcher1", "game1", "gate1")] == [True, True, False], seen
        gate = seen["gate1"]
        assert gate["up"] and gate["state"] == "up (elsewhere)" and gate["pid"] == gate_pid, gate
        assert gate["address"] == f"http://127.0.0.1:{gate_http}/status" and gate["clients"] == 0, gate
        assert gate["uptime"] is not None and gate["uptime"] >= 0, gate
        text = host_a.cli("status", "--cluster").stdout
        assert "(1 of them on other hosts)" in text and f"at http://127.0.0.1:{gate_http}/status" in text, text

        assert host_b.cli("stop").returncode == 0
        result = host_a.cli("status", "--cluster", "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        gate = {p["name"]: p for p in json.loads(result.stdout)["processes"]}["gate1"]
        assert not gate["up"] and gate["state"] == "down", gate
        assert "refused" in gate["status_error"].lower(), gate
        text = host_a.cli("status", "--cluster").stdout
        assert f"not answering: http://127.0.0.1:{gate_http}/status" in text, text
    finally:
        host_b.cli("kill", timeout=60)
        host_a.cli("kill", timeout=60)

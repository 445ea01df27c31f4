"""``--only``: one host's share of a cluster spread over several hosts (cli.Cluster's filter,
its validation, the port pre-flight, the per-selection supervisor and its files)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli
from goworld import ports, runctl, supervisor
from goworld.config import load
from goworld.errors import GoWorldError

ROOT = Path(__file__).resolve().parent.parent
GOWORLD = Path(sys.executable).with_name("goworld")

# Two hosts' processes may share a port: dispatcher1 and gate1 both listen on port 1 of
# "their" host. The hosts' addresses are TEST-NET-1 (192.0.2.0/24): never this machine's.
TWO_HOSTS = """[deployment]
desired_dispatchers = 1
desired_games = 2
desired_gates = 1
[dispatcher1]
listen_addr = 0.0.0.0:{port}
advertise_addr = 192.0.2.1:{port}
[game1]
[game2]
[gate1]
listen_addr = 192.0.2.3:{port}
http_addr = 192.0.2.3:{http}
"""


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    from goworld.testing import free_port

    path = tmp_path / "goworld.ini"
    path.write_text(TWO_HOSTS.format(port=free_port(udp_too=True), http=free_port()))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GOWORLD), *args], capture_output=True, text=True, timeout=60)


def test_only_selects_processes_in_start_order(ini: Path) -> None:
    cfg = load(ini, check_files=False)
    cluster = cli.Cluster(cfg, ["gate1", " game2", "dispatcher1", "game2"])
    assert cluster.only == ("dispatcher1", "game2", "gate1")
    assert [p.name for p in cluster.all_procs()] == ["dispatcher1", "game2", "gate1"]
    assert [p.name for p in cluster.procs("game")] == ["game2"]
    assert cli.Cluster(cfg).only is None
    assert [p.name for p in cli.Cluster(cfg).all_procs()] == ["dispatcher1", "game1", "game2", "gate1"]


def test_only_refuses_names_the_ini_lacks(ini: Path) -> None:
    cfg = load(ini, check_files=False)
    with pytest.raises(GoWorldError) as info:
        cli.Cluster(cfg, ["game1", "game3", "gate2"])
    message = str(info.value)
    assert f"{ini} has no game3, gate2" in message
    assert "its processes: dispatcher1, game1, game2, gate1" in message
    with pytest.raises(GoWorldError, match="names no process"):
        cli.Cluster(cfg, ["", " "])


def test_the_port_check_covers_only_this_hosts_listeners(ini: Path) -> None:
    cfg = load(ini, check_files=False)
    everything = ports.problems(cfg)
    assert any("are the same address" in line for line in everything), everything
    assert {item.process for item in ports.listeners(cfg, ("dispatcher1",))} == {"dispatcher1"}
    assert ports.problems(cfg, ("dispatcher1", "game1")) == []  # 0.0.0.0:port is free here
    gate = ports.problems(cfg, ("gate1",))  # another host's address: not this one's
    assert gate and all("192.0.2.3 is not an address of this host" in line for line in gate), gate


def test_start_refuses_an_unknown_name_before_starting_anything(ini: Path) -> None:
    result = run("start", str(ROOT / "tests" / "apps" / "cluster_app"), "--only", "game1,gate7",
                 "--ini", str(ini))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"goworld: --only game1,gate7: {ini} has no gate7" in result.stderr
    assert "starting" not in result.stdout
    assert not (ini.parent / ".goworld").exists()


def test_start_refuses_another_hosts_address_naming_it(ini: Path) -> None:
    result = run("start", str(ROOT / "tests" / "apps" / "cluster_app"), "--only", "gate1",
                 "--ini", str(ini))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gate1's [gate1] listen_addr" in result.stderr
    assert "is not an address of this host" in result.stderr
    assert "dispatcher1" not in result.stderr  # not this host's: not checked


def test_status_only_and_the_recorded_selection(ini: Path) -> None:
    result = run("status", "--json", "--only", "game2,gate1", "--ini", str(ini))
    assert result.returncode == 3, result.stderr
    assert [p["name"] for p in json.loads(result.stdout)["processes"]] == ["game2", "gate1"]
    result = run("status", "--only", "game2,gate1", "--ini", str(ini))
    assert result.stdout.startswith(
        "0/1 games (-), 0/1 gates running (this host's share: game2,gate1); not supervised\n"
    ), result.stdout

    result = run("status", "--only", "game9", "--ini", str(ini))
    assert result.returncode == 2 and f"{ini} has no game9" in result.stderr

    # `goworld start --only` records its selection: the other commands here default to it.
    run_dir = runctl.run_dir(ini.parent)
    runctl.write_cluster_app(run_dir, ROOT / "tests" / "apps" / "cluster_app", only=["game1", "game2"])
    assert runctl.read_cluster_only(run_dir) == ["game1", "game2"]
    result = run("status", "--json", "--ini", str(ini))
    assert [p["name"] for p in json.loads(result.stdout)["processes"]] == ["game1", "game2"]
    result = run("status", "--json", "--only", "dispatcher1", "--ini", str(ini))  # --only wins
    assert [p["name"] for p in json.loads(result.stdout)["processes"]] == ["dispatcher1"]

    result = run("restart", "gate1", "--ini", str(ini))
    assert result.returncode == 2
    assert "gate1 is not one of this host's processes (game1, game2; --only)" in result.stderr
    result = run("reload", "--only", "dispatcher1,gate1", "--ini", str(ini))
    assert result.returncode == 0, result.stderr
    assert "no game among this host's processes (dispatcher1, gate1)" in result.stdout

    runctl.write_cluster_app(run_dir, ROOT / "tests" / "apps" / "cluster_app", only=["game5"])
    result = run("status", "--ini", str(ini))  # an ini edited since: said where the name came from
    assert result.returncode == 2 and "has no game5" in result.stderr and "cluster.json" in result.stderr

    runctl.write_cluster_app(run_dir, ROOT / "tests" / "apps" / "cluster_app")
    assert runctl.read_cluster_only(run_dir) is None


def test_supervisor_names() -> None:
    assert runctl.supervisor_name() == runctl.supervisor_name(()) == runctl.SUPERVISOR
    assert runctl.supervisor_name(["game2", "gate2"]) == "supervisor-game2+gate2"
    many = [f"game{i}" for i in range(1, 40)]
    name = runctl.supervisor_name(many)
    assert name.startswith("supervisor-") and len(name) < 40 and name != runctl.supervisor_name(many[1:])
    assert runctl.supervisor_log(name) == f"{name}.log" and runctl.supervisor_state(name) == f"{name}.json"


def test_the_supervisors_table_watches_only_its_selection(ini: Path) -> None:
    cfg = load(ini, check_files=False)
    table = supervisor.RunDirProcesses(cfg, None, ["game2", "gate1"])
    assert table.order() == [("game2", "game"), ("gate1", "gate")]
    assert [n for n, _ in supervisor.RunDirProcesses(cfg, None).order()] == [
        "dispatcher1", "game1", "game2", "gate1"
    ]


@pytest.fixture
def fake_supervisors(ini: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Two processes whose command lines look like per-host supervisors' (pid files and
    state files in the run directory, as ``goworld start --only`` leaves them)."""
    run_dir = runctl.run_dir(ini.parent)
    run_dir.mkdir()
    made: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for only in (["dispatcher1"], ["game1", "gate1"]):
            name = runctl.supervisor_name(only)
            made[name] = subprocess.Popen([
                sys.executable, "-c", "import time; time.sleep(60)", "-m", "goworld.supervisor",
                f"-{runctl.ONLY_FLAG}", ",".join(only),
            ])
            runctl.write_pid(run_dir, name, made[name].pid)
            state = {"pid": made[name].pid, "processes": {n: {"state": "up", "restarts": 1} for n in only}}
            (run_dir / runctl.supervisor_state(name)).write_text(json.dumps(state))
        yield made
    finally:
        for child in made.values():
            child.kill()
            child.wait()


def test_each_selection_finds_and_stops_its_own_supervisor(
    ini: Path, fake_supervisors: dict[str, subprocess.Popen[bytes]]
) -> None:
    cfg = load(ini, check_files=False)
    a, bc = "supervisor-dispatcher1", "supervisor-game1+gate1"
    pids = {name: child.pid for name, child in fake_supervisors.items()}
    assert cli.Cluster(cfg).supervisors() == pids
    assert cli.Cluster(cfg, ["gate1"]).supervisors() == {bc: pids[bc]}
    assert cli.Cluster(cfg, ["dispatcher1", "game2"]).supervisors() == {a: pids[a]}
    assert cli.Cluster(cfg, ["game2"]).supervisor_pid() is None
    run_dir = runctl.run_dir(ini.parent)
    assert sorted(supervisor.read_state(run_dir)) == ["dispatcher1", "game1", "gate1"]

    assert cli.Cluster(cfg, ["game1"]).stop_supervisor() == pids[bc]
    fake_supervisors[bc].wait(10)
    assert not runctl.status_path(run_dir, bc, runctl.ProcFile.PID).exists()
    assert fake_supervisors[a].poll() is None  # another host's: left alone
    assert cli.Cluster(cfg).supervisors() == {a: pids[a]}
    assert sorted(supervisor.read_state(run_dir)) == ["dispatcher1"]  # a dead writer's state is ignored


def test_a_pid_file_naming_something_else_is_no_supervisor(ini: Path) -> None:
    run_dir = runctl.run_dir(ini.parent)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        runctl.write_pid(run_dir, "supervisor-game1", other.pid)
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{other.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cli.Cluster(load(ini, check_files=False)).supervisors() == {}
    finally:
        other.kill()
        other.wait()

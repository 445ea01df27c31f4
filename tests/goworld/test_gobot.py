"""goworld.gobot without the Go toolchain: the output parser, the verdict, the ini writer."""

from __future__ import annotations

import configparser
import random
import subprocess
from pathlib import Path

import pytest

from goworld import config as gwconfig
from goworld import gobot
from goworld.testing import write_ini

# What test_client prints (stdout and stderr merged), cut down: gwlog's console lines are
# "LEVEL<TAB>message<TAB>{fields}"; the profile is dumped when a thing is recorded >= 1 s after
# the section began, the first dump being empty.
SAMPLE = """\
info\tUsing config file: bot.ini\t{"ts": "2026-12-06T14:02:29.345Z"}
info\tClientBot<1> is running ...\t{"source": "test_client", "ts": "2026-12-06T14:02:29.346Z"}
info\tconnected: 127.0.0.1:49631\t{"source": "test_client", "ts": "2026-12-06T14:02:29.347Z"}
info\tconnected: 127.0.0.1:49631\t{"source": "test_client", "ts": "2026-12-06T14:02:29.347Z"}
info\tconnected: 127.0.0.1:49632\t{"source": "test_client", "ts": "2026-12-06T14:02:29.348Z"}
===============================================================================
> DoTestAOI                        *1 AVG 4.601802ms RANGE 0s ~ 4.601802ms
> DoEnterRandomSpace               *2 AVG 6.436798ms RANGE 0s ~ 6.649648ms
===============================================================================
> DoEnterRandomSpace               *3 AVG 1.5s RANGE 4.702286ms ~ 1m2.5s
warn\t[2026-12-06] Avatar<x> DoSayInProfChannel TIMEOUT !!!\t{"source": "test_client"}
> DoTestCallAll                    *1 AVG 850µs RANGE 0s ~ 850µs
===============================================================================
> DoTestListField                  *4 AVG 2ms RANGE 0s ~ 3ms
"""


def test_profile_sections_are_summed_per_thing_and_the_unfinished_one_is_dropped() -> None:
    out = gobot.parse_output(SAMPLE)
    assert out.connected == 3
    assert out.errors == []
    assert len(out.warnings) == 1 and "TIMEOUT" in out.warnings[0]
    assert out.section_totals == [3, 4]
    assert out.counts == {"DoEnterRandomSpace": 5, "DoTestAOI": 1, "DoTestCallAll": 1}
    assert out.total == 7
    assert out.things_per_second == pytest.approx(3.5)
    space = out.things["DoEnterRandomSpace"]
    assert space.total_seconds == pytest.approx(2 * 0.006436798 + 3 * 1.5)
    assert space.max_seconds == pytest.approx(62.5)
    assert out.things["DoTestCallAll"].avg_seconds == pytest.approx(850e-6)


@pytest.mark.parametrize(
    "line",
    [
        'error\t<nil>\t{"source": "test_client"}',
        'fatal\t[..] Avatar<x> DoTestAOI TIMEOUT !!!\t{"source": "test_client"}',
        'panic\tunknown msgtype: 7\t{"source": "test_client"}',
        'dpanic\tsomething\t{"source": "test_client"}',
        "panic: runtime error: index out of range [3] with length 3",
        "fatal error: concurrent map writes",
    ],
)
def test_error_lines_are_found(line: str) -> None:
    out = gobot.parse_output(SAMPLE + line + "\ngoroutine 1 [running]:\n")
    assert out.errors == [line]


def test_words_inside_messages_are_not_errors() -> None:
    text = 'info\tthe error\tpanic: nothing\t{}\n  panic: indented\nwarning\tnot a level\n'
    out = gobot.parse_output(text)
    assert out.errors == [] and out.warnings == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("0", 0.0), ("4.601802ms", 0.004601802), ("850µs", 850e-6), ("850us", 850e-6),
     ("12ns", 12e-9), ("1.5s", 1.5), ("1m2.5s", 62.5), ("2h3m", 7380.0), ("-3ms", -0.003)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert gobot.parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ms", "3", "3 ms", "3xs", "1s2"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        gobot.parse_go_duration(text)


def test_full_speed_formula_matches_a_simulation_of_the_bot() -> None:
    """Simulate what the bot prints (waits uniform(0, 6 s), profile.go's section dumps, the
    last section lost) and compare with full_speed_things' n(D-2)/3."""
    rng = random.Random(1)

    def printed(n: int, duration: float) -> int:
        events: list[float] = []
        for _ in range(n):
            t = rng.uniform(0, 6)
            while t < duration:
                events.append(t)
                t += 0.005 + rng.uniform(0, 6)  # the thing itself takes a few ms
        total, current, section_start = 0, 0, float("-inf")
        for t in sorted(events):
            if t - section_start >= 1.0:
                total, current, section_start = total + current, 0, t
            current += 1
        return total

    for n, duration in [(20, 20), (100, 30), (5, 60)]:
        runs = 300
        mean = sum(printed(n, duration) for _ in range(runs)) / runs
        assert mean == pytest.approx(gobot.full_speed_things(n, duration), rel=0.06), (n, duration)
    assert gobot.full_speed_things(20, 20) == 120
    assert gobot.full_speed_things(20, 1) == 0


def make_result(tmp_path: Path, text: str, returncode: int | None = 0, n: int = 3, duration: int = 5) -> gobot.BotResult:
    log = tmp_path / "output.log"
    log.write_text(text)
    return gobot.BotResult(
        name="sample", n=n, start=1, duration=duration, transport="tcp", returncode=returncode,
        elapsed=duration + 0.1, output=gobot.parse_output(text), log_path=log, command=["test_client"],
    )


def test_verdict_passes_a_clean_run_at_full_speed(tmp_path: Path) -> None:
    result = make_result(tmp_path, SAMPLE)  # 7 things; full speed for N=3, D=5 is 3
    verdict = result.verdict()
    assert verdict and verdict.reasons == ()
    assert "7 things" in verdict.message and "DoEnterRandomSpace 5" in verdict.message


def test_verdict_fails_on_the_early_close_that_strict_mode_lets_exit_0(tmp_path: Path) -> None:
    result = make_result(tmp_path, SAMPLE + 'error\t<nil>\t{"source": "test_client"}\n')
    verdict = result.verdict()
    assert not verdict
    assert verdict.reasons == ("1 error/fatal/panic line(s)",)
    assert "---- first error lines\nerror\t<nil>" in verdict.message
    assert "---- tail of" in verdict.message and "DoTestListField" in verdict.message


def test_verdict_names_every_reason(tmp_path: Path) -> None:
    result = make_result(tmp_path, SAMPLE, returncode=1, n=20, duration=20)
    verdict = result.verdict()
    assert not verdict
    assert verdict.reasons == (
        "exited 1",
        "3/20 bots connected",
        "7 things done, fewer than 60 (50% of 120 at full speed)",
    )
    killed = make_result(tmp_path, "", returncode=None).verdict()
    assert killed.reasons[0].startswith("did not exit within")


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A throwaway key and certificate: goworld.config checks that the certificate loads."""
    directory = tmp_path_factory.mktemp("keys")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=goworld", "-keyout", str(directory / "rsa.key"),
         "-out", str(directory / "rsa.crt")],
        check=True, capture_output=True,
    )
    return (directory / "rsa.key").read_bytes(), (directory / "rsa.crt").read_bytes()


def cluster_config(tmp_path: Path, key_pair: tuple[bytes, bytes]) -> gwconfig.ClusterConfig:
    (tmp_path / "rsa.key").write_bytes(key_pair[0])
    (tmp_path / "rsa.crt").write_bytes(key_pair[1])
    write_ini(
        tmp_path, dispatchers=2, games=3, gates=2,
        gate_extra="heartbeat_check_interval = 5",
        gate_extras={2: "compress_connection = 1\nencrypt_connection = 1\nrsa_key = rsa.key\n"
                        "rsa_certificate = rsa.crt"},
    )
    return gwconfig.load(tmp_path / "goworld.ini")


def read_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read_string(text)
    return parser


#: The keys GoWorld's engine/config reads in each section (it is fatal on any other).
GOWORLD_KEYS = {
    "deployment": {"desired_dispatchers", "desired_games", "desired_gates"},
    "storage": {"type", "url", "db"},
    "kvdb": {"type", "url", "db", "collection"},
    "dispatcher": {"listen_addr", "advertise_addr", "http_addr", "log_file", "log_stderr", "log_level"},
    "game": set(),
    "gate": {"listen_addr", "http_addr", "encrypt_connection", "compress_connection", "rsa_key",
             "rsa_certificate", "log_file", "log_stderr", "log_level", "gomaxprocs",
             "heartbeat_check_interval", "position_sync_interval_ms"},
}


def test_bot_ini_shows_every_gate_with_its_security_and_a_mongodb_placeholder(
    tmp_path: Path, key_pair: tuple[bytes, bytes]
) -> None:
    config = cluster_config(tmp_path, key_pair)
    ini = read_ini(gobot.bot_ini_text(config))
    assert ini.sections() == ["deployment", "storage", "kvdb", "dispatcher1", "dispatcher2",
                              "game1", "game2", "game3", "gate1", "gate2"]
    for section in ini.sections():
        kind = section.rstrip("0123456789")
        assert set(ini[section]) <= GOWORLD_KEYS[kind], section
    assert dict(ini["deployment"]) == {"desired_dispatchers": "2", "desired_games": "3", "desired_gates": "2"}
    assert ini["storage"]["type"] == ini["kvdb"]["type"] == "mongodb"
    assert ini["storage"]["url"] and ini["storage"]["db"] and ini["kvdb"]["collection"]
    assert ini["dispatcher2"]["listen_addr"] == str(config.dispatchers[2].listen_addr)
    plain, secure = ini["gate1"], ini["gate2"]
    assert plain["listen_addr"] == str(config.gates[1].listen_addr)
    assert plain["http_addr"] == str(config.gates[1].http_addr)
    assert (plain["encrypt_connection"], plain["compress_connection"]) == ("0", "0")
    assert (secure["encrypt_connection"], secure["compress_connection"]) == ("1", "1")
    assert secure["rsa_key"] == str(tmp_path / "rsa.key")
    assert secure["rsa_certificate"] == str(tmp_path / "rsa.crt")


def test_bot_ini_maps_the_chosen_gates_to_bot_gates_from_1(
    tmp_path: Path, key_pair: tuple[bytes, bytes]
) -> None:
    config = cluster_config(tmp_path, key_pair)
    path = gobot.write_bot_ini(config, tmp_path / "bot" / "only2.ini", gates=[2])
    ini = read_ini(path.read_text())
    assert ini["deployment"]["desired_gates"] == "1"
    assert [s for s in ini.sections() if s.startswith("gate")] == ["gate1"]
    assert ini["gate1"]["listen_addr"] == str(config.gates[2].listen_addr)
    assert ini["gate1"]["encrypt_connection"] == "1"

    swapped = read_ini(gobot.bot_ini_text(config, gates=[2, 1]))
    assert swapped["gate2"]["listen_addr"] == str(config.gates[1].listen_addr)
    with pytest.raises(ValueError, match="no gate"):
        gobot.bot_ini_text(config, gates=[3])
    with pytest.raises(ValueError):
        gobot.bot_ini_text(config, gates=[])


def test_write_ini_refuses_extras_for_a_gate_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gate_extras"):
        write_ini(tmp_path, gates=1, gate_extras={2: "compress_connection = 1"})


def test_start_bot_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="transport"):
        gobot.start_bot(Path("/bin/true"), tmp_path / "x.ini", tmp_path, n=1, duration=1, transport="wss")
    with pytest.raises(ValueError):
        gobot.start_bot(Path("/bin/true"), tmp_path / "x.ini", tmp_path, n=0, duration=1)


def test_a_missing_go_toolchain_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gobot, "find_go", lambda: None)
    with pytest.raises(gobot.GoToolchainMissing, match="golang-go"):
        gobot.build_test_client(tmp_path)


def test_a_bot_process_is_waited_for_and_killed_past_its_deadline(tmp_path: Path) -> None:
    """BotProcess with a stand-in executable (a shell script printing a sample): the process
    plumbing, not the bot."""
    script = tmp_path / "fake_bot"
    script.write_text("#!/bin/sh\necho \"$@\" > args.txt\ncat <<'EOF'\n" + SAMPLE + "EOF\n")
    script.chmod(0o755)
    result = gobot.run_bot(script, tmp_path / "bot.ini", tmp_path / "run", n=3, duration=5,
                           start=7, transport="kcp")
    assert result.returncode == 0 and result.total == 7 and result.output.connected == 3
    args = (tmp_path / "run" / "args.txt").read_text().split()
    assert args == ["-configfile", str(tmp_path / "bot.ini"), "-N", "3", "-S", "7", "-duration", "5",
                    "-server", "127.0.0.1", "-strict", "-kcp"]

    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(0o755)
    process = gobot.start_bot(sleeper, tmp_path / "bot.ini", tmp_path / "slow", n=1, duration=1)
    results = gobot.wait_all([process], timeout=0.2)
    assert results[0].returncode is None and process.poll() is not None
    assert not results[0].verdict()

"""goworld.log: repeated warnings are summarised per interval, one decision per record for every
handler, size rotation; the docstring names the loggers the code uses."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from goworld import log
from goworld.log import RepeatFilter

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def logger(clock: Clock) -> Iterator[tuple[logging.Logger, Collect, RepeatFilter]]:
    """A private logger with one collecting handler behind a RepeatFilter (limit 3, 10 s)."""
    lg = logging.getLogger("goworld_test_log.private")
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    handler = Collect()
    filt = RepeatFilter(limit=3, interval=10, clock=clock, sink=handler.handle)
    handler.addFilter(filt)
    lg.addHandler(handler)
    try:
        yield lg, handler, filt
    finally:
        lg.removeHandler(handler)


def test_a_flood_of_one_warning_writes_the_limit_then_one_summary(
    logger: tuple[logging.Logger, Collect, RepeatFilter], clock: Clock
) -> None:
    lg, out, _ = logger
    for i in range(1000):
        lg.warning("client %s may not call %s: dropped", f"c{i}", "DoEnterSpace")
    assert out.lines == [f"WARNING goworld_test_log.private: client c{i} may not call DoEnterSpace: dropped"
                         for i in range(3)]
    clock.now += 10
    lg.warning("client %s may not call %s: dropped", "late", "DoEnterSpace")
    assert out.lines[3:] == [
        "WARNING goworld_test_log.private: 997 more like this suppressed in the last 10 s: "
        "client %s may not call %s: dropped",
        "WARNING goworld_test_log.private: client late may not call DoEnterSpace: dropped",
    ]


def test_keys_are_logger_template_and_level(
    logger: tuple[logging.Logger, Collect, RepeatFilter],
) -> None:
    lg, out, _ = logger
    other = logging.getLogger("goworld_test_log.private.child")  # propagates to the same handler
    for _ in range(5):
        lg.warning("a %s", 1)
        lg.warning("b %s", 1)
        lg.error("a %s", 1)
        other.warning("a %s", 1)
    assert len(out.lines) == 3 + 3 + 5 + 3  # errors have 5x the allowance (15 > 5: all pass)


def test_errors_have_a_higher_allowance_but_are_bounded(
    logger: tuple[logging.Logger, Collect, RepeatFilter], clock: Clock
) -> None:
    lg, out, filt = logger
    for _ in range(100):
        lg.error("storage down: %s", "boom")
    assert len(out.lines) == 15
    clock.now += 11
    filt.flush()
    assert out.lines[-1] == ("ERROR goworld_test_log.private: 85 more like this suppressed in the last 10 s: "
                             "storage down: %s")


def test_info_and_debug_have_the_largest_allowance(
    logger: tuple[logging.Logger, Collect, RepeatFilter], clock: Clock
) -> None:
    """INFO narrates logins and connections (bursts in normal operation): 100x the warnings'
    allowance, and still bounded against a churn of connections."""
    lg, out, filt = logger
    for i in range(500):
        lg.info("client %s connected", i)
        lg.debug("traffic %s", i)
    assert len(out.lines) == 300 + 300
    clock.now += 10
    filt.flush()
    assert out.lines[600:] == [
        "INFO goworld_test_log.private: 200 more like this suppressed in the last 10 s: client %s connected",
        "DEBUG goworld_test_log.private: 200 more like this suppressed in the last 10 s: traffic %s",
    ]


def test_min_level_lets_lower_records_through(clock: Clock) -> None:
    out = Collect()
    filt = RepeatFilter(limit=1, interval=10, min_level=logging.WARNING, clock=clock, sink=out.handle)
    out.addFilter(filt)
    lg = logging.getLogger("goworld_test_log.min_level")
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    lg.addHandler(out)
    try:
        for _ in range(1000):
            lg.info("narrative")
        lg.warning("w")
        lg.warning("w")
        assert len(out.lines) == 1001
    finally:
        lg.removeHandler(out)


def test_flush_writes_the_summary_once_the_interval_is_over_and_only_then(
    logger: tuple[logging.Logger, Collect, RepeatFilter], clock: Clock
) -> None:
    lg, out, filt = logger
    for _ in range(7):
        lg.warning("refused")
    filt.flush()
    clock.now += 9.9
    filt.flush()
    assert len(out.lines) == 3
    clock.now += 0.1
    filt.flush()
    assert out.lines[3:] == [
        "WARNING goworld_test_log.private: 4 more like this suppressed in the last 10 s: refused"
    ]
    clock.now += 100
    filt.flush()
    assert len(out.lines) == 4  # nothing new was suppressed
    lg.warning("refused")  # a fresh interval: allowed again
    assert len(out.lines) == 5


def test_flush_all_summarises_the_current_interval_at_exit(
    logger: tuple[logging.Logger, Collect, RepeatFilter],
) -> None:
    lg, out, filt = logger
    for _ in range(5):
        lg.warning("refused %d", 1)
    filt.flush_all()
    assert out.lines[-1].endswith("2 more like this suppressed in the last 10 s: refused %d")


def test_distinct_preformatted_messages_are_bounded_too(clock: Clock) -> None:
    out = Collect()
    filt = RepeatFilter(limit=2, interval=10, max_keys=5, clock=clock, sink=out.handle)
    out.addFilter(filt)
    lg = logging.getLogger("goworld_test_log.fstrings")
    lg.propagate = False
    lg.addHandler(out)
    try:
        for i in range(100):
            lg.warning(f"client {i} sent garbage")
        assert len(out.lines) == 5 + 2  # 5 keys, then the overflow key's allowance
        assert len(filt._counts) == 6
        filt.flush_all()
        assert out.lines[-1].endswith("93 more like this suppressed in the last 10 s: "
                                      "<more distinct messages than the per-interval key budget>")
    finally:
        lg.removeHandler(out)


def test_non_string_messages_are_keyed_by_type(logger: tuple[logging.Logger, Collect, RepeatFilter]) -> None:
    lg, out, _ = logger
    for i in range(10):
        lg.warning(ValueError(i))
        lg.warning({"unhashable": [i]})
    assert len(out.lines) == 6


def test_a_record_counts_once_whatever_the_number_of_handlers(clock: Clock) -> None:
    a, b = Collect(), Collect()
    both: list[logging.Handler] = [a, b]
    filt = RepeatFilter(limit=3, interval=10, clock=clock, sink=lambda r: [h.handle(r) for h in both])
    lg = logging.getLogger("goworld_test_log.two")
    lg.propagate = False
    for h in both:
        h.addFilter(filt)
        lg.addHandler(h)
    try:
        for _ in range(10):
            lg.warning("same")
        assert len(a.lines) == len(b.lines) == 3
        clock.now += 10
        lg.warning("same")
        assert a.lines == b.lines
        assert a.lines[3:] == ["WARNING goworld_test_log.two: 7 more like this suppressed in the last 10 s: same",
                               "WARNING goworld_test_log.two: same"]
    finally:
        for h in both:
            lg.removeHandler(h)


def test_threads_share_one_count(clock: Clock) -> None:
    out = Collect()
    filt = RepeatFilter(limit=10, interval=10, clock=clock, sink=out.handle)
    out.addFilter(filt)
    lg = logging.getLogger("goworld_test_log.threads")
    lg.propagate = False
    lg.addHandler(out)
    try:
        def hammer() -> None:
            for _ in range(2000):
                lg.warning("from a worker")

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        filt.flush_all()
        assert out.lines[:10] == ["WARNING goworld_test_log.threads: from a worker"] * 10
        assert out.lines[10:] == ["WARNING goworld_test_log.threads: 7990 more like this suppressed "
                                  "in the last 10 s: from a worker"]
    finally:
        lg.removeHandler(out)


def test_bad_settings_are_refused() -> None:
    for kwargs in ({"limit": 0}, {"interval": 0}, {"max_keys": 0}, {"error_factor": 0}, {"info_factor": 0}):
        with pytest.raises(ValueError):
            RepeatFilter(**kwargs)  # type: ignore[arg-type]


def test_configure_limits_file_and_stderr_alike(
    tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str], goworld_logger: None
) -> None:
    log_file = tmp_path / "game1.log"
    log.configure(level="info", log_file=log_file, stderr=True, repeat_limit=2,
                  repeat_interval=10, clock=clock)
    lg = logging.getLogger("goworld.game")
    for i in range(50):
        lg.warning("client %s may not call %s: dropped", i, "DoEnterSpace")
    lg.info("a line after the flood")
    log.flush_repeats()  # the interval is not over: nothing yet
    clock.now += 10
    log.flush_repeats()
    expected = [
        "WARNING goworld.game: client 0 may not call DoEnterSpace: dropped",
        "WARNING goworld.game: client 1 may not call DoEnterSpace: dropped",
        "INFO goworld.game: a line after the flood",
        "WARNING goworld.game: 48 more like this suppressed in the last 10 s: "
        "client %s may not call %s: dropped",
    ]
    strip = re.compile(r"^\S+ \S+ ")  # the timestamp
    assert [strip.sub("", line) for line in log_file.read_text().splitlines()] == expected
    assert [strip.sub("", line) for line in capsys.readouterr().err.splitlines()] == expected


def test_configure_with_repeat_limit_0_writes_every_record(
    tmp_path: Path, goworld_logger: None
) -> None:
    log_file = tmp_path / "gate1.log"
    assert log.configure(log_file=log_file, stderr=False, repeat_limit=0) is None
    for _ in range(100):
        logging.getLogger("goworld.gate").warning("same")
    log.flush_repeats(final=True)
    assert len(log_file.read_text().splitlines()) == 100


def test_configure_rotates_by_size(tmp_path: Path, goworld_logger: None) -> None:
    log_file = tmp_path / "dispatcher1.log"
    log.configure(log_file=log_file, stderr=False, max_bytes=2000, backups=2)
    lg = logging.getLogger("goworld.dispatcher")
    for i in range(200):
        lg.info("line %04d %s", i, "x" * 40)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["dispatcher1.log", "dispatcher1.log.1", "dispatcher1.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert "line 0199" in log_file.read_text()


def test_the_docstring_names_every_logger_the_code_uses_and_no_other() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""(getLogger|get_logger)\(\s*["']([\w.]+)["']""")
    for package in ("goworld", "game", "gate", "dispatcher", "lockstep"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "goworld" / "log.py":
                continue  # its docstring's example
            for call, name in pattern.findall(path.read_text()):
                used.add(name if call == "getLogger" else f"goworld.{name}")
    used.discard("goworld")  # the parent: only configure and announce_started touch it
    assert log.__doc__ is not None
    listed = log.__doc__.split("Loggers in use")[1].split("Library modules")[0]
    assert set(re.findall(r"``(goworld(?:\.\w+)+)``", listed)) == used


def test_other_libraries_records_go_to_the_log_file_bounded_too(
    tmp_path: Path, clock: Clock, goworld_logger: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """asyncio's 'socket.send() raised exception.' once per write to a dead peer, say: a log
    record, so it belongs in the log file, counted like ours, and not on the captured stderr."""
    log_file = tmp_path / "gate1.log"
    log.configure(log_file=log_file, stderr=False, repeat_limit=2, clock=clock)
    for _ in range(20):
        logging.getLogger("asyncio").warning("socket.send() raised exception.")
    logging.getLogger("asyncio").info("below the root's level (WARNING): not written")
    log.configure(log_file=tmp_path / "again.log", stderr=False)  # configure again: no duplicate
    logging.getLogger("grpc").error("once")
    lines = [line.split(" ", 2)[2] for line in log_file.read_text().splitlines()]
    assert lines == ["WARNING asyncio: socket.send() raised exception."] * 2 + [
        "WARNING asyncio: 18 more like this suppressed in the last 10 s: socket.send() raised exception."
    ]
    assert (tmp_path / "again.log").read_text().count("ERROR grpc: once") == 1
    assert capsys.readouterr().err == ""

"""GoWorld's own Go test bot (``test_client``): build it, give it an ini, run it, read its output.

The bot is a test tool, not part of the project: its source is GoWorld's, in
``../shared/goworld-go/examples/test_client``, built by ``../shared/tools/build-goworld``.
This module is what the integration test (``tests/integration/test_go_bot.py``) and the
capacity benchmark share:

* :func:`build_test_client` builds the binary into a cache directory (``.cache/gobot``) and
  reuses it while a stamp (the build script, goworld-go's ``go.mod``/``go.sum``, the bot's
  sources, ``go version``) is unchanged. No Go toolchain: :class:`GoToolchainMissing`.
* :func:`write_bot_ini` writes the bot's own ini from our :class:`~goworld.config.ClusterConfig`.
  GoWorld's config validator is fatal on storage types it does not know (``sqlite``) and on
  keys it does not know, so the bot gets a placeholder MongoDB ``[storage]``/``[kvdb]``
  (never used by the bot) and only the keys GoWorld reads. ``gates=`` chooses which of our
  gates the bot sees: it picks one at random in ``1..desired_gates`` per bot.
* :func:`start_bot` starts one process (``Popen``-style, so many can run at once; each gets
  its own working directory, where the bot writes ``test_client.log``); :meth:`BotProcess.wait`
  returns a :class:`BotResult`; :func:`run_bot` does both.
* :func:`parse_output` reads what the bot printed: the per-second profile, error lines,
  connections. :meth:`BotResult.verdict` says whether a run passed, and why not.

What the bot does (GoWorld's ``examples/test_client``): each bot connects to a gate, logs in,
and once its avatar is in a space repeats: wait ``uniform(0, 6 s)``, do one "thing" (an RPC
round trip such as ``DoEnterRandomSpace`` or ``DoTestCallAll``), record its time. Every time a
thing is recorded at least 1 s after the current profile section began, the section is printed
(``> THING *COUNT AVG d RANGE min ~ max`` lines, then a line of ``=``); the last section is
never printed. ``-strict`` makes an entity/method error or a thing's 5 s timeout fatal
(``fatal`` log line, exit 1), but the process still exits 0 when the server closes its
connections (its receive loop logs ``error<TAB><nil>``), so a passing run also needs no error
line and enough things done (:func:`full_speed_things`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from goworld.config import ClusterConfig
from goworld.errors import GoWorldError

__all__ = [
    "BUILD_SCRIPT",
    "CACHE_DIR",
    "BotOutput",
    "BotProcess",
    "BotResult",
    "BuildError",
    "GoToolchainMissing",
    "ThingStats",
    "Verdict",
    "bot_ini_text",
    "build_test_client",
    "find_go",
    "full_speed_things",
    "parse_go_duration",
    "parse_output",
    "run_bot",
    "start_bot",
    "wait_all",
    "write_bot_ini",
]

logger = logging.getLogger("goworld.gobot")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BUILD_SCRIPT = SHARED / "tools" / "build-goworld"
GOWORLD_GO = SHARED / "goworld-go"
CACHE_DIR = ROOT / ".cache" / "gobot"
BINARY_NAME = "test_client"
#: The mean wait between two things of one bot (``_AVERAGE_DO_SOMETHING_INTERVAL`` in the bot's
#: ClientEntity.go; each wait is uniform in 0..2x this).
THING_INTERVAL = 3.0
TRANSPORTS = ("tcp", "ws", "kcp")
#: A run passes when it did at least this fraction of :func:`full_speed_things`.
PASS_FRACTION = 0.5
_GO_FALLBACK = Path("/usr/local/go/bin/go")
_INSTALL_HINT = "install Debian's golang-go (apt-get install -y golang-go; scripts/install-test-deps does)"


class GoToolchainMissing(GoWorldError):
    """No ``go`` on PATH nor in /usr/local/go/bin."""


class BuildError(GoWorldError):
    """build-goworld failed (its output is in the message)."""


# ----------------------------------------------------------------------------- build


def find_go() -> Path | None:
    """The ``go`` binary: on PATH, else /usr/local/go/bin/go; None when there is none."""
    found = shutil.which("go")
    if found:
        return Path(found)
    if os.access(_GO_FALLBACK, os.X_OK):
        return _GO_FALLBACK
    return None


def _stamp(go: Path, build_script: Path, source: Path) -> str:
    digest = hashlib.sha256()
    files = [build_script, source / "go.mod", source / "go.sum"]
    files += sorted((source / "examples" / BINARY_NAME).glob("*.go"))
    for path in files:
        digest.update(str(path.name).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
        digest.update(b"\0")
    version = subprocess.run(
        [str(go), "version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    digest.update(version.encode())
    return digest.hexdigest()


def build_test_client(
    cache_dir: Path = CACHE_DIR,
    *,
    build_script: Path = BUILD_SCRIPT,
    source: Path = GOWORLD_GO,
    timeout: float = 900.0,
) -> Path:
    """Build GoWorld's ``test_client`` into ``cache_dir`` (or reuse it); return its path.

    Raises :class:`GoToolchainMissing` when there is no Go toolchain, :class:`BuildError` when
    the build fails. Safe to call from several processes at once (a lock file serialises them).
    """
    go = find_go()
    if go is None:
        raise GoToolchainMissing(f"GoWorld's Go test bot needs a Go toolchain: no `go` on PATH "
                                 f"nor at {_GO_FALLBACK}; {_INSTALL_HINT}")
    if not build_script.is_file():
        raise BuildError(f"{build_script} not found (GoWorld's sources are expected in {SHARED})")
    cache_dir.mkdir(parents=True, exist_ok=True)
    binary = cache_dir / BINARY_NAME
    stamp_file = cache_dir / f"{BINARY_NAME}.stamp"
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = _stamp(go, build_script, source)
        if binary.is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
            logger.debug("reusing %s", binary)
            return binary
        logger.info("building GoWorld's %s with %s", BINARY_NAME, go)
        env = {**os.environ, "PATH": f"{go.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            try:
                proc = subprocess.run(
                    [str(build_script), tmp, BINARY_NAME],
                    capture_output=True, text=True, env=env, timeout=timeout, check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise BuildError(f"building {BINARY_NAME} took more than {timeout:.0f} s") from exc
            if proc.returncode != 0:
                raise BuildError(
                    f"{build_script} {tmp} {BINARY_NAME} exited {proc.returncode}:\n"
                    f"{(proc.stdout + proc.stderr).strip()[-4000:]}"
                )
            os.replace(Path(tmp) / BINARY_NAME, binary)
        stamp_file.write_text(stamp + "\n")
        logger.info("built %s in %.1f s", binary, time.monotonic() - started)
        return binary


# ----------------------------------------------------------------------------- ini


#: The bot never opens storage or KVDB, but GoWorld's validator needs a type it knows.
_PLACEHOLDER_MONGO = "mongodb://127.0.0.1:27017/"


def bot_ini_text(config: ClusterConfig, gates: Sequence[int] | None = None) -> str:
    """The bot's ini for our cluster ``config``: bot gate ``i`` is our gate ``gates[i-1]``.

    ``gates`` defaults to every gate of ``config`` in order. Only keys GoWorld's validator
    knows are written (it is fatal on unknown ones).
    """
    chosen = list(config.gates) if gates is None else list(gates)
    if not chosen:
        raise ValueError("the bot needs at least one gate")
    unknown = [g for g in chosen if g not in config.gates]
    if unknown:
        raise ValueError(f"no gate {unknown} in {config.path} (gates: {sorted(config.gates)})")
    lines = [
        f"; GoWorld test_client's view of {config.path} (written by goworld.gobot)",
        "[deployment]",
        f"desired_dispatchers = {len(config.dispatchers)}",
        f"desired_games = {len(config.games)}",
        f"desired_gates = {len(chosen)}",
        "",
        "; placeholders: GoWorld refuses storage types it does not know; the bot never uses them",
        "[storage]",
        "type = mongodb",
        f"url = {_PLACEHOLDER_MONGO}",
        "db = goworld",
        "",
        "[kvdb]",
        "type = mongodb",
        f"url = {_PLACEHOLDER_MONGO}",
        "db = goworld",
        "collection = __kv__",
    ]
    for i, disp in sorted(config.dispatchers.items()):
        lines += ["", f"[dispatcher{i}]", f"listen_addr = {disp.listen_addr}"]
    for i in sorted(config.games):
        lines += ["", f"[game{i}]"]
    for bot_id, our_id in enumerate(chosen, 1):
        gate = config.gates[our_id]
        lines += [
            "",
            f"; our gate{our_id}",
            f"[gate{bot_id}]",
            f"listen_addr = {gate.listen_addr}",
            f"http_addr = {gate.http_addr}",
            f"encrypt_connection = {int(gate.encrypt_connection)}",
            f"compress_connection = {int(gate.compress_connection)}",
            f"rsa_key = {gate.rsa_key}",
            f"rsa_certificate = {gate.rsa_certificate}",
        ]
    return "\n".join(lines) + "\n"


def write_bot_ini(config: ClusterConfig, path: Path, *, gates: Sequence[int] | None = None) -> Path:
    """Write :func:`bot_ini_text` to ``path``; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bot_ini_text(config, gates))
    return path


# ----------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class ThingStats:
    """How many times one thing was done and how long it took (seconds)."""

    count: int
    total_seconds: float
    max_seconds: float

    @property
    def avg_seconds(self) -> float:
        return self.total_seconds / self.count if self.count else 0.0

    def __add__(self, other: ThingStats) -> ThingStats:
        return ThingStats(
            self.count + other.count,
            self.total_seconds + other.total_seconds,
            max(self.max_seconds, other.max_seconds),
        )


@dataclass(slots=True)
class BotOutput:
    """What :func:`parse_output` found in the bot's output."""

    #: Printed profile sections in order (each covers >= 1 s; ~1 s when things are frequent).
    sections: list[dict[str, ThingStats]] = field(default_factory=list)
    #: ``error``/``fatal``/``panic``/``dpanic`` log lines and Go runtime ``panic:``/``fatal error:``.
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: ``connected: ADDR`` lines: one per bot whose connection to a gate succeeded.
    connected: int = 0

    @property
    def things(self) -> dict[str, ThingStats]:
        """Every section summed per thing."""
        out: dict[str, ThingStats] = {}
        for section in self.sections:
            for thing, stats in section.items():
                out[thing] = out[thing] + stats if thing in out else stats
        return out

    @property
    def counts(self) -> dict[str, int]:
        return {thing: stats.count for thing, stats in sorted(self.things.items())}

    @property
    def total(self) -> int:
        return sum(stats.count for section in self.sections for stats in section.values())

    @property
    def section_totals(self) -> list[int]:
        return [sum(s.count for s in section.values()) for section in self.sections]

    @property
    def things_per_second(self) -> float:
        """Things per printed profile section, i.e. per second once a thing finishes at least
        every second (with fewer, sections last longer and this overstates the rate)."""
        return self.total / len(self.sections) if self.sections else 0.0


_PROFILE_RE = re.compile(r"^> (\S+)\s+\*(\d+) AVG (\S+) RANGE (\S+) ~ (\S+)\s*$")
_SEPARATOR_RE = re.compile(r"^={10,}\s*$")
_ERROR_RE = re.compile(r"^(?:(?:error|fatal|panic|dpanic)\t|panic: |fatal error: )")
_WARN_RE = re.compile(r"^warn\t")
_CONNECTED_RE = re.compile(r"^info\tconnected: ")
_DURATION_PART_RE = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.Duration`` string (``0s``, ``850µs``, ``4.6ms``, ``1m2.5s``)."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    parts = _DURATION_PART_RE.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"not a Go duration: {text!r}")
    return sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def parse_output(text: str) -> BotOutput:
    """Read the bot's stdout and stderr (merged, or either alone)."""
    out = BotOutput()
    pending: dict[str, ThingStats] = {}
    for line in text.splitlines():
        match = _PROFILE_RE.match(line)
        if match:
            thing, count, avg = match[1], int(match[2]), parse_go_duration(match[3])
            stats = ThingStats(count, count * avg, parse_go_duration(match[5]))
            pending[thing] = pending[thing] + stats if thing in pending else stats
        elif _SEPARATOR_RE.match(line):
            if pending:  # the very first separator closes an empty section
                out.sections.append(pending)
                pending = {}
        elif _ERROR_RE.match(line):
            out.errors.append(line)
        elif _WARN_RE.match(line):
            out.warnings.append(line)
        elif _CONNECTED_RE.match(line):
            out.connected += 1
    # Profile lines after the last separator would be a section cut short: not counted.
    return out


def full_speed_things(n: int, duration: float) -> float:
    """How many things ``n`` bots report in a ``duration`` s run at full speed: ``n(D-2)/3``.

    Each bot waits ``uniform(0, 6 s)`` before each thing (mean mu = 3 s, variance 3 s^2) and
    a thing itself takes milliseconds, so one bot is a renewal process whose expected count
    by time t is t/mu + var/(2 mu^2) - 1/2 = t/3 - 1/3. The last section (about 1 s) is never
    printed, so t = D - 1 and the printed total is n((D-1)/3 - 1/3) = n(D-2)/3. (Login takes
    a few ms and is neglected.) N=20, D=20: 120 (a simulation of the bot: mean 121.7, SD 7.4);
    measured against examples/test_game: 105-147 over 20 runs, mean ~120.
    """
    return max(0.0, n * (duration - 2.0) / THING_INTERVAL)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]
    message: str

    def __bool__(self) -> bool:
        return self.passed


@dataclass(slots=True)
class BotResult:
    name: str
    n: int
    start: int
    duration: int
    transport: str
    returncode: int | None  # None: killed after not exiting in time
    elapsed: float
    output: BotOutput
    log_path: Path
    command: list[str]

    @property
    def things(self) -> dict[str, int]:
        return self.output.counts

    @property
    def total(self) -> int:
        return self.output.total

    @property
    def things_per_second(self) -> float:
        return self.output.things_per_second

    @property
    def expected(self) -> float:
        return full_speed_things(self.n, self.duration)

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<{self.log_path}: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def verdict(self, pass_fraction: float = PASS_FRACTION) -> Verdict:
        """Passed: exit 0, no error/fatal/panic line, every bot connected, and at least
        ``pass_fraction`` of :func:`full_speed_things` done."""
        reasons: list[str] = []
        if self.returncode is None:
            reasons.append(f"did not exit within {self.elapsed:.0f} s (killed)")
        elif self.returncode != 0:
            reasons.append(f"exited {self.returncode}")
        if self.output.errors:
            reasons.append(f"{len(self.output.errors)} error/fatal/panic line(s)")
        if self.output.connected != self.n:
            reasons.append(f"{self.output.connected}/{self.n} bots connected")
        wanted = pass_fraction * self.expected
        if self.total < wanted:
            reasons.append(
                f"{self.total} things done, fewer than {wanted:.3g} "
                f"({pass_fraction:.0%} of {self.expected:.3g} at full speed)"
            )
        if not reasons:
            return Verdict(True, (), f"go bot run {self.name}: passed; {self.summary()}")
        errors = "\n".join(self.output.errors[:10])
        message = (
            f"go bot run {self.name} FAILED: {'; '.join(reasons)}\n{self.summary()}\n"
            f"command: {' '.join(self.command)}\n"
            + (f"---- first error lines\n{errors}\n" if errors else "")
            + f"---- tail of {self.log_path}\n{self.tail()}"
        )
        return Verdict(False, tuple(reasons), message)

    def summary(self) -> str:
        per_thing = ", ".join(f"{t} {c}" for t, c in self.things.items())
        return (
            f"{self.name}: N={self.n} -S {self.start} {self.transport} {self.duration} s: "
            f"{self.total} things ({self.things_per_second:.1f}/s over "
            f"{len(self.output.sections)} profile sections; full speed ~{self.expected:.0f}), "
            f"exit {self.returncode}, {self.output.connected} connected, "
            f"{len(self.output.errors)} errors, {len(self.output.warnings)} warnings, "
            f"{self.elapsed:.1f} s wall; {per_thing}"
        )


# ----------------------------------------------------------------------------- processes


class BotProcess:
    """One running ``test_client``; :meth:`wait` for its :class:`BotResult`."""

    #: How long past ``-duration`` :meth:`wait` waits by default before killing the bot.
    GRACE = 30.0

    def __init__(
        self, name: str, popen: subprocess.Popen[bytes], log_path: Path, command: list[str],
        *, n: int, start: int, duration: int, transport: str,
    ) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.command = command
        self.n, self.start, self.duration, self.transport = n, start, duration, transport
        self.started = time.monotonic()
        self._result: BotResult | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        """Kill the bot if it still runs (idempotent)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def wait(self, timeout: float | None = None) -> BotResult:
        """Wait for the bot to exit (at most ``timeout`` s from now; default: until ``-duration``
        plus :attr:`GRACE` after its start), killing it past that; parse its output."""
        if self._result is not None:
            return self._result
        if timeout is None:
            timeout = max(0.0, self.started + self.duration + self.GRACE - time.monotonic())
        returncode: int | None
        try:
            returncode = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("go bot %s (pid %d) still runs after its deadline: killed", self.name, self.pid)
            self.kill()
            returncode = None
        elapsed = time.monotonic() - self.started
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        self._result = BotResult(
            name=self.name, n=self.n, start=self.start, duration=self.duration,
            transport=self.transport, returncode=returncode, elapsed=elapsed,
            output=parse_output(text), log_path=self.log_path, command=self.command,
        )
        return self._result

    def __enter__(self) -> BotProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def start_bot(
    binary: Path,
    ini: Path,
    workdir: Path,
    *,
    n: int,
    duration: int,
    start: int = 1,
    transport: str = "tcp",
    server: str = "127.0.0.1",
    strict: bool = True,
    name: str | None = None,
    extra_args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> BotProcess:
    """Start ``test_client -configfile INI -N n -S start [-strict] -duration D -server HOST``
    (plus ``-ws``/``-kcp``) in ``workdir`` (created), its stdout and stderr merged into
    ``workdir/output.log``. ``transport`` is ``tcp``, ``ws`` or ``kcp``; TLS and snappy come
    from the gate's settings in the ini. Bot ids (hence user names ``test<id>``) are
    ``start .. start+n-1``: give concurrent runs distinct ranges."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
    if n < 1 or duration < 1:
        raise ValueError("n and duration must be positive")
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(binary), "-configfile", str(Path(ini).resolve()), "-N", str(n), "-S", str(start),
        "-duration", str(duration), "-server", server,
    ]
    if strict:
        command.append("-strict")
    if transport != "tcp":
        command.append(f"-{transport}")
    command += list(extra_args)
    log_path = workdir / "output.log"
    with log_path.open("wb") as out:
        popen = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
        )
    name = name or f"{transport}-{start}"
    logger.info("go bot %s started (pid %d): %s", name, popen.pid, " ".join(command))
    return BotProcess(name, popen, log_path, command, n=n, start=start, duration=duration,
                      transport=transport)


def wait_all(processes: Sequence[BotProcess], timeout: float | None = None) -> list[BotResult]:
    """Wait for every process (each with :meth:`BotProcess.wait`'s default deadline unless
    ``timeout`` is given); whatever happens, none is left running."""
    try:
        return [p.wait(timeout) for p in processes]
    finally:
        for p in processes:
            p.kill()


def run_bot(binary: Path, ini: Path, workdir: Path, *, n: int, duration: int, **options: object) -> BotResult:
    """:func:`start_bot` then :meth:`BotProcess.wait` (the bot is killed if the wait fails)."""
    process = start_bot(binary, ini, workdir, n=n, duration=duration, **options)  # type: ignore[arg-type]
    with process:
        return process.wait()

"""Metrics and status of one process: the Prometheus registry, the ``/status`` facts, and the
figures every role shares (event-loop lag, GC pauses, CPU, RSS).

How it is built
    The engine counts where things happen, with plain ints in dicts and slotted objects and
    :class:`goworld.histogram.Histogram` (the dispatcher's ``stats``, the gate's per-transport
    ``Traffic`` and refusal totals, the game's RPC counts, storage operation counts...). Each
    role has a *figures* object (:mod:`dispatcher.metrics`, :mod:`gate.metrics`,
    :mod:`game.metrics`, following :class:`Figures`) whose ``collect()`` reads them when
    ``/metrics`` is scraped and yields ``prometheus_client`` metric families: nothing goes
    through ``prometheus_client`` per message. :class:`Exporter` puts the role's figures in
    one :class:`~prometheus_client.CollectorRegistry` with prometheus_client's process
    (CPU seconds, RSS, open files), GC and platform collectors and this module's loop-lag and
    GC-pause figures, and adds the labels ``role`` and ``id`` to every sample.

``/status``
    :meth:`Exporter.status` is one JSON object built from the same collection: ``role``,
    ``id``, ``pid``, ``uptime_seconds``, ``clients``, ``entities``, ``loop_lag_seconds`` and
    ``loop_lag_max_seconds``, ``cpu_seconds``, ``rss_bytes``, what the role adds (the links
    to the dispatchers...), and ``metrics``: every sample by name (histograms as ``_count``
    and ``_sum``), a number when it has no label but role and id, else an object keyed by its
    label value (``"tcp": 3``) or by ``label=value,...`` when it has several.

Event-loop lag
    :class:`LoopLag` sleeps :data:`LAG_INTERVAL` seconds again and again and records how much
    later than asked it woke up: the last overshoot and the largest within
    :data:`LAG_WINDOW` seconds.

GC pauses
    :class:`GCPauses` times each collection from ``gc.callbacks``' start to its stop, per
    generation.

The HTTP side (the access rule, the server the dispatcher and game run, the status page)
is :mod:`goworld.ops_http`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from goworld.config import ClusterConfig
from goworld.histogram import Histogram

__all__ = [
    "Exporter",
    "Figures",
    "GCPauses",
    "LAG_INTERVAL",
    "LAG_WINDOW",
    "LinkLike",
    "LoopLag",
    "OPS_TOKEN_ENV",
    "counter",
    "gauge",
    "histogram",
    "link_families",
    "links_summary",
    "ops_token",
]

logger = logging.getLogger("goworld.metrics")

#: Overrides ``[deployment] ops_token`` (an empty value does not: it is ignored).
OPS_TOKEN_ENV = "GOWORLD_OPS_TOKEN"
#: Seconds between two samples of the event-loop lag, and how long the largest is kept.
LAG_INTERVAL = 0.25
LAG_WINDOW = 60.0
#: GC pause buckets (seconds): 10 µs to 1 s.
GC_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


def ops_token(cfg: ClusterConfig) -> str:
    """The token ``/metrics`` and ``/status`` require: ``$GOWORLD_OPS_TOKEN`` if set and not
    empty, else ``[deployment] ops_token`` ("" = none: loopback peers only)."""
    return os.environ.get(OPS_TOKEN_ENV) or cfg.deployment.ops_token


class Figures(Protocol):
    """What a role adds: metric families read at scrape time, and its /status facts."""

    def collect(self) -> Iterable[Metric]:
        """Families for every figure the role keeps (no role/id labels: the exporter adds them)."""

    def summary(self) -> dict[str, Any]:
        """``clients`` and ``entities`` (an int, or None when the role has none) and any other
        JSON-ready facts for /status."""


# ----------------------------------------------------------------------------- families
# ``values``: (label values, value) pairs; the label values are a tuple, or one string when the
# family has one label.

LabelValues = Sequence[str] | str


def _label_list(label_values: LabelValues) -> list[str]:
    return [label_values] if isinstance(label_values, str) else list(label_values)


def counter(
    name: str,
    doc: str,
    labels: Sequence[str] = (),
    values: Iterable[tuple[LabelValues, float]] = (),
) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``) with one sample per (label values, value)."""
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for label_values, value in values:
        family.add_metric(_label_list(label_values), value)
    return family


def gauge(
    name: str,
    doc: str,
    labels: Sequence[str] = (),
    values: Iterable[tuple[LabelValues, float]] = (),
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for label_values, value in values:
        family.add_metric(_label_list(label_values), value)
    return family


def histogram(
    name: str,
    doc: str,
    labels: Sequence[str] = (),
    series: Iterable[tuple[LabelValues, Histogram]] = (),
) -> HistogramMetricFamily:
    """A histogram family from our plain :class:`~goworld.histogram.Histogram` objects."""
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for label_values, h in series:
        family.add_metric(_label_list(label_values), h.cumulative(), h.sum)
    return family


class LinkLike(Protocol):
    """What :func:`link_families` reads of a :class:`goworld.cluster.link.DispatcherLink`."""

    dispatcher_id: int
    dropped: int
    connected: asyncio.Event

    @property
    def backlog_bytes(self) -> int: ...


def link_families(links: Mapping[int, LinkLike]) -> list[Metric]:
    """A gate's or game's streams to the dispatchers."""
    rows = sorted(links.items())
    return [
        gauge(
            "goworld_link_connected",
            "1 while the stream to the dispatcher is up",
            ["dispatcher"],
            ((str(d), float(link.connected.is_set())) for d, link in rows),
        ),
        gauge(
            "goworld_link_backlog_bytes",
            "bytes waiting for the dispatcher (queued, in flight, or held while it is down)",
            ["dispatcher"],
            ((str(d), link.backlog_bytes) for d, link in rows),
        ),
        counter(
            "goworld_link_dropped",
            "envelopes dropped because too much waited for the dispatcher",
            ["dispatcher"],
            ((str(d), link.dropped) for d, link in rows),
        ),
    ]


def links_summary(links: Mapping[int, LinkLike]) -> list[dict[str, Any]]:
    """The links for /status (the page's "Dispatchers" table)."""
    return [
        {
            "dispatcher": d,
            "connected": link.connected.is_set(),
            "backlog_bytes": link.backlog_bytes,
            "dropped": link.dropped,
        }
        for d, link in sorted(links.items())
    ]


# ----------------------------------------------------------------------------- shared figures


class LoopLag:
    """How late the event loop runs a task that sleeps ``interval`` seconds at a time."""

    def __init__(
        self,
        interval: float = LAG_INTERVAL,
        window: float = LAG_WINDOW,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.interval = interval
        self.window = window
        self.clock = clock
        self.last = 0.0
        self._samples: deque[tuple[float, float]] = deque()  # (when, lag), oldest first
        self._task: asyncio.Task[None] | None = None

    def record(self, lag: float, now: float) -> None:
        self.last = lag
        samples = self._samples
        samples.append((now, lag))
        while samples and samples[0][0] < now - self.window:
            samples.popleft()

    def max(self, now: float | None = None) -> float:
        """The largest lag within the window (0 before the first sample)."""
        since = (self.clock() if now is None else now) - self.window
        return max((lag for when, lag in self._samples if when >= since), default=0.0)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        clock, interval = self.clock, self.interval
        while True:
            before = clock()
            await asyncio.sleep(interval)
            now = clock()
            self.record(max(0.0, now - before - interval), now)


class GCPauses:
    """The duration of every garbage collection, per generation (``gc.callbacks``)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.pauses = {generation: Histogram(GC_BUCKETS) for generation in range(3)}
        self._started: float | None = None
        self._installed = False

    def callback(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        pauses = self.pauses.get(int(info.get("generation", 0)))
        if pauses is not None and self._started is not None:
            pauses.observe(self.clock() - self._started)
        self._started = None

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self.callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self.callback)
            self._installed = False


class _Common:
    """The exporter's own families: loop lag and GC pauses."""

    def __init__(self, lag: LoopLag, pauses: GCPauses) -> None:
        self.lag = lag
        self.pauses = pauses

    def collect(self) -> Iterable[Metric]:
        yield gauge(
            "goworld_event_loop_lag_seconds",
            "how late the event loop woke a task "
            f"sleeping {self.lag.interval:g} s, at the last sample",
            values=[((), self.lag.last)],
        )
        yield gauge(
            "goworld_event_loop_lag_max_seconds",
            f"the largest event-loop lag within the last {self.lag.window:g} s",
            values=[((), self.lag.max())],
        )
        yield histogram(
            "goworld_gc_pause_seconds",
            "garbage collections by how long they took",
            ["generation"],
            ((str(g), h) for g, h in sorted(self.pauses.pauses.items())),
        )


class _Labelled:
    """Every sample of ``collectors`` with ``labels`` added (role and id)."""

    def __init__(self, collectors: Sequence[Collector], labels: Mapping[str, str]) -> None:
        self.collectors = collectors
        self.labels = dict(labels)

    def collect(self) -> Iterable[Metric]:
        labels = self.labels
        for collector in self.collectors:
            for family in collector.collect():
                family.samples = [
                    sample._replace(labels={**labels, **sample.labels}) for sample in family.samples
                ]
                yield family


# ----------------------------------------------------------------------------- the exporter


class Exporter:
    """One process's registry, ``/metrics`` text and ``/status`` facts.

    ``token`` is what :mod:`goworld.ops_http` requires of a request ("" = none: loopback
    peers only). :meth:`start` (in the running loop) starts the loop-lag sampler and the GC
    timing; :meth:`stop` ends both.
    """

    def __init__(
        self,
        role: str,
        ident: int,
        *,
        token: str = "",
        figures: Figures | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.role = role
        self.ident = ident
        self.token = token
        self.figures = figures
        self.clock = clock
        self.started_at = clock()
        self.lag = LoopLag()
        self.gc_pauses = GCPauses()
        collectors: list[Collector] = [
            ProcessCollector(registry=None),
            PlatformCollector(registry=None),
            GCCollector(registry=CollectorRegistry()),  # it wants a registry: a scratch one
            _Common(self.lag, self.gc_pauses),
        ]
        if figures is not None:
            collectors.append(figures)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Labelled(collectors, {"role": role, "id": str(ident)}))

    def start(self) -> None:
        self.lag.start()
        self.gc_pauses.install()

    def stop(self) -> None:
        self.lag.stop()
        self.gc_pauses.uninstall()

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every figure, read now."""
        return generate_latest(self.registry)

    def status(self) -> dict[str, Any]:
        """The /status object (see the module docstring)."""
        values = _sample_values(self.registry.collect())
        summary = self.figures.summary() if self.figures is not None else {}
        now = self.clock()
        start = values.get("process_start_time_seconds")
        started = float(start) if isinstance(start, (int, float)) else self.started_at
        status: dict[str, Any] = {
            "role": self.role,
            "id": self.ident,
            "pid": os.getpid(),
            "uptime_seconds": round(max(0.0, now - started), 3),
            "clients": summary.get("clients"),
            "entities": summary.get("entities"),
            "loop_lag_seconds": _finite(self.lag.last),
            "loop_lag_max_seconds": _finite(self.lag.max()),
            "cpu_seconds": values.get("process_cpu_seconds_total"),
            "rss_bytes": values.get("process_resident_memory_bytes"),
        }
        for key, value in summary.items():
            status.setdefault(key, value)
        status["metrics"] = values
        return status


_SKIPPED_SUFFIXES = ("_bucket", "_created", "_gsum", "_gcount")


def _sample_values(families: Iterable[Metric]) -> dict[str, Any]:
    """Every sample by name (role and id left out; see the module docstring)."""
    out: dict[str, Any] = {}
    for family in families:
        for sample in family.samples:
            if sample.name.endswith(_SKIPPED_SUFFIXES):
                continue
            labels = {k: v for k, v in sample.labels.items() if k not in ("role", "id")}
            value = _finite(sample.value)
            if not labels:
                out[sample.name] = value
                continue
            key = (
                next(iter(labels.values()))
                if len(labels) == 1
                else ",".join(f"{k}={v}" for k, v in labels.items())
            )
            entry = out.setdefault(sample.name, {})
            if isinstance(entry, dict):
                entry[key] = value
    return out


def _finite(value: float) -> float | int | None:
    """JSON has no NaN or infinity; whole numbers as ints."""
    if not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value

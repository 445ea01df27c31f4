"""goworld.metrics and goworld.ops_http: the exporter, its shared figures, the access rule and
the HTTP server the dispatcher and games run (issue 16)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from goworld import config, ops_http
from goworld.errors import ConfigError
from goworld.histogram import Histogram
from goworld.metrics import (
    OPS_TOKEN_ENV,
    Exporter,
    GCPauses,
    LoopLag,
    counter,
    gauge,
    histogram,
    ops_token,
)
from goworld.ops_http import CREDENTIALS_HEADER, OpsServer, Refusal, authorize, is_loopback, respond

TOKEN = "s3cret-token-0123456789"


class FakeFigures:
    """A role's figures: one counter with a label, one histogram, and /status facts."""

    def __init__(self) -> None:
        self.calls = 0
        self.h = Histogram((0.1, 1.0))

    def collect(self) -> Iterable[Metric]:
        self.calls += 1
        yield counter("goworld_test_things", "things", ["kind"], [(("a",), 3), (("b",), 4)])
        yield gauge("goworld_test_level", "a level", values=[((), 7)])
        yield histogram("goworld_test_seconds", "durations", series=[((), self.h)])

    def summary(self) -> dict[str, Any]:
        return {"clients": 5, "entities": 9, "links": [{"dispatcher": 1}]}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


# ---- plain figures -----------------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        h.observe(value)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert (h.count, h.sum, h.last) == (4, pytest.approx(2.65), 2.0)
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


def test_loop_lag_keeps_the_last_sample_and_the_largest_within_the_window() -> None:
    lag = LoopLag(interval=0.25, window=10.0, clock=lambda: 100.0)
    lag.record(0.002, 80.0)
    lag.record(0.5, 95.0)
    lag.record(0.01, 100.0)
    assert lag.last == 0.01
    assert lag.max(100.0) == 0.5  # 80.0 is out of the window
    assert lag.max(106.0) == 0.01  # and now 95.0 too
    assert LoopLag().max() == 0.0


@pytest.mark.asyncio
async def test_loop_lag_sampler_sees_a_blocked_loop() -> None:
    lag = LoopLag(interval=0.02)
    lag.start()
    try:
        await asyncio.sleep(0.03)
        import time

        time.sleep(0.15)  # the loop is blocked: the sampler wakes late
        await asyncio.sleep(0.05)
    finally:
        lag.stop()
    assert lag.max() >= 0.1


def test_gc_pauses_time_each_collection_per_generation() -> None:
    now = [0.0]
    pauses = GCPauses(clock=lambda: now[0])
    pauses.callback("start", {"generation": 1})
    now[0] = 0.003
    pauses.callback("stop", {"generation": 1})
    assert (pauses.pauses[1].count, pauses.pauses[1].sum) == (1, pytest.approx(0.003))
    assert pauses.pauses[0].count == pauses.pauses[2].count == 0
    pauses.install()
    try:
        import gc

        gc.collect()
    finally:
        pauses.uninstall()
    assert pauses.pauses[2].count == 1


# ---- the exporter ------------------------------------------------------------------------------


def test_metrics_text_has_role_and_id_on_every_sample_and_the_role_figures() -> None:
    figures = FakeFigures()
    figures.h.observe(0.5)
    exporter = Exporter("gate", 3, figures=figures)
    text = exporter.metrics_text().decode()
    found = families(text)
    for family in found.values():
        for sample in family.samples:
            assert sample.labels["role"] == "gate" and sample.labels["id"] == "3", sample
    things = {s.labels["kind"]: s.value for s in found["goworld_test_things"].samples}
    assert things == {"a": 3, "b": 4}
    assert found["goworld_test_things"].type == "counter"
    assert "goworld_test_things_total" in text
    assert found["goworld_test_seconds"].type == "histogram"
    # prometheus_client's own collectors and ours
    for name in ("process_cpu_seconds", "process_resident_memory_bytes",
                 "goworld_event_loop_lag_seconds", "goworld_event_loop_lag_max_seconds",
                 "goworld_gc_pause_seconds", "python_gc_collections"):
        assert name in found, name
    assert figures.calls == 1  # read when scraped


def test_status_is_the_same_facts_as_json() -> None:
    figures = FakeFigures()
    figures.h.observe(0.5)
    exporter = Exporter("game", 2, figures=figures)
    status = json.loads(json.dumps(exporter.status()))  # JSON-clean (no NaN)
    assert (status["role"], status["id"], status["clients"], status["entities"]) == ("game", 2, 5, 9)
    assert status["links"] == [{"dispatcher": 1}]
    assert status["rss_bytes"] > 1_000_000 and status["cpu_seconds"] > 0
    assert status["uptime_seconds"] >= 0 and status["loop_lag_seconds"] == 0
    metrics = status["metrics"]
    assert metrics["goworld_test_things_total"] == {"a": 3, "b": 4}
    assert metrics["goworld_test_level"] == 7
    assert metrics["goworld_test_seconds_count"] == 1
    assert not any(name.endswith("_bucket") for name in metrics)


def test_ops_token_from_the_ini_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ini = tmp_path / "goworld.ini"
    base = "[deployment]\ndesired_dispatchers = 1\ndesired_games = 1\ndesired_gates = 1\n"
    monkeypatch.delenv(OPS_TOKEN_ENV, raising=False)
    ini.write_text(base)
    assert ops_token(config.load(ini, check_files=False)) == ""
    ini.write_text(base + f"ops_token = {TOKEN}\n")
    cfg = config.load(ini, check_files=False)
    assert ops_token(cfg) == TOKEN
    assert TOKEN not in repr(cfg)
    monkeypatch.setenv(OPS_TOKEN_ENV, "from-the-environment-0001")
    assert ops_token(cfg) == "from-the-environment-0001"
    monkeypatch.setenv(OPS_TOKEN_ENV, "")
    assert ops_token(cfg) == TOKEN
    for bad in ("short", "has a space in it 012345"):
        ini.write_text(base + f"ops_token = {bad}\n")
        with pytest.raises(ConfigError) as err:
            config.load(ini, check_files=False)
        assert "ops_token" in str(err.value) and bad not in str(err.value)


# ---- the access rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.5", False), ("192.168.1.2", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False),
     ("localhost", False), ("", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_without_a_token_only_loopback_peers_are_served() -> None:
    assert authorize("", "127.0.0.1", None) is None
    assert authorize("", "::1", "Bearer whatever") is None
    refused = authorize("", "10.1.2.3", None)
    assert refused is not None and refused.status == 403
    assert "10.1.2.3" in refused.reason and "loopback" in refused.reason and "\n" not in refused.reason
    page = authorize("", "10.1.2.3", None, data=False)
    assert page is not None and page.status == 403


def test_with_a_token_every_peer_needs_it() -> None:
    assert authorize(TOKEN, "10.1.2.3", f"Bearer {TOKEN}") is None
    assert authorize(TOKEN, "10.1.2.3", f"bearer  {TOKEN} ") is None
    for peer in ("127.0.0.1", "10.1.2.3"):
        for header in (None, "", "Bearer", f"Basic {TOKEN}", "Bearer nope", f"Bearer {TOKEN}x"):
            refused = authorize(TOKEN, peer, header)
            assert refused is not None and refused.status == 401, (peer, header)
    assert authorize(TOKEN, "10.1.2.3", None, data=False) is None  # the page holds no data


def test_respond_routes_our_paths_only() -> None:
    exporter = Exporter("dispatcher", 1, figures=FakeFigures())
    assert respond(exporter, "/", "127.0.0.1", None) is None
    assert respond(exporter, "/index.html", "127.0.0.1", None) is None
    metrics = respond(exporter, "/metrics?x=1", "127.0.0.1", None)
    assert metrics is not None and metrics.status == 200
    assert metrics.content_type.startswith("text/plain; version=0.0.4")
    assert "goworld_test_things_total" in metrics.body.decode()
    status = respond(exporter, "/status", "127.0.0.1", None)
    assert status is not None and json.loads(status.body)["entities"] == 9
    page = respond(exporter, "/goworld/status", "127.0.0.1", None)
    assert page is not None and page.content_type.startswith("text/html")
    assert b"/status" in page.body and b"setInterval" in page.body
    far = respond(exporter, "/metrics", "203.0.113.9", None)
    assert far is not None and far.status == 403 and b"goworld_" not in far.body
    exporter.token = TOKEN
    missing = respond(exporter, "/status", "127.0.0.1", None)
    assert missing is not None and missing.status == 401
    assert ("WWW-Authenticate", 'Bearer realm="goworld"') in missing.headers


# ---- the HTTP server of dispatchers and games ---------------------------------------------------


async def http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def get(path: str, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


async def started(exporter: Exporter, port: int = 0) -> OpsServer:
    server = OpsServer(exporter, "127.0.0.1", port, name="test")
    server.start()
    await asyncio.wait_for(server.ready.wait(), 10)
    assert server.server is not None
    return server


def port_of(server: OpsServer) -> int:
    assert server.server is not None
    port: int = server.server.sockets[0].getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_server_serves_metrics_status_and_the_page() -> None:
    server = await started(Exporter("game", 1, figures=FakeFigures()))
    port = port_of(server)
    try:
        code, headers, body = await http(port, get("/metrics"))
        assert code == 200 and headers["Connection"] == "close"
        assert int(headers["Content-Length"]) == len(body)
        assert "goworld_test_things" in families(body.decode())
        code, headers, body = await http(port, get("/status"))
        assert code == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body)["clients"] == 5
        code, headers, body = await http(port, get("/goworld/status"))
        assert code == 200 and b"<table" in body
        assert "Content-Security-Policy" in headers
        code, headers, body = await http(port, b"HEAD /status HTTP/1.1\r\n\r\n")
        assert code == 200 and body == b"" and int(headers["Content-Length"]) > 0
        assert (await http(port, get("/nope")))[0] == 404
        assert (await http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))[0] == 405
        assert (await http(port, b"GET metrics\r\n\r\n"))[0] == 400
        big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        assert (await http(port, big))[0] == 431
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_server_wants_the_token_when_one_is_configured() -> None:
    server = await started(Exporter("game", 1, token=TOKEN, figures=FakeFigures()))
    port = port_of(server)
    try:
        code, headers, body = await http(port, get("/metrics"))
        assert code == 401 and b"bearer token" in body and "WWW-Authenticate" in headers
        assert (await http(port, get("/status", "Authorization: Bearer wrong")))[0] == 401
        code, _, body = await http(port, get("/status", f"Authorization: Bearer {TOKEN}"))
        assert code == 200 and json.loads(body)["role"] == "game"
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_a_silent_client_is_dropped_after_the_request_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_http, "REQUEST_TIMEOUT", 0.2)
    server = await started(Exporter("game", 1))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # never finished
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing sent
        writer.close()
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_a_port_in_use_is_tried_again_until_it_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_http, "BIND_RETRY_INTERVAL", 0.05)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    server = OpsServer(Exporter("game", 1), "127.0.0.1", port, name="test")
    server.start()
    try:
        await asyncio.sleep(0.3)
        assert not server.ready.is_set()  # still trying (a reload's old game holds the port)
        holder.close()
        await asyncio.wait_for(server.ready.wait(), 5)
        assert server.server is not None
        assert (await http(port, get("/metrics")))[0] == 200
    finally:
        holder.close()
        await server.close()


@pytest.mark.asyncio
async def test_a_port_never_freed_is_given_up_with_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ops_http, "BIND_RETRY_INTERVAL", 0.05)
    monkeypatch.setattr(ops_http, "BIND_RETRY_SECONDS", 0.2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = OpsServer(Exporter("game", 1), "127.0.0.1", holder.getsockname()[1], name="[game1] http_addr")
        server.start()
        await asyncio.wait_for(server.ready.wait(), 5)
    assert server.server is None
    assert any("cannot serve metrics and status on [game1] http_addr" in r.getMessage() for r in caplog.records)
    await server.close()


@pytest.mark.asyncio
async def test_an_action_needs_cluster_credentials_not_the_ops_token() -> None:
    runs: list[int] = []
    release = asyncio.Event()

    async def drain() -> dict[str, Any]:
        runs.append(1)
        await release.wait()
        return {"gates": {"gate1": {"told": 2}}}

    def check(credentials: str | None) -> Refusal | None:
        return None if credentials == "good" else Refusal(403, f"refused {credentials!r}")

    def post(path: str, *headers: str) -> bytes:
        extra = "".join(f"{h}\r\n" for h in headers)
        return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{extra}\r\n".encode()

    for check_action in (None, check):
        server = OpsServer(Exporter("dispatcher", 1, token=TOKEN, figures=FakeFigures()), "127.0.0.1", 0,
                           name="test", actions={"/drain": drain}, check_action=check_action)
        server.start()
        await asyncio.wait_for(server.ready.wait(), 10)
        port = port_of(server)
        try:
            # the ops token (read-only figures, sent in plain HTTP) is not enough
            code, _, body = await http(port, post("/drain", f"Authorization: Bearer {TOKEN}"))
            assert code == 403, body
            if check_action is None:  # no cluster secret here: no action at all
                assert b"needs cluster credentials" in body
                continue
            assert b"refused None" in body
            code, _, body = await http(port, post("/drain", f"{CREDENTIALS_HEADER}: bad"))
            assert code == 403 and b"refused 'bad'" in body
            code, headers, _ = await http(port, get("/drain", f"{CREDENTIALS_HEADER}: good"))
            assert code == 405 and headers["Allow"] == "POST"
            assert runs == []
            first = asyncio.ensure_future(http(port, post("/drain", f"{CREDENTIALS_HEADER}: good")))
            while not runs:
                await asyncio.sleep(0.01)
            code, _, body = await http(port, post("/drain", f"{CREDENTIALS_HEADER}: good"))
            assert code == 409, body  # one at a time: the second is told, not queued
            release.set()
            code, headers, body = await first
            assert code == 200 and headers["Content-Type"] == "application/json"
            assert json.loads(body) == {"gates": {"gate1": {"told": 2}}} and runs == [1]
            # the other paths keep their rules
            assert (await http(port, get("/status", f"Authorization: Bearer {TOKEN}")))[0] == 200
        finally:
            await server.close()

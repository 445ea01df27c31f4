"""Metrics and status on a real 1+1+1 cluster (issue 16): every process serves Prometheus text
at /metrics and JSON at /status on its http_addr, the gate serves the status page, the
counters move with real traffic (a TCP and a WebSocket client log in and call RPCs), the
ops token is required once configured (GOWORLD_OPS_TOKEN here), and `goworld status --json`
shows each process's clients, entities, loop lag, CPU and RSS."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from goworld.config import Address
from goworld.metrics import OPS_TOKEN_ENV
from goworld.testing import ClusterRunner, Scraped, login, parse_metrics, running_cluster

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"
TOKEN = "integration-ops-token-0123456789"



@pytest.fixture(scope="module")
def ops_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(OPS_TOKEN_ENV, TOKEN)  # the processes and the CLI inherit it
        with running_cluster(tmp_path_factory.mktemp("metrics"), APP, dispatchers=1, games=1, gates=1) as runner:
            yield runner


def addresses(runner: ClusterRunner) -> dict[str, Address]:
    cfg = runner.config()
    return {
        "dispatcher1": cfg.dispatchers[1].http_addr,
        "game1": cfg.games[1].http_addr,
        "gate1": cfg.gates[1].http_addr,
    }


def fetch(addr: Address, path: str, token: str | None = TOKEN) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://{addr}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def scrape(addr: Address) -> Scraped:
    code, content_type, body = fetch(addr, "/metrics")
    assert code == 200 and content_type.startswith("text/plain; version=0.0.4"), (code, body[:200])
    return parse_metrics(body.decode())


def scrape_all(runner: ClusterRunner) -> dict[str, Scraped]:
    return {name: scrape(addr) for name, addr in addresses(runner).items()}


def value(scraped: Scraped, name: str, **labels: str) -> float:
    return scraped.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_every_process_needs_the_token(ops_cluster: ClusterRunner) -> None:
    for name, addr in addresses(ops_cluster).items():
        for path in ("/metrics", "/status"):
            code, _, body = fetch(addr, path, token=None)
            assert code == 401 and b"bearer token" in body, (name, path, code, body)
            assert fetch(addr, path, token="wrong-token-000000000000")[0] == 401
        # the role and id labels are on every sample
        code, _, body = fetch(addr, "/metrics")
        role, ident = name.rstrip("0123456789"), name[len(name.rstrip("0123456789")):]
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                assert (sample.labels["role"], sample.labels["id"]) == (role, ident), sample


@pytest.mark.asyncio
async def test_counters_move_with_traffic_and_status_shows_it(ops_cluster: ClusterRunner) -> None:
    before = await asyncio.to_thread(scrape_all, ops_cluster)
    tcp = await login(ops_cluster, "metrics-tcp", "tcp")
    ws = await login(ops_cluster, "metrics-ws", "ws")
    try:
        for seq in range(5):
            tcp.call_player("Echo", seq, "x" * 100)
        await tcp.wait_call("OnEcho")
        ws.call_player("Incr")
        ws.call_player("Echo", 1, "y")
        await ws.wait_call("OnEcho")
        after = await asyncio.to_thread(scrape_all, ops_cluster)
        gate, game, disp = after["gate1"], after["game1"], after["dispatcher1"]
        # gate: clients per transport, packets and bytes both ways
        assert value(gate, "goworld_gate_clients", transport="tcp") == 1
        assert value(gate, "goworld_gate_clients", transport="ws") == 1
        for transport in ("tcp", "ws"):
            for name in ("goworld_gate_received_packets_total", "goworld_gate_received_bytes_total",
                         "goworld_gate_sent_packets_total", "goworld_gate_sent_bytes_total"):
                assert value(gate, name, transport=transport) > value(before["gate1"], name, transport=transport), (name, transport)
        assert value(gate, "goworld_link_connected", dispatcher="1") == 1
        # game: entities per type, clients, RPCs by method
        assert value(game, "goworld_game_entities", type="Avatar") >= 2
        assert value(game, "goworld_game_clients") >= 2
        rpcs = "goworld_game_rpcs_total"
        assert value(game, rpcs, type="Avatar", method="Echo", caller="client") >= 6
        assert value(game, rpcs, type="Account", method="Login", caller="client") >= 2
        assert value(game, rpcs, type="Avatar", method="Incr", caller="client") >= 1
        # storage: the avatars were loaded or created and saved (a persistent type)
        ops = "goworld_storage_operations_total"
        storage_ops = sum(v for k, v in game.get(ops, {}).items() if ("backend", "storage") in k)
        assert storage_ops > sum(v for k, v in before["game1"].get(ops, {}).items() if ("backend", "storage") in k)
        # dispatcher: routing and per-peer queues
        routed = "goworld_dispatcher_routed_messages_total"
        assert value(disp, routed) > value(before["dispatcher1"], routed)
        assert value(disp, "goworld_dispatcher_peer_received_messages_total", peer="gate1") > 0
        assert ("peer", "game1") in {kv for key in disp["goworld_dispatcher_peer_backlog_bytes"] for kv in key}
        # every process: loop lag, GC pauses, CPU and RSS
        for scraped in after.values():
            assert value(scraped, "process_resident_memory_bytes") > 10_000_000
            assert value(scraped, "process_cpu_seconds_total") > 0
            assert "goworld_event_loop_lag_max_seconds" in scraped
            assert "goworld_gc_pause_seconds_count" in scraped

        statuses = {name: json.loads(fetch(addr, "/status")[2]) for name, addr in addresses(ops_cluster).items()}
        assert statuses["gate1"]["clients"] == 2 and statuses["gate1"]["role"] == "gate"
        assert statuses["game1"]["entities"] >= 2 and statuses["game1"]["clients"] >= 2
        assert statuses["dispatcher1"]["entities"] >= 4  # the avatars, accounts, services
        for name, status in statuses.items():
            assert status["rss_bytes"] > 10_000_000 and status["cpu_seconds"] > 0, name
            assert status["loop_lag_max_seconds"] is not None and status["uptime_seconds"] > 0
        assert statuses["gate1"]["metrics"]["goworld_gate_clients"] == {"kcp": 0, "tcp": 1, "ws": 1}

        # goworld status --json: the same figures per process
        result = await asyncio.to_thread(ops_cluster.cli, "status", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        procs = {p["name"]: p for p in json.loads(result.stdout)["processes"]}
        assert procs["gate1"]["clients"] == 2
        assert procs["game1"]["entities"] >= 2 and procs["game1"]["clients"] >= 2
        for name, p in procs.items():
            assert p["rss_bytes"] > 10_000_000 and p["status_error"] is None, (name, p)
            assert p["cpu_seconds"] > 0 and p["loop_lag_max_seconds"] is not None
        text = await asyncio.to_thread(ops_cluster.cli, "status")
        assert "CLIENTS" in text.stdout and "MiB" in text.stdout, text.stdout
    finally:
        await tcp.aclose()
        await ws.aclose()


def test_the_gate_serves_the_status_page_next_to_the_game_web_client(ops_cluster: ClusterRunner) -> None:
    gate = addresses(ops_cluster)["gate1"]
    code, content_type, body = fetch(gate, "/goworld/status", token=None)  # the page holds no data
    assert code == 200 and content_type.startswith("text/html")
    assert b"fetch(\"/status\"" in body and b"#token=" in body


def test_status_without_the_token_shows_dashes_and_does_not_hang(
    ops_cluster: ClusterRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OPS_TOKEN_ENV, "another-token-that-is-wrong-01")
    result = ops_cluster.cli("status", "--json", timeout=30)
    assert result.returncode == 0
    procs = json.loads(result.stdout)["processes"]
    for p in procs:
        assert p["up"] and p["clients"] is None and p["rss_bytes"] is None
        assert "401" in p["status_error"], p
    text = ops_cluster.cli("status", timeout=30).stdout
    assert "no figures" in text and "401" in text



@pytest.mark.asyncio
async def test_the_status_page_renders_in_a_browser_with_the_chat_client_at_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chatroom_demo (its web/ at /): the page at /goworld/status#token=... shows the gate's
    figures and its dispatcher link in Chromium, and takes the token off the address bar."""
    from playwright.async_api import async_playwright

    from tests.integration.chromium import CHROMIUM, CHROMIUM_FLAGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (scripts/install-test-deps installs it)")
    monkeypatch.setenv(OPS_TOKEN_ENV, TOKEN)
    chatroom = Path(__file__).resolve().parents[2] / "examples" / "chatroom_demo"
    with running_cluster(tmp_path, chatroom, dispatchers=1, games=1, gates=1) as runner:
        gate = addresses(runner)["gate1"]
        code, content_type, body = await asyncio.to_thread(fetch, gate, "/", None)
        assert code == 200 and b"<title>goworld chat</title>" in body  # the game's web client
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = await (await browser.new_context()).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"http://{gate}/goworld/status#token={TOKEN}")
                await page.wait_for_selector("#summary td:has-text('gate1')")
                await page.wait_for_selector("#links td:has-text('dispatcher1')")
                assert await page.inner_text("#title") == "GoWorld status: gate1"
                assert "goworld_gate_clients" in await page.inner_text("#metrics")
                assert TOKEN not in page.url
                await page.reload()  # the token is kept for the tab
                await page.wait_for_selector("#summary td:has-text('gate1')")
                stranger = await (await browser.new_context()).new_page()
                await stranger.goto(f"http://{gate}/goworld/status")
                await stranger.wait_for_selector("#note.error:has-text('401')")
                assert errors == []
            finally:
                await browser.close()


def test_after_a_reload_the_new_game_serves_its_figures(ops_cluster: ClusterRunner) -> None:
    """The standby takes the http_addr over once the frozen game is gone (it retries while the
    port is held), and shows the restore it did and the entities it restored."""
    game = addresses(ops_cluster)["game1"]
    old = json.loads(fetch(game, "/status")[2])
    result = ops_cluster.cli("reload", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 30
    while True:
        try:
            code, _, body = fetch(game, "/status")
        except OSError:  # between the old game's exit and the standby's bind
            code, body = 0, b""
        if code == 200 and json.loads(body)["pid"] != old["pid"]:
            break
        assert time.monotonic() < deadline, "the restored game does not serve /status"
        time.sleep(0.1)
    new = json.loads(body)
    assert new["metrics"]["goworld_game_restore_seconds_count"] == 1
    assert new["entities"] == old["entities"]
    assert not ops_cluster.grep("cannot serve metrics and status")

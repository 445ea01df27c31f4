"""goworld.ops_client: where `goworld status` asks a process, and what it makes of the answer
(a real HTTP server on 127.0.0.1 for the answers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from goworld.config import Address
from goworld.ops_client import Unaddressable, fetch_status, status_url


def section(http: str, **others: str) -> SimpleNamespace:
    def addr(text: str) -> Address:
        host, _, port = text.rpartition(":")
        return Address(host.strip("[]"), int(port))

    return SimpleNamespace(http_addr=addr(http), **{k: addr(v) for k, v in others.items()})


@pytest.mark.parametrize(("http", "here", "url"), [
    ("0.0.0.0:23001", True, "http://127.0.0.1:23001/status"),
    (":23001", True, "http://127.0.0.1:23001/status"),
    ("[::]:23001", True, "http://[::1]:23001/status"),
    ("198.18.0.2:25001", True, "http://198.18.0.2:25001/status"),
    ("198.18.0.2:25001", False, "http://198.18.0.2:25001/status"),
    ("[2001:db8::7]:25001", False, "http://[2001:db8::7]:25001/status"),
])
def test_the_http_addr_is_asked_a_wildcard_at_loopback_here(http: str, here: bool, url: str) -> None:
    assert status_url("game1", section(http), here=here) == url


def test_a_wildcard_elsewhere_falls_back_to_the_sections_other_addresses() -> None:
    dispatcher = section("0.0.0.0:23001", advertise_addr="198.18.0.1:13001", listen_addr="0.0.0.0:13001")
    assert status_url("dispatcher1", dispatcher, here=False) == "http://198.18.0.1:23001/status"
    gate = section(":24001", listen_addr="198.18.0.3:14001")
    assert status_url("gate1", gate, here=False) == "http://198.18.0.3:24001/status"
    tls_gate = SimpleNamespace(**vars(gate), encrypt_connection=True)
    assert status_url("gate1", tls_gate, here=False) == "https://198.18.0.3:24001/status"


def test_a_game_of_another_host_without_an_address_says_which_key_to_set() -> None:
    with pytest.raises(Unaddressable) as caught:
        status_url("game2", section("0.0.0.0:25002"), here=False)
    assert "[game2] http_addr = 0.0.0.0:25002" in str(caught.value)
    assert "address of the host it runs on" in str(caught.value)


class _Handler(BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, bytes]] = {}
    seen_auth: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen_auth.append(self.headers.get("Authorization"))
        code, body = self.replies[self.path]
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_fetch_status_returns_the_object_and_sends_the_token(server: str) -> None:
    _Handler.replies = {"/status": (200, json.dumps({"role": "game", "id": 2, "pid": 77}).encode())}
    _Handler.seen_auth.clear()
    got = fetch_status(f"{server}/status", "s3cret", 2.0, expect={"role": "game", "id": 2})
    assert got == {"role": "game", "id": 2, "pid": 77}
    assert _Handler.seen_auth == ["Bearer s3cret"]


def test_fetch_status_names_another_processes_answer(server: str) -> None:
    _Handler.replies = {"/status": (200, json.dumps({"role": "game", "id": 3}).encode())}
    got = fetch_status(f"{server}/status", "", 2.0, expect={"role": "game", "id": 2})
    assert got == f"{server}/status: answered with role 'game', id 3: not the process the ini puts there"


@pytest.mark.parametrize(("reply", "why"), [
    ((403, b"403 forbidden: no ops_token is configured, and 198.18.0.4 is not loopback\n"),
     "403 403 forbidden: no ops_token is configured, and 198.18.0.4 is not loopback"),
    ((200, b"[1, 2]"), "not a JSON object"),
    ((200, b"<html>"), "Expecting value"),
])
def test_fetch_status_says_why_not_in_one_line(server: str, reply: tuple[int, bytes], why: str) -> None:
    _Handler.replies = {"/status": reply}
    got = fetch_status(f"{server}/status", "", 2.0)
    assert isinstance(got, str) and got.startswith(f"{server}/status: ") and why in got, got
    assert "\n" not in got


def test_fetch_status_of_a_closed_port_says_refused() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/status"
        got = fetch_status(url, "", 2.0)
    assert isinstance(got, str) and got.startswith(url) and "refused" in got.lower(), got

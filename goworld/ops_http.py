"""The operators' HTTP endpoints of every process: ``/metrics``, ``/status``, the status page.

Paths (:func:`respond`)
    * ``GET /metrics``: Prometheus text (:meth:`goworld.metrics.Exporter.metrics_text`);
    * ``GET /status``: the same facts as one JSON object (:meth:`~goworld.metrics.Exporter.status`);
    * ``GET /goworld/status``: a small HTML page (plain JS, tables refreshed every 3 s) that
      fetches ``/status`` from the process serving it. A token given as ``#token=...`` in its
      URL is sent as the bearer token (the fragment never reaches a server; the page keeps
      it in the tab's ``sessionStorage`` and takes it off the address bar);
    * ``POST /drain`` (a dispatcher's only): every gate connected to it drains, as the first
      step of ``goworld stop`` does; the reply, once they answered, is a JSON object with each
      gate's report (``goworld stop --cluster`` uses it). An *action*: it changes the cluster,
      so the ops token (which only shows figures, and travels in plain HTTP) is not enough.
      The request must carry fresh cluster credentials in :data:`CREDENTIALS_HEADER`: a
      token made with the cluster secret for identity ``ops1`` and this dispatcher
      (:func:`goworld.cluster.auth.make_token`; single use, within the clock window), checked
      by the process's own verifier; without a cluster secret, actions are refused (403). One
      action runs at a time; another meanwhile is answered 409.

Where
    On each process's ``http_addr``. A gate serves them on its WebSocket/web listener
    (:mod:`gate.listeners` asks :func:`respond` before its ``/ws`` upgrade and static files),
    so a game's ``web/`` files named ``metrics`` or ``status`` at the top are hidden by them.
    A dispatcher and a game run an :class:`OpsServer`: a minimal asyncio HTTP/1.1 server,
    ``GET`` and ``HEAD`` only, one request per connection (``Connection: close``), a request
    head of at most :data:`MAX_REQUEST_BYTES` read within :data:`REQUEST_TIMEOUT` seconds, at
    most :data:`MAX_CONNECTIONS` at once (more are reset). An address in use (a reload's
    standby starts while the game it replaces still holds the port) is tried again every
    :data:`BIND_RETRY_INTERVAL` seconds for :data:`BIND_RETRY_SECONDS`, then given up with
    one ERROR: the process runs on without the endpoints.

The access rule (:func:`authorize`)
    With a token (``[deployment] ops_token``, or ``$GOWORLD_OPS_TOKEN``), ``/metrics`` and
    ``/status`` require ``Authorization: Bearer <token>`` from every peer, loopback included
    (401 otherwise). Without one, only peers on a loopback address are served; any other gets
    403 with a one-line reason. The page holds no data of its own: with a token it is served
    to any peer, without one to loopback peers only. Behind a reverse proxy every peer is the
    proxy: configure a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any

from goworld.config import Address, ClusterConfig
from goworld.metrics import Exporter, Figures, ops_token

__all__ = [
    "ACTION_TIMEOUT",
    "Action",
    "DRAIN_PATH",
    "METRICS_PATH",
    "OpsServer",
    "PAGE_PATH",
    "Refusal",
    "Reply",
    "STATUS_PATH",
    "authorize",
    "ActionCheck",
    "CREDENTIALS_HEADER",
    "is_loopback",
    "peer_host",
    "respond",
    "start_ops_server",
]

logger = logging.getLogger("goworld.metrics")

#: The text format ``generate_latest`` writes with its default (legacy, underscored) names, which
#: every Prometheus reads.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"
STATUS_PATH = "/status"
PAGE_PATH = "/goworld/status"
_PAGE_PATHS = frozenset({PAGE_PATH, PAGE_PATH + "/"})

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_CONNECTIONS = 32
#: Seconds an action (``POST``) may take before the request is answered 504.
ACTION_TIMEOUT = 20.0
DRAIN_PATH = "/drain"

#: A ``POST`` path's work: the JSON object it answers with.
Action = Callable[[], Awaitable[dict[str, Any]]]
#: How an action's credentials are checked: the header's value (None: absent) -> None to go
#: on, or the refusal.
ActionCheck = Callable[[str | None], "Refusal | None"]
CREDENTIALS_HEADER = "X-GoWorld-Credentials"
BIND_RETRY_INTERVAL = 0.25
BIND_RETRY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401 or 403
    reason: str


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, head_only: bool = False) -> bytes:
        """The whole HTTP/1.1 response (``Connection: close``)."""
        phrase = HTTPStatus(self.status).phrase
        lines = [
            f"HTTP/1.1 {self.status} {phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def is_loopback(host: str) -> bool:
    """``host`` is a loopback address (IPv4-mapped IPv6 included); a name is not."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def peer_host(peername: Any) -> str:
    """The host part of a ``getpeername()`` result ("" if it has none, e.g. a Unix socket)."""
    if isinstance(peername, (tuple, list)) and peername:
        return str(peername[0])
    return ""


def authorize(
    token: str, peer: str, authorization: str | None, *, data: bool = True
) -> Refusal | None:
    """The access rule (module docstring): None to serve the request, else why not.

    ``peer`` is the peer's host address, ``authorization`` its ``Authorization`` header and
    ``data`` whether the path serves figures (``/metrics``, ``/status``) or the page.
    """
    if token:
        if not data:
            return None
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return Refusal(401, "a bearer token is required (Authorization: Bearer <ops_token>)")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return Refusal(401, "wrong bearer token")
        return None
    if is_loopback(peer):
        return None
    return Refusal(
        403,
        f"{peer or 'this peer'} is not a loopback address: with no ops_token configured, "
        "only loopback peers are served",
    )


def respond(exporter: Exporter, path: str, peer: str, authorization: str | None) -> Reply | None:
    """The reply to ``GET path`` if ``path`` is one of ours (query string ignored), else None."""
    path = path.split("?", 1)[0]
    if path in (METRICS_PATH, STATUS_PATH):
        data = True
    elif path in _PAGE_PATHS:
        data = False
    else:
        return None
    refused = authorize(exporter.token, peer, authorization, data=data)
    if refused is not None:
        headers = (("WWW-Authenticate", 'Bearer realm="goworld"'),) if refused.status == 401 else ()
        return _text(refused.status, refused.reason, headers)
    if path == METRICS_PATH:
        return Reply(200, exporter.metrics_text(), METRICS_CONTENT_TYPE)
    if path == STATUS_PATH:
        body = json.dumps(exporter.status(), separators=(",", ":")).encode()
        return Reply(200, body, "application/json")
    return Reply(200, status_page(), "text/html; charset=utf-8", _PAGE_HEADERS)


_PAGE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'",
    ),
)
_page: bytes | None = None


def status_page() -> bytes:
    """The built-in status page (``goworld/status_page.html``)."""
    global _page
    if _page is None:
        _page = resources.files("goworld").joinpath("status_page.html").read_bytes()
    return _page


def _text(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, (text + "\n").encode(), "text/plain; charset=utf-8", headers)


class OpsServer:
    """``/metrics``, ``/status`` and the page on ``host:port`` (a dispatcher's or a game's
    ``http_addr``); see the module docstring for its bounds."""

    def __init__(
        self, exporter: Exporter, host: str, port: int, *, name: str,
        actions: Mapping[str, Action] | None = None,
        check_action: ActionCheck | None = None,
    ) -> None:
        self.exporter = exporter
        self.actions = dict(actions or {})
        self.check_action = check_action
        self._acting = False
        self.host = host
        self.port = port
        self.name = name  # e.g. "[game1] http_addr = 127.0.0.1:25001"
        self.server: asyncio.Server | None = None
        self.ready = asyncio.Event()  # set once it listens (or gave up: server is None)
        self._open = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen in the background (see the retry rule in the module docstring)."""
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="ops-http")

    async def close(self) -> None:
        self.exporter.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BIND_RETRY_SECONDS
        try:
            while True:
                try:
                    self.server = await asyncio.start_server(
                        self._serve, self.host or None, self.port, limit=MAX_REQUEST_BYTES
                    )
                    logger.info(
                        "metrics and status on %s (/metrics, /status, %s)", self.name, PAGE_PATH
                    )
                    return
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE and loop.time() < deadline:
                        await asyncio.sleep(BIND_RETRY_INTERVAL)
                        continue
                    logger.error(
                        "cannot serve metrics and status on %s: %s (running without them)",
                        self.name,
                        exc.strerror or exc,
                    )
                    return
        finally:
            self.ready.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._open += 1
        try:
            reply, head_only = await self._handle(reader, writer)
            if reply is not None:
                writer.write(reply.encode(head_only=head_only))
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except Exception:
            logger.exception("serving an HTTP request on %s failed", self.name)
        finally:
            self._open -= 1
            writer.close()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Reply | None, bool]:
        """Read one request head; the reply (None: just close) and whether it is a HEAD."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        except asyncio.LimitOverrunError:
            return _text(431, f"the request head is over {MAX_REQUEST_BYTES} bytes"), False
        except (asyncio.IncompleteReadError, TimeoutError):
            return None, False
        request = _parse_head(head)
        if request is None:
            return _text(400, "malformed request"), False
        method, target, headers = request
        peer = peer_host(writer.get_extra_info("peername"))
        path = target.split("?", 1)[0]
        if path in self.actions:
            if method != "POST":
                return _text(405, f"{path} is an action: POST only", (("Allow", "POST"),)), False
            return await self._act(path, peer, headers.get(CREDENTIALS_HEADER.lower())), False
        if method not in ("GET", "HEAD"):
            return _text(405, "only GET and HEAD", (("Allow", "GET, HEAD"),)), False
        reply = respond(self.exporter, target, peer, headers.get("authorization"))
        return (reply or _text(404, "not found")), method == "HEAD"

    async def _act(self, path: str, peer: str, credentials: str | None) -> Reply:
        if self.check_action is None:
            refused: Refusal | None = Refusal(
                403, f"POST {path} needs cluster credentials, and this process has no cluster "
                     "secret to check them with")
        else:
            refused = self.check_action(credentials)
        if refused is not None:
            logger.warning("POST %s from %s refused: %s", path, peer or "a local socket", refused.reason)
            return _text(refused.status, refused.reason)
        if self._acting:
            return _text(409, f"another action is under way: POST {path} again once it is done")
        logger.info("POST %s from %s", path, peer or "a local socket")
        self._acting = True
        try:
            result = await asyncio.wait_for(self.actions[path](), ACTION_TIMEOUT)
        except TimeoutError:
            return _text(504, f"POST {path} did not finish within {ACTION_TIMEOUT:g} s")
        finally:
            self._acting = False
        return Reply(200, json.dumps(result, separators=(",", ":")).encode(), "application/json")


def start_ops_server(
    role: str, ident: int, cfg: ClusterConfig, http_addr: Address, figures: Figures,
    actions: Mapping[str, Action] | None = None, check_action: ActionCheck | None = None,
) -> OpsServer:
    """A dispatcher's or game's endpoints: its :class:`~goworld.metrics.Exporter` (started:
    loop lag, GC pauses) served on ``http_addr`` in the background, with ``actions`` as
    ``POST`` paths. Call in the running loop; ``await server.close()`` at the end."""
    exporter = Exporter(role, ident, token=ops_token(cfg), figures=figures)
    exporter.start()
    name = f"[{role}{ident}] http_addr = {http_addr}"
    server = OpsServer(exporter, http_addr.host, http_addr.port, name=name, actions=actions,
                       check_action=check_action)
    server.start()
    return server


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """``(method, target, headers by lower-cased name)`` of an HTTP/1.x request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return parts[0], parts[1], headers

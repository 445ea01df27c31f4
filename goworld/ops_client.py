"""Asking a process of the cluster for its ``/status`` (:mod:`goworld.ops_http`), here or on
another host: what ``goworld status`` (and ``goworld status --cluster``) uses.

Where a process is asked (:func:`status_url`)
    On its section's ``http_addr``. A wildcard host there (``0.0.0.0``, ``::`` or none) is
    a loopback address for a process of this host. For a process of another host it says
    nothing of where that host is, so the section's other addresses stand in: a dispatcher's
    or lockstep process's ``advertise_addr``, a gate's ``listen_addr``; a game has none, and
    is then not asked (:class:`Unaddressable` says which key to set). A gate with
    ``encrypt_connection`` serves https (its self-signed certificate is not checked: the
    bearer token, not the certificate, is what guards ``/status``).

What comes back (:func:`fetch_status`)
    The JSON object, or one line saying why not (refused, timed out, 401/403 with the
    process's reason, not JSON, or another role's answer).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from goworld.config import Address
from goworld.errors import GoWorldError

__all__ = ["MAX_REPLY_BYTES", "Unaddressable", "fetch_status", "status_url"]

#: Bytes of a /status reply read at most.
MAX_REPLY_BYTES = 4 * 1024 * 1024
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class Unaddressable(GoWorldError):
    """A process of another host whose address the ini does not give."""


def _host_of(addr: Address | None) -> str:
    return "" if addr is None or addr.host in _WILDCARDS else addr.host


def status_url(name: str, section: Any, *, here: bool, path: str = "/status") -> str:
    """The ``/status`` URL (or another ``path`` of its ops endpoints) of process ``name`` (its
    ini section ``section``); ``here``: it runs on this host. :class:`Unaddressable` when it
    runs elsewhere and the ini names no host."""
    addr: Address = section.http_addr
    if here:
        host = _WILDCARDS.get(addr.host, addr.host)
    else:
        host = _host_of(addr) or _host_of(getattr(section, "advertise_addr", None)) or _host_of(
            getattr(section, "listen_addr", None))
        if not host:
            raise Unaddressable(
                f"[{name}] http_addr = {addr} names no host, and no other address of {name} "
                f"does: give [{name}] http_addr the address of the host it runs on to see it "
                f"from other hosts"
            )
    scheme = "https" if getattr(section, "encrypt_connection", False) else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{addr.port}{path}"


def fetch_status(url: str, token: str, timeout: float, *, expect: Mapping[str, Any] | None = None,
                 method: str = "GET", headers: Mapping[str, str] | None = None) -> dict[str, Any] | str:
    """GET ``url`` (a /status URL; ``method`` POST for an action such as /drain) with the
    bearer ``token`` if any: the JSON object, or why not. ``expect`` (e.g. ``{"role": "game",
    "id": 2}``): an answer whose fields differ is some other process's, and said so."""
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        url, headers={**sent, **(headers or {})}, method=method, data=b"" if method == "POST" else None,
    )
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
            answer = json.loads(reply.read(MAX_REPLY_BYTES))
    except urllib.error.HTTPError as exc:
        return f"{url}: {exc.code} {exc.read(200).decode(errors='replace').strip()}"
    except (OSError, ValueError) as exc:
        return f"{url}: {getattr(exc, 'reason', None) or exc}"
    if not isinstance(answer, dict):
        return f"{url}: not a JSON object"
    for key, value in (expect or {}).items():
        if answer.get(key) != value:
            got = ", ".join(f"{k} {answer.get(k)!r}" for k in expect or {})
            return f"{url}: answered with {got}: not the process the ini puts there"
    return answer

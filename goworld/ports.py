"""The addresses a cluster listens on, and whether they are free: ``goworld start``'s pre-flight.

A second cluster started on the ports of a running one must fail loudly, before anything
starts, and name the process, the ini key and the address. The processes refuse a port in
use too (the dispatcher's gRPC server turns SO_REUSEPORT off): the pre-flight check only makes
the refusal early and clear.

Only addresses that something really listens on are listed: each dispatcher's ``listen_addr``
(gRPC, TCP), each gate's ``listen_addr`` (TCP and KCP over UDP) and ``http_addr``
(WebSocket, and the gate's metrics and status), and each dispatcher's and game's ``http_addr``
(metrics and status, :mod:`goworld.ops_http`).

``goworld start --only`` (one host's share of a cluster spread over several hosts) checks only
the listeners of the processes it starts: another host's processes listen on another machine,
so they may use the same port, and their addresses need not exist here.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Collection
from dataclasses import dataclass

from goworld.config import Address, ClusterConfig

__all__ = ["Listener", "listeners", "problems"]


@dataclass(frozen=True, slots=True)
class Listener:
    process: str  #: e.g. "gate1"
    key: str  #: the ini key, e.g. "listen_addr"
    addr: Address
    protocol: str  #: "tcp" or "udp"
    purpose: str  #: e.g. "KCP"

    def __str__(self) -> str:
        section = "lockstep" if self.process == "lockstep1" else self.process
        return f"{self.process}'s [{section}] {self.key} = {self.addr} ({self.purpose})"


def listeners(cfg: ClusterConfig, only: Collection[str] | None = None) -> list[Listener]:
    """Every listener of the ini, or of the processes named in ``only``."""
    out = []
    for did, d in cfg.dispatchers.items():
        out.append(Listener(f"dispatcher{did}", "listen_addr", d.listen_addr, "tcp", "gRPC"))
        out.append(Listener(f"dispatcher{did}", "http_addr", d.http_addr, "tcp", "metrics and status"))
    for gid, game in cfg.games.items():
        out.append(Listener(f"game{gid}", "http_addr", game.http_addr, "tcp", "metrics and status"))
    for gid, g in cfg.gates.items():
        name = f"gate{gid}"
        out.append(Listener(name, "listen_addr", g.listen_addr, "tcp", "TCP clients"))
        out.append(Listener(name, "listen_addr", g.listen_addr, "udp", "KCP clients"))
        out.append(Listener(name, "http_addr", g.http_addr, "tcp", "WebSocket clients"))
    for lid, ls in cfg.lockstep_procs.items():
        name = f"lockstep{lid}"
        out.append(Listener(name, "listen_addr", ls.listen_addr, "udp", "lockstep KCP clients"))
        out.append(Listener(name, "http_addr", ls.http_addr, "tcp", "lockstep rooms and WebSocket"))
    return out if only is None else [item for item in out if item.process in only]


def _overlap(a: Address, b: Address) -> bool:
    wildcard = ("", "0.0.0.0", "::")
    return a.port == b.port and (a.host == b.host or a.host in wildcard or b.host in wildcard)


def problems(cfg: ClusterConfig, only: Collection[str] | None = None) -> list[str]:
    """One line per listener that cannot listen: shared within the ini, or in use now
    (``only``: the listeners of these processes, the ones started on this host)."""
    found: list[str] = []
    todo = listeners(cfg, only)
    for i, a in enumerate(todo):
        for b in todo[:i]:
            if a.protocol == b.protocol and a.addr.port != 0 and _overlap(a.addr, b.addr):
                found.append(f"{a} and {b} are the same address")
    if found:
        return found
    for item in todo:
        reason = _bind_error(item)
        if reason is not None:
            found.append(f"{item}: {reason}")
    return found


def _bind_error(item: Listener) -> str | None:
    """Try to bind the address the way the server will (TCP with SO_REUSEADDR, as asyncio's
    servers do, which never lets two listening sockets share a port on Linux)."""
    host = item.addr.host or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if item.protocol == "tcp" else socket.SOCK_DGRAM
    try:
        with socket.socket(family, kind) as sock:
            if item.protocol == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, item.addr.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"the address is in use ({item.protocol.upper()}; another cluster or program?)"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this host"
        return exc.strerror or str(exc)
    return None

"""The gate's routing between client connections and dispatchers (PROTOCOL.md §2, §4.1, §4.11).

Client → cluster:

* CALL (11): validated in full, then forwarded as CALL_ENTITY_METHOD_FROM_CLIENT to the
  dispatcher of the target entity, with this client's id;
* SYNC (12): the record is batched per dispatcher and flushed every
  ``position_sync_interval_ms`` as one envelope; a record naming another entity than the
  client's owner (the boot entity, then the player of the last 1002 with ``isPlayer``) is
  dropped, logged once per interval (not closed: during a ``give_client_to`` the client may
  still send a record for its previous player);
* HEARTBEAT (2001): refreshes the connection's timestamp (every packet does);
* anything else, or a malformed packet, closes that client only (one log line).

Cluster → client:

* 1002–1012 are forwarded unchanged (routing header included, as GoWorld clients expect),
  except that a G2017 gate sends a top-level attribute path (1004–1008, 1012) as ``[]``
  instead of nil (:func:`~goworld.proto.dialect.root_path_as_array`); a 1002 with
  ``isPlayer`` makes that entity the connection's owner; 1010/1011 update the filter index
  and are not forwarded;
* 1501 goes to every client the filter selects, framed once;
* 1502 records are split per client into one 1502 packet each;
* ENTITIES_LOST (ours) closes each client whose owner is among the entities of a dead game;
  KICK_CLIENT (ours) closes the client (the game's or dispatcher's reason logged). A client
  that announced notices (a ``u32`` feature word with :data:`~goworld.proto.msgtypes.FEATURE_NOTICES`
  in a heartbeat) gets NOTICE_ON_CLIENT with the reason just before; others (GoWorld's) see
  only the close. PAUSE_CLIENTS /
  RESUME_CLIENTS (ours) stop and start reading the listed clients (the dispatcher's
  back-pressure while the game their calls go to is behind), independently of the rate limits.

Every client's output is written once per loop iteration (:meth:`flush_dirty`).

Stopping (``goworld stop``): :meth:`drain` refuses new clients, tells every client that
understands notices that the server is going down (code ``shutdown``) and stops reading them
all (HOLD_STOP) while what they sent is handled; :meth:`close_all` then closes them (telling
those not told yet).

Bounds (:mod:`gate.limits`): the listeners count connections per source address and in total
in :attr:`GateService.addresses` (a KCP session is counted when its proxy connects);
:meth:`sweep`, every second, closes clients that did not send a first packet within
``handshake_timeout``, whose partial packet made no progress for ``frame_timeout``, or that sent
nothing for ``heartbeat_check_interval``; refusals and closes are logged through
:attr:`GateService.summary` (one line, then a count per interval and kind).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Iterable

from gate.client_proxy import HOLD_LINK, HOLD_STOP, ClientProxy, Traffic
from gate.filters import FilterIndex
from gate.limits import AddressBook, GateLimits, Summary
from goworld.cluster.envelopes import Envelope
from goworld.errors import RemoteProtocolError
from goworld.proto import codec
from goworld.proto.dialect import ATTR_PATH_TYPES, Dialect, root_path_as_array
from goworld.proto.framing import frame
from goworld.proto.ids import dispatcher_shard, is_valid_id, new_client_id, new_entity_id
from goworld.proto.msgtypes import FEATURE_NOTICES, MsgType

__all__ = ["GateService", "STOP_CODE", "STOP_NOTICE"]

logger = logging.getLogger("goworld.gate")

_U16 = struct.Struct("<H")
_CALL = MsgType.CALL_ENTITY_METHOD_FROM_CLIENT
_SYNC = MsgType.SYNC_POSITION_YAW_FROM_CLIENT
_HEARTBEAT = MsgType.HEARTBEAT_FROM_CLIENT
_SYNC_RECORD = 32  # EntityID + 4 x f32
_SYNC_OUT = _U16.pack(MsgType.SYNC_POSITION_YAW_ON_CLIENTS)

#: NOTICE_ON_CLIENT code and text for a cluster that is stopping (``goworld stop``).
STOP_CODE = "shutdown"
STOP_NOTICE = "the server is shutting down for maintenance: you will be disconnected"


class GateService:
    def __init__(
        self,
        gate_id: int,
        *,
        num_dispatchers: int,
        send: Callable[[int, Envelope], None],
        dialect: Dialect = Dialect.HEAD,
        compress: bool = False,
        limits: GateLimits | None = None,
    ) -> None:
        self.gate_id = gate_id
        self.limits = limits = limits if limits is not None else GateLimits()
        self.addresses = AddressBook(limits.max_clients, limits.max_connections_per_ip)
        self.summary = Summary(logger)
        self.partial_bytes = 0  # bytes of partial packets held by every client's framer
        self.num_dispatchers = num_dispatchers
        self._send = send
        self.dialect = dialect
        self.compress = compress
        self.clients: dict[str, ClientProxy] = {}
        #: per transport ("tcp", "kcp", "ws"): packets and bytes in and out (/metrics)
        self.traffic: dict[str, Traffic] = {kind: Traffic() for kind in ("tcp", "kcp", "ws")}
        self.filters = FilterIndex()
        self._dirty: list[ClientProxy] = []
        self._flush_scheduled = False
        self._sync_out: dict[int, bytearray] = {}
        wire = dialect.type_to_wire
        self._call_type = wire.get(_CALL, int(_CALL))
        self._sync_type = wire.get(_SYNC, int(_SYNC))
        self._heartbeat_type = wire.get(_HEARTBEAT, int(_HEARTBEAT))
        # Chosen once, so that HEAD and G2018 gates pay nothing for G2017's attribute paths.
        self._client_bound: Callable[[Envelope], None] = (
            self._to_client_g2017 if dialect.empty_root_path else self._to_client
        )
        self.accepting = True
        #: the gate's own links are this far behind: every client held (HOLD_LINK)
        self.link_held = False
        #: :meth:`drain` ran: the cluster is stopping
        self.draining = False
        #: a dispatcher's DRAIN_GATE (``goworld stop --cluster``), given its id: the process
        #: drains as on DRAIN_SIGNAL and answers GATE_DRAINED (gate.__main__ sets it)
        self.drain_requested: Callable[[int], None] | None = None

    # ---- connections ---------------------------------------------------------------------

    def new_proxy(self, kind: str) -> ClientProxy:
        """A protocol instance for a new connection (TCP/KCP factories call this)."""
        traffic = self.traffic.get(kind)
        if traffic is None:
            traffic = self.traffic[kind] = Traffic()
        return ClientProxy(
            self, new_client_id(), new_entity_id(), kind=kind, compress=self.compress,
            traffic=traffic,
        )

    def client_connected(self, proxy: ClientProxy) -> None:
        if not self.accepting:
            proxy.close()
            return
        if proxy.on_gone is None:  # not counted by a listener (KCP): count it now
            ip = proxy.peer.rpartition(":")[0]
            refused = self.addresses.admit(ip)
            if refused is not None:
                self.summary.event(
                    "connection refused",
                    f"{proxy.kind} connection from {proxy.peer} refused: {refused}",
                    ip,
                )
                proxy.close()
                return
            proxy.on_gone = lambda: self.addresses.release(ip)
        self.clients[proxy.client_id] = proxy
        if self.link_held:
            proxy.hold(True, HOLD_LINK)
        logger.info("client %s connected over %s from %s", proxy.client_id, proxy.kind, proxy.peer)
        self._send(
            dispatcher_shard(proxy.boot_eid, self.num_dispatchers),
            Envelope(
                msgtype=MsgType.NOTIFY_CLIENT_CONNECTED,
                client_id=proxy.client_id,
                entity_id=proxy.boot_eid,
                gate_id=self.gate_id,
                payload=proxy.peer.encode(),
            ),
        )

    def client_disconnected(self, proxy: ClientProxy) -> None:
        if self.clients.pop(proxy.client_id, None) is None:
            return
        self.filters.clear(proxy.client_id)
        logger.info("client %s disconnected", proxy.client_id)
        self._notify_disconnected(proxy.owner_eid, proxy.client_id)

    def _notify_disconnected(self, owner_eid: str, client_id: str) -> None:
        self._send(
            dispatcher_shard(owner_eid, self.num_dispatchers),
            Envelope(
                msgtype=MsgType.NOTIFY_CLIENT_DISCONNECTED,
                entity_id=owner_eid,
                client_id=client_id,
                gate_id=self.gate_id,
            ),
        )

    def close_idle(self, max_idle: float, now: float | None = None) -> int:
        """Close clients that sent nothing for ``max_idle`` seconds (heartbeat_check_interval)."""
        now = time.monotonic() if now is None else now
        idle = [p for p in self.clients.values() if now - p.heartbeat > max_idle]
        for proxy in idle:
            proxy.abort(
                f"no packet for {now - proxy.heartbeat:.0f} s (heartbeat_check_interval)",
                kind="idle timeout",
            )
        return len(idle)

    def sweep(self, now: float | None = None) -> int:
        """The time bounds, checked every second; returns how many clients were closed."""
        now = time.monotonic() if now is None else now
        limits = self.limits
        first = limits.handshake_timeout
        partial = limits.frame_timeout
        idle = limits.idle_timeout
        late: list[tuple[ClientProxy, str, str]] = []
        for proxy in self.clients.values():
            if proxy.paused:
                continue  # we are not reading it: its silence is ours
            if first and not proxy.got_packet and now - proxy.connected_at > first:
                late.append((proxy, "handshake timeout", f"no complete packet within {first:.0f} s (handshake_timeout)"))
            elif partial and proxy.partial_since and now - proxy.partial_since > partial:
                late.append((proxy, "partial packet timeout", f"a partial packet made no progress for {now - proxy.partial_since:.0f} s (frame_timeout)"))
            elif idle and now - proxy.heartbeat > idle:
                late.append((proxy, "idle timeout", f"no packet for {now - proxy.heartbeat:.0f} s (heartbeat_check_interval)"))
        for proxy, kind, reason in late:
            proxy.abort(reason, kind=kind)
        self.summary.flush()
        return len(late)

    def drain(self, reason: str = STOP_NOTICE) -> int:
        """The cluster is stopping (``goworld stop``'s first step): refuse new clients, tell
        every client that understands notices (code ``shutdown``), and stop reading all of
        them, so that nothing new enters while what was read is handled. Returns how many
        clients were told."""
        self.accepting = False
        self.draining = True
        told = 0
        for proxy in list(self.clients.values()):
            told += proxy.tell(STOP_CODE, reason)
            proxy.hold(True, HOLD_STOP)
        self.flush_dirty()
        logger.info(
            "draining: refusing new clients; told %d of %d clients that the server is going "
            "down; no longer reading them", told, len(self.clients),
        )
        return told

    def close_all(self) -> None:
        """Close every client; those not told yet by :meth:`drain` are told why first."""
        self.accepting = False
        for proxy in list(self.clients.values()):
            if self.draining:
                proxy.close()
            else:
                proxy.tell_and_close(STOP_CODE, STOP_NOTICE, kind="server stopping")

    # ---- client -> cluster ---------------------------------------------------------------

    def handle_client_packet(self, proxy: ClientProxy, payload: bytes) -> None:
        if len(payload) < 2:
            proxy.abort(f"packet of {len(payload)} bytes has no message type")
            return
        msgtype = payload[0] | (payload[1] << 8)
        if msgtype == self._sync_type:
            self._on_sync(proxy, payload)
        elif msgtype == self._call_type:
            self._on_call(proxy, payload)
        elif msgtype == self._heartbeat_type:
            if len(payload) >= 6:  # our clients' features (GoWorld's gate ignores the body)
                proxy.notices = bool(payload[2] & FEATURE_NOTICES)
        else:
            proxy.abort(f"unknown message type {msgtype}")

    def _on_call(self, proxy: ClientProxy, payload: bytes) -> None:
        cap = self.limits.max_call_bytes
        if cap and len(payload) > cap:
            proxy.abort(f"call of {len(payload)} bytes, over client_call_max_bytes ({cap})")
            return
        try:
            entity_id, pos = codec.read_entity_id(payload, 2)
            method, pos = codec.read_varstr(payload, pos)
            end = codec.check_args(payload, pos)
        except RemoteProtocolError as exc:
            proxy.abort(f"malformed call: {exc}")
            return
        if end != len(payload):
            proxy.abort(f"malformed call: {len(payload) - end} trailing bytes")
            return
        if not is_valid_id(entity_id):
            proxy.abort(f"call to a malformed entity id {entity_id!r}")
            return
        self._send(
            dispatcher_shard(entity_id, self.num_dispatchers),
            Envelope(
                msgtype=_CALL,
                entity_id=entity_id,
                name=method,
                payload=payload[pos:],
                client_id=proxy.client_id,
                gate_id=self.gate_id,
            ),
        )

    def _on_sync(self, proxy: ClientProxy, payload: bytes) -> None:
        if len(payload) < 2 + _SYNC_RECORD:
            proxy.abort(f"position sync of {len(payload)} bytes is too short")
            return
        record = payload[2 : 2 + _SYNC_RECORD]
        if record[:16] != proxy.owner_bytes:
            proxy.refused_syncs += 1
            self.summary.event(
                "position sync refused",
                f"client {proxy.client_id} ({proxy.peer}): position sync refused for entity "
                f"{record[:16].decode('latin-1')!r}, which it does not own "
                f"({proxy.owner_eid}): dropped ({proxy.refused_syncs} from this client)",
                proxy.client_id,
            )
            return
        did = ((record[14] << 8) + record[15]) % self.num_dispatchers + 1
        buf = self._sync_out.get(did)
        if buf is None:
            buf = self._sync_out[did] = bytearray()
        buf += record

    def flush_syncs(self) -> None:
        """Send the batched client position records (every position_sync_interval_ms)."""
        if not self._sync_out:
            return
        out, self._sync_out = self._sync_out, {}
        for did, buf in out.items():
            self._send(
                did, Envelope(msgtype=_SYNC, payload=bytes(buf), gate_id=self.gate_id)
            )

    def link_backlog(self, backlog_bytes: int) -> None:
        """Back-pressure from the gate's own links: past ``link_pause_backlog_bytes`` waiting
        for a dispatcher, stop reading every client; start again under a quarter of it."""
        limit = self.limits.link_pause_backlog_bytes
        if not limit:
            return
        if not self.link_held and backlog_bytes >= limit:
            self.link_held = True
            logger.warning(
                "%d bytes wait for a dispatcher (link_pause_backlog_bytes %d): not reading "
                "the %d clients until it catches up", backlog_bytes, limit, len(self.clients),
            )
        elif self.link_held and backlog_bytes < limit // 4:
            self.link_held = False
            logger.info("the dispatchers caught up: reading the %d clients again", len(self.clients))
        else:
            return
        for proxy in list(self.clients.values()):
            proxy.hold(self.link_held, HOLD_LINK)

    # ---- cluster -> client ---------------------------------------------------------------

    def handle_dispatcher_message(self, dispatcher_id: int, env: Envelope) -> None:
        msgtype = env.msgtype
        if 1001 <= msgtype <= 1499:
            self._client_bound(env)
        elif msgtype == MsgType.CALL_FILTERED_CLIENTS:
            self._filtered_call(env.payload)
        elif msgtype == MsgType.SYNC_POSITION_YAW_ON_CLIENTS:
            self._position_syncs(env.payload)
        elif msgtype == MsgType.PAUSE_CLIENTS or msgtype == MsgType.RESUME_CLIENTS:
            self._hold(env.payload, msgtype == MsgType.PAUSE_CLIENTS)
        elif msgtype == MsgType.KICK_CLIENT:
            proxy = self.clients.get(env.client_id)
            if proxy is not None:
                code = env.payload[:64].decode("utf-8", "replace") or "kicked"
                proxy.tell_and_close(code, env.name, kind="kicked", log=f"kicked: {env.name}")
        elif msgtype == MsgType.ENTITIES_LOST:
            self._entities_lost(dispatcher_id, env)
        elif msgtype == MsgType.SET_GATE_ID:
            self._gate_id_ack(dispatcher_id, env)
        elif msgtype == MsgType.DRAIN_GATE:
            if self.drain_requested is not None:
                self.drain_requested(dispatcher_id)
        else:
            logger.error(
                "dispatcher%d sent unexpected message type %d: dropped", dispatcher_id, msgtype
            )

    def _gate_id_ack(self, dispatcher_id: int, env: Envelope) -> None:
        """A dispatcher took this gate back after its stream broke. ``name == "dropped"``: it
        had already told the games that this gate's clients were gone (the gate was away
        longer than its grace), so their entities no longer know them: close them all, to log
        in again."""
        if env.name != "dropped" or not self.clients:
            return
        logger.warning(
            "dispatcher%d had given up on this gate: closing its %d clients",
            dispatcher_id, len(self.clients),
        )
        for proxy in list(self.clients.values()):
            proxy.tell_and_close(
                "gate_lost", "the server lost this connection's session: log in again",
                kind="gate was away",
            )

    def _entities_lost(self, dispatcher_id: int, env: Envelope) -> None:
        """ENTITIES_LOST: close every client whose player (owner) was among these entities of
        a dead game, telling the clients that understand notices why."""
        data = env.payload
        lost = {data[off : off + 16].decode("latin-1") for off in range(0, len(data) - 15, 16)}
        victims = [p for p in self.clients.values() if p.owner_eid in lost]
        if not victims:
            return
        logger.warning(
            "game%d is down (dispatcher%d): closing the %d clients whose player lived there",
            env.game_id, dispatcher_id, len(victims),
        )
        reason = f"the game server that hosted your player (game{env.game_id}) stopped: log in again"
        for proxy in victims:
            proxy.tell_and_close("game_lost", reason, kind="player lost with its game")

    def _to_client(self, env: Envelope) -> None:
        msgtype = env.msgtype
        proxy = self.clients.get(env.client_id)
        if msgtype == MsgType.SET_CLIENTPROXY_FILTER_PROP:
            if proxy is not None:
                self.filters.set(env.client_id, env.name, env.payload.decode("utf-8"))
            return
        if msgtype == MsgType.CLEAR_CLIENTPROXY_FILTER_PROPS:
            self.filters.clear(env.client_id)
            return
        payload = env.payload
        if msgtype == MsgType.CREATE_ENTITY_ON_CLIENT and payload[20]:
            owner = payload[21:37].decode("latin-1")
            if proxy is None:
                # The client left before its new owner was told: tell the owner now.
                self._notify_disconnected(owner, env.client_id)
                return
            proxy.owner_eid = owner
            proxy.owner_bytes = payload[21:37]
        if proxy is not None:
            proxy.send_payload(payload)

    def _to_client_g2017(self, env: Envelope) -> None:
        """:meth:`_to_client` for G2017 clients: a top-level attribute path goes out as ``[]``."""
        if env.msgtype in ATTR_PATH_TYPES:
            proxy = self.clients.get(env.client_id)
            if proxy is not None:
                proxy.send_payload(root_path_as_array(env.payload))
        else:
            self._to_client(env)

    def _hold(self, client_ids: bytes, held: bool) -> None:
        """PAUSE_CLIENTS / RESUME_CLIENTS: 16-byte client ids, one after the other."""
        clients = self.clients
        for off in range(0, len(client_ids) - 15, 16):
            proxy = clients.get(client_ids[off : off + 16].decode("latin-1"))
            if proxy is not None:
                proxy.hold(held)

    def _filtered_call(self, payload: bytes) -> None:
        try:
            op, pos = payload[2], 3
            key, pos = codec.read_varstr(payload, pos)
            value, pos = codec.read_varstr(payload, pos)
        except (IndexError, RemoteProtocolError):
            logger.error("malformed filtered call from the cluster: dropped")
            return
        framed = frame(payload)
        if not self.dialect.has_filter_op:  # G2017 clients: no op byte
            framed = frame(payload[:2] + payload[3:])
        targets: Iterable[ClientProxy]
        if key == "":
            targets = self.clients.values()
        else:
            clients = self.clients
            targets = [clients[c] for c in self.filters.match(key, op, value) if c in clients]
        for proxy in targets:
            proxy.send_frame(framed)

    def _position_syncs(self, data: bytes) -> None:
        per_client: dict[str, list[bytes]] = {}
        for off in range(0, len(data) - 47, 48):
            cid = data[off : off + 16].decode("latin-1")
            records = per_client.get(cid)
            if records is None:
                records = per_client[cid] = [_SYNC_OUT]
            records.append(data[off + 16 : off + 48])
        clients = self.clients
        for cid, records in per_client.items():
            proxy = clients.get(cid)
            if proxy is not None:
                proxy.send_payload(b"".join(records))

    # ---- output --------------------------------------------------------------------------

    def mark_dirty(self, proxy: ClientProxy) -> None:
        self._dirty.append(proxy)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_dirty)

    def flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for proxy in dirty:
            proxy.flush()


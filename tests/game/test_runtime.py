"""Tests for the game runtime (game/runtime.py, migration.py, handlers.py, services.py, crontab.py).

An in-memory harness, no network: a :class:`GameRuntime` whose ``send(dispatcher_id, env)``
records envelopes, the real :class:`GameHandlers`, :class:`Migration` and
:class:`ServiceManager`, and a registry with test types (an ``Account`` boot type, an
``Avatar`` with ALL_CLIENTS / CLIENT / PERSISTENT attributes and AOI, a ``Space`` subclass, a
``Counter`` service). Client-bound envelopes (1002–1012) carry a complete client packet
payload: the harness decodes them with ``goworld.proto.codec.decode_payload`` into a per-client
"view" (what the client would see, in order, plus the dispatcher each message travelled
through) and checks that the routing header inside the payload matches the envelope.

Everything runs inside the test's event loop because the runtime posts with ``call_soon`` and
arms timers with ``call_later``; ``await tick()`` lets posted callbacks run. The expected
sequences are those of PROTOCOL.md §4 (client-visible entity semantics).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import random
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

import goworld
from game import freeze
from game.call_limits import CallPolicy
from game.crontab import Crontab
from game.handlers import GameHandlers
from game.runtime import GameRuntime
from game.services import shard_of_key
from goworld.cluster.envelopes import Envelope, pack, unpack
from goworld.entity import runtime as runtime_binding
from goworld.entity.client import GameClient
from goworld.entity.entity import SYNC_NEIGHBOURS, SYNC_OWN, Entity
from goworld.entity.registry import ALL_CLIENTS, CLIENT, PERSISTENT, Registry, rpc
from goworld.entity.space import Space
from goworld.entity.state import ENGINE_FIELDS, EntityState, user_fields
from goworld.entity.vector import Vector3
from goworld.errors import EntityError, GoWorldError
from goworld.kvdb.memory import MemoryKVDB
from goworld.proto import codec
from goworld.proto.ids import (
    dispatcher_shard,
    new_client_id,
    new_entity_id,
    nil_space_id,
)
from goworld.proto.messages import (
    CallEntityMethodOnClient,
    CreateEntityOnClient,
    DestroyEntityOnClient,
    NotifyListAttrAppendOnClient,
    NotifyListAttrChangeOnClient,
    NotifyListAttrPopOnClient,
    NotifyMapAttrChangeOnClient,
    NotifyMapAttrClearOnClient,
    NotifyMapAttrDelOnClient,
)
from goworld.proto.msgtypes import MsgType as MT
from goworld.storage.memory import MemoryEntityStorage

pytestmark = pytest.mark.asyncio

# ---- test entity types -------------------------------------------------------------------------

#: (entity id, hook name, args) for every hook and RPC the test types run, in order.
EVENTS: list[tuple[str, str, tuple[Any, ...]]] = []


def _note(entity: Entity, what: str, *args: Any) -> None:
    EVENTS.append((entity.id, what, args))


def events_of(entity_id: str) -> list[str]:
    return [what for eid, what, _ in EVENTS if eid == entity_id]


class Recording(Entity):
    """Records every lifecycle hook in EVENTS."""

    def on_init(self) -> None:
        self.inited = True  # a plain instance field, set up where GoWorld users set them up
        _note(self, "on_init")

    def on_attrs_ready(self) -> None:
        _note(self, "on_attrs_ready")

    def on_created(self) -> None:
        _note(self, "on_created")

    def on_destroy(self) -> None:
        _note(self, "on_destroy")

    def on_migrate_out(self) -> None:
        _note(self, "on_migrate_out")

    def on_migrate_in(self) -> None:
        _note(self, "on_migrate_in")

    def on_enter_space(self) -> None:
        _note(self, "on_enter_space")

    def on_enter_space_failed(self, space_id: str) -> None:
        _note(self, "on_enter_space_failed", space_id)

    def on_leave_space(self, space: Space) -> None:
        _note(self, "on_leave_space", space.id)

    def on_client_connected(self) -> None:
        _note(self, "on_client_connected")

    def on_client_disconnected(self) -> None:
        _note(self, "on_client_disconnected")


class Account(Recording):
    attributes = {"a_client": CLIENT, "a_all": ALL_CLIENTS, "a_server": 0}

    def on_attrs_ready(self) -> None:
        super().on_attrs_ready()
        self.attrs["a_client"] = "c"
        self.attrs["a_all"] = "a"
        self.attrs["a_server"] = "s"


class Avatar(Recording):
    persistent = True
    aoi_distance = 100
    attributes = {
        "name": ALL_CLIENTS | PERSISTENT,
        "level": CLIENT | PERSISTENT,
        "hp": ALL_CLIENTS,
        "bag": CLIENT,
        "secret": PERSISTENT,
        "server": 0,
    }

    def on_attrs_ready(self) -> None:
        super().on_attrs_ready()
        self.attrs.set_default("name", "anon")
        self.attrs.set_default("level", 1)
        self.attrs.set_default("secret", "s3")
        self.attrs["hp"] = 100
        self.attrs["server"] = "only-here"

    def on_client_disconnected(self) -> None:
        super().on_client_disconnected()
        self.destroy()  # as test_game's Avatar does: re-entrant during destroy (§4.12)

    @rpc(client=True, name="Own")
    def own(self, n: int) -> None:
        _note(self, "Own", n)

    @rpc(all_clients=True, name="Everyone")
    def everyone(self, text: str) -> None:
        _note(self, "Everyone", text)

    @rpc(name="ServerOnly")
    def server_only(self) -> None:
        _note(self, "ServerOnly")

    @rpc(name="Hello")
    def hello(self, text: str, n: int = 0) -> None:
        _note(self, "Hello", text, n)

    @rpc(client=True, name="Boom")
    def boom(self) -> None:
        _note(self, "Boom")
        raise RuntimeError("boom")

    def tick(self, tag: str) -> None:
        _note(self, "tick", tag)

    def once(self) -> None:
        _note(self, "once")


class MySpace(Space):
    def on_space_created(self) -> None:
        _note(self, "on_space_created")

    def on_space_destroy(self) -> None:
        _note(self, "on_space_destroy")

    def on_entity_enter_space(self, entity: Entity) -> None:
        _note(self, "on_entity_enter_space", entity.id)

    def on_entity_leave_space(self, entity: Entity) -> None:
        _note(self, "on_entity_leave_space", entity.id)

    @rpc(name="NilCall")
    def nil_call(self, x: int) -> None:
        _note(self, "NilCall", x)


class Counter(Entity):
    @rpc(name="Inc")
    def inc(self, n: int) -> None:
        _note(self, "Inc", n)


def make_registry() -> Registry:
    reg = Registry()
    reg.register_entity(Account)
    reg.register_entity(Avatar)
    reg.register_space(MySpace)
    reg.register_service(Counter, 2)
    return reg


# ---- harness ---------------------------------------------------------------------------------------


class FixedRandom(random.Random):
    """Service delays of 1 ms and shard 0 for call_any: deterministic and fast."""

    def uniform(self, a: float, b: float) -> float:
        return 0.001

    def randrange(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        return 0


CLIENT_BOUND = range(MT.CREATE_ENTITY_ON_CLIENT, MT.NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT + 1)


def view_item(env: Envelope) -> Any:
    """What a client-bound envelope means to its client: a tuple for 1002/1003/1010/1011,
    the decoded message dataclass otherwise."""
    if env.msgtype == MT.CLEAR_CLIENTPROXY_FILTER_PROPS:
        return ("clear",)
    if env.msgtype == MT.SET_CLIENTPROXY_FILTER_PROP:
        return ("filter", env.name, env.payload.decode())
    msg = codec.decode_payload(env.payload)
    assert env.msgtype == msg.MSGTYPE
    # the H header inside the payload names the same client and gate as the envelope
    assert (msg.gate_id, msg.client_id) == (env.gate_id, env.client_id)  # type: ignore[attr-defined]
    if isinstance(msg, CreateEntityOnClient):
        return ("create", msg.type_name, msg.entity_id, msg.is_player, msg.client_data)
    if isinstance(msg, DestroyEntityOnClient):
        return ("destroy", msg.type_name, msg.entity_id)
    return msg


def short(item: Any) -> Any:
    """A create without its client data, for sequence comparisons."""
    if isinstance(item, tuple) and item[0] == "create":
        return item[:4]
    return item


def sync_records(payload: bytes) -> list[tuple[str, str, tuple[float, float, float, float]]]:
    """A game→dispatcher 1502 payload: (ClientID, EntityID, x, y, z, yaw) records."""
    assert len(payload) % 48 == 0
    out = []
    for off in range(0, len(payload), 48):
        cid = payload[off : off + 16].decode("latin-1")
        eid = payload[off + 16 : off + 32].decode("latin-1")
        out.append((cid, eid, struct.unpack_from("<ffff", payload, off + 32)))
    return out


class Harness:
    def __init__(
        self,
        game_id: int = 1,
        *,
        num_dispatchers: int = 2,
        storage: Any = None,
        kvdb: Any = None,
        bare: bool = False,
        call_policy: CallPolicy | None = None,
        call_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sent: list[tuple[int, Envelope]] = []
        self.num_dispatchers = num_dispatchers
        self.rt = GameRuntime(
            game_id,
            make_registry(),
            num_dispatchers=num_dispatchers,
            send=self._record,
            storage=storage,
            kvdb=kvdb,
            boot_entity="Account",
            service_rng=FixedRandom(),
            call_policy=call_policy,
            call_clock=call_clock,
        )
        self.ready_calls = 0
        self.handlers = GameHandlers(self.rt, self._on_ready)
        # bare: no nil space yet (a runtime about to restore a freeze snapshot)
        self.nil = None if bare else self.rt.create_nil_space()
        self.sent.clear()

    def _record(self, dispatcher_id: int, env: Envelope) -> None:
        assert 1 <= dispatcher_id <= self.num_dispatchers
        copy = Envelope()
        copy.CopyFrom(env)
        self.sent.append((dispatcher_id, copy))

    def _on_ready(self) -> None:
        self.ready_calls += 1

    def shard(self, entity_id: str) -> int:
        return dispatcher_shard(entity_id, self.num_dispatchers)

    def take(self) -> list[tuple[int, Envelope]]:
        out, self.sent = self.sent, []
        return out

    def of_type(self, msgtype: int) -> list[tuple[int, Envelope]]:
        return [(d, e) for d, e in self.sent if e.msgtype == msgtype]

    def view(self, client: GameClient) -> list[tuple[int, Any]]:
        """(dispatcher, item) for every message sent to ``client`` so far, in order."""
        return [
            (d, view_item(e))
            for d, e in self.sent
            if e.msgtype in CLIENT_BOUND and e.client_id == client.client_id
        ]

    def items(self, client: GameClient) -> list[Any]:
        return [item for _, item in self.view(client)]

    def space(self, kind: int = 1, aoi: float | None = 100) -> MySpace:
        space = self.rt.create_space_locally(kind)
        assert isinstance(space, MySpace)
        if aoi is not None:
            space.enable_aoi(aoi)
        return space

    def avatar(
        self,
        space: Space | None = None,
        pos: tuple[float, float, float] = (0, 0, 0),
        *,
        client: GameClient | None = None,
        entity_id: str | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> Avatar:
        e = self.rt.create_entity_locally(
            "Avatar", entity_id=entity_id, space=space, pos=Vector3(*pos), client=client, attrs=attrs
        )
        assert isinstance(e, Avatar)
        return e


def new_client(gate_id: int = 1) -> GameClient:
    return GameClient(new_client_id(), gate_id)


def eid_on_shard(shard: int, num_dispatchers: int = 2, *, avoid: str | None = None) -> str:
    while True:
        eid = new_entity_id()
        if dispatcher_shard(eid, num_dispatchers) == shard and eid != avoid:
            return eid


async def tick(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _clean_events() -> Iterator[None]:
    EVENTS.clear()
    yield
    EVENTS.clear()
    runtime_binding.unbind()


@pytest_asyncio.fixture
async def h() -> Harness:
    return Harness()


# ---- creation and the boot path ------------------------------------------------------------------


async def test_create_entity_notifies_its_shard_and_runs_hooks_in_order(h: Harness) -> None:
    space = h.space()
    h.take()
    eid = eid_on_shard(2)
    av = h.avatar(space, (3, 0, 4), entity_id=eid)
    assert av.id == eid and h.rt.get_entity(eid) is av
    notify = h.of_type(MT.NOTIFY_CREATE_ENTITY)
    assert [(d, e.entity_id) for d, e in notify] == [(2, eid)]
    assert events_of(eid) == ["on_init", "on_attrs_ready", "on_created", "on_enter_space"]
    assert (space.id, "on_entity_enter_space", (eid,)) in EVENTS
    assert av.space is space and av.position == Vector3(3, 0, 4)
    assert av in space.entities
    assert space.count_entities("Avatar") == 1 and space.count_entities("Account") == 0
    # without a space the entity lands in the nil space
    other = h.avatar()
    assert other.space is h.nil and events_of(other.id)[-1] == "on_enter_space"


async def test_create_entity_with_a_duplicate_id_is_refused(h: Harness) -> None:
    av = h.avatar()
    with pytest.raises(EntityError, match="already exists"):
        h.avatar(entity_id=av.id)
    with pytest.raises(EntityError, match="unknown entity type"):
        h.rt.create_entity_locally("Nope")


async def test_boot_path_creates_the_boot_entity_and_sends_the_player_create(h: Harness) -> None:
    cid, eid = new_client_id(), eid_on_shard(1)
    h.handlers.handle(
        2, Envelope(msgtype=MT.NOTIFY_CLIENT_CONNECTED, client_id=cid, entity_id=eid, gate_id=3)
    )
    acc = h.rt.get_entity(eid)
    assert isinstance(acc, Account) and acc.space is h.nil
    assert acc.client == GameClient(cid, 3) and acc.client.owner_id == eid
    assert [(d, e.entity_id) for d, e in h.of_type(MT.NOTIFY_CREATE_ENTITY)] == [(1, eid)]
    view = h.view(acc.client)
    assert view == [
        (1, ("clear",)),
        # Client + AllClients attrs only: no "a_server"
        (1, ("create", "Account", eid, True, {"a_client": "c", "a_all": "a"})),
    ]
    create = codec.decode_payload(h.of_type(MT.CREATE_ENTITY_ON_CLIENT)[0][1].payload)
    assert isinstance(create, CreateEntityOnClient)
    assert (create.x, create.y, create.z, create.yaw) == (0, 0, 0, 0)
    assert events_of(eid) == [
        "on_init",
        "on_attrs_ready",
        "on_created",
        "on_enter_space",
        "on_client_connected",
    ]


async def test_client_disconnected_unbinds_quietly(h: Harness) -> None:
    cid, eid = new_client_id(), new_entity_id()
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_CLIENT_CONNECTED, client_id=cid, entity_id=eid, gate_id=1))
    acc = h.rt.entities[eid]
    h.take()
    # a disconnect for another client id is ignored
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_CLIENT_DISCONNECTED, client_id=new_client_id(), entity_id=eid))
    assert acc.client is not None
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_CLIENT_DISCONNECTED, client_id=cid, entity_id=eid))
    assert acc.client is None
    assert h.sent == []  # §4.1.5: no messages
    assert events_of(eid)[-1] == "on_client_disconnected"


async def test_gate_disconnected_drops_the_clients_of_that_gate(h: Harness) -> None:
    a = h.avatar(client=new_client(gate_id=1))
    b = h.avatar(client=new_client(gate_id=2))
    h.take()
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_GATE_DISCONNECTED, gate_id=2))
    assert a.client is not None
    assert b.client is None and b.destroyed  # Avatar destroys itself on disconnect
    assert "on_client_disconnected" not in events_of(a.id)


# ---- give_client_to (§4.10) ----------------------------------------------------------------------


async def test_give_client_to_sends_the_handover_burst_through_the_new_owner(h: Harness) -> None:
    space = h.space()
    acc_id = eid_on_shard(1)
    cid = new_client_id()
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_CLIENT_CONNECTED, client_id=cid, entity_id=acc_id, gate_id=4))
    acc = h.rt.entities[acc_id]
    av = h.avatar(space, (0, 0, 0), entity_id=eid_on_shard(2))
    npc = h.avatar(space, (10, 0, 10), attrs={"name": "npc", "level": 7})
    h.take()
    EVENTS.clear()

    acc.give_client_to(av)

    client = GameClient(cid, 4)
    view = h.view(client)
    assert [d for d, _ in view] == [2] * len(view)  # all on av's dispatcher path
    assert [short(item) for _, item in view] == [
        ("clear",),
        ("destroy", "Account", acc_id),
        ("clear",),
        ("create", "Avatar", av.id, True),
        ("create", "__space__", space.id, False),
        ("create", "Avatar", npc.id, False),
    ]
    items = [item for _, item in view]
    assert items[3][4] == {"name": "anon", "level": 1, "hp": 100}  # Client + AllClients
    assert items[4][4] == {"_K": 1}
    assert items[5][4] == {"name": "npc", "hp": 100}  # AllClients only
    assert acc.client is None and av.client == client and av.client.owner_id == av.id
    assert [(e, w) for e, w, _ in EVENTS] == [
        (acc_id, "on_client_disconnected"),
        (av.id, "on_client_connected"),
    ]


async def test_give_client_to_without_a_client_is_a_warning(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    a, b = h.avatar(), h.avatar()
    h.take()
    with caplog.at_level(logging.WARNING, "goworld.game"):
        a.give_client_to(b)
    assert h.sent == [] and b.client is None
    assert "no client to give" in caplog.text


async def test_a_client_keeps_the_address_its_gate_saw_through_handover_freeze_and_migration(
    h: Harness,
) -> None:
    # The gate puts the connection's peer address in NOTIFY_CLIENT_CONNECTED's payload.
    acc_id = eid_on_shard(1)
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_CLIENT_CONNECTED, client_id=new_client_id(),
                                  entity_id=acc_id, gate_id=2, payload=b"198.18.0.9:51234"))
    acc = h.rt.entities[acc_id]
    assert acc.client is not None
    assert (acc.client.address, acc.client.host) == ("198.18.0.9:51234", "198.18.0.9")
    av = h.avatar(h.space())
    acc.give_client_to(av)
    assert av.client is not None and av.client.address == "198.18.0.9:51234"
    # a reload: the frozen world restores the address with the client
    h2 = Harness(bare=True)
    freeze.restore(h2.rt, pickle.loads(freeze.dumps(freeze.snapshot(h.rt))))
    restored = h2.rt.entities[av.id].client
    assert restored is not None and restored.host == "198.18.0.9"
    # a migration's plain state carries it; one from an engine without the field has ""
    plain = EntityState.capture(av).to_plain()
    assert EntityState.from_plain(plain).client == (av.client.client_id, 2, av.id, "198.18.0.9:51234")
    old = EntityState.from_plain({**plain, "C": plain["C"][:3]})
    assert old.client is not None and GameClient.from_state(old.client, av.id).address == ""
    # a client whose gate did not say (an older gate): no address, no error
    bare_id = eid_on_shard(1)
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_CLIENT_CONNECTED, client_id=new_client_id(),
                                  entity_id=bare_id, gate_id=2))
    bare = h.rt.entities[bare_id].client
    assert bare is not None and (bare.address, bare.host) == ("", "")
    # IPv6 peers, as the gate writes them (host:port, no brackets) or bracketed
    assert GameClient("c" * 16, 1, address="::1:5555").host == "::1"
    assert GameClient("c" * 16, 1, address="[fe80::1]:5555").host == "fe80::1"


async def test_set_client_none_from_a_space_sends_neighbour_space_and_self_destroys(h: Harness) -> None:
    space = h.space()
    c = new_client()
    acc = h.rt.create_entity_locally("Account", space=space, client=c)
    # Account does not use AOI: it sees no neighbours, but it sees the space
    h.take()
    acc.set_client(None)
    assert [short(i) for i in h.items(c)] == [
        ("clear",),
        ("destroy", "__space__", space.id),
        ("destroy", "Account", acc.id),
    ]


# ---- attribute changes (§4.3) --------------------------------------------------------------------


async def test_attribute_changes_go_to_own_client_and_to_neighbours_for_all_clients(h: Harness) -> None:
    space = h.space()
    ca, cb = new_client(1), new_client(2)
    a = h.avatar(space, (0, 0, 0), client=ca, entity_id=eid_on_shard(1))
    b = h.avatar(space, (5, 0, 5), client=cb, entity_id=eid_on_shard(2))
    assert a.is_interested_in(b) and b.is_interested_in(a)
    h.take()

    a.attrs["level"] = 5  # CLIENT: own client only
    assert h.items(cb) == []
    (d, msg), = h.view(ca)
    assert d == 1
    assert msg == NotifyMapAttrChangeOnClient(1, ca.client_id, a.id, None, "level", 5)
    h.take()

    a.attrs["hp"] = 50  # ALL_CLIENTS: own client and the neighbour's client
    assert h.view(ca) == [(1, NotifyMapAttrChangeOnClient(1, ca.client_id, a.id, None, "hp", 50))]
    # the neighbour's copy travels on the neighbour client's own path (its owner is b)
    assert h.view(cb) == [(2, NotifyMapAttrChangeOnClient(2, cb.client_id, a.id, None, "hp", 50))]
    h.take()

    a.attrs["secret"] = "x"  # PERSISTENT only: server side
    a.attrs["server"] = "y"  # no flags
    a.attrs["undeclared"] = 1
    assert h.sent == []


async def test_every_container_mutation_kind_reaches_the_client(h: Harness) -> None:
    c = new_client()
    a = h.avatar(client=c)
    h.take()
    a.attrs["bag"] = {"items": [1, 2], "meta": {"k": "v"}}
    bag = a.attrs.get_map("bag")
    items = bag.get_list("items")
    items.append(3)
    items[0] = 10
    items.pop()
    del bag["meta"]["k"]
    bag.get_map("meta").clear()
    del a.attrs["bag"]
    got = h.items(c)
    cid = c.client_id
    assert got == [
        NotifyMapAttrChangeOnClient(1, cid, a.id, None, "bag", {"items": [1, 2], "meta": {"k": "v"}}),
        NotifyListAttrAppendOnClient(1, cid, a.id, ["items", "bag"], 3),
        NotifyListAttrChangeOnClient(1, cid, a.id, ["items", "bag"], 0, 10),
        NotifyListAttrPopOnClient(1, cid, a.id, ["items", "bag"]),
        NotifyMapAttrDelOnClient(1, cid, a.id, ["meta", "bag"], "k"),
        NotifyMapAttrClearOnClient(1, cid, a.id, ["meta", "bag"]),
        NotifyMapAttrDelOnClient(1, cid, a.id, None, "bag"),
    ]


async def test_call_client_and_call_all_clients(h: Harness) -> None:
    space = h.space()
    ca, cb = new_client(1), new_client(2)
    a = h.avatar(space, (0, 0, 0), client=ca)
    h.avatar(space, (5, 0, 5), client=cb)
    h.take()
    a.call_client("OnHi", 1, "x")
    assert h.items(ca) == [CallEntityMethodOnClient(1, ca.client_id, a.id, "OnHi", (1, "x"))]
    assert h.items(cb) == []
    h.take()
    a.call_all_clients("OnSay", "hey")
    assert h.items(ca) == [CallEntityMethodOnClient(1, ca.client_id, a.id, "OnSay", ("hey",))]
    assert h.items(cb) == [CallEntityMethodOnClient(2, cb.client_id, a.id, "OnSay", ("hey",))]
    assert sorted(c.client_id for c in a.for_all_clients()) == sorted([ca.client_id, cb.client_id])


async def test_filter_props_and_filtered_calls(h: Harness) -> None:
    c = new_client(3)
    a = h.avatar(client=c, entity_id=eid_on_shard(2))
    h.take()
    a.set_client_filter_prop("team", "red")
    assert h.view(c) == [(2, ("filter", "team", "red"))]
    with pytest.raises(EntityError):
        a.set_client_filter_prop("", "x")
    h.take()
    a.call_filtered_clients("team", ">=", "b", "OnTeam", 1)
    (d, env), = h.of_type(MT.CALL_FILTERED_CLIENTS)
    assert d == 1  # one dispatcher broadcasts it: each client gets it once (§4.11)
    msg = codec.decode_payload(env.payload)
    assert (msg.op, msg.key, msg.value, msg.method, msg.args) == (4, "team", "b", "OnTeam", (1,))  # type: ignore[attr-defined]
    with pytest.raises(EntityError, match="unknown operator"):
        a.call_filtered_clients("team", "~", "b", "OnTeam")


# ---- AOI (§4.7, §9) ----------------------------------------------------------------------------------


async def test_aoi_enter_and_leave_as_seen_by_clients(h: Harness) -> None:
    space = h.space(aoi=100)
    ca, cb = new_client(1), new_client(1)
    a = h.avatar(client=ca)
    b = h.avatar(client=cb)
    h.take()

    a.enter_space(space.id, (0, 0, 0))
    assert a.space is h.nil  # posted, not synchronous
    await tick()
    b.enter_space(space.id, (50, 0, -50))
    await tick()
    assert a.space is space and b.space is space
    assert a.is_interested_in(b) and b.is_interested_in(a)

    assert [short(i) for i in h.items(ca)] == [
        ("create", "__space__", space.id, False),
        ("create", "Avatar", b.id, False),
    ]
    # the space's 1002 comes before the neighbour creates
    assert [short(i) for i in h.items(cb)] == [
        ("create", "__space__", space.id, False),
        ("create", "Avatar", a.id, False),
    ]
    # neighbour creates carry AllClients attrs only, and the current position
    a_seen_by_b = h.items(cb)[1]
    assert a_seen_by_b[4] == {"name": "anon", "hp": 100}
    h.take()

    b.set_position((150, 0, 0))  # |dx| = 150 > 100
    assert not a.is_interested_in(b) and not b.is_interested_in(a)
    assert h.items(ca) == [("destroy", "Avatar", b.id)]
    assert h.items(cb) == [("destroy", "Avatar", a.id)]
    h.take()

    b.set_position((100, 0, 100))  # the square test is inclusive (§9)
    assert [short(i) for i in h.items(ca)] == [("create", "Avatar", b.id, False)]
    created = next(
        codec.decode_payload(e.payload)
        for _, e in h.of_type(MT.CREATE_ENTITY_ON_CLIENT)
        if e.client_id == ca.client_id
    )
    assert (created.x, created.z) == (100, 100)  # type: ignore[attr-defined]
    h.take()

    # moving to another space: neighbour destroys, old space destroy, new space create
    other = h.space(kind=2)
    b.enter_space(other.id, (0, 0, 0))
    await tick()
    assert [short(i) for i in h.items(cb)] == [
        ("destroy", "Avatar", a.id),
        ("destroy", "__space__", space.id),
        ("create", "__space__", other.id, False),
    ]
    assert h.items(ca) == [("destroy", "Avatar", b.id)]
    assert (space.count_entities("Avatar"), other.count_entities("Avatar")) == (1, 1)
    b.destroy()
    assert other.count_entities("Avatar") == 0 and other.get_entity_count() == 0


async def test_what_neighbours_get_follows_attribute_changes_and_moves(h: Harness) -> None:
    """A's create body is computed once for all the clients that meet it at once, and again
    after any attribute change, move or turn (Entity._create_body's cache)."""
    space = h.space(aoi=100)
    a = h.avatar(space, (0, 0, 0))
    clients = [new_client(1) for _ in range(4)]
    for i, client in enumerate(clients[:2]):
        h.avatar(space, (10 + i, 0, 0), client=client)

    def met_a(client: GameClient) -> tuple[Any, ...]:
        return next(i for i in h.items(client) if i[0] == "create" and i[2] == a.id)

    seen = [met_a(c) for c in clients[:2]]
    assert seen[0] == seen[1] and seen[0][4] == {"name": "anon", "hp": 100}
    a.attrs["hp"] = 50
    h.avatar(space, (20, 0, 0), client=clients[2])
    assert met_a(clients[2])[4] == {"name": "anon", "hp": 50}
    a.set_position((5, 0, 5))
    h.avatar(space, (30, 0, 0), client=clients[3])
    assert met_a(clients[3])[4] == {"name": "anon", "hp": 50}
    payload = next(e.payload for _, e in h.of_type(MT.CREATE_ENTITY_ON_CLIENT)
                   if e.client_id == clients[3].client_id and a.id.encode() in e.payload)
    body = codec.decode_payload(payload)
    assert (body.x, body.z) == (5, 5)  # type: ignore[attr-defined]


async def test_entering_the_nil_space_sends_nothing(h: Harness) -> None:
    space = h.space()
    c = new_client()
    a = h.avatar(space, client=c)
    h.take()
    a.enter_space(h.nil.id, (0, 0, 0))
    await tick()
    assert a.space is h.nil
    assert h.items(c) == [("destroy", "__space__", space.id)]


async def test_aoi_space_settings(h: Harness) -> None:
    space = h.space(aoi=None)
    h.avatar(space)
    with pytest.raises(EntityError):
        space.enable_aoi(10)  # after entities entered
    s2 = h.space(kind=3, aoi=10)
    with pytest.raises(EntityError):
        s2.enable_aoi(10)  # twice
    with pytest.raises(EntityError):
        h.space(kind=4, aoi=0)
    assert s2.attrs["_EnableAOI"] == 10.0


# ---- position sync (§4.6) ------------------------------------------------------------------------------


async def test_position_sync_batches_per_gate_to_the_gates_dispatcher() -> None:
    h = Harness(num_dispatchers=3)
    space = h.space()
    ca, cb = new_client(gate_id=2), new_client(gate_id=3)
    a = h.avatar(space, (0, 0, 0), client=ca)
    h.avatar(space, (10, 0, 10), client=cb)
    h.rt.collect_syncs()  # entering marked both; flush that
    h.take()
    h.rt.collect_syncs()
    assert h.sent == []  # nothing dirty

    a.set_position((20, 0, 30))
    a.set_yaw(90)
    assert a.sync_flags == SYNC_OWN | SYNC_NEIGHBOURS
    assert h.rt._sync_dirty.count(a) == 1  # marked once
    h.rt.collect_syncs()
    syncs = h.of_type(MT.SYNC_POSITION_YAW_ON_CLIENTS)
    by_gate = {e.gate_id: (d, sync_records(e.payload)) for d, e in syncs}
    assert len(syncs) == 2
    # dispatcher (gate_id - 1) % D + 1
    assert by_gate[2] == (2, [(ca.client_id, a.id, (20, 0, 30, 90))])
    assert by_gate[3] == (3, [(cb.client_id, a.id, (20, 0, 30, 90))])
    assert a.sync_flags == 0
    h.take()
    h.rt.collect_syncs()
    assert h.sent == []


async def test_position_sync_includes_entities_without_clients_for_their_neighbours(h: Harness) -> None:
    space = h.space()
    c = new_client(gate_id=1)
    h.avatar(space, (0, 0, 0), client=c)
    npc = h.avatar(space, (1, 0, 1))
    h.rt.collect_syncs()
    h.take()
    npc.set_position((2, 0, 2))
    h.rt.collect_syncs()
    (d, env), = h.of_type(MT.SYNC_POSITION_YAW_ON_CLIENTS)
    assert d == 1 and env.gate_id == 1
    assert sync_records(env.payload) == [(c.client_id, npc.id, (2, 0, 2, 0))]


async def test_client_driven_move_is_not_echoed_to_its_own_client(h: Harness) -> None:
    space = h.space()
    ca, cb = new_client(gate_id=1), new_client(gate_id=2)
    a = h.avatar(space, (0, 0, 0), client=ca)
    h.avatar(space, (10, 0, 10), client=cb)
    a.set_client_syncing(True)
    h.rt.collect_syncs()
    h.take()

    record = a.id.encode() + struct.pack("<ffff", 30, 1, 40, 45)
    h.handlers.handle(1, Envelope(msgtype=MT.SYNC_POSITION_YAW_FROM_CLIENT, payload=record))
    assert a.position == Vector3(30, 1, 40) and a.yaw == 45
    h.rt.collect_syncs()
    syncs = h.of_type(MT.SYNC_POSITION_YAW_ON_CLIENTS)
    assert [(d, e.gate_id) for d, e in syncs] == [(2, 2)]  # gate 2 only: no echo to gate 1
    assert sync_records(syncs[0][1].payload) == [(cb.client_id, a.id, (30, 1, 40, 45))]


async def test_client_move_updates_aoi(h: Harness) -> None:
    space = h.space()
    ca, cb = new_client(), new_client()
    a = h.avatar(space, (0, 0, 0), client=ca)
    b = h.avatar(space, (10, 0, 10), client=cb)
    a.set_client_syncing(True)
    h.take()
    record = a.id.encode() + struct.pack("<ffff", 500, 0, 0, 0)
    h.handlers.handle(1, Envelope(msgtype=MT.SYNC_POSITION_YAW_FROM_CLIENT, payload=record))
    assert not b.is_interested_in(a)
    assert h.items(cb) == [("destroy", "Avatar", a.id)]


async def test_a_halted_game_ignores_client_moves(h: Harness) -> None:
    # Once a freeze has taken its snapshot, nothing may change the world any more: a move
    # would reach clients (AOI destroy) but not the restored game.
    space = h.space()
    ca, cb = new_client(), new_client()
    a = h.avatar(space, (0, 0, 0), client=ca)
    b = h.avatar(space, (10, 0, 10), client=cb)
    a.set_client_syncing(True)
    h.take()
    h.rt.halted = True
    record = a.id.encode() + struct.pack("<ffff", 500, 0, 0, 0)
    h.handlers.handle(1, Envelope(msgtype=MT.SYNC_POSITION_YAW_FROM_CLIENT, payload=record))
    assert a.position == Vector3(0, 0, 0) and b.is_interested_in(a)
    assert h.take() == []


async def test_sync_for_an_entity_without_client_syncing_is_ignored(h: Harness) -> None:
    space = h.space()
    c = new_client()
    a = h.avatar(space, (1, 2, 3), client=c)
    h.rt.collect_syncs()
    h.take()
    payload = a.id.encode() + struct.pack("<ffff", 9, 9, 9, 9)
    payload += new_entity_id().encode() + struct.pack("<ffff", 1, 1, 1, 1)  # unknown entity
    payload += b"\x01\x02\x03"  # a truncated trailing record
    h.handlers.handle(1, Envelope(msgtype=MT.SYNC_POSITION_YAW_FROM_CLIENT, payload=payload))
    assert a.position == Vector3(1, 2, 3) and a.yaw == 0
    assert a.sync_flags == 0
    h.rt.collect_syncs()
    assert h.sent == []


# ---- destroy (§4.12) -----------------------------------------------------------------------------------


async def test_destroy_sequence() -> None:
    storage = MemoryEntityStorage()
    h = Harness(storage=storage)
    space = h.space()
    ca, cb = new_client(1), new_client(2)
    a = h.avatar(space, (0, 0, 0), client=ca, entity_id=eid_on_shard(1), attrs={"name": "alice"})
    b = h.avatar(space, (5, 0, 5), client=cb, entity_id=eid_on_shard(2))
    a.attrs["level"] = 9
    h.take()
    EVENTS.clear()

    a.destroy()

    assert [short(i) for i in h.items(ca)] == [
        ("destroy", "Avatar", b.id),  # neighbour destroys first (leaving the space)
        ("destroy", "__space__", space.id),
        ("clear",),  # then SetClient(nil)
        ("destroy", "Avatar", a.id),
    ]
    assert [d for d, _ in h.view(ca)] == [1, 1, 1, 1]
    assert h.items(cb) == [("destroy", "Avatar", a.id)]
    # on_destroy once, even though on_client_disconnected calls destroy() again
    assert events_of(a.id) == ["on_leave_space", "on_destroy", "on_client_disconnected"]
    assert (space.id, "on_entity_leave_space", (a.id,)) in EVENTS
    # persistent attributes saved
    saved = storage.load("Avatar", a.id).result()
    assert saved == {"name": "alice", "level": 9, "secret": "s3"}
    # the dispatcher is told last
    last_d, last = h.sent[-1]
    assert (last.msgtype, last.entity_id, last_d) == (MT.NOTIFY_DESTROY_ENTITY, a.id, 1)
    assert len(h.of_type(MT.NOTIFY_DESTROY_ENTITY)) == 1
    assert a.is_destroyed() and h.rt.get_entity(a.id) is None
    assert a not in space.entities and not b.is_interested_in(a)
    # destroying again does nothing
    h.take()
    a.destroy()
    assert h.sent == [] and events_of(a.id).count("on_destroy") == 1
    # and the destroyed entity no longer emits anything
    a.attrs["hp"] = 1
    a.set_position((1, 1, 1))
    a.call_client("X")
    assert h.sent == []


async def test_destroy_without_client_or_storage(h: Harness) -> None:
    acc = h.rt.create_entity_locally("Account")
    h.take()
    acc.destroy()
    assert [(e.msgtype, e.entity_id) for _, e in h.sent] == [(MT.NOTIFY_DESTROY_ENTITY, acc.id)]
    assert events_of(acc.id)[-2:] == ["on_leave_space", "on_destroy"]


async def test_destroying_a_space_destroys_its_entities(h: Harness) -> None:
    space = h.space()
    ca = new_client()
    a = h.avatar(space, (0, 0, 0), client=ca)
    b = h.avatar(space, (5, 0, 5))
    acc = h.rt.create_entity_locally("Account", space=space)
    h.take()
    space.destroy()
    for e in (a, b, acc, space):
        assert e.is_destroyed() and h.rt.get_entity(e.id) is None
    assert space.id not in h.rt.spaces
    assert {e.entity_id for _, e in h.of_type(MT.NOTIFY_DESTROY_ENTITY)} == {a.id, b.id, acc.id, space.id}
    assert h.of_type(MT.NOTIFY_DESTROY_ENTITY)[-1][1].entity_id == space.id
    items = h.items(ca)
    assert ("destroy", "__space__", space.id) in items
    assert items[-1] == ("destroy", "Avatar", a.id)  # the player itself is destroyed on the client
    assert items.index(("destroy", "__space__", space.id)) < len(items) - 1
    space_events = events_of(space.id)
    assert space_events.count("on_space_destroy") == 1
    assert space_events.index("on_space_destroy") < space_events.index("on_entity_leave_space")


async def test_save_writes_persistent_attributes_only() -> None:
    storage = MemoryEntityStorage()
    h = Harness(storage=storage)
    a = h.avatar(attrs={"name": "bob"})
    acc = h.rt.create_entity_locally("Account")
    a.save()
    acc.save()  # not persistent: no-op
    assert storage.load("Avatar", a.id).result() == {"name": "bob", "level": 1, "secret": "s3"}
    assert storage.list_ids("Account").result() == []
    assert h.rt.save_all() == 1
    await tick()
    assert h.rt.pending_saves == set()


async def test_load_entity_locally_restores_persistent_attrs() -> None:
    storage = MemoryEntityStorage()
    eid = new_entity_id()
    storage.save("Avatar", eid, {"name": "zed", "level": 4})
    h = Harness(storage=storage)
    h.rt.load_entity_locally("Avatar", eid)
    await tick()
    av = h.rt.get_entity(eid)
    assert isinstance(av, Avatar)
    assert (av.attrs["name"], av.attrs["level"], av.attrs["hp"]) == ("zed", 4, 100)
    # a missing record unblocks the dispatcher with NOTIFY_DESTROY
    h.take()
    missing = new_entity_id()
    h.rt.load_entity_locally("Avatar", missing)
    await tick()
    assert h.rt.get_entity(missing) is None
    assert [(e.msgtype, e.entity_id) for _, e in h.sent] == [(MT.NOTIFY_DESTROY_ENTITY, missing)]


async def test_a_new_persistent_entity_is_saved_at_once_and_a_loaded_one_is_not() -> None:
    storage = MemoryEntityStorage()
    h = Harness(storage=storage)
    a = h.avatar(attrs={"name": "new"})  # never saved by game code
    await tick()
    assert storage.load("Avatar", a.id).result() == {"name": "new", "level": 1, "secret": "s3"}
    eid = new_entity_id()
    storage.save("Avatar", eid, {"name": "old", "level": 9})
    saves = []
    real_save = storage.save
    storage.save = lambda *args: saves.append(args) or real_save(*args)  # type: ignore[method-assign]
    h.rt.load_entity_locally("Avatar", eid)
    await tick()
    assert h.rt.get_entity(eid) is not None and saves == []


# ---- timers ---------------------------------------------------------------------------------------------

# Timers use the real loop clock: short intervals and generous, non-exact expectations.
INTERVAL = 0.02


def count(entity: Entity, what: str) -> int:
    return events_of(entity.id).count(what)


async def _wait_for(pred: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_add_timer_fires_repeatedly_by_method_name_until_cancelled(h: Harness) -> None:
    a = h.avatar()
    tid = a.add_timer(INTERVAL, "tick", "t1")
    await _wait_for(lambda: count(a, "tick") >= 3)
    assert all(args == ("t1",) for eid, w, args in EVENTS if w == "tick")
    a.cancel_timer(tid)
    seen = count(a, "tick")
    await asyncio.sleep(INTERVAL * 5)
    assert count(a, "tick") == seen
    assert a.timer_records == {}
    a.cancel_timer(tid)  # cancelling twice is harmless


async def test_add_callback_fires_once(h: Harness) -> None:
    a = h.avatar()
    a.add_callback(INTERVAL, "once")
    await _wait_for(lambda: count(a, "once") == 1)
    await asyncio.sleep(INTERVAL * 4)
    assert count(a, "once") == 1
    assert a.timer_records == {}


async def test_timers_stop_on_destroy(h: Harness) -> None:
    a = h.avatar()
    a.add_timer(INTERVAL, "tick", "x")
    a.add_callback(INTERVAL * 2, "once")
    await _wait_for(lambda: count(a, "tick") >= 1)
    a.destroy()
    seen = count(a, "tick")
    await asyncio.sleep(INTERVAL * 5)
    assert count(a, "tick") == seen and count(a, "once") == 0


async def test_timer_for_a_missing_method_is_refused(h: Harness) -> None:
    a = h.avatar()
    with pytest.raises(EntityError, match="no method"):
        a.add_timer(INTERVAL, "no_such_method")


async def test_a_raising_timer_keeps_running(h: Harness) -> None:
    a = h.avatar()
    a.add_timer(INTERVAL, "boom")
    await _wait_for(lambda: count(a, "Boom") >= 2)


# ---- calls ----------------------------------------------------------------------------------------------


async def test_call_to_a_local_entity_is_posted(h: Harness) -> None:
    a, b = h.avatar(), h.avatar()
    a.call(b.id, "Hello", "hi", 3)
    assert "Hello" not in events_of(b.id)
    await tick()
    assert [args for eid, w, args in EVENTS if w == "Hello"] == [("hi", 3)]
    assert h.of_type(MT.CALL_ENTITY_METHOD) == []


async def test_call_to_a_remote_entity_becomes_call_entity_method(h: Harness) -> None:
    a = h.avatar()
    remote = eid_on_shard(2)
    h.take()
    a.call(remote, "Hello", "hi", 3, {"k": [1.5]})
    (d, env), = h.sent
    assert (d, env.msgtype, env.entity_id, env.name) == (2, MT.CALL_ENTITY_METHOD, remote, "Hello")
    assert codec.decode_args(env.payload)[0] == ("hi", 3, {"k": [1.5]})


async def test_call_from_a_dispatcher_invokes_server_methods(h: Harness) -> None:
    a = h.avatar()
    h.handlers.handle(
        1,
        Envelope(msgtype=MT.CALL_ENTITY_METHOD, entity_id=a.id, name="ServerOnly", payload=codec.encode_args(())),
    )
    h.handlers.handle(
        1,
        Envelope(msgtype=MT.CALL_ENTITY_METHOD, entity_id=a.id, name="Hello", payload=codec.encode_args(("x",))),
    )
    assert [w for eid, w, _ in EVENTS if w in ("ServerOnly", "Hello")] == ["ServerOnly", "Hello"]
    assert (a.id, "Hello", ("x", 0)) in EVENTS  # missing trailing arg: its default


def _from_client(h: Harness, target: Entity, client: GameClient, method: str, *args: Any) -> None:
    h.handlers.handle(
        1,
        Envelope(
            msgtype=MT.CALL_ENTITY_METHOD_FROM_CLIENT,
            entity_id=target.id,
            name=method,
            payload=codec.encode_args(args),
            client_id=client.client_id,
            gate_id=client.gate_id,
        ),
    )


async def test_client_calls_are_checked_for_exposure_and_arguments(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    ca, cb = new_client(1), new_client(2)
    a = h.avatar(client=ca)
    h.avatar(client=cb)
    EVENTS.clear()
    with caplog.at_level(logging.WARNING, "goworld.game"):
        _from_client(h, a, ca, "Own", 1)  # own client, client method: allowed
        _from_client(h, a, cb, "Own", 2)  # another client: refused
        _from_client(h, a, cb, "Everyone", "hi")  # all_clients method: anyone
        _from_client(h, a, ca, "Everyone", "me")  # including the own client
        _from_client(h, a, ca, "ServerOnly")  # server-only: refused
        _from_client(h, a, ca, "Hello", "x")  # server-only: refused
        _from_client(h, a, ca, "Own", 1.5)  # wrong type: dropped
        _from_client(h, a, ca, "Own", 1, 2)  # too many: dropped
        _from_client(h, a, ca, "Own", True)  # bool for int: dropped
        _from_client(h, a, ca, "Nope")  # unknown: dropped
        _from_client(h, a, ca, "Boom")  # raises inside: logged
        _from_client(h, a, ca, "Own")  # missing trailing int: zero
    assert [(w, args) for _, w, args in EVENTS] == [
        ("Own", (1,)),
        ("Everyone", ("hi",)),
        ("Everyone", ("me",)),
        ("Boom", ()),
        ("Own", (0,)),
    ]
    # refusals are strikes, counted and summarised, never logged one by one
    assert h.rt.client_calls.refused_total == 7
    assert [r.message for r in caplog.records if r.levelno == logging.WARNING] == []
    assert "raised" in caplog.text


async def test_client_call_to_an_entity_without_a_client_is_not_own(h: Harness) -> None:
    c = new_client()
    a = h.avatar()  # no client: nobody is its own client
    _from_client(h, a, c, "Own", 1)
    _from_client(h, a, c, "Everyone", "x")
    assert [w for _, w, _ in EVENTS if w in ("Own", "Everyone")] == ["Everyone"]


async def test_call_on_a_destroyed_entity_is_dropped(h: Harness) -> None:
    a, b = h.avatar(), h.avatar()
    a.call(b.id, "Hello", "late")
    b.destroy()
    await tick()
    assert "Hello" not in events_of(b.id)


async def test_call_nil_spaces(h: Harness) -> None:
    runtime_binding.bind(h.rt)
    goworld.call_nil_spaces("NilCall", 5)
    (d, env), = h.of_type(MT.CALL_NIL_SPACES)
    assert (d, env.game_id, env.name) == (1, 1, "NilCall")
    assert codec.decode_args(env.payload)[0] == (5,)
    await tick()
    assert (h.nil.id, "NilCall", (5,)) in EVENTS
    # and from a dispatcher
    h.handlers.handle(1, Envelope(msgtype=MT.CALL_NIL_SPACES, name="NilCall", payload=codec.encode_args((6,))))
    assert (h.nil.id, "NilCall", (6,)) in EVENTS


# ---- malformed input to the handlers -------------------------------------------------------------------


async def test_handlers_tolerate_malformed_payloads(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    a = h.avatar(client=new_client())
    garbage = b"\xff\xfe\x00garbage\xc1"
    assert a.client is not None
    with caplog.at_level(logging.WARNING, "goworld.game"):
        for msgtype in (MT.CALL_ENTITY_METHOD, MT.CALL_ENTITY_METHOD_FROM_CLIENT):
            for payload in (garbage, b""):
                h.handlers.handle(
                    1,
                    Envelope(msgtype=msgtype, entity_id=a.id, name="Own", payload=payload,
                             client_id=a.client.client_id, gate_id=a.client.gate_id),
                )
    # from a server: logged; from a client: two strikes, not logged one by one
    assert [r.levelname for r in caplog.records if "bad arguments" in r.getMessage()] == ["WARNING"] * 2
    assert h.rt.client_calls.refused_total == 2
    assert "Own" not in events_of(a.id)
    # everything else: logged, never raised, and the runtime keeps working
    for msgtype in (
        MT.CALL_NIL_SPACES,
        MT.KVREG_REGISTER,
        MT.SET_GAME_ID_ACK,
        MT.CREATE_ENTITY_SOMEWHERE,
        MT.REAL_MIGRATE,
        MT.SYNC_POSITION_YAW_FROM_CLIENT,
        MT.NOTIFY_CLIENT_CONNECTED,  # no client id / entity id
        MT.MIGRATE_REQUEST,
        MT.QUERY_SPACE_GAMEID_FOR_MIGRATE,
        MT.START_FREEZE_GAME_ACK,  # not handled by games
        999,  # unknown
    ):
        h.handlers.handle(1, Envelope(msgtype=msgtype, entity_id=a.id, name="x", payload=garbage))
    _from_client(h, a, a.client, "Own", 7)  # type: ignore[arg-type]
    assert (a.id, "Own", (7,)) in EVENTS


async def test_calls_to_unknown_entities_are_dropped(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "goworld.game"):
        h.handlers.handle(1, Envelope(msgtype=MT.CALL_ENTITY_METHOD, entity_id=new_entity_id(), name="X", payload=codec.encode_args(())))
        h.handlers.handle(
            1,
            Envelope(msgtype=MT.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=new_entity_id(), name="X",
                     payload=codec.encode_args(()), client_id=new_client_id()),
        )
    assert caplog.text.count("dropped") == 1  # the server's call; the client's is a strike
    assert h.rt.client_calls.refused_total == 1


# ---- limits on calls from clients (game.call_limits) ------------------------------------------------


class StepClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def limited(clock: StepClock, **policy: Any) -> Harness:
    defaults: dict[str, Any] = {"rate": 10, "burst": 20, "max_arg_bytes": 1000, "max_strikes": 5}
    return Harness(call_policy=CallPolicy(**(defaults | policy)), call_clock=clock)


def _disconnected(h: Harness, entity: Entity, client: GameClient) -> None:
    h.handlers.handle(
        1,
        Envelope(msgtype=MT.NOTIFY_CLIENT_DISCONNECTED, entity_id=entity.id, client_id=client.client_id,
                 gate_id=client.gate_id),
    )


async def test_a_flood_over_the_rate_is_refused_and_kicked_once_while_an_honest_client_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = StepClock()
    h = limited(clock)
    flooder, honest = new_client(3), new_client(4)
    a, b = h.avatar(client=flooder), h.avatar(client=honest)
    h.take()
    EVENTS.clear()
    with caplog.at_level(logging.WARNING, "goworld.game"):
        for step in range(100):  # 10 s: the flooder sends 1,000 calls/s, the honest client 10
            for _ in range(100):
                _from_client(h, a, flooder, "Own", 1)
            _from_client(h, b, honest, "Own", step)
            clock.now += 0.1
    assert [args for eid, w, args in EVENTS if eid == b.id and w == "Own"] == [(i,) for i in range(100)]
    # the burst, then nothing: refused calls are strikes, past 5 the client is kicked, once
    assert [w for eid, w, _ in EVENTS if eid == a.id and w == "Own"] == ["Own"] * 20
    [(did, kick)] = h.of_type(MT.KICK_CLIENT)
    assert did == (3 - 1) % h.num_dispatchers + 1  # the dispatcher of gate 3's syncs
    assert (kick.gate_id, kick.client_id) == (3, flooder.client_id)
    assert kick.name.startswith("6 refused calls in 10 s (last: Own: over 10 calls/s)")
    assert [r.getMessage() for r in caplog.records] == [
        f"kicking client {flooder.client_id} of gate3: {kick.name}"
    ]


async def test_kick_client_goes_to_the_dispatcher_of_the_clients_gate(h: Harness) -> None:
    for gate_id in (1, 2, 3, 4):
        h.rt.outbox.kick_client(f"client{gate_id}", gate_id, "why")
    assert [(d, e.msgtype, e.gate_id, e.client_id, e.name) for d, e in h.take()] == [
        ((g - 1) % 2 + 1, MT.KICK_CLIENT, g, f"client{g}", "why") for g in (1, 2, 3, 4)
    ]


async def test_every_refusal_from_a_client_is_a_strike() -> None:
    clock = StepClock()
    h = limited(clock, max_strikes=5)
    ca, cb = new_client(1), new_client(2)
    a = h.avatar(client=ca)
    h.avatar(client=cb)
    h.take()
    _from_client(h, a, cb, "Own", 1)  # not its own entity
    _from_client(h, a, ca, "ServerOnly")  # not client-callable
    _from_client(h, a, ca, "Nope")  # no such RPC
    _from_client(h, a, ca, "Own", "x")  # arguments that do not fit
    h.handlers.handle(1, Envelope(msgtype=MT.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=a.id, name="Own",
                                  payload=b"\x01", client_id=ca.client_id, gate_id=1))  # undecodable
    h.handlers.handle(1, Envelope(msgtype=MT.CALL_ENTITY_METHOD_FROM_CLIENT, entity_id=new_entity_id(),
                                  name="Own", payload=codec.encode_args(()), client_id=ca.client_id,
                                  gate_id=1))  # no such entity here
    _from_client(h, a, ca, "Own", "x" * 2000)  # too large
    assert h.rt.client_calls.refused_total == 7
    assert [e.client_id for _, e in h.of_type(MT.KICK_CLIENT)] == [ca.client_id]  # 6 strikes of ca: past 5
    assert "Own" not in events_of(a.id)


async def test_too_large_arguments_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    h = limited(StepClock())
    client = new_client()
    a = h.avatar(client=client)
    decoded: list[int] = []
    decode = codec.decode_args

    def counting(buf: bytes, pos: int = 0) -> tuple[tuple[Any, ...], int]:
        decoded.append(len(buf))
        return decode(buf, pos)

    monkeypatch.setattr(codec, "decode_args", counting)
    fits, over = "x" * 991, "x" * 992
    assert (len(codec.encode_args((fits,))), len(codec.encode_args((over,)))) == (1000, 1001)
    _from_client(h, a, client, "Everyone", fits)
    _from_client(h, a, client, "Everyone", over)
    assert decoded == [1000]
    assert [args for _, w, args in EVENTS if w == "Everyone"] == [(fits,)]
    assert h.rt.client_calls.refused_total == 1


async def test_calls_between_servers_are_never_limited() -> None:
    h = limited(StepClock(), max_arg_bytes=10)
    a = h.avatar(client=new_client())
    for i in range(500):  # one instant, far over every limit
        h.handlers.handle(1, Envelope(msgtype=MT.CALL_ENTITY_METHOD, entity_id=a.id, name="Hello",
                                      payload=codec.encode_args(("x" * 100, i))))
    assert len([w for _, w, _ in EVENTS if w == "Hello"]) == 500
    assert h.rt.client_calls.refused_total == 0 and len(h.rt.client_calls) == 0


async def test_a_clients_state_goes_with_it() -> None:
    h = limited(StepClock())
    ca, cb, cc = new_client(1), new_client(1), new_client(2)
    a, b, c = h.avatar(client=ca), h.avatar(client=cb), h.avatar(client=cc)
    for entity, client in ((a, ca), (b, cb), (c, cc)):
        _from_client(h, entity, client, "Own", 1)
    limits = h.rt.client_calls
    assert len(limits) == 3
    _disconnected(h, a, ca)
    assert ca.client_id not in limits and len(limits) == 2
    h.handlers.handle(2, Envelope(msgtype=MT.NOTIFY_GATE_DISCONNECTED, gate_id=1))
    assert cb.client_id not in limits and cc.client_id in limits
    # a disconnection this game hears of for an entity that moved on still drops the state
    _from_client(h, c, cc, "Everyone", "x")
    _disconnected(h, h.avatar(), cc)
    assert len(limits) == 0


async def test_the_client_table_is_bounded() -> None:
    h = limited(StepClock(), max_clients=10)
    target = h.avatar(client=new_client())
    for _ in range(200):  # clients whose owners live on other games: no disconnection here
        _from_client(h, target, new_client(), "Everyone", "hi")
    assert len(h.rt.client_calls) == 10
    assert len([w for _, w, _ in EVENTS if w == "Everyone"]) == 200


# ---- cluster state handlers ----------------------------------------------------------------------------


async def test_deployment_ready_fires_once(h: Harness) -> None:
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_DEPLOYMENT_READY))
    h.handlers.handle(2, Envelope(msgtype=MT.NOTIFY_DEPLOYMENT_READY))
    h.handlers.handle(1, Envelope(msgtype=MT.SET_GAME_ID_ACK, payload=pack({"ready": True})))
    assert h.ready_calls == 1 and h.rt.deployment_ready


async def test_set_game_id_ack_updates_games_and_kvreg(h: Harness) -> None:
    h.handlers.handle(
        1,
        Envelope(
            msgtype=MT.SET_GAME_ID_ACK,
            payload=pack({"disp": 1, "ready": False, "games": [2, 3], "rejected": [], "kvreg": {"k": "v"}}),
        ),
    )
    assert h.rt.online_games == {1, 2, 3} and h.rt.kvreg == {"k": "v"}
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_GAME_DISCONNECTED, game_id=3))
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_GAME_CONNECTED, game_id=4))
    assert h.rt.online_games == {1, 2, 4}
    assert h.ready_calls == 0


async def test_a_rejected_entity_leaves_its_space(h: Harness) -> None:
    # SET_GAME_ID_ACK lists entities another game owns: our copy must go away entirely,
    # including from its space and from its neighbours' AOI (GoWorld destroys it).
    space = h.space()
    cb = new_client()
    a = h.avatar(space, (0, 0, 0))
    b = h.avatar(space, (5, 0, 5), client=cb)
    h.take()
    h.handlers.handle(1, Envelope(msgtype=MT.SET_GAME_ID_ACK, payload=pack({"rejected": [a.id]})))
    assert h.rt.get_entity(a.id) is None and a.is_destroyed()
    assert a not in space.entities
    assert not b.is_interested_in(a)
    assert h.items(cb) == [("destroy", "Avatar", a.id)]


async def test_create_and_load_somewhere(h: Harness) -> None:
    eid = new_entity_id()
    h.handlers.handle(
        1,
        Envelope(msgtype=MT.CREATE_ENTITY_SOMEWHERE, entity_id=eid, name="Avatar", payload=pack({"name": "cy"})),
    )
    av = h.rt.get_entity(eid)
    assert isinstance(av, Avatar) and av.attrs["name"] == "cy"
    sid = new_entity_id()
    h.handlers.handle(
        1,
        Envelope(msgtype=MT.CREATE_ENTITY_SOMEWHERE, entity_id=sid, name="__space__", payload=pack({"_K": 7})),
    )
    assert isinstance(h.rt.spaces[sid], MySpace) and h.rt.spaces[sid].kind == 7


# ---- migration (§4.9) -----------------------------------------------------------------------------------


async def test_enter_space_on_an_unknown_space_queries_the_spaces_shard(h: Harness) -> None:
    a = h.avatar()
    h.take()
    sid = eid_on_shard(2)
    a.enter_space(sid, (1, 2, 3))
    (d, env), = h.sent
    assert (d, env.msgtype, env.entity_id, env.name) == (2, MT.QUERY_SPACE_GAMEID_FOR_MIGRATE, sid, a.id)
    # a second enter_space while the first is pending is ignored
    h.take()
    a.enter_space(new_entity_id(), (0, 0, 0))
    assert h.sent == []
    # unknown space (game 0): cancelled, and the entity may try again
    EVENTS.clear()
    h.handlers.handle(2, Envelope(msgtype=MT.QUERY_SPACE_GAMEID_FOR_MIGRATE, entity_id=sid, name=a.id, game_id=0))
    assert h.sent == [] and a.space is h.nil
    assert a.id not in h.rt.migration.pending
    assert events_of(a.id) == ["on_enter_space_failed"]  # game code may choose another
    assert (a.id, "on_enter_space_failed", (sid,)) in EVENTS


async def test_a_space_gone_from_this_game_runs_the_failed_hook_too(h: Harness) -> None:
    space = h.space()
    a = h.avatar()
    h.rt.migration.start(a, space.id, Vector3(4, 0, 4))
    space.destroy()  # gone before the dispatcher's answer, which still names this game
    EVENTS.clear()
    h.handlers.handle(1, Envelope(msgtype=MT.QUERY_SPACE_GAMEID_FOR_MIGRATE, entity_id=space.id, name=a.id, game_id=1))
    assert a.space is h.nil and a.id not in h.rt.migration.pending
    assert (a.id, "on_enter_space_failed", (space.id,)) in EVENTS


async def test_query_reply_naming_this_game_switches_locally(h: Harness) -> None:
    space = h.space()
    a = h.avatar()
    h.rt.migration.start(a, space.id, Vector3(4, 0, 4))
    h.take()
    h.handlers.handle(1, Envelope(msgtype=MT.QUERY_SPACE_GAMEID_FOR_MIGRATE, entity_id=space.id, name=a.id, game_id=1))
    assert a.space is space and a.position == Vector3(4, 0, 4)
    assert h.of_type(MT.MIGRATE_REQUEST) == []


async def test_migrate_ack_for_a_gone_entity_cancels(h: Harness) -> None:
    eid = eid_on_shard(2)
    h.handlers.handle(2, Envelope(msgtype=MT.MIGRATE_REQUEST, entity_id=eid, name=new_entity_id(), game_id=2))
    (d, env), = h.sent
    assert (d, env.msgtype, env.entity_id) == (2, MT.CANCEL_MIGRATE, eid)


async def _migrate(
    src: Harness, dst: Harness, entity: Entity, target: Space, pos: tuple[float, float, float]
) -> Envelope:
    """Drive a migration through both games; return the REAL_MIGRATE envelope."""
    src.take()
    entity.enter_space(target.id, pos)
    (d, query), = src.of_type(MT.QUERY_SPACE_GAMEID_FOR_MIGRATE)
    assert d == src.shard(target.id)
    src.take()
    reply = Envelope()
    reply.CopyFrom(query)
    reply.game_id = dst.rt.game_id
    src.handlers.handle(d, reply)
    (d2, request), = src.sent
    assert request.msgtype == MT.MIGRATE_REQUEST
    assert (d2, request.entity_id, request.name, request.game_id) == (
        src.shard(entity.id),
        entity.id,
        target.id,
        dst.rt.game_id,
    )
    src.take()
    src.handlers.handle(d2, request)  # the dispatcher echoes it back as the ACK
    (d3, real), = src.of_type(MT.REAL_MIGRATE)
    assert d3 == src.shard(entity.id)
    return real


async def test_migration_moves_entity_client_position_and_timers() -> None:
    src, dst = Harness(1), Harness(2)
    src_space = src.space()
    dst_space = dst.space(kind=5)
    c = GameClient(new_client_id(), 3, address="198.18.0.3:40001")
    a = src.avatar(src_space, (0, 0, 0), client=c, entity_id=eid_on_shard(1), attrs={"name": "mig"})
    npc = src.avatar(src_space, (5, 0, 5))
    c2 = new_client(gate_id=4)
    other = dst.avatar(dst_space, (12, 0, 12), client=c2)  # a neighbour waiting on the target
    a.attrs["level"] = 3
    a.set_yaw(30)
    a.set_client_syncing(True)
    a.add_timer(60, "tick", "r")
    a.add_callback(30, "once")
    due = {rec.method: (rec.fire_at, rec.interval, rec.repeat, rec.args) for rec in a.timer_records.values()}
    EVENTS.clear()

    real = await _migrate(src, dst, a, dst_space, (10, 0, 10))

    # source: the client sees the neighbour destroys and the space destroy, not its player
    items = src.items(c)
    assert items == [("destroy", "Avatar", npc.id), ("destroy", "__space__", src_space.id)]
    assert [d for d, _ in src.view(c)] == [1, 1]
    # the entity is gone locally, silently: no NOTIFY_DESTROY, no on_destroy, no disconnect
    assert src.rt.get_entity(a.id) is None and a not in src_space.entities
    assert src.of_type(MT.NOTIFY_DESTROY_ENTITY) == []
    assert "on_destroy" not in events_of(a.id) and "on_client_disconnected" not in events_of(a.id)
    assert "on_migrate_out" in events_of(a.id)
    assert not npc.is_interested_in(a)
    assert real.entity_id == a.id and real.game_id == 2
    data = EntityState.from_plain(unpack(real.payload))  # plain msgpack, one EntityState
    assert data.type_name == "Avatar"
    assert data.attrs["name"] == "mig" and data.attrs["level"] == 3 and data.attrs["server"] == "only-here"
    assert data.client == (c.client_id, 3, a.id, "198.18.0.3:40001")
    assert data.position == (10, 0, 10) and data.space_id == dst_space.id
    assert data.yaw == 30 and data.client_syncing is True
    assert sorted((m, fa, iv, rp, ar) for m, ar, fa, iv, rp in data.timers) == sorted(
        (m, fa, iv, rp, ar) for m, (fa, iv, rp, ar) in due.items()
    )

    # target: rebuild with the client bound silently, then enter the space
    dst.take()
    dst.handlers.handle(1, real)
    b = dst.rt.get_entity(a.id)
    assert isinstance(b, Avatar) and b is not a
    assert b.client == c and b.client.owner_id == a.id
    assert b.client.address == "198.18.0.3:40001"  # where it connected from, still
    assert b.space is dst_space and b.position == Vector3(10, 0, 10)
    assert b.yaw == 30 and b.client_syncing
    assert (b.attrs["name"], b.attrs["level"], b.attrs["hp"]) == ("mig", 3, 100)
    # on_attrs_ready runs again on the target (GoWorld's order: OnInit, OnAttrsReady,
    # OnMigrateIn, enter); the client is bound already, so what it changes reaches the client.
    view = [(d, i) for d, i in dst.view(c) if not isinstance(i, NotifyMapAttrChangeOnClient)]
    assert [short(i) for _, i in view] == [
        ("create", "__space__", dst_space.id, False),  # no 1011 and no 1002 of itself
        ("create", "Avatar", other.id, False),
    ]
    assert [d for d, _ in view] == [dst.shard(a.id)] * 2  # owner's path, as on the source
    assert [short(i) for i in dst.items(c2)] == [("create", "Avatar", a.id, False)]
    assert "on_migrate_in" in events_of(a.id)
    assert "on_created" not in events_of(a.id)
    # timers keep their due times
    got = {rec.method: (rec.fire_at, rec.interval, rec.repeat, rec.args) for rec in b.timer_records.values()}
    assert got == due
    assert all(rec.handle is not None for rec in b.timer_records.values())
    # attributes changed on the target reach the client through the owner's dispatcher
    dst.take()
    b.attrs["level"] = 4
    assert dst.items(c) == [NotifyMapAttrChangeOnClient(3, c.client_id, a.id, None, "level", 4)]
    # and the position is synced to the own client with the next tick (§4.9: then positions)
    dst.take()
    dst.rt.collect_syncs()
    recs = [r for _, e in dst.of_type(MT.SYNC_POSITION_YAW_ON_CLIENTS) for r in sync_records(e.payload)]
    assert (c.client_id, a.id, (10, 0, 10, 30)) in recs


async def test_migrated_timers_fire_on_the_target() -> None:
    src, dst = Harness(1), Harness(2)
    dst_space = dst.space(kind=5)
    a = src.avatar()
    a.add_callback(INTERVAL * 3, "once")
    real = await _migrate(src, dst, a, dst_space, (0, 0, 0))
    dst.handlers.handle(1, real)
    await _wait_for(lambda: count(a, "once") == 1)
    await asyncio.sleep(INTERVAL * 2)
    assert count(a, "once") == 1


async def test_migrated_entity_is_initialised_like_goworld() -> None:
    # GoWorld's createEntity(ccMigrate) runs init() (OnInit) and OnAttrsReady before
    # OnMigrateIn. Python entities are built with __new__, so on_init is the only place to
    # set up plain instance fields; they must exist on the migrated copy too.
    src, dst = Harness(1), Harness(2)
    dst_space = dst.space(kind=5)
    a = src.avatar()
    EVENTS.clear()
    real = await _migrate(src, dst, a, dst_space, (0, 0, 0))
    dst.handlers.handle(1, real)
    b = dst.rt.get_entity(a.id)
    assert b is not None
    hooks = events_of(a.id)
    assert "on_init" in hooks and "on_attrs_ready" in hooks
    assert hooks.index("on_init") < hooks.index("on_migrate_in")
    assert getattr(b, "inited", False) is True


class Memo:
    """A plain Python object kept in an entity field (as tests/apps/cluster_app's Memo)."""

    def __init__(self, text: str, owner: Entity | None = None) -> None:
        self.text = text
        self.owner = owner


async def test_migration_carries_the_entitys_own_fields_like_a_reload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    src, dst = Harness(1), Harness(2)
    dst_space = dst.space(kind=5)
    a = src.avatar()
    stay = src.avatar()  # left on the source game
    there = dst.avatar(dst_space)  # already on the target game
    a.score = 42
    a.memo = Memo("hello", owner=a)  # a plain object referring back to its entity
    a.links = {"self": a, "stay": stay, "there": there, "shared": a.memo}
    a.inited = "from the source"  # on_init sets True on the target; the source's value wins
    saved = pickle.dumps(freeze.snapshot(src.rt))  # the same entity through a reload

    real = await _migrate(src, dst, a, dst_space, (0, 0, 0))
    with caplog.at_level(logging.WARNING, logger="goworld.game"):
        dst.handlers.handle(1, real)
    b = dst.rt.get_entity(a.id)
    assert isinstance(b, Avatar) and b is not a
    assert b.score == 42
    assert isinstance(b.memo, Memo) and b.memo.text == "hello" and b.memo.owner is b
    assert b.links["self"] is b and b.links["shared"] is b.memo
    assert b.links["there"] is there  # resolved to the target's entity of that id
    # the rule: a reference to an entity the target does not have becomes None, with a warning
    assert b.links["stay"] is None
    assert any(stay.id in r.getMessage() and "now None" in r.getMessage() for r in caplog.records)
    assert b.inited == "from the source"
    assert "on_migrate_in" in events_of(a.id)

    # a migrated entity and a restored one carry the same state of their own
    h2 = Harness(1, bare=True)
    freeze.restore(h2.rt, pickle.loads(saved))
    r = h2.rt.entities[a.id]
    assert set(user_fields(r)) == set(user_fields(b))
    assert (r.score, r.memo.text, r.inited) == (b.score, b.memo.text, b.inited)
    assert r.memo.owner is r and r.links["stay"] is h2.rt.entities[stay.id]


async def test_migration_leaves_out_unpicklable_and_oversized_fields(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = Harness(1), Harness(2)
    dst_space = dst.space(kind=5)
    a = src.avatar()
    a.handle = (x for x in ())  # a generator cannot be pickled: left out
    a.kept = [1, 2]
    real = await _migrate(src, dst, a, dst_space, (0, 0, 0))
    dst.handlers.handle(1, real)
    b = dst.rt.get_entity(a.id)
    assert b is not None and b.kept == [1, 2] and not hasattr(b, "handle")
    assert b.inited is True  # what on_init set (the source's value is True as well)
    assert any("handle" in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)

    # over the bound: no fields travel at all, and the payload stays small
    monkeypatch.setattr("game.migration.MAX_MIGRATED_FIELDS", 1000)
    c = src.avatar()
    c.big = "x" * 5000
    real = await _migrate(src, dst, c, dst_space, (0, 0, 0))
    assert len(real.payload) < 1000
    dst.handlers.handle(1, real)
    d = dst.rt.get_entity(c.id)
    assert d is not None and not hasattr(d, "big") and d.inited is True


async def test_engine_fields_are_exactly_what_entities_and_spaces_set_up() -> None:
    # A new engine field must be named in ENGINE_FIELDS (and carried in EntityState or
    # rebuilt), or a freeze and a migration would save it as one of the entity's own fields.
    h = Harness()
    entity = Avatar.__new__(Avatar)
    entity.bind_runtime(h.rt, h.rt.registry.get("Avatar"), new_entity_id())
    space = MySpace.__new__(MySpace)
    space.bind_runtime(h.rt, h.rt.registry.get("__space__"), new_entity_id())
    assert set(vars(space)) == set(ENGINE_FIELDS)
    assert set(vars(entity)) == set(ENGINE_FIELDS) - {"aoi", "entities", "_type_counts"}
    # every place named is a field of the record, and every field of the record is named
    record_fields = set(EntityState.__dataclass_fields__)
    places = {v for v in ENGINE_FIELDS.values() if not v.startswith("not kept")}
    assert places <= record_fields
    assert record_fields - places == {"fields"}  # the entity's own fields
    # and a live entity's own fields are exactly what it added
    live = h.avatar()
    assert user_fields(live) == {"inited": True}


async def test_real_migrate_for_an_entity_already_here_is_ignored(h: Harness) -> None:
    a = h.avatar()
    data = EntityState("Avatar", a.id, {}, (0, 0, 0), 0.0, None, None, False).to_plain()
    h.handlers.handle(1, Envelope(msgtype=MT.REAL_MIGRATE, entity_id=a.id, game_id=1, payload=pack(data)))
    assert h.rt.get_entity(a.id) is a


# ---- services (§8.4) -------------------------------------------------------------------------------------


def _kvreg(h: Harness, key: str, value: str, force: bool = False) -> None:
    h.handlers.handle(1, Envelope(msgtype=MT.KVREG_REGISTER, name=key, payload=pack([value, force])))


def _kvreg_sent(h: Harness) -> list[tuple[str, str, bool]]:
    return [(e.name, *unpack(e.payload)) for _, e in h.of_type(MT.KVREG_REGISTER)]


async def test_service_manager_claims_creates_and_publishes(h: Harness) -> None:
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_DEPLOYMENT_READY))
    h.take()
    h.rt.services.check()
    assert _kvreg_sent(h) == []  # claims wait for a random delay
    await asyncio.sleep(0.02)
    assert sorted(_kvreg_sent(h)) == [
        ("Service/Counter#0", "game1", False),
        ("Service/Counter#1", "game1", False),
    ]
    h.take()

    # the dispatcher accepted our claim on shard 0; game2 won shard 1
    _kvreg(h, "Service/Counter#0", "game1")
    _kvreg(h, "Service/Counter#1", "game2")
    await asyncio.sleep(0.02)
    counters = [e for e in h.rt.entities.values() if isinstance(e, Counter)]
    assert len(counters) == 1
    svc = counters[0]
    assert h.rt.services.local == {("Counter", 0): svc.id}
    assert _kvreg_sent(h) == [("Service/Counter#0/EntityID", svc.id, True)]
    assert [e.entity_id for _, e in h.of_type(MT.NOTIFY_CREATE_ENTITY)] == [svc.id]

    runtime_binding.bind(h.rt)
    assert goworld.get_service_shard_count("Counter") == 2
    assert not goworld.check_service_entities_ready("Counter")
    _kvreg(h, "Service/Counter#0/EntityID", svc.id, True)
    remote = eid_on_shard(2)
    _kvreg(h, "Service/Counter#1/EntityID", remote, True)
    assert goworld.check_service_entities_ready("Counter")
    assert goworld.get_service_entity_id("Counter", 1) == remote
    h.take()

    goworld.call_service_shard_index("Counter", 0, "Inc", 1)  # local: posted
    goworld.call_service_shard_index("Counter", 1, "Inc", 2)  # remote: via its shard
    goworld.call_service_all("Counter", "Inc", 3)
    goworld.call_service_any("Counter", "Inc", 4)  # FixedRandom picks shard 0
    key = next(k for k in ("a", "b", "c", "d", "e") if shard_of_key(k, 2) == 1)
    goworld.call_service_shard_key("Counter", key, "Inc", 5)
    await tick()
    assert [args for eid, w, args in EVENTS if w == "Inc" and eid == svc.id] == [(1,), (3,), (4,)]
    remote_calls = [
        (d, e.entity_id, codec.decode_args(e.payload)[0]) for d, e in h.of_type(MT.CALL_ENTITY_METHOD)
    ]
    assert remote_calls == [(2, remote, (2,)), (2, remote, (3,)), (2, remote, (5,))]

    # another game takes over shard 0: our copy is destroyed
    _kvreg(h, "Service/Counter#0", "game3", True)
    await asyncio.sleep(0.02)
    assert svc.is_destroyed() and h.rt.services.local == {}


async def test_service_claim_is_skipped_when_already_claimed(h: Harness) -> None:
    h.rt.services.check()
    _kvreg(h, "Service/Counter#0", "game2")  # before deployment ready: mirror only
    await asyncio.sleep(0.02)
    assert sorted(k for k, _, _ in _kvreg_sent(h)) == ["Service/Counter#1"]
    assert not any(isinstance(e, Counter) for e in h.rt.entities.values())


async def test_calls_to_services_that_are_not_ready_wait_in_order_until_the_shard_is_known(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    runtime_binding.bind(h.rt)
    with caplog.at_level(logging.ERROR, "goworld.game"):
        goworld.call_service_any("Counter", "Inc", 1)  # FixedRandom: shard 0
        goworld.call_service_all("Counter", "Inc", 2)
        goworld.call_service_shard_index("Counter", 1, "Inc", 3)
        goworld.call_service_any("NoSuchService", "Inc", 1)
        goworld.call_service_all("NoSuchService", "Inc", 1)
        goworld.call_service_shard_key("NoSuchService", "k", "Inc", 1)
        goworld.call_service_shard_index("Counter", 7, "Inc", 1)
    await tick()
    assert h.of_type(MT.CALL_ENTITY_METHOD) == []
    assert h.rt.services.pending_count == 4
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum("unknown service" in m for m in errors) == 3
    assert sum("has 2 shards, not #7" in m for m in errors) == 1
    assert goworld.get_service_entity_id("Counter", 0) is None
    assert goworld.get_service_shard_count("NoSuchService") == 0
    assert not goworld.check_service_entities_ready("NoSuchService")

    remote0, remote1 = eid_on_shard(1), eid_on_shard(2)
    _kvreg(h, "Service/Counter#1/EntityID", remote1, True)
    assert [(e.entity_id, codec.decode_args(e.payload)[0]) for _, e in h.of_type(MT.CALL_ENTITY_METHOD)] == [
        (remote1, (2,)), (remote1, (3,))
    ]
    h.take()
    goworld.call_service_shard_index("Counter", 0, "Inc", 4)  # still queued, behind 1 and 2
    _kvreg(h, "Service/Counter#0/EntityID", remote0, True)
    assert [(e.entity_id, codec.decode_args(e.payload)[0]) for _, e in h.of_type(MT.CALL_ENTITY_METHOD)] == [
        (remote0, (1,)), (remote0, (2,)), (remote0, (4,))
    ]
    assert h.rt.services.pending == {} and h.rt.services.pending_count == 0


async def test_calls_to_a_service_of_a_dead_game_wait_until_it_is_created_again(h: Harness) -> None:
    old, new = eid_on_shard(1), eid_on_shard(1)
    _kvreg(h, "Service/Counter#0", "game3")
    _kvreg(h, "Service/Counter#0/EntityID", old, True)
    _kvreg(h, "Service/Counter#1", "game4")
    _kvreg(h, "Service/Counter#1/EntityID", eid_on_shard(2), True)
    h.take()
    h.rt.services.call_shard("Counter", 0, "Inc", (1,))
    assert [e.entity_id for _, e in h.of_type(MT.CALL_ENTITY_METHOD)] == [old]
    h.take()
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_GAME_DISCONNECTED, game_id=3))
    h.handlers.handle(2, Envelope(msgtype=MT.NOTIFY_GAME_DISCONNECTED, game_id=3))  # each dispatcher says it
    h.rt.services.call_shard("Counter", 0, "Inc", (2,))
    h.rt.services.call_shard("Counter", 1, "Inc", (3,))  # game4's shard is not affected
    await tick()
    assert [(e.entity_id, codec.decode_args(e.payload)[0]) for _, e in h.of_type(MT.CALL_ENTITY_METHOD)] == [
        (h.rt.kvreg["Service/Counter#1/EntityID"], (3,))
    ]
    assert h.rt.services.pending_count == 1
    h.take()
    _kvreg(h, "Service/Counter#0/EntityID", new, True)  # game3, restarted, made it again
    assert [(e.entity_id, codec.decode_args(e.payload)[0]) for _, e in h.of_type(MT.CALL_ENTITY_METHOD)] == [
        (new, (2,))
    ]
    assert h.rt.services.pending_count == 0


async def test_service_shards_of_a_game_down_past_the_failover_timeout_are_claimed_from_it(
    h: Harness,
) -> None:
    svc = h.rt.services
    svc.failover_timeout = 0.05
    for g in (3, 4):
        h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_GAME_CONNECTED, game_id=g))
    _kvreg(h, "Service/Counter#0", "game3")
    _kvreg(h, "Service/Counter#0/EntityID", eid_on_shard(1), True)
    _kvreg(h, "Service/Counter#1", "game4")
    _kvreg(h, "Service/Counter#1/EntityID", eid_on_shard(2), True)
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_DEPLOYMENT_READY))
    h.take()
    for did in (1, 2):  # each dispatcher says it
        h.handlers.handle(did, Envelope(msgtype=MT.NOTIFY_GAME_DISCONNECTED, game_id=3))
        h.handlers.handle(did, Envelope(msgtype=MT.NOTIFY_GAME_DISCONNECTED, game_id=4))
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_GAME_CONNECTED, game_id=4))  # back in time
    svc.call_shard("Counter", 0, "Inc", (1,))  # waits
    await asyncio.sleep(0.15)
    # one claim, from game3 only (game4 came back): the dispatcher applies it if game3 still
    # holds the key and is down there
    assert _kvreg_sent(h) == [("Service/Counter#0", "game1", False, "game3")]
    assert h.rt.kvreg["Service/Counter#0"] == "game3"  # until the dispatcher answers
    h.take()
    h.handlers.handle(1, Envelope(msgtype=MT.KVREG_REGISTER, name="Service/Counter#0",
                                  payload=pack(["game1", False, "game3"])))  # granted
    await asyncio.sleep(0.6)  # the check after a kvreg change waits up to 0.5 s
    (counter,) = [e for e in h.rt.entities.values() if isinstance(e, Counter)]
    assert svc.local == {("Counter", 0): counter.id}
    assert _kvreg_sent(h) == [("Service/Counter#0/EntityID", counter.id, True)]
    _kvreg(h, "Service/Counter#0/EntityID", counter.id, True)  # the broadcast back
    await tick()
    assert [args for eid, w, args in EVENTS if w == "Inc"] == [(1,)]  # the queued call
    assert svc.pending_count == 0


async def test_a_game_that_starts_after_an_owner_died_claims_its_shards_in_time() -> None:
    # no NOTIFY_GAME_DISCONNECTED ever reached this game: the owner is simply not online
    h = Harness(2)
    h.rt.services.failover_timeout = 0.05
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_GAME_CONNECTED, game_id=1))
    _kvreg(h, "Service/Counter#0", "game3")
    _kvreg(h, "Service/Counter#1", "game1")
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_DEPLOYMENT_READY))
    h.rt.services.start()  # what the game's on_ready does
    h.take()
    await asyncio.sleep(0.15)
    assert _kvreg_sent(h) == [("Service/Counter#0", "game2", False, "game3")]
    h.take()
    h.rt.services.failover_timeout = 0  # off: nothing is claimed from anyone
    h.rt.services.check()
    await asyncio.sleep(0.15)
    assert _kvreg_sent(h) == []


async def test_the_service_call_queue_is_bounded(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h.rt.services.pending_max = 3
    with caplog.at_level(logging.ERROR, "goworld.game"):
        for n in range(5):
            h.rt.services.call_shard("Counter", 0, "Inc", (n,))
    assert h.rt.services.pending_count == 3
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and "Counter#0" in refused[0] and "3 calls" in refused[0]
    _kvreg(h, "Service/Counter#0/EntityID", eid_on_shard(1), True)
    assert [codec.decode_args(e.payload)[0] for _, e in h.of_type(MT.CALL_ENTITY_METHOD)] == [
        (0,), (1,), (2,)
    ]
    h.rt.services.call_shard("Counter", 1, "Inc", (9,))  # room again
    assert h.rt.services.pending_count == 1


async def test_serving_is_announced_once_ready_and_every_shard_is_known(h: Harness) -> None:
    served: list[int] = []
    h.rt.services.on_serving = lambda: served.append(1)
    _kvreg(h, "Service/Counter#0/EntityID", eid_on_shard(1), True)
    _kvreg(h, "Service/Counter#1/EntityID", eid_on_shard(2), True)
    assert served == []  # the deployment is not ready yet
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_DEPLOYMENT_READY))
    h.rt.services.start()
    assert served == [1]
    _kvreg(h, "Service/Counter#0/EntityID", eid_on_shard(2), True)
    assert served == [1]


async def test_serving_waits_for_the_last_shard() -> None:
    h = Harness()
    served: list[int] = []
    h.rt.services.on_serving = lambda: served.append(1)
    h.handlers.handle(1, Envelope(msgtype=MT.NOTIFY_DEPLOYMENT_READY))
    h.rt.services.start()
    assert served == [] and h.rt.services.missing() == ["Counter#0", "Counter#1"]
    _kvreg(h, "Service/Counter#1/EntityID", eid_on_shard(2), True)
    assert served == [] and h.rt.services.missing() == ["Counter#0"]
    _kvreg(h, "Service/Counter#0/EntityID", eid_on_shard(1), True)
    assert served == [1]


async def test_queued_service_calls_survive_a_freeze() -> None:
    h = Harness()
    h.rt.services.call_shard("Counter", 1, "Inc", (5,))
    data = freeze.dumps(freeze.snapshot(h.rt))
    h2 = Harness(bare=True)
    freeze.restore(h2.rt, pickle.loads(data))
    assert h2.rt.services.pending_count == 1
    _kvreg(h2, "Service/Counter#1/EntityID", eid_on_shard(2), True)
    assert [codec.decode_args(e.payload)[0] for _, e in h2.of_type(MT.CALL_ENTITY_METHOD)] == [(5,)]


# ---- the facade with a bound runtime: KVDB and friends ---------------------------------------------


async def test_kvdb_facade_functions() -> None:
    h = Harness(kvdb=MemoryKVDB())
    runtime_binding.bind(h.rt)
    got: list[tuple[str, Any, Any]] = []

    def cb(tag: str) -> Any:
        return lambda value, err: got.append((tag, value, err))

    goworld.kvdb_put("a", "1", cb("put"))
    goworld.kvdb_put("zz", "9")  # no callback
    goworld.kvdb_get("a", cb("get a"))
    goworld.kvdb_get("missing", cb("get missing"))
    goworld.kvdb_get_or_put("a", "2", cb("gop a"))
    goworld.kvdb_get_or_put("b", "2", cb("gop b"))
    assert got == []  # callbacks run on the loop, later
    await tick()
    goworld.kvdb_get("b", cb("get b"))
    goworld.kvdb_get_range("a", "c", cb("range"))
    await tick()
    assert got == [
        ("put", None, None),
        ("get a", "1", None),
        ("get missing", None, None),
        ("gop a", "1", None),
        ("gop b", None, None),
        ("get b", "2", None),
        ("range", [("a", "1"), ("b", "2")], None),
    ]


async def test_raising_kvdb_callbacks_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(kvdb=MemoryKVDB())
    runtime_binding.bind(h.rt)
    got: list[Any] = []

    def bad(value: Any, err: Any) -> None:
        raise RuntimeError("callback bug")

    goworld.kvdb_get("a", bad)
    goworld.kvdb_get("a", lambda v, e: got.append((v, e)))
    await tick()
    assert "callback" in caplog.text and "raised" in caplog.text
    assert got == [(None, None)]  # the next callback still runs


async def test_kvdb_disabled_is_an_error(h: Harness) -> None:
    runtime_binding.bind(h.rt)
    with pytest.raises(EntityError, match="KVDB is disabled"):
        goworld.kvdb_get("a", lambda v, e: None)


async def test_facade_without_a_runtime_is_an_error() -> None:
    runtime_binding.unbind()
    with pytest.raises(GoWorldError, match="no game runtime"):
        goworld.get_game_id()


async def test_facade_lookups_and_exists() -> None:
    storage = MemoryEntityStorage()
    h = Harness(storage=storage)
    runtime_binding.bind(h.rt)
    a = h.avatar()
    a.save()
    assert goworld.get_entity(a.id) is a and goworld.get_game_id() == 1
    assert goworld.get_nil_space() is h.nil and goworld.get_nil_space_id(1) == nil_space_id(1) == h.nil.id
    assert a.id in goworld.entities()
    found: list[Any] = []
    goworld.exists("Avatar", a.id, lambda ok, err: found.append((ok, err)))
    goworld.exists("Avatar", new_entity_id(), lambda ok, err: found.append((ok, err)))
    await tick()
    assert found == [(True, None), (False, None)]
    sp = goworld.create_space_locally(9)
    assert goworld.get_space(sp.id) is sp
    with pytest.raises(EntityError):
        goworld.create_space_anywhere(0)
    h.take()
    eid = goworld.create_entity_anywhere("Avatar", {"name": "n"})
    (d, env), = h.sent
    assert (d, env.msgtype, env.entity_id, env.game_id, env.name) == (
        h.shard(eid),
        MT.CREATE_ENTITY_SOMEWHERE,
        eid,
        0,
        "Avatar",
    )
    assert unpack(env.payload) == {"name": "n"}


# ---- crontab ------------------------------------------------------------------------------------------


async def test_crontab_field_matching() -> None:
    loop = asyncio.get_running_loop()
    cron = Crontab(loop)
    fns: dict[str, Any] = {}

    def reg(name: str, *spec: int) -> None:
        def fn() -> None: ...

        fns[name] = fn
        cron.register(*spec, fn)

    try:
        # Friday 15 March 2024, 10:30 local time; Sunday is day-of-week 0
        when = time.mktime((2024, 3, 15, 10, 30, 0, 0, 0, -1))
        assert time.localtime(when).tm_wday == 4
        reg("exact", 30, 10, 15, 3, 5)
        reg("wildcard", -1, -1, -1, -1, -1)
        reg("every", -15, -5, -5, -3, -1)  # 30 % 15, 10 % 5, 15 % 5, 3 % 3
        reg("wrong minute", 31, 10, 15, 3, 5)
        reg("wrong hour", 30, 11, -1, -1, -1)
        reg("wrong day", -1, -1, 14, -1, -1)
        reg("wrong month", -1, -1, -1, 4, -1)
        reg("wrong dow", -1, -1, -1, -1, 0)
        reg("not every 7", -7, -1, -1, -1, -1)
        matched = cron.matching(when)
        assert {n for n, f in fns.items() if f in matched} == {"exact", "wildcard", "every"}
        sunday = time.mktime((2024, 3, 17, 0, 0, 0, 0, 0, -1))
        reg("sunday midnight", 0, 0, -1, -1, 0)
        assert fns["sunday midnight"] in cron.matching(sunday)
        assert fns["exact"] not in cron.matching(sunday)
    finally:
        cron.close()


async def test_crontab_check_runs_matching_callbacks_and_survives_errors() -> None:
    loop = asyncio.get_running_loop()
    now = time.mktime((2024, 3, 15, 10, 30, 2, 0, 0, -1))
    cron = Crontab(loop, clock=lambda: now)
    ran: list[str] = []

    def bad() -> None:
        ran.append("bad")
        raise RuntimeError("cron bug")

    try:
        cron.register(-1, -1, -1, -1, -1, bad)
        cron.register(30, -1, -1, -1, -1, lambda: ran.append("at 30"))
        cron.register(31, -1, -1, -1, -1, lambda: ran.append("at 31"))
        cron._check()
        assert ran == ["bad", "at 30"]
    finally:
        cron.close()


async def test_a_second_login_taking_over_an_avatar_does_not_fire_on_client_disconnected(
    h: Harness,
) -> None:
    # A player logs in again while the first session is still open: the avatar's client is
    # replaced, not removed, so on_client_disconnected (which destroys avatars) must not run.
    space = h.space()
    first, second = new_client(), new_client()
    av = h.avatar(space, (0, 0, 0))
    av.set_client(first)
    h.take()
    EVENTS.clear()
    av.set_client(second)
    assert [w for e, w, _ in EVENTS if e == av.id] == ["on_client_connected"]
    assert av.client == second and not av.destroyed
    assert [short(item) for _, item in h.view(first)][-1] == ("destroy", "Avatar", av.id)
    assert ("create", "Avatar", av.id, True) in [short(item) for _, item in h.view(second)]


# ---- freeze / restore (the game side of `goworld reload`) -----------------------------------


async def test_freeze_snapshot_restores_the_same_world_silently() -> None:
    h = Harness()
    space = h.space(1, aoi=100)
    rng = random.Random(5)
    crowd = [h.avatar(space, (rng.uniform(0, 400), 0, rng.uniform(0, 400))) for _ in range(80)]
    crowd[0].attrs["bag"] = {"potion": 3, "coins": [1, 2, {"gold": 5}]}
    crowd[0].friend = crowd[1]  # a plain field referring to another entity
    loner = h.avatar(None)  # in the nil space
    data = freeze.dumps(freeze.snapshot(h.rt))

    h2 = Harness(bare=True)
    freeze.restore(h2.rt, pickle.loads(data))
    assert h2.take() == []  # nobody is told anything: clients are re-attached silently
    rt2 = h2.rt
    assert sorted(rt2.entities) == sorted(h.rt.entities)
    space2 = rt2.entities[space.id]
    assert isinstance(space2, MySpace) and space2.aoi is not None
    assert [e.id for e in space2.entities] == [e.id for e in space.entities]
    for old in crowd:
        new = rt2.entities[old.id]
        assert new.space is space2 and new.position == old.position
        assert {e.id for e in new.interested_in} == {e.id for e in old.interested_in}
        assert new.attrs.to_builtin() == old.attrs.to_builtin()
        assert new.attrs._listener is new  # bound: changes reach clients
    assert rt2.entities[crowd[0].id].friend is rt2.entities[crowd[1].id]
    assert rt2.entities[loner.id].space is rt2.nil_space
    # The rebuilt AOI goes on like the original: the same move gives the same pairs.
    for world in (h.rt, rt2):
        world.entities[crowd[2].id].set_position(Vector3(5000, 0, 5000))
    for old in crowd:
        new = rt2.entities[old.id]
        assert {e.id for e in new.interested_in} == {e.id for e in old.interested_in}


async def test_aois_filled_from_the_early_layout_are_the_ones_a_restore_builds() -> None:
    # The freezing game hands out its AOI layout before the snapshot; a standby fills the AOIs
    # from it while the file is written, and the restore takes them when they match.
    h = Harness()
    space, other = h.space(1, aoi=100), h.space(2, aoi=50)
    rng = random.Random(7)
    crowd = [h.avatar(space, (rng.uniform(0, 400), 0, rng.uniform(0, 400))) for _ in range(60)]
    crowd += [h.avatar(other, (rng.uniform(0, 200), 0, rng.uniform(0, 200))) for _ in range(20)]
    h.rt.create_entity_locally("Counter", space=space)  # no AOI for its type
    layouts: list[bytes] = []
    data = freeze.dumps(freeze.snapshot(h.rt, layouts.append))

    def restored(prebuilt: freeze.Prebuilt | None) -> tuple[Harness, int]:
        h2 = Harness(bare=True)
        freeze.restore(h2.rt, pickle.loads(data), prebuilt)
        assert h2.take() == []
        return h2, sum(s.aoi is prebuilt.aois[s.id][0] for s in h2.rt.spaces.values()
                       if prebuilt is not None and s.id in prebuilt.aois)

    plain, _ = restored(None)
    h2 = Harness(bare=True)
    pre = freeze.prebuild(h2.rt, layouts[0])
    assert (len(pre.aois), pre.entities) == (2, 80)
    early, taken = restored(pre)
    assert taken == 2
    for old in crowd:  # the same neighbours, in the same order (events follow that order)
        a, b = plain.rt.entities[old.id], early.rt.entities[old.id]
        assert b is pre.made[old.id]
        assert [e.id for e in a.interested_in] == [e.id for e in b.interested_in]
        assert {e.id for e in a.interested_in} == {e.id for e in old.interested_in}
    # a layout that does not match the snapshot (here: one entity elsewhere) is not taken
    state = pickle.loads(layouts[0])
    kind, sid, distance, entries = state["spaces"][0]
    entries[0] = (*entries[0][:2], 9999.0, 9999.0)
    stale = freeze.prebuild(Harness(bare=True).rt, freeze.dumps(state))
    h3, taken = restored(stale)
    assert taken == 1  # the other space's still is
    for old in crowd:
        assert {e.id for e in h3.rt.entities[old.id].interested_in} == {e.id for e in old.interested_in}


async def test_a_freeze_file_of_another_format_version_is_refused(tmp_path: Any) -> None:
    h = Harness()
    h.avatar()
    state = freeze.snapshot(h.rt)
    good = tmp_path / "game1_freezed.dat"
    good.write_bytes(freeze.dumps(state))
    assert freeze.load(good)["version"] == freeze.FORMAT_VERSION == 3
    old = tmp_path / "old.dat"  # version 1: the layout before EntityState
    old.write_bytes(freeze.dumps({**state, "version": 1}))
    with pytest.raises(freeze.FreezeError, match="freeze format version 1, this code reads versions 2 and 3"):
        freeze.load(old)
    with pytest.raises(freeze.FreezeError, match="version 1"):
        freeze.restore(Harness(bare=True).rt, {**state, "version": 1})
    # version 2 (dicts: EntityState.to_plain) is what the release before writes when a reload
    # moves a game onto this code: still restored
    v2 = {k: v for k, v in state.items() if k != "layout"}
    v2.update(version=2, entities=[EntityState(*rec).to_plain() for rec in state["entities"]])
    (tmp_path / "v2.dat").write_bytes(freeze.dumps(v2))
    h2 = Harness(bare=True)
    freeze.restore(h2.rt, freeze.load(tmp_path / "v2.dat"))
    assert sorted(h2.rt.entities) == sorted(h.rt.entities)
    # records are EntityState's fields in order: a file written with other fields is refused
    other = tmp_path / "other.dat"
    other.write_bytes(freeze.dumps({**state, "layout": (*freeze.LAYOUT, "mood")}))
    with pytest.raises(freeze.FreezeError, match="entity records of .*'mood'"):
        freeze.load(other)


async def test_a_freeze_refuses_fields_that_cannot_be_saved() -> None:
    h = Harness()
    a = h.avatar()
    a.gen = (x for x in ())
    with pytest.raises(freeze.FreezeError, match="field\\(s\\) gen cannot be saved"):
        freeze.snapshot(h.rt)
    failed: list[str] = []
    assert freeze.run_freeze(h.rt, failed.append) is None
    assert "gen" in failed[0]
    # the freeze and a migration write the same record
    del a.gen
    (rec,) = [r for r in freeze.snapshot(h.rt)["entities"] if r[1] == a.id]
    assert EntityState(*rec) == EntityState.capture(a)


async def test_a_freeze_record_is_the_entity_state_capture_takes() -> None:
    # record_of reads most entities directly (no own fields, not a space): the same values
    h = Harness()
    space = h.space(1, aoi=100)
    walker = h.avatar(space, (10.5, 2.0, -3.25), client=new_client(2))
    walker.yaw = 90.0
    walker.set_client_syncing(True)
    walker.attrs["bag"] = {"potion": 3, "coins": [1, 2, {"gold": 5}]}
    walker.add_timer(5, "tick", "t")
    walker.add_callback(7, "once")
    loner = h.avatar()  # nil space, no client, no timer
    own = h.avatar(space)
    own.mood = ["fine"]  # an own field: through EntityState.capture
    for entity in (walker, loner, own, space, h.nil):
        assert entity is not None
        assert EntityState(*freeze.record_of(entity)) == EntityState.capture(entity)
    assert freeze.record_of(walker)[8] and freeze.record_of(own)[9]


async def test_an_ack_saying_clients_lost_drops_the_clients_of_that_dispatchers_shard() -> None:
    # dispatcher 1 took this game for dead (its stream was down longer than the grace) and had
    # the gates close the clients of its shard's entities; on the late reconnect it says so
    h = Harness(num_dispatchers=2)
    lost = h.avatar(client=new_client(), entity_id=eid_on_shard(1))
    kept = h.avatar(client=new_client(), entity_id=eid_on_shard(2))
    idle = h.avatar(entity_id=eid_on_shard(1))
    h.take()
    h.handlers.handle(1, Envelope(msgtype=MT.SET_GAME_ID_ACK, payload=pack({"clients_lost": True})))
    assert lost.client is None and "on_client_disconnected" in events_of(lost.id)
    assert lost.destroyed  # this Avatar destroys itself when its client goes
    assert kept.client is not None and "on_client_disconnected" not in events_of(kept.id)
    assert "on_client_disconnected" not in events_of(idle.id)


async def test_a_migration_under_way_goes_on_after_a_reload() -> None:
    """enter_space to another game's space, then a freeze before the answers: the restored
    game takes them up (GoWorld dropped the migration, leaving the entity where it was)."""
    src, dst = Harness(1), Harness(2)
    src_space, dst_space = src.space(), dst.space(kind=5)
    a = src.avatar(src_space, (0, 0, 0), entity_id=eid_on_shard(1), attrs={"name": "mid-reload"})
    src.take()
    a.enter_space(dst_space.id, Vector3(7, 0, 7))
    (d, query), = src.of_type(MT.QUERY_SPACE_GAMEID_FOR_MIGRATE)

    frozen = freeze.dumps(freeze.snapshot(src.rt))
    after = Harness(1, bare=True)
    freeze.restore(after.rt, pickle.loads(frozen))
    assert after.rt.migration.pending == {a.id: (dst_space.id, Vector3(7, 0, 7))}

    reply = Envelope()  # what the dispatchers held for the frozen game arrives now
    reply.CopyFrom(query)
    reply.game_id = 2
    after.take()
    after.handlers.handle(d, reply)
    (d2, request), = after.of_type(MT.MIGRATE_REQUEST)
    after.take()
    after.handlers.handle(d2, request)
    assert after.of_type(MT.CANCEL_MIGRATE) == []
    (_, real), = after.of_type(MT.REAL_MIGRATE)
    dst.handlers.handle(d2, real)
    moved = dst.rt.get_entity(a.id)
    assert moved is not None and moved.space is dst_space and moved.position == Vector3(7, 0, 7)
    assert moved.attrs["name"] == "mid-reload" and after.rt.get_entity(a.id) is None


async def test_a_freeze_file_without_migrations_restores_none() -> None:
    h = Harness(1)
    a = h.avatar(h.space(), (0, 0, 0))
    state = freeze.snapshot(h.rt)
    assert state["migrations"] == []
    del state["migrations"]  # as the release before wrote it
    h2 = Harness(1, bare=True)
    freeze.restore(h2.rt, pickle.loads(freeze.dumps(state)))
    assert h2.rt.migration.pending == {} and h2.rt.get_entity(a.id) is not None


@pytest.mark.parametrize(("address", "host", "key"), [
    ("198.18.0.9:51234", "198.18.0.9", "198.18.0.9"),
    ("[2001:db8:1:2:aaaa::1]:5000", "2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("[2001:db8:1:2:bbbb::7]:5001", "2001:db8:1:2:bbbb::7", "2001:db8:1:2::/64"),  # same machine
    ("[::ffff:198.18.0.9]:7", "::ffff:198.18.0.9", "198.18.0.9"),
    ("", "", ""),
])
async def test_a_clients_host_key_groups_an_ipv6_host_by_its_64(address: str, host: str, key: str) -> None:
    client = GameClient(new_client_id(), 1, "", address)
    assert (client.host, client.host_key) == (host, key)

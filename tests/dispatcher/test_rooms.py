"""dispatcher.rooms: where a game's request for a lockstep room goes."""

from __future__ import annotations

from dispatcher import rooms
from dispatcher.rooms import LockstepRooms
from goworld.cluster.envelopes import Envelope, pack
from goworld.proto import codec
from goworld.proto.msgtypes import MsgType


class Peer:
    def __init__(self) -> None:
        self.sent: list[Envelope] = []
        self.closed = False

    def send(self, env: Envelope) -> None:
        self.sent.append(env)

    def close(self) -> None:
        self.closed = True


def request(owner: str = "A" * 16) -> Envelope:
    return Envelope(msgtype=MsgType.LOCKSTEP_CREATE_ROOM, entity_id=owner, name="OnRoom",
                    payload=pack({"members": [1, 2], "seed": 0, "on_result": "OnResult"}))


def load(players: int) -> Envelope:
    return Envelope(msgtype=MsgType.LOCKSTEP_LOAD, payload=pack({"players": players, "rooms": 1}))


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.to_entities: list[tuple[str, Envelope]] = []
        self.rooms = LockstepRooms(lambda eid, env: self.to_entities.append((eid, env)), lambda: self.now)


def test_requests_go_to_the_least_loaded_process_counting_what_was_sent_since() -> None:
    w = World()
    one, two = Peer(), Peer()
    w.rooms.connected(1, one)
    w.rooms.connected(2, two)
    assert w.rooms.handle(1, load(10)) and w.rooms.handle(2, load(7))
    for _ in range(4):
        w.rooms.place(request())
    # 7,8,9 on two, then 10 vs 10: either; never more than one apart
    assert len(two.sent) >= 3 and len(one.sent) + len(two.sent) == 4
    w.rooms.handle(2, load(30))
    w.rooms.place(request())
    assert len(one.sent) == 5 - len(two.sent)


def test_requests_wait_for_a_process_then_are_refused_to_the_owner() -> None:
    w = World()
    w.rooms.place(request("B" * 16))
    assert w.to_entities == []
    late = Peer()
    w.now = rooms.WAIT - 1
    w.rooms.connected(1, late)
    assert [e.entity_id for e in late.sent] == ["B" * 16]  # delivered when it came
    w.rooms.disconnected(1, late)
    w.rooms.place(request("C" * 16))
    w.now += rooms.WAIT + 0.1
    w.rooms.expire(w.now)
    [(eid, env)] = w.to_entities
    assert eid == "C" * 16 and env.msgtype == MsgType.CALL_ENTITY_METHOD and env.name == "OnRoom"
    (reply,), _ = codec.decode_args(env.payload)
    assert "no lockstep process" in reply["error"]


def test_the_waiting_line_is_bounded_and_a_reconnect_replaces_the_old_stream() -> None:
    w = World()
    for _ in range(rooms.WAIT_LIMIT):
        w.rooms.place(request())
    assert w.to_entities == []
    w.rooms.place(request("D" * 16))
    assert [eid for eid, _ in w.to_entities] == ["D" * 16]  # refused at once
    old, new = Peer(), Peer()
    w.rooms.connected(3, old)
    w.rooms.connected(3, new)
    assert old.closed and not new.closed
    assert len(old.sent) == rooms.WAIT_LIMIT and new.sent == []
    w.rooms.disconnected(3, old)  # the old stream's end does not remove the new one
    w.rooms.place(request())
    assert len(new.sent) == 1
    assert not w.rooms.handle(3, Envelope(msgtype=MsgType.CALL_NIL_SPACES))

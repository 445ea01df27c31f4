"""encode_body/encode_routing_header (what a game sends) agree with the message layouts."""

from __future__ import annotations

import pytest

from goworld.errors import LocalProtocolError
from goworld.proto import codec, messages
from goworld.proto.msgtypes import MsgType

EID = "AbCdEfGhIjKlMnOp"
CID = "qRsTuVwXyZ012345"

SAMPLES: list[messages.Message] = [
    messages.CreateEntityOnClient(3, CID, True, EID, "Monster", 1.5, -2.0, 3.25, 90.0, {"hp": 7}),
    messages.DestroyEntityOnClient(3, CID, "Monster", EID),
    messages.NotifyMapAttrChangeOnClient(3, CID, EID, ["inner", 2], "k", [1, "x"]),
    messages.NotifyMapAttrDelOnClient(3, CID, EID, None, "k"),
    messages.NotifyListAttrChangeOnClient(3, CID, EID, ["l"], 4, 2.5),
    messages.NotifyListAttrPopOnClient(3, CID, EID, ["l"]),
    messages.NotifyListAttrAppendOnClient(3, CID, EID, ["l"], {"a": None}),
    messages.CallEntityMethodOnClient(3, CID, EID, "OnHit", (1, "two", [3])),
    messages.NotifyMapAttrClearOnClient(3, CID, EID, None),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_header_and_body_are_the_layouts_bytes(msg: messages.Message) -> None:
    fields = [name for name, _ in type(msg).LAYOUT]
    values = [getattr(msg, name) for name in fields[2:]]
    built = codec.encode_routing_header(3, CID) + codec.encode_body(msg.MSGTYPE, *values)
    assert built == codec.encode_payload(msg)[2:]


def test_every_client_bound_message_has_a_body_encoder() -> None:
    bound = {m.MSGTYPE for m in SAMPLES}
    with_header = {
        t for t, cls in messages.MESSAGE_CLASSES.items() if cls.LAYOUT[:2] == messages.ROUTING_HEADER
    }
    # SET/CLEAR filter props never reach a client: the gate consumes them
    assert with_header - bound <= {
        MsgType.SET_CLIENTPROXY_FILTER_PROP,
        MsgType.CLEAR_CLIENTPROXY_FILTER_PROPS,
    }


def test_bad_values_are_local_protocol_errors() -> None:
    with pytest.raises(LocalProtocolError):
        codec.encode_body(MsgType.NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT, EID, None, -1, 0)
    with pytest.raises(LocalProtocolError):
        codec.encode_body(MsgType.DESTROY_ENTITY_ON_CLIENT, "Monster")

"""GoWorld's client wire protocol, free of I/O (no sockets, no asyncio, no grpc).

Layers, from bytes inwards:

* :mod:`~goworld.proto.snappy_stream` — the optional snappy framing stream (§3.1);
* :mod:`~goworld.proto.framing` — ``u32`` length prefix, 32 MiB cap (§1.2);
* :mod:`~goworld.proto.codec` — payload <-> message dataclasses (§2), driven by the layouts in
  :mod:`~goworld.proto.messages`; msgpack with GoWorld's rules in :mod:`~goworld.proto.gwmsgpack`;
* :mod:`~goworld.proto.ids` — entity/client ids, nil-space ids, the dispatcher shard (§1.5);
* :mod:`~goworld.proto.dialect` — the 2017/2018 client numbering (§2.5), and G2017's
  top-level attribute path (``[]`` where later servers send nil).

Every decoder raises :class:`goworld.errors.RemoteProtocolError` (or its subclass
:class:`~goworld.errors.PacketTooLarge`) on malformed input, and nothing else.
"""

from goworld.proto.codec import decode_payload, encode, encode_payload, peek_msgtype
from goworld.proto.dialect import Dialect
from goworld.proto.framing import MAX_PAYLOAD, Framer, frame
from goworld.proto.ids import (
    ClientID,
    EntityID,
    dispatcher_shard,
    new_client_id,
    new_entity_id,
    nil_space_id,
)
from goworld.proto.messages import *  # noqa: F403 -- the message classes are the API
from goworld.proto.messages import __all__ as _messages_all
from goworld.proto.msgtypes import MsgType

__all__ = [
    "decode_payload",
    "encode",
    "encode_payload",
    "peek_msgtype",
    "Dialect",
    "MAX_PAYLOAD",
    "Framer",
    "frame",
    "ClientID",
    "EntityID",
    "dispatcher_shard",
    "new_client_id",
    "new_entity_id",
    "nil_space_id",
    "MsgType",
    *_messages_all,
]

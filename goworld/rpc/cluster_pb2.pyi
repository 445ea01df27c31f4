from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("msgtype", "entity_id", "game_id", "gate_id", "client_id", "name", "payload")
    MSGTYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    GAME_ID_FIELD_NUMBER: _ClassVar[int]
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    msgtype: int
    entity_id: str
    game_id: int
    gate_id: int
    client_id: str
    name: str
    payload: bytes
    def __init__(self, msgtype: _Optional[int] = ..., entity_id: _Optional[str] = ..., game_id: _Optional[int] = ..., gate_id: _Optional[int] = ..., client_id: _Optional[str] = ..., name: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("messages", "seq", "epoch", "resent", "dest_epoch", "ack", "ack_epoch")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RESENT_FIELD_NUMBER: _ClassVar[int]
    DEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ACK_EPOCH_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Envelope]
    seq: int
    epoch: int
    resent: bool
    dest_epoch: int
    ack: int
    ack_epoch: int
    def __init__(self, messages: _Optional[_Iterable[_Union[Envelope, _Mapping]]] = ..., seq: _Optional[int] = ..., epoch: _Optional[int] = ..., resent: _Optional[bool] = ..., dest_epoch: _Optional[int] = ..., ack: _Optional[int] = ..., ack_epoch: _Optional[int] = ...) -> None: ...

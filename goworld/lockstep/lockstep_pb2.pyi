from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ID(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MSG_BEGIN: _ClassVar[ID]
    MSG_Connect: _ClassVar[ID]
    MSG_Heartbeat: _ClassVar[ID]
    MSG_JoinRoom: _ClassVar[ID]
    MSG_Progress: _ClassVar[ID]
    MSG_Ready: _ClassVar[ID]
    MSG_Start: _ClassVar[ID]
    MSG_Frame: _ClassVar[ID]
    MSG_Input: _ClassVar[ID]
    MSG_Result: _ClassVar[ID]
    MSG_Close: _ClassVar[ID]
    MSG_END: _ClassVar[ID]

class ERRORCODE(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERR_Ok: _ClassVar[ERRORCODE]
    ERR_NoPlayer: _ClassVar[ERRORCODE]
    ERR_NoRoom: _ClassVar[ERRORCODE]
    ERR_RoomState: _ClassVar[ERRORCODE]
    ERR_Token: _ClassVar[ERRORCODE]
MSG_BEGIN: ID
MSG_Connect: ID
MSG_Heartbeat: ID
MSG_JoinRoom: ID
MSG_Progress: ID
MSG_Ready: ID
MSG_Start: ID
MSG_Frame: ID
MSG_Input: ID
MSG_Result: ID
MSG_Close: ID
MSG_END: ID
ERR_Ok: ERRORCODE
ERR_NoPlayer: ERRORCODE
ERR_NoRoom: ERRORCODE
ERR_RoomState: ERRORCODE
ERR_Token: ERRORCODE

class C2S_ConnectMsg(_message.Message):
    __slots__ = ("playerID", "battleID", "token", "resumeFrame")
    PLAYERID_FIELD_NUMBER: _ClassVar[int]
    BATTLEID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESUMEFRAME_FIELD_NUMBER: _ClassVar[int]
    playerID: int
    battleID: int
    token: str
    resumeFrame: int
    def __init__(self, playerID: _Optional[int] = ..., battleID: _Optional[int] = ..., token: _Optional[str] = ..., resumeFrame: _Optional[int] = ...) -> None: ...

class S2C_ConnectMsg(_message.Message):
    __slots__ = ("errorCode",)
    ERRORCODE_FIELD_NUMBER: _ClassVar[int]
    errorCode: ERRORCODE
    def __init__(self, errorCode: _Optional[_Union[ERRORCODE, str]] = ...) -> None: ...

class S2C_JoinRoomMsg(_message.Message):
    __slots__ = ("roomseatid", "others", "pros", "randomSeed")
    ROOMSEATID_FIELD_NUMBER: _ClassVar[int]
    OTHERS_FIELD_NUMBER: _ClassVar[int]
    PROS_FIELD_NUMBER: _ClassVar[int]
    RANDOMSEED_FIELD_NUMBER: _ClassVar[int]
    roomseatid: int
    others: _containers.RepeatedScalarFieldContainer[int]
    pros: _containers.RepeatedScalarFieldContainer[int]
    randomSeed: int
    def __init__(self, roomseatid: _Optional[int] = ..., others: _Optional[_Iterable[int]] = ..., pros: _Optional[_Iterable[int]] = ..., randomSeed: _Optional[int] = ...) -> None: ...

class S2C_StartMsg(_message.Message):
    __slots__ = ("timeStamp",)
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    timeStamp: int
    def __init__(self, timeStamp: _Optional[int] = ...) -> None: ...

class C2S_ProgressMsg(_message.Message):
    __slots__ = ("pro",)
    PRO_FIELD_NUMBER: _ClassVar[int]
    pro: int
    def __init__(self, pro: _Optional[int] = ...) -> None: ...

class S2C_ProgressMsg(_message.Message):
    __slots__ = ("id", "pro")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRO_FIELD_NUMBER: _ClassVar[int]
    id: int
    pro: int
    def __init__(self, id: _Optional[int] = ..., pro: _Optional[int] = ...) -> None: ...

class C2S_InputMsg(_message.Message):
    __slots__ = ("sid", "x", "y", "frameID")
    SID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    FRAMEID_FIELD_NUMBER: _ClassVar[int]
    sid: int
    x: int
    y: int
    frameID: int
    def __init__(self, sid: _Optional[int] = ..., x: _Optional[int] = ..., y: _Optional[int] = ..., frameID: _Optional[int] = ...) -> None: ...

class InputData(_message.Message):
    __slots__ = ("id", "sid", "x", "y", "roomseatid")
    ID_FIELD_NUMBER: _ClassVar[int]
    SID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    ROOMSEATID_FIELD_NUMBER: _ClassVar[int]
    id: int
    sid: int
    x: int
    y: int
    roomseatid: int
    def __init__(self, id: _Optional[int] = ..., sid: _Optional[int] = ..., x: _Optional[int] = ..., y: _Optional[int] = ..., roomseatid: _Optional[int] = ...) -> None: ...

class FrameData(_message.Message):
    __slots__ = ("frameID", "input")
    FRAMEID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    frameID: int
    input: _containers.RepeatedCompositeFieldContainer[InputData]
    def __init__(self, frameID: _Optional[int] = ..., input: _Optional[_Iterable[_Union[InputData, _Mapping]]] = ...) -> None: ...

class S2C_FrameMsg(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameData]
    def __init__(self, frames: _Optional[_Iterable[_Union[FrameData, _Mapping]]] = ...) -> None: ...

class C2S_ResultMsg(_message.Message):
    __slots__ = ("winnerID",)
    WINNERID_FIELD_NUMBER: _ClassVar[int]
    winnerID: int
    def __init__(self, winnerID: _Optional[int] = ...) -> None: ...

"""lockstep.proto: the generated module is current and the schema is LOCKSTEP.md §4-§5's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from goworld.lockstep import codec
from goworld.lockstep import lockstep_pb2 as pb

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ["lockstep_pb2.py", "lockstep_pb2.pyi"]

OPT, REP = "optional", "repeated"
# message -> {field name: (number, type, label)}, as LOCKSTEP.md §5 lists them.
SCHEMA: dict[str, dict[str, tuple[int, int, str]]] = {
    "C2S_ConnectMsg": {
        "playerID": (1, FieldDescriptor.TYPE_UINT64, OPT),
        "battleID": (2, FieldDescriptor.TYPE_UINT64, OPT),
        "token": (10, FieldDescriptor.TYPE_STRING, OPT),
        "resumeFrame": (11, FieldDescriptor.TYPE_UINT32, OPT),  # our extension
    },
    "S2C_ConnectMsg": {"errorCode": (1, FieldDescriptor.TYPE_ENUM, OPT)},
    "S2C_JoinRoomMsg": {
        "roomseatid": (1, FieldDescriptor.TYPE_INT32, OPT),
        "others": (2, FieldDescriptor.TYPE_UINT64, REP),
        "pros": (3, FieldDescriptor.TYPE_INT32, REP),
        "randomSeed": (4, FieldDescriptor.TYPE_INT32, OPT),
    },
    "S2C_StartMsg": {"timeStamp": (1, FieldDescriptor.TYPE_INT64, OPT)},
    "C2S_ProgressMsg": {"pro": (1, FieldDescriptor.TYPE_INT32, OPT)},
    "S2C_ProgressMsg": {
        "id": (1, FieldDescriptor.TYPE_UINT64, OPT),
        "pro": (2, FieldDescriptor.TYPE_INT32, OPT),
    },
    "C2S_InputMsg": {
        "sid": (1, FieldDescriptor.TYPE_INT32, OPT),
        "x": (2, FieldDescriptor.TYPE_INT32, OPT),
        "y": (3, FieldDescriptor.TYPE_INT32, OPT),
        "frameID": (4, FieldDescriptor.TYPE_UINT32, OPT),
    },
    "InputData": {
        "id": (1, FieldDescriptor.TYPE_UINT64, OPT),
        "sid": (2, FieldDescriptor.TYPE_INT32, OPT),
        "x": (3, FieldDescriptor.TYPE_INT32, OPT),
        "y": (4, FieldDescriptor.TYPE_INT32, OPT),
        "roomseatid": (5, FieldDescriptor.TYPE_INT32, OPT),
    },
    "FrameData": {
        "frameID": (1, FieldDescriptor.TYPE_UINT32, OPT),
        "input": (2, FieldDescriptor.TYPE_MESSAGE, REP),
    },
    "S2C_FrameMsg": {"frames": (1, FieldDescriptor.TYPE_MESSAGE, REP)},
    "C2S_ResultMsg": {"winnerID": (1, FieldDescriptor.TYPE_UINT64, OPT)},
}


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True
    )
    for name in GENERATED:
        fresh = (tmp_path / "goworld" / "lockstep" / name).read_text()
        committed = (ROOT / "goworld" / "lockstep" / name).read_text()
        assert fresh == committed, f"goworld/lockstep/{name} is stale: run scripts/gen_proto.py"
    assert not (tmp_path / "goworld" / "lockstep" / "lockstep_pb2_grpc.py").exists()


def test_file_is_proto2_package_pb() -> None:
    assert pb.DESCRIPTOR.package == "pb"
    source = (ROOT / "goworld" / "lockstep" / "lockstep.proto").read_text()
    assert 'syntax = "proto2";' in source
    assert "[packed" not in source


def test_messages_fields_numbers_and_types() -> None:
    assert set(pb.DESCRIPTOR.message_types_by_name) == set(SCHEMA)
    for name, fields in SCHEMA.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[name]
        got = {f.name: (f.number, f.type, REP if f.is_repeated else OPT) for f in descriptor.fields}
        assert got == fields, name
        for field in descriptor.fields:
            assert not field.is_packed, f"{name}.{field.name} must not be packed"
            if not field.is_repeated:
                assert field.has_presence, f"{name}.{field.name} must track presence"


def test_enums_match_the_codec() -> None:
    ids = {v.name: v.number for v in pb.DESCRIPTOR.enum_types_by_name["ID"].values}
    assert ids == {m.name: m.value for m in codec.MsgId}
    assert ids["MSG_JoinRoom"] == 10 and ids["MSG_Close"] == 100 and ids["MSG_END"] == 255
    errors = {v.name: v.number for v in pb.DESCRIPTOR.enum_types_by_name["ERRORCODE"].values}
    assert errors == {m.name: m.value for m in codec.ErrorCode}
    assert errors == {
        "ERR_Ok": 0,
        "ERR_NoPlayer": 1,
        "ERR_NoRoom": 2,
        "ERR_RoomState": 3,
        "ERR_Token": 4,
    }

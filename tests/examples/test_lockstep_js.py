"""examples/lockstep_demo/web: the browser client's codec and simulation, run under node.

lockstep.js (framing and a small proto2 codec) is checked against golden bytes written from
../shared/LOCKSTEP.md §3-§5 and against Python's protobuf, whose message classes are built here
from the §5 schema (so this test does not lean on the server's own generated module). game.js's
simulation is checked for determinism: the same frames give the same hash, however they are
batched, and frames the server leaves out are empty ticks.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

WEB = Path(__file__).resolve().parents[2] / "examples" / "lockstep_demo" / "web"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# ---- the reference: LOCKSTEP.md §5, as protobuf descriptors ---------------------------------

_F = descriptor_pb2.FieldDescriptorProto
SCHEMA: dict[str, list[tuple[int, str, str, bool]]] = {
    # message: [(number, name, type, repeated)]; a type starting with "." is a message
    "C2S_ConnectMsg": [
        (1, "playerID", "uint64", False),
        (2, "battleID", "uint64", False),
        (10, "token", "string", False),
        (11, "resumeFrame", "uint32", False),
    ],
    "S2C_ConnectMsg": [(1, "errorCode", "int32", False)],  # an enum: the same varint on the wire
    "S2C_JoinRoomMsg": [
        (1, "roomseatid", "int32", False),
        (2, "others", "uint64", True),
        (3, "pros", "int32", True),
        (4, "randomSeed", "int32", False),
    ],
    "S2C_StartMsg": [(1, "timeStamp", "int64", False)],
    "C2S_ProgressMsg": [(1, "pro", "int32", False)],
    "S2C_ProgressMsg": [(1, "id", "uint64", False), (2, "pro", "int32", False)],
    "C2S_InputMsg": [
        (1, "sid", "int32", False),
        (2, "x", "int32", False),
        (3, "y", "int32", False),
        (4, "frameID", "uint32", False),
    ],
    "InputData": [
        (1, "id", "uint64", False),
        (2, "sid", "int32", False),
        (3, "x", "int32", False),
        (4, "y", "int32", False),
        (5, "roomseatid", "int32", False),
    ],
    "FrameData": [(1, "frameID", "uint32", False), (2, "input", ".demo.InputData", True)],
    "S2C_FrameMsg": [(1, "frames", ".demo.FrameData", True)],
    "C2S_ResultMsg": [(1, "winnerID", "uint64", False)],
}
_TYPES = {
    "uint64": _F.TYPE_UINT64,
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "string": _F.TYPE_STRING,
}


def _build_classes() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="lockstep_demo_reference.proto", package="demo", syntax="proto2"
    )
    for name, fields in SCHEMA.items():
        msg = fdp.message_type.add(name=name)
        for number, fname, ftype, repeated in fields:
            field = msg.field.add(name=fname, number=number)
            field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if ftype.startswith("."):
                field.type = _F.TYPE_MESSAGE
                field.type_name = ftype
            else:
                field.type = _TYPES[ftype]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"demo.{name}"))
        for name in SCHEMA
    }


PB = _build_classes()


def pb_bytes(name: str, value: dict[str, Any]) -> bytes:
    msg = PB[name]()
    _fill(msg, value)
    return msg.SerializeToString()


def _fill(msg: Any, value: dict[str, Any]) -> None:
    for key, v in value.items():
        if isinstance(v, list):
            field = getattr(msg, key)
            for item in v:
                if isinstance(item, dict):
                    _fill(field.add(), item)
                else:
                    field.append(item)
        else:
            setattr(msg, key, v)


# ---- node ---------------------------------------------------------------------------------

RUNNER = r"""
const path = require("path");
const L = require(path.join(process.argv[2], "lockstep.js"));
const G = require(path.join(process.argv[2], "game.js"));
const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (h) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ""), "hex"));
// JSON in: {"$big": "digits"} -> BigInt. JSON out: BigInt -> {"$big": "digits"}.
const revive = (k, v) => (v && typeof v === "object" && "$big" in v ? BigInt(v.$big) : v);
const out = (v) => JSON.parse(JSON.stringify(v, (k, x) => (typeof x === "bigint" ? { $big: x.toString() } : x)));

class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.last = this;
    setTimeout(() => { this.readyState = 1; this.onopen && this.onopen({}); }, 0);
  }
  send(data) { this.sent.push(hex(data)); }
  close() { this.readyState = 3; this.onclose && this.onclose({ code: 1000 }); }
}

async function run(c) {
  switch (c.op) {
    case "encode": return hex(L.encodeMessage(c.msg, c.value));
    case "decode": return out(L.decodeMessage(c.msg, unhex(c.hex)));
    case "packet": return hex(L.encodePacket(c.id, c.value === null ? undefined : c.value, c.dir));
    case "reader": {
      const r = new L.PacketReader();
      const got = [];
      try {
        for (const chunk of c.chunks) for (const p of r.feed(unhex(chunk))) got.push([p.id, hex(p.body)]);
      } catch (err) {
        for (const p of err.packets || []) got.push([p.id, hex(p.body)]);
        return { packets: got, error: err.message };
      }
      return { packets: got, pending: r.pending };
    }
    case "sim": {
      const sim = new G.Simulation(c.seats, c.seed);
      const errors = [];
      let filled = 0;
      for (const batch of c.batches) for (const f of batch) {
        const res = sim.applyFrame(f);
        if (res.ok) filled += res.filled; else errors.push(res.error);
      }
      return { hash: sim.hash(), tick: sim.tick, filled, errors, values: sim.values() };
    }
    case "bot": return G.botMoves(c.player, c.n);
    case "conn": {
      const events = [];
      const conn = new L.LockstepConnection("ws://test/ws", { WebSocket: FakeWebSocket });
      for (const ev of ["connect", "join", "ready", "start", "frames", "progress", "result", "close", "heartbeat", "error"]) {
        conn.on(ev, (...args) => events.push([ev, ...args.map((a) => (a instanceof Error ? a.message : a))]));
      }
      await conn.open();
      const ws = FakeWebSocket.last;
      conn.connect(c.player, c.room, c.token);
      conn.joinRoom(); conn.ready(); conn.input(1, -5, 7); conn.result(2); conn.heartbeat();
      for (const m of c.incoming) conn.receive(unhex(m).buffer);
      return out({ url: ws.url, binaryType: ws.binaryType, sent: ws.sent, events });
    }
  }
  throw new Error("unknown op " + c.op);
}

(async () => {
  const cases = JSON.parse(require("fs").readFileSync(0, "utf8"), revive);
  const results = [];
  for (const c of cases) {
    try { results.push({ ok: await run(c) }); } catch (err) { results.push({ error: err.message }); }
  }
  process.stdout.write(JSON.stringify(results));
})();
"""


def node(cases: list[dict[str, Any]], tmp_path: Path) -> list[Any]:
    script = tmp_path / "runner.js"
    script.write_text(RUNNER)
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(script), str(WEB)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for case, result in zip(cases, results, strict=True):
        assert "error" not in result, (case, result)
    return [r["ok"] for r in results]


def big(n: int) -> dict[str, str]:
    return {"$big": str(n)}


def h(text: str) -> str:
    return text.replace(" ", "")


# ---- golden bytes (LOCKSTEP.md §3, §5) --------------------------------------------------------


def test_golden_packets_and_bodies(tmp_path: Path) -> None:
    join_reply = "08 01 10 02 18 00 20 00"
    empty_frame = "0a 02 08 02"
    negative_x = "08 00 10 ff ff ff ff ff ff ff ff ff 01 18 00"  # C2S_InputMsg{sid 0, x -1, y 0}
    results = node(
        [
            {"op": "packet", "id": 10, "value": None},  # JoinRoom
            {"op": "packet", "id": 2, "value": None},  # Heartbeat
            {"op": "packet", "id": 30, "value": None},  # Ready
            {"op": "decode", "msg": "S2C_JoinRoomMsg", "hex": h(join_reply)},
            {
                "op": "encode",
                "msg": "S2C_JoinRoomMsg",
                "value": {"roomseatid": 1, "others": [2], "pros": [0], "randomSeed": 0},
            },
            {"op": "decode", "msg": "S2C_FrameMsg", "hex": h(empty_frame)},
            {"op": "encode", "msg": "S2C_FrameMsg", "value": {"frames": [{"frameID": 2}]}},
            {"op": "encode", "msg": "C2S_InputMsg", "value": {"sid": 0, "x": -1, "y": 0}},
            {"op": "decode", "msg": "C2S_InputMsg", "hex": h(negative_x)},
            {"op": "decode", "msg": "S2C_ConnectMsg", "hex": "0800"},
            {"op": "packet", "id": 60, "value": {"sid": 0, "x": -1, "y": 0}, "dir": "c2s"},
            {"op": "packet", "id": 70, "value": {"winnerID": 2}, "dir": "c2s"},
            {"op": "packet", "id": 1, "value": {"playerID": 1, "battleID": 1}, "dir": "c2s"},
        ],
        tmp_path,
    )
    assert results[0] == "00000a"
    assert results[1] == "000002"
    assert results[2] == "00001e"
    assert results[3] == {"roomseatid": 1, "others": [2], "pros": [0], "randomSeed": 0}
    assert results[4] == h(join_reply)
    assert results[5] == {"frames": [{"frameID": 2, "input": []}]}
    assert results[6] == h(empty_frame)
    assert results[7] == h(negative_x)
    assert results[8] == {"sid": 0, "x": -1, "y": 0}
    assert results[9] == {"errorCode": 0}
    assert results[10] == "000f3c" + h(negative_x)
    assert results[11] == "000246" + "0802"
    assert results[12] == "000401" + "08011001"


# ---- against Python's protobuf ----------------------------------------------------------------

INT64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
REFERENCE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("C2S_ConnectMsg", {"playerID": 1, "battleID": 7}),
    ("C2S_ConnectMsg", {"playerID": 1001, "battleID": 0, "token": "tök€n 🙂"}),
    (
        "C2S_ConnectMsg",
        {"playerID": U64_MAX, "battleID": 2**53 + 1, "token": "", "resumeFrame": 300},
    ),
    ("S2C_ConnectMsg", {"errorCode": 4}),
    (
        "S2C_JoinRoomMsg",
        {
            "roomseatid": 3,
            "others": [1, 2, 2**40, 9],
            "pros": [0, 100, -1, 50],
            "randomSeed": -123456,
        },
    ),
    ("S2C_StartMsg", {"timeStamp": 1765000000}),
    ("S2C_StartMsg", {"timeStamp": -1}),
    ("S2C_StartMsg", {"timeStamp": INT64_MAX}),
    ("C2S_ProgressMsg", {"pro": 100}),
    ("S2C_ProgressMsg", {"id": 2, "pro": 0}),
    ("C2S_InputMsg", {"sid": -2147483648, "x": 2147483647, "y": -300, "frameID": 4294967295}),
    ("C2S_InputMsg", {"sid": 4, "x": 127, "y": 128, "frameID": 16384}),
    ("InputData", {"id": 2, "sid": 0, "x": 0, "y": 0, "roomseatid": 2}),
    (
        "S2C_FrameMsg",
        {
            "frames": [
                {"frameID": 0},
                {
                    "frameID": 7,
                    "input": [
                        {"id": 1, "sid": 1, "x": -1, "y": 0, "roomseatid": 1},
                        {"id": 2, "sid": 4, "x": 15, "y": -16, "roomseatid": 2},
                    ],
                },
                {
                    "frameID": 4294967295,
                    "input": [{"id": U64_MAX, "sid": 0, "x": 0, "y": 0, "roomseatid": 8}],
                },
            ]
        },
    ),
    ("C2S_ResultMsg", {"winnerID": 0}),
    ("C2S_ResultMsg", {"winnerID": 2**63}),
]


def _to_js(value: Any) -> Any:
    """Python ints above 2^53 travel to node as {"$big": ...}."""
    if isinstance(value, dict):
        return {k: _to_js(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_js(v) for v in value]
    if isinstance(value, int) and abs(value) > 2**53 - 1:
        return big(value)
    return value


def _expected_decode(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """What lockstep.js gives back: repeated fields always present, nested the same way."""
    out: dict[str, Any] = {}
    for _number, fname, ftype, repeated in SCHEMA[name]:
        if repeated:
            items = value.get(fname, [])
            if ftype.startswith("."):
                sub = ftype.rsplit(".", 1)[1]
                out[fname] = [_expected_decode(sub, item) for item in items]
            else:
                out[fname] = [_to_js(i) for i in items]
        elif fname in value:
            out[fname] = _to_js(value[fname])
    return out


def test_encoding_matches_python_protobuf(tmp_path: Path) -> None:
    cases = [{"op": "encode", "msg": name, "value": _to_js(v)} for name, v in REFERENCE_CASES]
    for got, (name, value) in zip(node(cases, tmp_path), REFERENCE_CASES, strict=True):
        assert got == pb_bytes(name, value).hex(), (name, value)


def test_decoding_python_protobuf_bytes(tmp_path: Path) -> None:
    cases = [
        {"op": "decode", "msg": name, "hex": pb_bytes(name, v).hex()} for name, v in REFERENCE_CASES
    ]
    for got, (name, value) in zip(node(cases, tmp_path), REFERENCE_CASES, strict=True):
        assert got == _expected_decode(name, value), (name, value)


def _unknown_fields() -> bytes:
    """One unknown field of every wire type, numbers the schema does not use."""
    return bytes.fromhex(
        "b806 ffffffffffffffffff01"  # 103 varint (10 bytes)
        "c106 0102030405060708"  # 104 fixed64
        "ca06 03 616263"  # 105 length-delimited
        "d506 01020304"  # 106 fixed32
        "db06 e006 07 dc06".replace(" ", "")  # 107 group holding field 108 = 7, then its end tag
    )


def test_unknown_fields_are_skipped_at_every_level(tmp_path: Path) -> None:
    inner = PB["InputData"](id=5, sid=2, x=-3, y=4, roomseatid=1).SerializeToString()
    with_unknown_in_input = inner + bytes.fromhex("c80601")  # unknown 105, a varint
    frame = (
        bytes.fromhex("0807")
        + _unknown_fields()
        + b"\x12"
        + bytes([len(with_unknown_in_input)])
        + with_unknown_in_input
        + bytes.fromhex("e80601")  # unknown 109 after the input
    )
    body = _unknown_fields() + b"\x0a" + bytes([len(frame)]) + frame + _unknown_fields()
    # Python's protobuf agrees the bytes are a valid S2C_FrameMsg.
    ref = PB["S2C_FrameMsg"]()
    ref.ParseFromString(body)
    assert ref.frames[0].frameID == 7 and ref.frames[0].input[0].x == -3
    connect = PB["S2C_ConnectMsg"](errorCode=2).SerializeToString() + _unknown_fields()
    got = node(
        [
            {"op": "decode", "msg": "S2C_FrameMsg", "hex": body.hex()},
            {"op": "decode", "msg": "InputData", "hex": with_unknown_in_input.hex()},
            {"op": "decode", "msg": "S2C_ConnectMsg", "hex": connect.hex()},
            # a known field with an unexpected wire type is skipped too
            {"op": "decode", "msg": "S2C_StartMsg", "hex": "0d01020304" + "0805"},
        ],
        tmp_path,
    )
    one_input = {"id": 5, "sid": 2, "x": -3, "y": 4, "roomseatid": 1}
    assert got[0] == {"frames": [{"frameID": 7, "input": [one_input]}]}
    assert got[1] == one_input
    assert got[2] == {"errorCode": 2}
    assert got[3] == {"timeStamp": 5}


def test_packed_repeated_scalars_are_accepted(tmp_path: Path) -> None:
    # others = [2, 3] packed (wire type 2), then one more unpacked; pros packed [-1]
    body = "0802" + "12020203" + "1009" + "1a0affffffffffffffffff01" + "2000"
    got = node([{"op": "decode", "msg": "S2C_JoinRoomMsg", "hex": body}], tmp_path)
    assert got[0] == {"roomseatid": 2, "others": [2, 3, 9], "pros": [-1], "randomSeed": 0}


def test_packet_reader_reassembles_and_enforces_the_body_limit(tmp_path: Path) -> None:
    frame = "000432" + "0a020802"  # MSG_Frame, body 0a 02 08 02
    close = "000064"
    big_body = "0401" + "32"  # 1025 bytes announced
    got = node(
        [
            {"op": "reader", "chunks": ["0004", "32", "0a0208", "02" + close + "00", "0002"]},
            {"op": "reader", "chunks": [frame + close + frame]},
            {"op": "reader", "chunks": [close + big_body]},
        ],
        tmp_path,
    )
    assert got[0] == {"packets": [[50, "0a020802"], [100, ""], [2, ""]], "pending": 0}
    assert got[1]["packets"] == [[50, "0a020802"], [100, ""], [50, "0a020802"]]
    assert got[2]["packets"] == [[100, ""]]
    assert "1025" in got[2]["error"]


def test_connection_sends_and_dispatches(tmp_path: Path) -> None:
    start = PB["S2C_StartMsg"](timeStamp=1765000000).SerializeToString()
    frames = PB["S2C_FrameMsg"]()
    frames.frames.add(frameID=2)
    f = frames.frames.add(frameID=3)
    f.input.add(id=2, sid=1, x=-1, y=0, roomseatid=2)
    fbody = frames.SerializeToString()
    incoming = [
        "000201" + "0800",
        "00080a" + "0801100218002000",
        "00001e",
        f"{len(start):04x}28" + start.hex(),
        f"{len(fbody):04x}32" + fbody.hex() + "000002" + "000046",  # two more in one message
        "000064",
    ]
    got = node(
        [{"op": "conn", "player": 1, "room": big(2**60), "token": "t", "incoming": incoming}],
        tmp_path,
    )[0]
    assert got["url"] == "ws://test/ws"
    assert got["binaryType"] == "arraybuffer"
    connect = pb_bytes("C2S_ConnectMsg", {"playerID": 1, "battleID": 2**60, "token": "t"})
    inp = pb_bytes("C2S_InputMsg", {"sid": 1, "x": -5, "y": 7})
    result = pb_bytes("C2S_ResultMsg", {"winnerID": 2})
    assert got["sent"] == [
        f"{len(connect):04x}01" + connect.hex(),
        "00000a",
        "00001e",
        f"{len(inp):04x}3c" + inp.hex(),
        f"{len(result):04x}46" + result.hex(),
        "000002",
    ]
    assert got["events"] == [
        ["connect", 0, {"errorCode": 0}],
        ["join", {"roomseatid": 1, "others": [2], "pros": [0], "randomSeed": 0}],
        ["ready"],
        ["start", {"timeStamp": 1765000000}],
        [
            "frames",
            [
                {"frameID": 2, "input": []},
                {"frameID": 3, "input": [{"id": 2, "sid": 1, "x": -1, "y": 0, "roomseatid": 2}]},
            ],
        ],
        ["heartbeat"],
        ["result"],
        ["close"],
    ]


# ---- game.js: the simulation ----------------------------------------------------------------


def _frames(seed: int, ticks: int, seats: int) -> list[dict[str, Any]]:
    """Every frame id 0..ticks-1, about a third with inputs, targets partly off the grid."""
    rnd = random.Random(seed)
    frames = []
    for fid in range(ticks):
        inputs = []
        if rnd.random() < 0.35:
            for seat in rnd.sample(range(1, seats + 1), rnd.randint(1, seats)):
                inputs.append(
                    {
                        "id": 100 + seat,
                        "sid": rnd.randint(0, 5),
                        "x": rnd.randint(-3, 18),
                        "y": rnd.randint(-3, 18),
                        "roomseatid": seat,
                    }
                )
        frames.append({"frameID": fid, "input": inputs})
    return frames


def _server_batches(frames: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """As the server sends them: runs of `size` ticks, empty frames left out but the last."""
    batches = []
    for start in range(0, len(frames), size):
        run = frames[start : start + size]
        batches.append([f for f in run[:-1] if f["input"]] + [run[-1]])
    return batches


def test_simulation_is_deterministic_however_frames_are_batched(tmp_path: Path) -> None:
    frames = _frames(18, 600, 2)
    explicit = {"op": "sim", "seats": 2, "seed": 0, "batches": [frames]}
    cases = [
        explicit,
        explicit,
        {"op": "sim", "seats": 2, "seed": 0, "batches": _server_batches(frames, 3)},
        {"op": "sim", "seats": 2, "seed": 0, "batches": _server_batches(frames, 60)},
    ]
    first = node(cases, tmp_path)
    second = node(cases[:1], tmp_path)  # another node process
    hashes = {r["hash"] for r in first} | {second[0]["hash"]}
    assert len(hashes) == 1, first
    assert all(r["tick"] == 600 and r["errors"] == [] for r in first)
    assert first[0]["filled"] == 0
    assert first[2]["filled"] > 0  # the left-out empty frames were applied as ticks
    assert first[0]["values"] == first[2]["values"]
    starts = [2, 2, 13, 13]  # seats 1 and 2 start in opposite corners
    squares = first[0]["values"][5:]
    assert [squares[1], squares[2], squares[8], squares[9]] != starts, "nobody moved"


def test_simulation_state_depends_on_every_input_and_tick(tmp_path: Path) -> None:
    frames = _frames(7, 300, 3)
    dropped = json.loads(json.dumps(frames))
    next(f for f in dropped if f["input"])["input"].pop()
    got = node(
        [
            {"op": "sim", "seats": 3, "seed": 0, "batches": [frames]},
            {"op": "sim", "seats": 3, "seed": 0, "batches": [dropped]},
            {"op": "sim", "seats": 3, "seed": 1, "batches": [frames]},
            {"op": "sim", "seats": 3, "seed": 0, "batches": [frames[:299]]},
        ],
        tmp_path,
    )
    assert len({r["hash"] for r in got}) == 4


def test_walking_onto_the_coin_scores_and_moves_it(tmp_path: Path) -> None:
    # values(): tick, seats, rng, coinX, coinY, then seat, x, y, tx, ty, score, moves per square
    fresh = node([{"op": "sim", "seats": 2, "seed": 42, "batches": [[]]}], tmp_path)[0]["values"]
    coin = fresh[3:5]
    walk = {"id": 7, "sid": 4, "x": coin[0], "y": coin[1], "roomseatid": 1}
    blocked = {"id": 8, "sid": 4, "x": 2, "y": 2, "roomseatid": 2}  # seat 1's start: walks to it
    frames = [{"frameID": 0, "input": [walk, blocked]}] + [{"frameID": 99, "input": []}]
    got = node([{"op": "sim", "seats": 2, "seed": 42, "batches": [frames]}], tmp_path)[0]
    values = got["values"]
    assert values[0] == 100 and got["filled"] == 98
    seat1, seat2 = values[5:12], values[12:19]
    assert seat1 == [1, coin[0], coin[1], coin[0], coin[1], 1, 1]
    assert values[3:5] != coin  # the coin moved on
    assert seat2[5] == 0 and seat2[6] == 1


def test_simulation_reports_frames_out_of_order(tmp_path: Path) -> None:
    frames = _frames(3, 20, 2)
    got = node(
        [
            {
                "op": "sim",
                "seats": 2,
                "seed": 0,
                "batches": [frames[:10], [frames[5]], frames[10:]],
            },
            {"op": "sim", "seats": 2, "seed": 0, "batches": [frames[:10], frames[9:]]},
        ],
        tmp_path,
    )
    assert got[0]["errors"] == ["frame 5 received after frame 9"]
    assert got[1]["errors"] == ["frame 9 received after frame 9"]
    assert got[0]["tick"] == got[1]["tick"] == 20


def test_bot_moves_are_deterministic_per_player(tmp_path: Path) -> None:
    got = node(
        [
            {"op": "bot", "player": 1, "n": 20},
            {"op": "bot", "player": 1, "n": 20},
            {"op": "bot", "player": 2, "n": 20},
            {"op": "bot", "player": big(2**63 + 1), "n": 5},
        ],
        tmp_path,
    )
    assert got[0] == got[1] != got[2]
    assert len(got[3]) == 5
    for moves in got:
        for m in moves:
            assert 0 <= m["sid"] <= 4 and 0 <= m["x"] < 16 and 0 <= m["y"] < 16


def test_the_servers_codec_agrees(tmp_path: Path) -> None:
    """The engine's own lockstep_pb2/codec build the same packets as lockstep.js."""
    codec = pytest.importorskip("goworld.lockstep.codec")
    pb2 = pytest.importorskip("goworld.lockstep.lockstep_pb2")
    c2s = [
        (1, "C2S_ConnectMsg", {"playerID": 3, "battleID": 2**60, "token": "tok", "resumeFrame": 9}),
        (20, "C2S_ProgressMsg", {"pro": 100}),
        (60, "C2S_InputMsg", {"sid": 4, "x": -1, "y": 15, "frameID": 77}),
        (70, "C2S_ResultMsg", {"winnerID": 2}),
    ]
    got = node(
        [{"op": "packet", "id": i, "value": _to_js(v), "dir": "c2s"} for i, _n, v in c2s]
        + [{"op": "packet", "id": i, "value": None} for i in (2, 10, 30)],
        tmp_path,
    )
    want = [codec.encode_message(i, getattr(pb2, name)(**v)).hex() for i, name, v in c2s]
    want += [codec.encode(i).hex() for i in (2, 10, 30)]
    assert got == want
    for name, value in REFERENCE_CASES:
        theirs = getattr(pb2, name)()
        _fill(theirs, value)
        assert theirs.SerializeToString() == pb_bytes(name, value), name

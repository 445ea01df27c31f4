/* lockstep.js: a browser (and node) client of the lockstep room protocol
 * (../shared/LOCKSTEP.md §3-§10, docs/LOCKSTEP-DESIGN.md) over WebSocket.
 *
 * Plain JavaScript, no build step, no dependencies. In a page it defines `window.Lockstep`;
 * under node `require("./lockstep.js")` returns the same object.
 *
 * Packets: [u16 big-endian body length][u8 message id][proto2 body]. A WebSocket message from
 * the server holds one packet; we accept any number (whole packets) per message.
 *
 * Integers: uint64 ids decode to a Number when they fit in 2^53 - 1, else to a BigInt; the
 * encoder takes either. int32 fields decode as signed 32-bit (negative values travel as 10-byte
 * varints), uint32 as unsigned 32-bit, int64 as Number when safe.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else {
    root.Lockstep = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const MAX_BODY = 1024; // the protocol's read limit for one packet body

  const MsgId = Object.freeze({
    Connect: 1,
    Heartbeat: 2,
    JoinRoom: 10,
    Progress: 20,
    Ready: 30,
    Start: 40,
    Frame: 50,
    Input: 60,
    Result: 70,
    Close: 100,
    End: 255,
  });

  const ErrorCode = Object.freeze({ Ok: 0, NoPlayer: 1, NoRoom: 2, RoomState: 3, Token: 4 });

  // ---- message schemas: field number -> [name, type, repeated, sub-schema] ----------------
  const InputData = {
    1: ["id", "uint64"],
    2: ["sid", "int32"],
    3: ["x", "int32"],
    4: ["y", "int32"],
    5: ["roomseatid", "int32"],
  };
  const FrameData = {
    1: ["frameID", "uint32"],
    2: ["input", "message", true, InputData],
  };
  const Schemas = {
    C2S_ConnectMsg: {
      1: ["playerID", "uint64"],
      2: ["battleID", "uint64"],
      10: ["token", "string"],
      11: ["resumeFrame", "uint32"],
    },
    S2C_ConnectMsg: { 1: ["errorCode", "enum"] },
    S2C_JoinRoomMsg: {
      1: ["roomseatid", "int32"],
      2: ["others", "uint64", true],
      3: ["pros", "int32", true],
      4: ["randomSeed", "int32"],
    },
    S2C_StartMsg: { 1: ["timeStamp", "int64"] },
    C2S_ProgressMsg: { 1: ["pro", "int32"] },
    S2C_ProgressMsg: { 1: ["id", "uint64"], 2: ["pro", "int32"] },
    C2S_InputMsg: { 1: ["sid", "int32"], 2: ["x", "int32"], 3: ["y", "int32"], 4: ["frameID", "uint32"] },
    InputData: InputData,
    FrameData: FrameData,
    S2C_FrameMsg: { 1: ["frames", "message", true, FrameData] },
    C2S_ResultMsg: { 1: ["winnerID", "uint64"] },
  };

  // Which body each id carries, per direction (ids not listed have an empty body).
  const C2S = { 1: "C2S_ConnectMsg", 20: "C2S_ProgressMsg", 60: "C2S_InputMsg", 70: "C2S_ResultMsg" };
  const S2C = {
    1: "S2C_ConnectMsg",
    10: "S2C_JoinRoomMsg",
    20: "S2C_ProgressMsg",
    40: "S2C_StartMsg",
    50: "S2C_FrameMsg",
  };

  const VARINT_TYPES = { int32: 1, uint32: 1, int64: 1, uint64: 1, enum: 1, bool: 1 };
  const U64 = 1n << 64n;

  // ---- varints -----------------------------------------------------------------------------
  function toUint64(value) {
    let v = typeof value === "bigint" ? value : BigInt(Math.trunc(Number(value)));
    if (v < 0n) v += U64; // two's complement: negative int32/int64 take 10 bytes
    if (v < 0n || v >= U64) throw new RangeError("varint out of range: " + value);
    return v;
  }

  function writeVarint(out, value) {
    if (typeof value === "number" && value >= 0 && value <= 0x7fffffff && Number.isInteger(value)) {
      while (value > 0x7f) {
        out.push((value & 0x7f) | 0x80);
        value >>>= 7;
      }
      out.push(value);
      return;
    }
    let v = toUint64(value);
    while (v > 0x7fn) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
  }

  function utf8Encode(s) {
    if (typeof TextEncoder !== "undefined") return Array.from(new TextEncoder().encode(s));
    return Array.from(Buffer.from(s, "utf8"));
  }

  function utf8Decode(bytes) {
    if (typeof TextDecoder !== "undefined") return new TextDecoder().decode(bytes);
    return Buffer.from(bytes).toString("utf8");
  }

  // ---- encoding ----------------------------------------------------------------------------
  function encodeField(out, no, type, value, sub) {
    if (type === "message") {
      const inner = [];
      encodeInto(inner, sub, value || {});
      writeVarint(out, (no << 3) | 2);
      writeVarint(out, inner.length);
      for (const b of inner) out.push(b);
    } else if (type === "string") {
      const bytes = utf8Encode(String(value));
      writeVarint(out, (no << 3) | 2);
      writeVarint(out, bytes.length);
      for (const b of bytes) out.push(b);
    } else if (VARINT_TYPES[type]) {
      writeVarint(out, no << 3);
      writeVarint(out, type === "bool" ? (value ? 1 : 0) : value);
    } else {
      throw new TypeError("unsupported field type " + type);
    }
  }

  function encodeInto(out, schema, msg) {
    const numbers = Object.keys(schema)
      .map(Number)
      .sort((a, b) => a - b);
    for (const no of numbers) {
      const [name, type, repeated, sub] = schema[no];
      const value = msg[name];
      if (value === undefined || value === null) continue;
      if (repeated) {
        for (const item of value) encodeField(out, no, type, item, sub); // unpacked, as proto2
      } else {
        encodeField(out, no, type, value, sub);
      }
    }
  }

  /** The proto2 encoding of `msg` (a plain object) as message type `name`: a Uint8Array.
   * Fields that are undefined or null are left out; everything else is written, 0 included. */
  function encodeMessage(name, msg) {
    const schema = Schemas[name];
    if (!schema) throw new TypeError("unknown message " + name);
    const out = [];
    encodeInto(out, schema, msg || {});
    return Uint8Array.from(out);
  }

  // ---- decoding ----------------------------------------------------------------------------
  class Reader {
    constructor(bytes, pos, end) {
      this.b = bytes;
      this.pos = pos;
      this.end = end;
    }
    varint() {
      // Fast path for up to 4 bytes (28 bits), BigInt beyond.
      let result = 0;
      let shift = 0;
      while (shift < 28) {
        if (this.pos >= this.end) throw new RangeError("truncated varint");
        const byte = this.b[this.pos++];
        result |= (byte & 0x7f) << shift;
        if (byte < 0x80) return BigInt(result >>> 0);
        shift += 7;
      }
      let big = BigInt(result >>> 0);
      let bshift = 28n;
      for (let i = 4; i < 10; i++) {
        if (this.pos >= this.end) throw new RangeError("truncated varint");
        const byte = this.b[this.pos++];
        big |= BigInt(byte & 0x7f) << bshift;
        if (byte < 0x80) return BigInt.asUintN(64, big);
        bshift += 7n;
      }
      throw new RangeError("varint longer than 10 bytes");
    }
    skip(n) {
      if (n < 0 || this.pos + n > this.end) throw new RangeError("truncated field");
      this.pos += n;
    }
    lengthDelimited() {
      const n = Number(this.varint());
      const start = this.pos;
      this.skip(n);
      return [start, this.pos];
    }
    skipField(wire, no) {
      switch (wire) {
        case 0:
          this.varint();
          return;
        case 1:
          this.skip(8);
          return;
        case 2:
          this.lengthDelimited();
          return;
        case 5:
          this.skip(4);
          return;
        case 3: // a (deprecated) group: skip to its matching end tag
          for (;;) {
            if (this.pos >= this.end) throw new RangeError("unterminated group");
            const tag = Number(this.varint());
            if ((tag & 7) === 4) {
              if (tag >>> 3 !== no) throw new RangeError("mismatched end group");
              return;
            }
            this.skipField(tag & 7, tag >>> 3);
          }
        default:
          throw new RangeError("bad wire type " + wire);
      }
    }
  }

  function smallOrBig(v) {
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  function convertVarint(type, v) {
    switch (type) {
      case "int32":
      case "enum":
        return Number(BigInt.asIntN(32, v));
      case "uint32":
        return Number(BigInt.asUintN(32, v));
      case "int64":
        return smallOrBig(BigInt.asIntN(64, v));
      case "uint64":
        return smallOrBig(v);
      case "bool":
        return v !== 0n;
    }
    throw new TypeError("not a varint type " + type);
  }

  function decodeRange(schema, bytes, pos, end) {
    const r = new Reader(bytes, pos, end);
    const msg = {};
    for (const no in schema) {
      if (schema[no][2]) msg[schema[no][0]] = []; // repeated fields are always present
    }
    while (r.pos < r.end) {
      const tag = Number(r.varint());
      const no = tag >>> 3;
      const wire = tag & 7;
      if (no === 0) throw new RangeError("field number 0");
      const field = schema[no];
      if (!field) {
        r.skipField(wire, no); // unknown field
        continue;
      }
      const [name, type, repeated, sub] = field;
      let value;
      if (VARINT_TYPES[type] && wire === 0) {
        value = convertVarint(type, r.varint());
      } else if (VARINT_TYPES[type] && wire === 2 && repeated) {
        const [s, e] = r.lengthDelimited(); // a packed run: accepted although we never send one
        const pr = new Reader(bytes, s, e);
        while (pr.pos < pr.end) msg[name].push(convertVarint(type, pr.varint()));
        continue;
      } else if (type === "string" && wire === 2) {
        const [s, e] = r.lengthDelimited();
        value = utf8Decode(bytes.subarray(s, e));
      } else if (type === "message" && wire === 2) {
        const [s, e] = r.lengthDelimited();
        value = decodeRange(sub, bytes, s, e);
      } else {
        r.skipField(wire, no); // known number, unexpected wire type: skip like an unknown field
        continue;
      }
      if (repeated) msg[name].push(value);
      else msg[name] = value;
    }
    return msg;
  }

  /** Decode `bytes` (Uint8Array) as message type `name` into a plain object. Absent scalar
   * fields are absent from the object; repeated fields are always arrays. */
  function decodeMessage(name, bytes) {
    const schema = Schemas[name];
    if (!schema) throw new TypeError("unknown message " + name);
    const b = toBytes(bytes);
    return decodeRange(schema, b, 0, b.length);
  }

  function toBytes(data) {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (Array.isArray(data)) return Uint8Array.from(data);
    throw new TypeError("expected bytes");
  }

  // ---- framing -----------------------------------------------------------------------------
  /** One packet: header + body. `msg` is a plain object (encoded with the C2S schema of `id`),
   * or a Uint8Array body, or absent for an empty body. */
  function encodePacket(id, msg, direction) {
    let body;
    if (msg === undefined || msg === null) {
      body = new Uint8Array(0);
    } else if (msg instanceof Uint8Array) {
      body = msg;
    } else {
      const name = (direction === "s2c" ? S2C : C2S)[id];
      if (!name) throw new TypeError("message id " + id + " has no body");
      body = encodeMessage(name, msg);
    }
    if (body.length > 0xffff) throw new RangeError("body too long");
    const out = new Uint8Array(3 + body.length);
    out[0] = body.length >> 8;
    out[1] = body.length & 0xff;
    out[2] = id;
    out.set(body, 3);
    return out;
  }

  /** Splits a byte stream into packets; feed() returns [{id, body}] for every whole packet. */
  class PacketReader {
    constructor(maxBody) {
      this.maxBody = maxBody === undefined ? MAX_BODY : maxBody;
      this.buf = new Uint8Array(0);
    }
    feed(data) {
      const chunk = toBytes(data);
      let buf = chunk;
      if (this.buf.length) {
        buf = new Uint8Array(this.buf.length + chunk.length);
        buf.set(this.buf, 0);
        buf.set(chunk, this.buf.length);
      }
      const packets = [];
      let pos = 0;
      while (buf.length - pos >= 3) {
        const len = (buf[pos] << 8) | buf[pos + 1];
        if (len > this.maxBody) {
          // Fatal for the stream; the whole packets before the bad one ride on the error.
          const err = new RangeError("packet body of " + len + " bytes (limit " + this.maxBody + ")");
          err.packets = packets;
          this.buf = new Uint8Array(0);
          throw err;
        }
        if (buf.length - pos < 3 + len) break;
        packets.push({ id: buf[pos + 2], body: buf.slice(pos + 3, pos + 3 + len) });
        pos += 3 + len;
      }
      this.buf = buf.slice(pos);
      return packets;
    }
    get pending() {
      return this.buf.length;
    }
  }

  /** The decoded body of a server packet: an object for ids with a body, {} for the others. */
  function decodeServerPacket(id, body) {
    const name = S2C[id];
    return name ? decodeMessage(name, body) : {};
  }

  // ---- the connection ----------------------------------------------------------------------
  /**
   * A lockstep session over one WebSocket.
   *
   *   const c = new LockstepConnection("ws://host:port/ws");
   *   c.on("connect", (errorCode) => ...);   // S2C_ConnectMsg
   *   c.on("join", (msg) => ...);            // S2C_JoinRoomMsg {roomseatid, others, pros, randomSeed}
   *   c.on("ready", () => ...);              // Ready acknowledged
   *   c.on("start", (msg) => ...);           // S2C_StartMsg {timeStamp}
   *   c.on("frames", (frames) => ...);       // [FrameData {frameID, input: [InputData]}]
   *   c.on("progress", (msg) => ...);        // S2C_ProgressMsg {id, pro}
   *   c.on("result", () => ...);             // Result acknowledged
   *   c.on("close", () => ...);              // MSG_Close: the room is over
   *   c.on("heartbeat", () => ...);          // a Heartbeat answer
   *   c.on("packet", (id, msg) => ...);      // every packet, after the specific event
   *   c.on("open"|"socketclose"|"error", ...)
   *   await c.open(); c.startHeartbeat(500); c.connect(playerID, roomID, token);
   *
   * `options.WebSocket` replaces the global WebSocket (tests).
   */
  class LockstepConnection {
    constructor(url, options) {
      this.url = url;
      this.options = options || {};
      this.handlers = {};
      this.reader = new PacketReader(this.options.maxBody);
      this.ws = null;
      this.heartbeatTimer = null;
      this.sent = 0;
      this.received = 0;
    }

    on(event, fn) {
      (this.handlers[event] = this.handlers[event] || []).push(fn);
      return this;
    }

    emit(event, ...args) {
      for (const fn of this.handlers[event] || []) fn(...args);
    }

    open() {
      const WS = this.options.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
      if (!WS) return Promise.reject(new Error("no WebSocket implementation"));
      return new Promise((resolve, reject) => {
        const ws = new WS(this.url);
        this.ws = ws;
        ws.binaryType = "arraybuffer";
        let opened = false;
        ws.onopen = () => {
          opened = true;
          this.emit("open");
          resolve(this);
        };
        ws.onerror = (ev) => {
          this.emit("error", new Error("websocket error"), ev);
          if (!opened) reject(new Error("cannot open " + this.url));
        };
        ws.onclose = (ev) => {
          this.stopHeartbeat();
          this.emit("socketclose", ev);
          if (!opened) reject(new Error("cannot open " + this.url));
        };
        ws.onmessage = (ev) => this.receive(ev.data);
      });
    }

    /** Handle bytes from the server (one WebSocket message). */
    receive(data) {
      if (typeof data === "string") {
        this.emit("error", new Error("unexpected text message"));
        return;
      }
      let packets;
      let failure = null;
      try {
        packets = this.reader.feed(data);
      } catch (err) {
        failure = err;
        packets = err.packets || [];
      }
      this.dispatch(packets);
      if (failure) {
        this.emit("error", failure);
        this.close();
      }
    }

    dispatch(packets) {
      for (const p of packets) {
        this.received++;
        let msg;
        try {
          msg = decodeServerPacket(p.id, p.body);
        } catch (err) {
          this.emit("error", new Error("cannot decode packet " + p.id + ": " + err.message));
          continue;
        }
        switch (p.id) {
          case MsgId.Connect:
            this.emit("connect", msg.errorCode || 0, msg);
            break;
          case MsgId.Heartbeat:
            this.emit("heartbeat");
            break;
          case MsgId.JoinRoom:
            this.emit("join", msg);
            break;
          case MsgId.Progress:
            this.emit("progress", msg);
            break;
          case MsgId.Ready:
            this.emit("ready");
            break;
          case MsgId.Start:
            this.emit("start", msg);
            break;
          case MsgId.Frame:
            this.emit("frames", msg.frames);
            break;
          case MsgId.Result:
            this.emit("result");
            break;
          case MsgId.Close:
            this.stopHeartbeat();
            this.emit("close");
            break;
          default:
            break;
        }
        this.emit("packet", p.id, msg);
      }
    }

    send(id, msg) {
      if (!this.ws || this.ws.readyState !== 1) return false;
      this.ws.send(encodePacket(id, msg, "c2s"));
      this.sent++;
      return true;
    }

    connect(playerID, battleID, token, resumeFrame) {
      const msg = { playerID: playerID, battleID: battleID };
      if (token !== undefined && token !== null && token !== "") msg.token = String(token);
      if (resumeFrame !== undefined && resumeFrame !== null) msg.resumeFrame = resumeFrame;
      return this.send(MsgId.Connect, msg);
    }
    joinRoom() {
      return this.send(MsgId.JoinRoom);
    }
    progress(pro) {
      return this.send(MsgId.Progress, { pro: pro });
    }
    ready() {
      return this.send(MsgId.Ready);
    }
    input(sid, x, y, frameID) {
      const msg = { sid: sid | 0, x: x | 0, y: y | 0 };
      if (frameID !== undefined && frameID !== null) msg.frameID = frameID >>> 0;
      return this.send(MsgId.Input, msg);
    }
    result(winnerID) {
      return this.send(MsgId.Result, { winnerID: winnerID });
    }
    heartbeat() {
      return this.send(MsgId.Heartbeat);
    }

    startHeartbeat(periodMs) {
      this.stopHeartbeat();
      this.heartbeatTimer = setInterval(() => this.heartbeat(), periodMs || 500);
    }
    stopHeartbeat() {
      if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = null;
    }

    close() {
      this.stopHeartbeat();
      if (this.ws) this.ws.close();
    }
  }

  return {
    MAX_BODY,
    MsgId,
    ErrorCode,
    Schemas,
    C2S,
    S2C,
    encodeMessage,
    decodeMessage,
    encodePacket,
    decodeServerPacket,
    PacketReader,
    LockstepConnection,
    writeVarint,
  };
});

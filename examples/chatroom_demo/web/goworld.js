// goworld.js: a GoWorld wire-protocol client for browsers (plain JavaScript, no build step).
//
// It speaks the protocol of our gates (and GoWorld's) over the gate's WebSocket endpoint:
// packets are `u32 LE length + u16 LE msgtype + body`, spread over binary WebSocket frames
// whose boundaries mean nothing; RPC arguments are msgpack values. See PROTOCOL.md.
//
//   const client = new GoWorldClient("ws://" + location.host + "/ws");
//   client.onEntityCreated = (entity) => {...};      // entity.id, typeName, isPlayer, attrs
//   client.onCall = (entity, method, args) => {...};  // server -> client calls (1009, 1501)
//   client.onAttrChange = (entity, rootKey) => {...};
//   client.call(entityId, "Login", "alice", "secret");
//
// It sends a heartbeat (2001) every HEARTBEAT_MS: our gates close clients that send nothing for
// heartbeat_check_interval (120 s by default). The first one, at once, carries a u32 feature word
// (bit 0: the client understands notices; GoWorld's gates ignore the body): our gate then sends a
// NOTICE (1901: VarStr code + VarStr text) just before it closes the connection for a reason
// (the game hosting the player stopped, a kick), or ahead of time when the server is going down
// (code "shutdown", sent by `goworld stop`). `client.closeReason` keeps the text, and
// `onNotice(code, text)` / `onClose(reason)` get it.
"use strict";

const HEARTBEAT_MS = 10000;

const MT = {
  HEARTBEAT: 2001, CALL_FROM_CLIENT: 11, CREATE: 1002, DESTROY: 1003, MAP_CHANGE: 1004, MAP_DEL: 1005,
  LIST_CHANGE: 1006, LIST_POP: 1007, LIST_APPEND: 1008, CALL_ON_CLIENT: 1009,
  MAP_CLEAR: 1012, FILTERED_CALL: 1501, SYNC_ON_CLIENTS: 1502, NOTICE: 1901,
};
const FEATURE_NOTICES = 1;

// ---- msgpack (the subset GoWorld uses) ------------------------------------------------------

const utf8 = { enc: new TextEncoder(), dec: new TextDecoder() };

function packInto(out, v) {
  if (v === null || v === undefined) { out.push(0xc0); return; }
  if (v === true) { out.push(0xc3); return; }
  if (v === false) { out.push(0xc2); return; }
  if (typeof v === "number") {
    const dv = new DataView(new ArrayBuffer(9));
    if (Number.isSafeInteger(v)) { dv.setUint8(0, 0xd3); dv.setBigInt64(1, BigInt(v)); }
    else { dv.setUint8(0, 0xcb); dv.setFloat64(1, v); }
    for (let i = 0; i < 9; i++) out.push(dv.getUint8(i));
    return;
  }
  if (typeof v === "string") {
    const b = utf8.enc.encode(v);
    if (b.length < 32) out.push(0xa0 | b.length);
    else if (b.length < 0x100) out.push(0xd9, b.length);
    else if (b.length < 0x10000) out.push(0xda, b.length >> 8, b.length & 0xff);
    else out.push(0xdb, (b.length >>> 24) & 0xff, (b.length >> 16) & 0xff, (b.length >> 8) & 0xff, b.length & 0xff);
    for (const x of b) out.push(x);
    return;
  }
  if (v instanceof Uint8Array) {
    out.push(0xc6, (v.length >>> 24) & 0xff, (v.length >> 16) & 0xff, (v.length >> 8) & 0xff, v.length & 0xff);
    for (const x of v) out.push(x);
    return;
  }
  if (Array.isArray(v)) {
    if (v.length < 16) out.push(0x90 | v.length); else out.push(0xdc, v.length >> 8, v.length & 0xff);
    for (const x of v) packInto(out, x);
    return;
  }
  const keys = Object.keys(v);
  if (keys.length < 16) out.push(0x80 | keys.length); else out.push(0xde, keys.length >> 8, keys.length & 0xff);
  for (const k of keys) { packInto(out, k); packInto(out, v[k]); }
}

function unpack(view, pos) {  // returns [value, newPos]
  const b = view.getUint8(pos++);
  if (b <= 0x7f) return [b, pos];
  if (b >= 0xe0) return [b - 0x100, pos];
  if ((b & 0xf0) === 0x80) return unpackMap(view, pos, b & 0x0f);
  if ((b & 0xf0) === 0x90) return unpackArray(view, pos, b & 0x0f);
  if ((b & 0xe0) === 0xa0) return unpackStr(view, pos, b & 0x1f);
  switch (b) {
    case 0xc0: return [null, pos];
    case 0xc2: return [false, pos];
    case 0xc3: return [true, pos];
    case 0xc4: return unpackBin(view, pos + 1, view.getUint8(pos));
    case 0xc5: return unpackBin(view, pos + 2, view.getUint16(pos));
    case 0xc6: return unpackBin(view, pos + 4, view.getUint32(pos));
    case 0xca: return [view.getFloat32(pos), pos + 4];
    case 0xcb: return [view.getFloat64(pos), pos + 8];
    case 0xcc: return [view.getUint8(pos), pos + 1];
    case 0xcd: return [view.getUint16(pos), pos + 2];
    case 0xce: return [view.getUint32(pos), pos + 4];
    case 0xcf: return [Number(view.getBigUint64(pos)), pos + 8];
    case 0xd0: return [view.getInt8(pos), pos + 1];
    case 0xd1: return [view.getInt16(pos), pos + 2];
    case 0xd2: return [view.getInt32(pos), pos + 4];
    case 0xd3: return [Number(view.getBigInt64(pos)), pos + 8];
    case 0xd9: return unpackStr(view, pos + 1, view.getUint8(pos));
    case 0xda: return unpackStr(view, pos + 2, view.getUint16(pos));
    case 0xdb: return unpackStr(view, pos + 4, view.getUint32(pos));
    case 0xdc: return unpackArray(view, pos + 2, view.getUint16(pos));
    case 0xdd: return unpackArray(view, pos + 4, view.getUint32(pos));
    case 0xde: return unpackMap(view, pos + 2, view.getUint16(pos));
    case 0xdf: return unpackMap(view, pos + 4, view.getUint32(pos));
  }
  throw new Error("unsupported msgpack byte 0x" + b.toString(16));
}
function unpackStr(view, pos, n) {
  return [utf8.dec.decode(new Uint8Array(view.buffer, view.byteOffset + pos, n)), pos + n];
}
function unpackBin(view, pos, n) {
  return [new Uint8Array(view.buffer.slice(view.byteOffset + pos, view.byteOffset + pos + n)), pos + n];
}
function unpackArray(view, pos, n) {
  const a = [];
  for (let i = 0; i < n; i++) { let v; [v, pos] = unpack(view, pos); a.push(v); }
  return [a, pos];
}
function unpackMap(view, pos, n) {
  const m = {};
  for (let i = 0; i < n; i++) { let k, v; [k, pos] = unpack(view, pos); [v, pos] = unpack(view, pos); m[k] = v; }
  return [m, pos];
}

// ---- packet reading -------------------------------------------------------------------------

class Reader {
  constructor(view, pos) { this.view = view; this.pos = pos; }
  u8() { return this.view.getUint8(this.pos++); }
  u16() { const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  u32() { const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  f32() { const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  id() { const s = String.fromCharCode(...new Uint8Array(this.view.buffer, this.view.byteOffset + this.pos, 16)); this.pos += 16; return s; }
  str() { const n = this.u32(); const [s] = unpackStr(this.view, this.pos, n); this.pos += n; return s; }
  data() { const n = this.u32(); const [v] = unpack(new DataView(this.view.buffer, this.view.byteOffset + this.pos, n), 0); this.pos += n; return v; }
  args() { const n = this.u16(); const a = []; for (let i = 0; i < n; i++) a.push(this.data()); return a; }
}

// ---- the client -----------------------------------------------------------------------------

class GoWorldClient {
  constructor(url) {
    this.entities = new Map();
    this.player = null;
    this.space = null;
    this.onEntityCreated = () => {};
    this.onEntityDestroyed = () => {};
    this.onAttrChange = () => {};
    this.onCall = () => {};
    this.onOpen = () => {};
    this.onClose = (reason) => {};
    this.onNotice = (code, text) => {};
    this.closeCode = null;
    this.closeReason = null;
    this.buffer = new Uint8Array(0);
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.heartbeat = null;
    this.ws.onopen = () => {
      this.sendHeartbeat(FEATURE_NOTICES);
      this.heartbeat = setInterval(() => this.sendHeartbeat(), HEARTBEAT_MS);
      this.onOpen();
    };
    this.ws.onclose = () => {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
      this.onClose(this.closeReason);
    };
    this.ws.onmessage = (ev) => this.receive(new Uint8Array(ev.data));
  }

  // Call `method` (its wire name) on a server entity.
  call(entityId, method, ...args) {
    const out = [MT.CALL_FROM_CLIENT & 0xff, MT.CALL_FROM_CLIENT >> 8];
    for (let i = 0; i < 16; i++) out.push(entityId.charCodeAt(i));
    const m = utf8.enc.encode(method);
    pushU32(out, m.length); for (const x of m) out.push(x);
    out.push(args.length & 0xff, args.length >> 8);
    for (const a of args) { const d = []; packInto(d, a); pushU32(out, d.length); for (const x of d) out.push(x); }
    const frame = []; pushU32(frame, out.length);
    this.ws.send(new Uint8Array(frame.concat(out)));
  }

  // A heartbeat; with `features`, it carries them as a u32 (our gates read it, GoWorld's ignore it).
  sendHeartbeat(features) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const out = [MT.HEARTBEAT & 0xff, MT.HEARTBEAT >> 8];
    if (features !== undefined) pushU32(out, features);
    const frame = []; pushU32(frame, out.length);
    this.ws.send(new Uint8Array(frame.concat(out)));
  }

  callPlayer(method, ...args) { if (this.player) this.call(this.player.id, method, ...args); }

  receive(bytes) {
    const joined = new Uint8Array(this.buffer.length + bytes.length);
    joined.set(this.buffer); joined.set(bytes, this.buffer.length);
    let pos = 0;
    const view = new DataView(joined.buffer);
    while (joined.length - pos >= 4) {
      const n = view.getUint32(pos, true);
      if (joined.length - pos - 4 < n) break;
      this.handle(new DataView(joined.buffer, pos + 4, n));
      pos += 4 + n;
    }
    this.buffer = joined.slice(pos);
  }

  handle(view) {
    const msgtype = view.getUint16(0, true);
    const r = new Reader(view, msgtype >= 1001 && msgtype <= 1499 ? 2 + 18 : 2);  // skip H
    switch (msgtype) {
      case MT.CREATE: {
        const isPlayer = r.u8() !== 0, id = r.id(), typeName = r.str();
        const x = r.f32(), y = r.f32(), z = r.f32(), yaw = r.f32();
        const entity = { id, typeName, isPlayer, x, y, z, yaw, attrs: r.data() || {} };
        this.entities.set(id, entity);
        if (typeName === "__space__") this.space = entity;
        if (isPlayer) this.player = entity;
        this.onEntityCreated(entity);
        break;
      }
      case MT.DESTROY: {
        r.str(); const id = r.id(); const entity = this.entities.get(id);
        this.entities.delete(id);
        if (this.player === entity) this.player = null;
        if (this.space === entity) this.space = null;
        if (entity) this.onEntityDestroyed(entity);
        break;
      }
      case MT.CALL_ON_CLIENT: {
        const entity = this.entities.get(r.id()); const method = r.str();
        this.onCall(entity, method, r.args());
        break;
      }
      case MT.FILTERED_CALL: {
        r.u8(); r.str(); r.str(); const method = r.str();
        this.onCall(this.player, method, r.args());
        break;
      }
      case MT.NOTICE: {
        this.closeCode = r.str(); this.closeReason = r.str();
        this.onNotice(this.closeCode, this.closeReason);
        break;
      }
      case MT.SYNC_ON_CLIENTS: {
        while (r.pos + 32 <= view.byteLength) {
          const entity = this.entities.get(r.id());
          const x = r.f32(), y = r.f32(), z = r.f32(), yaw = r.f32();
          if (entity) Object.assign(entity, { x, y, z, yaw });
        }
        break;
      }
      default: {
        if (msgtype < MT.MAP_CHANGE || msgtype > MT.MAP_CLEAR) throw new Error("unexpected message type " + msgtype);
        const entity = this.entities.get(r.id()); const path = r.data() || [];
        if (!entity) return;
        let node = entity.attrs;
        for (let i = path.length - 1; i >= 0; i--) node = node[path[i]];
        let root = path.length ? path[path.length - 1] : null;
        if (msgtype === MT.MAP_CHANGE) { const key = r.str(); node[key] = r.data(); root = root ?? key; }
        else if (msgtype === MT.MAP_DEL) { const key = r.str(); delete node[key]; root = root ?? key; }
        else if (msgtype === MT.MAP_CLEAR) { for (const k of Object.keys(node)) delete node[k]; }
        else if (msgtype === MT.LIST_CHANGE) { const i = r.u32(); node[i] = r.data(); }
        else if (msgtype === MT.LIST_POP) { node.pop(); }
        else if (msgtype === MT.LIST_APPEND) { node.push(r.data()); }
        this.onAttrChange(entity, root);
      }
    }
  }
}

function pushU32(out, n) { out.push(n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff); }

if (typeof module !== "undefined") module.exports = { GoWorldClient, packInto, unpack };

/* game.js: the lockstep demo, squares on a 16x16 grid.
 *
 * Every page of a room runs the same integer-only simulation and advances it ONLY by applying
 * the frames the server sends, in frame-id order. A frame is one tick; frames the server leaves
 * out of a batch (no inputs) are empty ticks, applied as such. So two pages that received the
 * same frames hold the same state, and window.lockstepDemo.hash shows it.
 *
 * Inputs (C2S_InputMsg): sid 0..3 = one step up/right/down/left; sid 4 = walk to cell (x, y),
 * one step every 3 ticks. A square never enters an occupied cell. Whoever steps on the coin
 * scores and the coin jumps to a new cell chosen by a xorshift generator seeded by the room's
 * randomSeed.
 *
 * The simulation part (Simulation, Bot, fnv) is also a node module: require("./game.js").
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else {
    root.LockstepGame = api;
    if (typeof document !== "undefined") api.startPage(root);
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const GRID = 16;
  const WALK_EVERY = 3; // ticks per step when walking to a target
  const DX = [0, 1, 0, -1];
  const DY = [-1, 0, 1, 0];
  const START = [
    [2, 2],
    [13, 13],
    [13, 2],
    [2, 13],
  ];

  function xorshift(x) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  }

  function clampCell(v) {
    v = v | 0;
    return v < 0 ? 0 : v >= GRID ? GRID - 1 : v;
  }

  /** FNV-1a over 32-bit integers, fed as 4 little-endian bytes each: an 8-digit hex string. */
  function fnv(values) {
    let h = 0x811c9dc5;
    for (const v of values) {
      for (let i = 0; i < 4; i++) {
        h ^= (v >>> (8 * i)) & 0xff;
        h = Math.imul(h, 0x01000193) >>> 0;
      }
    }
    return ("0000000" + h.toString(16)).slice(-8);
  }

  class Simulation {
    /** `seats`: how many squares (seat ids 1..seats); `seed`: the room's randomSeed. */
    constructor(seats, seed) {
      this.seats = seats | 0;
      this.tick = 0; // frames applied so far = the id of the next frame
      this.rng = xorshift(((seed | 0) ^ 0x2545f491) >>> 0) || 1;
      this.squares = [];
      for (let s = 1; s <= this.seats; s++) {
        const start = s <= START.length ? START[s - 1] : [(s * 5) % GRID, (s * 11) % GRID];
        let [x, y] = start;
        while (this.occupant(x, y)) x = (x + 1) % GRID; // more seats than free starts
        this.squares.push({ seat: s, x: x, y: y, tx: x, ty: y, score: 0, moves: 0 });
      }
      this.coinX = 0;
      this.coinY = 0;
      this.placeCoin();
    }

    occupant(x, y) {
      for (const sq of this.squares) if (sq.x === x && sq.y === y) return sq;
      return null;
    }

    placeCoin() {
      for (let i = 0; i < 256; i++) {
        this.rng = xorshift(this.rng);
        const x = this.rng % GRID;
        const y = (this.rng >>> 8) % GRID;
        if (!this.occupant(x, y)) {
          this.coinX = x;
          this.coinY = y;
          return;
        }
      }
    }

    stepTo(sq, x, y) {
      if (x < 0 || y < 0 || x >= GRID || y >= GRID || this.occupant(x, y)) return false;
      sq.x = x;
      sq.y = y;
      if (x === this.coinX && y === this.coinY) {
        sq.score++;
        this.placeCoin();
      }
      return true;
    }

    applyInput(inp) {
      const seat = inp.roomseatid | 0;
      if (seat < 1 || seat > this.seats) return false;
      const sq = this.squares[seat - 1];
      const sid = inp.sid | 0;
      sq.moves++;
      if (sid >= 0 && sid <= 3) {
        this.stepTo(sq, sq.x + DX[sid], sq.y + DY[sid]);
        sq.tx = sq.x;
        sq.ty = sq.y;
      } else if (sid === 4) {
        sq.tx = clampCell(inp.x);
        sq.ty = clampCell(inp.y);
      }
      return true;
    }

    /** One tick: the frame's inputs in the order the server gave them, then the walkers. */
    applyTick(inputs) {
      for (const inp of inputs || []) this.applyInput(inp);
      if (this.tick % WALK_EVERY === WALK_EVERY - 1) {
        for (const sq of this.squares) {
          if (sq.x !== sq.tx) this.stepTo(sq, sq.x + (sq.tx > sq.x ? 1 : -1), sq.y);
          else if (sq.y !== sq.ty) this.stepTo(sq, sq.x, sq.y + (sq.ty > sq.y ? 1 : -1));
        }
      }
      this.tick++;
    }

    /**
     * Apply one received FrameData. Ids below `tick` are an error (a frame again or out of
     * order); ids above it mean the frames in between were empty and left out by the server,
     * and are applied as empty ticks. Returns {ok, filled, error}.
     */
    applyFrame(frame) {
      const id = Number(frame.frameID || 0);
      if (!Number.isInteger(id) || id < this.tick) {
        return { ok: false, filled: 0, error: "frame " + id + " received after frame " + (this.tick - 1) };
      }
      let filled = 0;
      while (this.tick < id) {
        this.applyTick(null);
        filled++;
      }
      this.applyTick(frame.input);
      return { ok: true, filled: filled, error: null };
    }

    /** The seat with the highest score (the lowest seat on a tie). */
    leader() {
      let best = this.squares[0];
      for (const sq of this.squares) if (sq.score > best.score) best = sq;
      return best ? best.seat : 0;
    }

    values() {
      const out = [this.tick, this.seats, this.rng, this.coinX, this.coinY];
      for (const sq of this.squares) out.push(sq.seat, sq.x, sq.y, sq.tx, sq.ty, sq.score, sq.moves);
      return out;
    }

    hash() {
      return fnv(this.values());
    }
  }

  /** The deterministic bot's moves for a player id: [{sid, x, y}] of length n. */
  function botMoves(playerID, n) {
    let r = xorshift((Math.imul(Number(BigInt.asUintN(32, BigInt(playerID))), 0x9e3779b1) ^ 0x5bd1e995) >>> 0) || 1;
    const moves = [];
    for (let i = 0; i < n; i++) {
      r = xorshift(r);
      const sid = r % 5;
      if (sid === 4) moves.push({ sid: 4, x: (r >>> 4) % GRID, y: (r >>> 12) % GRID });
      else moves.push({ sid: sid, x: 0, y: 0 });
    }
    return moves;
  }

  // ---- the page --------------------------------------------------------------------------
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

  function parseId(text, fallback) {
    const s = String(text === null || text === undefined || text === "" ? fallback : text).trim();
    if (!/^[0-9]{1,20}$/.test(s)) throw new Error("not an id: " + s);
    const big = BigInt(s);
    if (big >= 1n << 64n) throw new Error("id out of range: " + s);
    return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }

  function startPage(win) {
    const doc = win.document;
    const params = new URLSearchParams(win.location.search);
    const demo = {
      state: "connecting",
      frame: -1,
      hash: null,
      ticks: 0,
      filled: 0,
      frameMessages: 0,
      inputsSent: 0,
      inputsSeen: {},
      seat: 0,
      seats: 0,
      players: {},
      winner: null, // the leader when the room closed (the same on every page)
      resultSent: null, // the winnerID this page reported
      closeReason: null,
      errors: [],
      log: [],
    };
    win.lockstepDemo = demo;

    const $ = (id) => doc.getElementById(id);
    const canvas = $("board");
    const ctx = canvas.getContext("2d");
    const CELL = Math.floor(canvas.width / GRID);

    function log(text) {
      const line = new Date().toISOString().slice(11, 23) + " " + text;
      demo.log.push(line);
      if (demo.log.length > 500) demo.log.shift();
      const li = doc.createElement("li");
      li.textContent = line; // textContent: nothing shown is parsed as HTML
      const list = $("log");
      list.insertBefore(li, list.firstChild);
      while (list.childNodes.length > 100) list.removeChild(list.lastChild);
    }

    function error(text) {
      demo.errors.push(text);
      log("ERROR " + text);
      showStatus();
    }

    function showStatus() {
      let text = demo.state;
      if (demo.seat) text += ", seat " + demo.seat + " of " + demo.seats;
      if (demo.frame >= 0) text += ", frame " + demo.frame;
      if (demo.hash) text += ", hash " + demo.hash;
      if (demo.closeReason) text += " (" + demo.closeReason + ")";
      if (demo.errors.length) text += ", " + demo.errors.length + " error(s)";
      $("status").textContent = text;
    }

    let room, player, members, token, auto, wsUrl;
    try {
      room = parseId(params.get("room"), "1");
      player = parseId(params.get("player"), "1");
      members = (params.get("members") || "1,2").split(",").map((m) => String(parseId(m, "")));
      token = params.get("token") || "";
      auto = Math.max(0, Math.min(1000, parseInt(params.get("auto") || "0", 10) || 0));
      const wsPath = params.get("ws_path") || "/ws";
      wsUrl = params.get("ws") || (win.location.protocol === "https:" ? "wss://" : "ws://") + win.location.host + wsPath;
    } catch (err) {
      demo.state = "closed";
      demo.closeReason = "bad parameters";
      error(err.message);
      return;
    }
    $("who").textContent = "room " + room + ", player " + player + (auto ? ", bot " + auto + " moves" : "");

    let sim = null;
    let conn = null;
    const ownSeen = { n: 0 };

    function draw() {
      ctx.fillStyle = "#f9fafb";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.strokeStyle = "#e5e7eb";
      for (let i = 0; i <= GRID; i++) {
        ctx.beginPath();
        ctx.moveTo(i * CELL + 0.5, 0);
        ctx.lineTo(i * CELL + 0.5, GRID * CELL);
        ctx.moveTo(0, i * CELL + 0.5);
        ctx.lineTo(GRID * CELL, i * CELL + 0.5);
        ctx.stroke();
      }
      if (!sim) return;
      ctx.fillStyle = "#eab308";
      ctx.beginPath();
      ctx.arc(sim.coinX * CELL + CELL / 2, sim.coinY * CELL + CELL / 2, CELL / 3, 0, 2 * Math.PI);
      ctx.fill();
      ctx.font = Math.floor(CELL * 0.55) + "px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (const sq of sim.squares) {
        ctx.fillStyle = COLORS[(sq.seat - 1) % COLORS.length];
        ctx.fillRect(sq.x * CELL + 2, sq.y * CELL + 2, CELL - 3, CELL - 3);
        if (sq.seat === demo.seat) {
          ctx.strokeStyle = "#111827";
          ctx.lineWidth = 2;
          ctx.strokeRect(sq.x * CELL + 2, sq.y * CELL + 2, CELL - 3, CELL - 3);
          ctx.lineWidth = 1;
        }
        ctx.fillStyle = "#fff";
        ctx.fillText(String(sq.seat), sq.x * CELL + CELL / 2, sq.y * CELL + CELL / 2 + 1);
      }
      const scores = $("scores");
      scores.textContent = "";
      for (const sq of sim.squares) {
        const li = doc.createElement("li");
        const who = demo.players[sq.seat] !== undefined ? "player " + demo.players[sq.seat] : "seat " + sq.seat;
        li.textContent = who + ": " + sq.score + (sq.seat === demo.seat ? " (you)" : "");
        li.style.color = COLORS[(sq.seat - 1) % COLORS.length];
        scores.appendChild(li);
      }
    }

    function onFrames(frames) {
      demo.frameMessages++;
      if (!sim) {
        error("frames before Start");
        return;
      }
      for (const frame of frames) {
        const res = sim.applyFrame(frame);
        if (!res.ok) {
          error(res.error);
          continue;
        }
        demo.filled += res.filled;
        for (const inp of frame.input) {
          const id = String(inp.id);
          demo.inputsSeen[id] = (demo.inputsSeen[id] || 0) + 1;
          demo.players[inp.roomseatid] = id;
          if (id === String(player)) ownSeen.n++;
        }
        demo.frame = Number(frame.frameID || 0);
      }
      demo.ticks = sim.tick;
      demo.hash = sim.hash();
      draw();
      showStatus();
    }

    function sendMove(move) {
      if (demo.state !== "playing" || !conn) return;
      if (conn.input(move.sid, move.x, move.y, sim ? sim.tick : 0)) {
        demo.inputsSent++;
        log("input sid=" + move.sid + (move.sid === 4 ? " to " + move.x + "," + move.y : ""));
      }
    }

    function runBot() {
      const moves = botMoves(player, auto);
      let next = 0;
      let lastAt = 0;
      let resultAt = 0;
      const timer = win.setInterval(() => {
        if (demo.state !== "playing") {
          if (demo.state === "closed") win.clearInterval(timer);
          return;
        }
        const now = Date.now();
        // The next move once the last one came back in a frame (so no two share a frame and
        // the server drops none), or 3 s after it if it never did.
        const echoed = ownSeen.n >= demo.inputsSent;
        if (next < moves.length) {
          if (now - lastAt >= 100 && (echoed || now - lastAt > 3000)) {
            if (!echoed) error("input " + demo.inputsSent + " not seen in a frame after 3 s");
            sendMove(moves[next++]);
            lastAt = now;
          }
        } else if (!resultAt && (echoed || now - lastAt > 3000)) {
          if (!echoed) error("last input not seen in a frame after 3 s");
          sendResult();
          resultAt = now;
        }
      }, 20);
    }

    function sendResult() {
      if (demo.resultSent !== null) return;
      $("finish").disabled = true;
      const seat = sim ? sim.leader() : 0;
      const winner = demo.players[seat] !== undefined ? parseId(demo.players[seat], "0") : 0;
      demo.resultSent = String(winner);
      conn.result(winner);
      log("result sent: winner " + winner + " (seat " + seat + ")");
    }

    function onKey(ev) {
      const dir = { ArrowUp: 0, ArrowRight: 1, ArrowDown: 2, ArrowLeft: 3 }[ev.key];
      if (dir === undefined || demo.state !== "playing") return;
      ev.preventDefault();
      sendMove({ sid: dir, x: 0, y: 0 });
    }

    function onClick(ev) {
      if (demo.state !== "playing") return;
      const rect = canvas.getBoundingClientRect();
      const x = Math.floor(((ev.clientX - rect.left) * (canvas.width / rect.width)) / CELL);
      const y = Math.floor(((ev.clientY - rect.top) * (canvas.height / rect.height)) / CELL);
      sendMove({ sid: 4, x: clampCell(x), y: clampCell(y) });
    }

    async function run() {
      showStatus();
      draw();
      try {
        const url = "/create?room=" + encodeURIComponent(String(room)) + "&member=" + encodeURIComponent(members.join(","));
        const resp = await win.fetch(url);
        const text = await resp.text();
        log("create: " + text.slice(0, 200)); // shown with textContent
      } catch (err) {
        log("create failed: " + err.message + " (the room may exist already)");
      }
      conn = new win.Lockstep.LockstepConnection(wsUrl);
      conn.on("connect", (code) => {
        if (code !== 0) {
          demo.state = "closed";
          demo.closeReason = "connect refused: error code " + code;
          error(demo.closeReason);
          conn.close();
          return;
        }
        log("connected");
        conn.joinRoom();
      });
      conn.on("join", (msg) => {
        demo.seat = msg.roomseatid;
        demo.seats = msg.others.length + 1;
        demo.seed = msg.randomSeed || 0;
        demo.players[demo.seat] = String(player);
        log("joined: seat " + msg.roomseatid + ", others " + msg.others.join(",") + ", seed " + demo.seed);
        conn.ready();
        demo.state = "ready";
        showStatus();
      });
      conn.on("ready", () => log("ready acknowledged"));
      conn.on("progress", (msg) => log("progress of " + msg.id + ": " + msg.pro));
      conn.on("start", (msg) => {
        if (sim) {
          log("start again (resync), time " + msg.timeStamp);
          return;
        }
        sim = new Simulation(demo.seats, demo.seed);
        demo.state = "playing";
        demo.hash = sim.hash();
        log("start, time " + msg.timeStamp);
        showStatus();
        draw();
        if (auto) runBot();
        else $("finish").disabled = false;
      });
      conn.on("frames", onFrames);
      conn.on("result", () => log("result acknowledged"));
      conn.on("close", () => {
        demo.state = "closed";
        demo.closeReason = "room closed by the server";
        $("finish").disabled = true;
        if (sim) {
          const seat = sim.leader();
          demo.winner = demo.players[seat] !== undefined ? demo.players[seat] : "seat " + seat;
        }
        log("close: " + (sim ? sim.tick + " ticks, hash " + sim.hash() : "before start"));
        showStatus();
      });
      conn.on("socketclose", () => {
        if (demo.state !== "closed") {
          demo.state = "closed";
          demo.closeReason = "connection lost";
          error("the connection closed before the room did");
        }
        showStatus();
      });
      conn.on("error", (err) => error(err.message));
      try {
        await conn.open();
      } catch (err) {
        demo.state = "closed";
        demo.closeReason = "cannot connect";
        error(err.message);
        return;
      }
      conn.startHeartbeat(500);
      conn.connect(player, room, token || undefined);
      log("connecting to " + wsUrl);
    }

    doc.addEventListener("keydown", onKey);
    canvas.addEventListener("click", onClick);
    $("finish").addEventListener("click", () => {
      if (demo.state === "playing") sendResult();
    });
    run();
  }

  return { GRID, Simulation, botMoves, fnv, xorshift, parseId, startPage };
});

// The chat page: sign in, channels (list, search, join, create), one tab per joined channel
// (topic, history, messages, members with roles and status), private conversations, notices,
// an ignore list, a status, and moderation (slash commands, member menus). Uses goworld.js.
//
// Server calls and client RPCs are the ones of docs/CHAT-DESIGN.md. Everything that comes
// from people (names, topics, messages, statuses) is put on the page with textContent or as
// text nodes, never parsed as HTML.
//
// window.chatState is the page's model (tests read it): see `state` below.
"use strict";

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const client = new GoWorldClient(`${scheme}://${location.host}/ws`);
window.chatClient = client;

const ROLE_MARK = { owner: "~", op: "@", admin: "!" };
const ROLE_RANK = { admin: 0, owner: 1, op: 2, member: 3 };
const STATUSES = ["online", "away", "busy"];
const MAX_MESSAGES = 500;   // per tab, kept in the state (and on the page)
const MAX_NOTICES = 50;

const state = {
  connected: false,
  loggedIn: false,
  name: "",          // the signed-in user
  admin: false,      // the Avatar's `admin` attribute, if the server sends it
  status: "online",  // own status and message (OnStatus)
  statusMsg: "",
  // name -> {name, topic, owner, ops: [], private, members: {name: {role, status, msg}},
  //          messages: [{ts, name, text, kind}], unread}
  channels: {},
  pms: {},           // peer -> {messages: [{ts, from, to, name, text, kind}], unread}
  room: [],          // GoWorld's OnRecvChat messages (only for clients that /join through SendChat)
  active: null,      // the shown tab: "ch:NAME", "pm:USER" or "room:"
  channelList: [],   // the last OnChannelList: [[name, topic, members, private], ...]
  ignores: [],       // OnIgnores
  notices: [],       // [{text, by, ts}]: OnNotice and the gate's notices (by "server")
  errors: [],        // ShowError texts, and local ones
  infos: [],         // ShowInfo texts
  left: [],          // [{channel, reason}]: OnLeft
  line: { kind: "", text: "" },  // what the status line shows
};
window.chatState = state;

// ---- small DOM helpers: text only ---------------------------------------------------------

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = String(v);
    else if (k === "onclick") e.addEventListener("click", v);
    else if (k === "data") for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = String(dv);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);  // strings become text nodes
  return e;
}

function hhmm(ts) {
  const d = ts ? new Date(ts * 1000) : new Date();
  return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
}

function str(v) { return v === null || v === undefined ? "" : String(v); }

function statusLine(kind, text) {
  state.line = { kind, text };
  const n = $("notice");
  n.className = kind;
  n.textContent = text;
}

// Channel names are case-insensitive, "#" optional: the server's key is lower case without "#".
function chanKey(name) { return str(name).trim().replace(/^#/, "").toLowerCase(); }
function joined(name) { return Object.prototype.hasOwnProperty.call(state.channels, chanKey(name)); }

function isIgnored(name) { return state.ignores.includes(name); }

// ---- tabs and panes -----------------------------------------------------------------------

const panes = new Map();  // tab key -> {key, tab, badge, pane, list, members?, topic?, count?}

function tabLabel(key) {
  if (key.startsWith("ch:")) return "#" + key.slice(3);
  if (key.startsWith("pm:")) return "@" + key.slice(3);
  return "room";
}

function ensurePane(key) {
  let p = panes.get(key);
  if (p) return p;
  const badge = el("span", { class: "unread hidden" });
  const close = el("button", { class: "close", title: key.startsWith("ch:") ? "leave" : "close", text: "×" });
  const tab = el("button", { class: "tab", data: { tab: key } },
    el("span", { class: "label", text: tabLabel(key) }), badge, close);
  tab.addEventListener("click", (ev) => { if (ev.target !== close) activate(key); });
  close.addEventListener("click", () => closeTab(key));
  const list = el("ul", { class: "messages" });
  const pane = el("section", { class: "pane hidden", data: { tab: key } });
  p = { key, tab, badge, pane, list };
  if (key.startsWith("ch:")) {
    const channel = key.slice(3);
    p.topic = el("span", { class: "topic" });
    p.flags = el("span", { class: "flags" });
    p.count = el("span", { class: "count" });
    p.topicInput = el("input", { class: "topic-input", placeholder: "new topic", maxlength: 200 });
    p.topicSet = el("button", { class: "small topic-set", text: "Set topic" });
    p.topicSet.addEventListener("click", () => {
      const t = p.topicInput.value.trim();
      if (t) { command(`/topic ${channel} ${t}`); p.topicInput.value = ""; }
    });
    p.topicEdit = el("span", { class: "topic-edit hidden" }, p.topicInput, p.topicSet);
    const head = el("div", { class: "pane-head" },
      el("b", { class: "cname", text: "#" + channel }), p.flags, p.topic, p.topicEdit);
    p.members = el("ul", { class: "members" });
    const side = el("aside", { class: "member-pane" }, el("h4", {}, "Members ", p.count), p.members);
    pane.append(head, el("div", { class: "pane-body" }, list, side));
  } else {
    const head = el("div", { class: "pane-head" },
      el("b", { class: "cname", text: key.startsWith("pm:") ? "private: " + key.slice(3) : "room" }));
    pane.append(head, el("div", { class: "pane-body" }, list));
  }
  $("tabs").append(tab);
  $("panes").append(pane);
  panes.set(key, p);
  return p;
}

function removePane(key) {
  const p = panes.get(key);
  if (!p) return;
  p.tab.remove();
  p.pane.remove();
  panes.delete(key);
  if (state.active === key) {
    state.active = null;
    const next = panes.keys().next();
    if (!next.done) activate(next.value); else $("empty").classList.remove("hidden");
  }
}

function activate(key) {
  if (!panes.has(key)) return;
  state.active = key;
  for (const [k, p] of panes) {
    p.pane.classList.toggle("hidden", k !== key);
    p.tab.classList.toggle("active", k === key);
  }
  $("empty").classList.add("hidden");
  const model = modelOf(key);
  if (model) model.unread = 0;
  updateBadge(key);
  const p = panes.get(key);
  p.list.scrollTop = p.list.scrollHeight;
  $("text").placeholder = key.startsWith("pm:") ? `message to ${key.slice(3)}` :
    key.startsWith("ch:") ? `message #${key.slice(3)}, or /command (try /help)` : "message, or /command";
}

function modelOf(key) {
  if (key.startsWith("ch:")) return state.channels[key.slice(3)];
  if (key.startsWith("pm:")) return state.pms[key.slice(3)];
  return null;
}

function updateBadge(key) {
  const p = panes.get(key), m = modelOf(key);
  if (!p) return;
  const n = m ? m.unread : 0;
  p.badge.textContent = n ? String(n) : "";
  p.badge.classList.toggle("hidden", !n);
}

function closeTab(key) {
  if (key.startsWith("ch:")) { command("/leave " + key.slice(3)); return; }  // OnLeft removes it
  if (key.startsWith("pm:")) delete state.pms[key.slice(3)];
  removePane(key);
}

function activeChannel() {
  return state.active && state.active.startsWith("ch:") ? state.active.slice(3) : null;
}

// ---- messages -----------------------------------------------------------------------------

function messageItem(m) {
  const kind = ["msg", "me", "system", "pm"].includes(m.kind) ? m.kind : "msg";
  const li = el("li", { class: "msg kind-" + kind, data: { name: m.name, kind } },
    el("span", { class: "time", text: hhmm(m.ts) }));
  if (kind === "system") li.append(el("span", { class: "text", text: m.text }));
  else if (kind === "me") li.append(el("span", { class: "from", text: "* " + m.name }), " ", el("span", { class: "text", text: m.text }));
  else li.append(el("span", { class: "from", text: m.name + ":" }), " ", el("span", { class: "text", text: m.text }));
  if (kind !== "system" && m.name !== state.name && state.name &&
      m.text.toLowerCase().includes(state.name.toLowerCase())) li.classList.add("mention");
  return li;
}

function shown(m) { return m.kind === "system" || !isIgnored(m.name); }

function pushMessage(key, model, m) {
  model.messages.push(m);
  if (model.messages.length > MAX_MESSAGES) model.messages.splice(0, model.messages.length - MAX_MESSAGES);
  if (!shown(m)) return;
  const p = ensurePane(key);
  const atBottom = p.list.scrollHeight - p.list.scrollTop - p.list.clientHeight < 40;
  p.list.append(messageItem(m));
  while (p.list.childElementCount > MAX_MESSAGES) p.list.firstElementChild.remove();
  if (atBottom || m.name === state.name) p.list.scrollTop = p.list.scrollHeight;
  if (state.active !== key && m.kind !== "system") { model.unread = (model.unread || 0) + 1; updateBadge(key); }
}

function renderMessages(key) {
  const p = panes.get(key), model = modelOf(key) || (key === "room:" ? { messages: state.room } : null);
  if (!p || !model) return;
  p.list.replaceChildren(...model.messages.filter(shown).map(messageItem));
  p.list.scrollTop = p.list.scrollHeight;
}

function localLine(text) {  // a line of the page's own (help, local errors) in the shown tab
  const key = state.active;
  const model = key && (modelOf(key) || (key === "room:" ? { messages: state.room } : null));
  if (!model) { statusLine("info", text); return; }
  pushMessage(key, model, { ts: Date.now() / 1000, name: "", text, kind: "system" });
}

// ---- channels -----------------------------------------------------------------------------

function channelModel(name) {
  let ch = state.channels[name];
  if (!ch) {
    ch = { name, topic: "", owner: "", ops: [], private: false, members: {}, messages: [], unread: 0 };
    state.channels[name] = ch;
  }
  return ch;
}

function roleOf(ch, name) { const m = ch.members[name]; return m ? m.role : ""; }

function onJoined(name, info) {
  info = info || {};
  const fresh = !state.channels[name];
  const ch = channelModel(name);
  ch.topic = str(info.topic);
  ch.owner = str(info.owner);
  ch.ops = Array.isArray(info.ops) ? info.ops.map(str) : [];
  ch.private = !!info.private;
  ch.members = {};
  for (const row of info.members || []) {
    const [who, role, status, msg] = row;
    ch.members[str(who)] = { role: str(role) || "member", status: str(status) || "online", msg: str(msg) };
  }
  if (fresh || ch.messages.length === 0) {
    ch.messages = (info.history || []).map(([ts, who, text, kind]) =>
      ({ ts: Number(ts) || 0, name: str(who), text: str(text), kind: str(kind) || "msg", history: true }));
  }
  const key = "ch:" + name;
  ensurePane(key);
  renderChannel(name);
  renderMessages(key);
  if (fresh && (!state.active || wantOpen === name)) activate(key);
  if (wantOpen === name) wantOpen = null;
  renderChannelList();
}

let wantOpen = null;  // a channel the user asked to join/create: its tab opens when it arrives

function renderChannel(name) {
  const ch = state.channels[name], p = panes.get("ch:" + name);
  if (!ch || !p) return;
  p.topic.textContent = ch.topic || "(no topic)";
  p.topic.classList.toggle("none", !ch.topic);
  p.flags.textContent = ch.private ? "private" : "";
  p.flags.classList.toggle("hidden", !ch.private);
  const mine = roleOf(ch, state.name);
  const canMod = state.admin || mine === "owner" || mine === "op";
  p.topicEdit.classList.toggle("hidden", !canMod);
  renderMembers(name);
}

function renderMembers(name) {
  const ch = state.channels[name], p = panes.get("ch:" + name);
  if (!ch || !p) return;
  const mine = roleOf(ch, state.name);
  const canMod = state.admin || mine === "owner" || mine === "op";
  const canOp = state.admin || mine === "owner";
  const names = Object.keys(ch.members).sort((a, b) =>
    (ROLE_RANK[ch.members[a].role] ?? 9) - (ROLE_RANK[ch.members[b].role] ?? 9) || a.localeCompare(b));
  p.count.textContent = `(${names.length})`;
  p.members.replaceChildren(...names.map((who) => memberItem(name, who, ch.members[who], canMod, canOp)));
}

function memberItem(channel, who, m, canMod, canOp) {
  const status = STATUSES.includes(m.status) ? m.status : "online";
  const li = el("li", {
    class: `member role-${m.role} status-${status}` + (isIgnored(who) ? " ignored" : "") + (who === state.name ? " self" : ""),
    data: { name: who, role: m.role, status: m.status },
    title: `${who}: ${m.role}, ${m.status}${m.msg ? " — " + m.msg : ""}`,
  },
  el("span", { class: "dot", title: status }),
  el("span", { class: "mark", text: ROLE_MARK[m.role] || "" }),
  el("span", { class: "mname", text: who }),
  el("span", { class: "smsg", text: m.msg }));
  if (who === state.name) return li;
  const open = openMenu && openMenu.channel === channel && openMenu.who === who;
  const actions = el("div", { class: "member-actions" + (open ? "" : " hidden") });
  const act = (action, label, fn) => actions.append(el("button", {
    class: "small act", data: { action }, text: label,
    onclick: () => { openMenu = null; actions.classList.add("hidden"); fn(); },
  }));
  act("pm", "Message", () => openPm(who, true));
  if (isIgnored(who)) act("unignore", "Unignore", () => command("/unignore " + who));
  else act("ignore", "Ignore", () => command("/ignore " + who));
  if (canMod) {
    const minutes = el("input", { class: "minutes", placeholder: "min", size: 3, maxlength: 4, inputmode: "numeric" });
    const mins = () => minutes.value.trim();
    act("kick", "Kick", () => command(`/kick ${channel} ${who}`));
    act("ban", "Ban", () => command(`/ban ${channel} ${who}` + (mins() ? " " + mins() : "")));
    act("timeout", "Timeout", () => command(`/timeout ${channel} ${who} ${mins() || 10}`));
    actions.append(minutes);
  }
  if (canOp) {
    if (m.role === "op") act("deop", "Deop", () => command(`/deop ${channel} ${who}`));
    else if (m.role === "member") act("op", "Op", () => command(`/op ${channel} ${who}`));
  }
  const menu = el("button", { class: "small menu", title: "actions", text: "⋯" });
  menu.addEventListener("click", () => {
    const hide = actions.classList.toggle("hidden");
    if (!hide && li.parentElement) {
      for (const other of li.parentElement.querySelectorAll(".member-actions")) if (other !== actions) other.classList.add("hidden");
    }
    openMenu = hide ? null : { channel, who };  // kept open when the list is drawn again
  });
  li.append(menu, actions);
  return li;
}

let openMenu = null;  // {channel, who}: the member menu that is open

function onMember(channel, who, role, status, msg) {
  const ch = state.channels[channel];
  if (!ch) return;
  const before = ch.members[who];
  if (!role) delete ch.members[who];
  else ch.members[who] = { role, status: status || "online", msg: msg || "" };
  if (who === state.name && role && (!before || before.role !== role)) renderChannel(channel);
  else renderMembers(channel);
  if (!before !== !role) renderChannelList();
}

function onLeft(channel, reason) {
  reason = str(reason) || "left";
  state.left.push({ channel, reason });
  delete state.channels[channel];
  if (wantOpen === channel) wantOpen = null;
  removePane("ch:" + channel);
  if (reason === "left") statusLine("info", `you left #${channel}`);
  else statusLine("error", `you are out of #${channel}: ${reason}`);
  renderChannelList();
}

function onTopic(channel, topic, by) {
  const ch = state.channels[channel];
  if (!ch) return;
  ch.topic = topic;
  renderChannel(channel);
  renderChannelList();  // the channel's own system line says who set it
}

// The last OnChannelList, with what the page knows better: joined channels' member counts and
// topics, and public channels joined since (no new search: searches are throttled).
function renderChannelList() {
  const ul = $("channelList");
  const query = $("channelSearch").value.trim().toLowerCase();
  const rows = state.channelList.map((row) => {
    const ch = state.channels[str(row[0])];
    return ch ? [ch.name, ch.topic, Object.keys(ch.members).length, ch.private] : row;
  });
  for (const ch of Object.values(state.channels)) {
    if (!ch.private && !rows.some((r) => str(r[0]) === ch.name) &&
        (ch.name.includes(query) || ch.topic.toLowerCase().includes(query))) {
      rows.push([ch.name, ch.topic, Object.keys(ch.members).length, false]);
    }
  }
  ul.replaceChildren(...rows.map((row) => {
    const [name, topic, members, priv] = row;
    const n = str(name), joined = !!state.channels[n];
    const join = el("button", { class: "small join", text: joined ? "Open" : "Join" });
    join.addEventListener("click", () => (joined ? activate("ch:" + n) : joinChannel(n)));
    return el("li", { class: "channel-entry" + (joined ? " joined" : ""), data: { name: n, members: Number(members) || 0 } },
      el("div", { class: "line" },
        el("span", { class: "cname", text: "#" + n }),
        priv ? el("span", { class: "lock", text: "private" }) : null,
        el("span", { class: "count", text: `${Number(members) || 0} in`, title: "members" }),
        join),
      el("div", { class: "ctopic", text: str(topic) }));
  }));
  if (!rows.length) ul.append(el("li", { class: "none", text: "no channels found" }));
}

let searchTimer = null;
function listChannels() {
  clearTimeout(searchTimer);
  if (state.loggedIn) client.callPlayer("ListChannels", $("channelSearch").value.trim());
}

function joinChannel(name) {
  name = chanKey(name);
  if (!name) return;
  if (joined(name)) { activate("ch:" + name); return; }
  wantOpen = name;
  command("/join " + name);
}

// ---- private messages ---------------------------------------------------------------------

function pmModel(peer) {
  let pm = state.pms[peer];
  if (!pm) { pm = { messages: [], unread: 0 }; state.pms[peer] = pm; }
  return pm;
}

function openPm(peer, focus) {
  peer = peer.trim();
  if (!peer) return;
  pmModel(peer);
  ensurePane("pm:" + peer);
  activate("pm:" + peer);
  if (focus) $("text").focus();
}

function onPrivateMsg(from, to, text, ts) {
  const peer = from === state.name ? to : from;
  const pm = pmModel(peer);
  const key = "pm:" + peer;
  ensurePane(key);
  pushMessage(key, pm, { ts: Number(ts) || Date.now() / 1000, from, to, name: from, text, kind: "msg" });
  if (!state.active) activate(key);
}

// ---- ignores, notices, status -------------------------------------------------------------

function onIgnores(names) {
  state.ignores = (names || []).map(str);
  $("ignoreList").replaceChildren(...state.ignores.map((n) =>
    el("li", { data: { name: n } }, el("span", { class: "mname", text: n }),
      el("button", { class: "small secondary unignore", text: "unignore", onclick: () => command("/unignore " + n) }))));
  for (const key of panes.keys()) renderMessages(key);
  for (const name of Object.keys(state.channels)) renderMembers(name);
}

function addNotice(text, by) {
  state.notices.push({ text, by, ts: Date.now() / 1000 });
  if (state.notices.length > MAX_NOTICES) state.notices.shift();
  $("notices").prepend(el("li", {}, el("span", { class: "time", text: hhmm() }), " ",
    el("b", { text: by ? by + ": " : "" }), text));
}

function onStatus(status, msg) {
  state.status = status;
  state.statusMsg = msg || "";
  $("statusSelect").value = STATUSES.includes(status) ? status : "online";
  if (document.activeElement !== $("statusMsg")) $("statusMsg").value = state.statusMsg;
}

// ---- input: messages and slash commands ---------------------------------------------------

function command(text) { client.callPlayer("Command", text); }

// Commands whose first argument is a channel: in a channel's tab it may be left out. The entry
// tells, from the words after the command, whether the channel is missing.
const CHANNEL_COMMANDS = {
  leave: (a) => a.length === 0,
  who: (a) => a.length === 0,
  topic: (a) => a.length === 0 || !joined(a[0]),
  me: (a) => a.length > 0 && !joined(a[0]),
  op: (a) => a.length === 1, deop: (a) => a.length === 1,
  kick: (a) => a.length === 1, unban: (a) => a.length === 1, invite: (a) => a.length === 1,
  ban: (a) => a.length === 1 || (a.length === 2 && /^\d+$/.test(a[1]) && !joined(a[0])),
  timeout: (a) => a.length === 2,
  private: (a) => a.length === 1,
};

function withChannel(text) {
  const m = /^\/(\S+)\s*([\s\S]*)$/.exec(text);
  if (!m) return text;
  const cmd = m[1].toLowerCase(), rest = m[2].trim(), channel = activeChannel();
  const args = rest ? rest.split(/\s+/) : [];
  const missing = CHANNEL_COMMANDS[cmd];
  if (!channel || !missing || !missing(args)) return text;
  return `/${cmd} ${channel}` + (rest ? " " + rest : "");
}

function submit() {
  const input = $("text");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  const key = state.active;
  if (text === "/clear") {
    const model = key && modelOf(key);
    if (model) { model.messages = []; renderMessages(key); }
    return;
  }
  const me = /^\/me\s+([\s\S]+)$/i.exec(text);
  if (me && key && key.startsWith("pm:")) {
    command(`/msg ${key.slice(3)} * ${me[1]}`);  // no actions in PMs: a starred line
  } else if (text.startsWith("/")) {
    const cmd = withChannel(text);
    const join = /^\/(?:join|create)\s+(\S+)/i.exec(cmd);
    if (join) wantOpen = chanKey(join[1]);
    command(cmd);
    if (/^\/help\s*$/i.test(cmd)) localLine($("help").content.textContent.trim());
  } else if (key && key.startsWith("ch:")) {
    client.callPlayer("Say", key.slice(3), text);
  } else if (key && key.startsWith("pm:")) {
    command(`/msg ${key.slice(3)} ${text}`);
  } else if (key === "room:") {
    client.callPlayer("SendChat", text);
  } else {
    statusLine("error", "join a channel first: pick one from the list or type /join NAME");
    state.errors.push(state.line.text);
  }
}

// ---- the connection -----------------------------------------------------------------------

client.onOpen = () => { state.connected = true; $("status").textContent = "connected"; };
// The gate tells us why before it closes us, or ahead of time when the server is going down.
client.onNotice = (code, text) => {
  addNotice(text, "server");
  statusLine(code === "shutdown" ? "info" : "error", text);
};
client.onClose = (reason) => {
  state.connected = false;
  $("status").textContent = "disconnected";
  statusLine("error", reason ? "Disconnected: " + reason + " (reload the page)" : "Connection lost (reload the page).");
};

function showChat(avatar) {
  state.loggedIn = true;
  state.name = str(avatar.attrs.name);
  state.admin = !!avatar.attrs.admin;
  $("login").classList.add("hidden");
  $("chat").classList.remove("hidden");
  $("whoami").classList.remove("hidden");
  $("me").textContent = state.name;
  $("status").textContent = "connected: signed in";
  statusLine("info", `signed in as ${state.name}`);
  $("text").focus();
  listChannels();
}

client.onEntityCreated = (entity) => {
  if (entity.isPlayer && entity.typeName === "Avatar") showChat(entity);
  if (entity.isPlayer && entity.typeName === "Account") $("status").textContent = "connected: please log in";
};

client.onAttrChange = (entity, key) => {
  if (entity !== client.player || entity.typeName !== "Avatar") return;
  if (key === "name") { state.name = str(entity.attrs.name); $("me").textContent = state.name; }
  if (key === "admin") {
    state.admin = !!entity.attrs.admin;
    for (const name of Object.keys(state.channels)) renderChannel(name);
  }
};

const handlers = {
  ShowError(text) { state.errors.push(str(text)); statusLine("error", str(text)); },
  ShowInfo(text) {
    text = str(text);
    state.infos.push(text);
    if (text.length > 160 && state.active) {  // /help, /who: long answers go to the tab
      statusLine("info", text.slice(0, 120) + "… (more in the tab)");
      for (const part of text.split(/;\s+/)) localLine(part);
    } else statusLine("info", text);
  },
  OnRecvChat(name, text) {
    const m = { ts: Date.now() / 1000, name: str(name), text: str(text), kind: "msg" };
    ensurePane("room:");
    pushMessage("room:", { messages: state.room }, m);
    if (!state.active) activate("room:");
  },
  OnChannelMsg(channel, name, text, ts, kind) {
    const ch = state.channels[channel];
    if (!ch) return;
    pushMessage("ch:" + channel, ch, { ts: Number(ts) || Date.now() / 1000, name: str(name), text: str(text), kind: str(kind) || "msg" });
  },
  OnJoined(channel, info) { onJoined(str(channel), info); },
  OnLeft(channel, reason) { onLeft(str(channel), reason); },
  OnMember(channel, name, role, status, msg) { onMember(str(channel), str(name), str(role), str(status), str(msg)); },
  OnTopic(channel, topic, by) { onTopic(str(channel), str(topic), str(by)); },
  OnChannelList(rows) { state.channelList = Array.isArray(rows) ? rows : []; renderChannelList(); },
  OnPrivateMsg(from, to, text, ts) { onPrivateMsg(str(from), str(to), str(text), ts); },
  OnNotice(text, by) { addNotice(str(text), str(by)); statusLine("notice", (by ? `notice from ${by}: ` : "notice: ") + str(text)); },
  OnIgnores(names) { onIgnores(Array.isArray(names) ? names : []); },
  OnStatus(status, msg) { onStatus(str(status), str(msg)); },
};

client.onCall = (entity, method, args) => {
  const h = Object.prototype.hasOwnProperty.call(handlers, method) ? handlers[method] : null;
  if (h) h(...args);
  else console.warn("unhandled server call", method);
};

// ---- the controls -------------------------------------------------------------------------

function account() { return client.player && client.player.typeName === "Account" ? client.player : null; }
function enter(id, fn) { $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter") fn(); }); }

$("register").onclick = () => {
  if (account()) client.call(account().id, "Register", $("username").value.trim(), $("password").value);
};
$("loginButton").onclick = (ev) => {
  if (ev) ev.preventDefault();
  if (account()) client.call(account().id, "Login", $("username").value.trim(), $("password").value);
};
// Enter in the form clicks the submit button (Log in); the form itself is never sent.
$("loginForm").addEventListener("submit", (ev) => ev.preventDefault());

$("send").onclick = submit;
enter("text", submit);

$("refreshChannels").onclick = listChannels;
$("channelSearch").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(listChannels, 400); });
enter("channelSearch", listChannels);

$("joinButton").onclick = () => { joinChannel($("joinName").value); $("joinName").value = ""; };
enter("joinName", () => $("joinButton").click());
$("createChannel").onclick = () => {
  const name = $("newChannel").value.trim();
  if (!name) return;
  wantOpen = chanKey(name);
  command(`/create ${name}` + ($("newPrivate").checked ? " private" : ""));
  $("newChannel").value = "";
};
enter("newChannel", () => $("createChannel").click());

$("pmStart").onclick = () => { openPm($("pmName").value, true); $("pmName").value = ""; };
enter("pmName", () => $("pmStart").click());

$("ignoreButton").onclick = () => {
  const name = $("ignoreName").value.trim();
  if (name) command("/ignore " + name);
  $("ignoreName").value = "";
};
enter("ignoreName", () => $("ignoreButton").click());

$("setStatus").onclick = () => client.callPlayer("SetStatus", $("statusSelect").value, $("statusMsg").value.trim());
$("statusSelect").onchange = () => $("setStatus").click();
enter("statusMsg", () => $("setStatus").click());

// The chatroom page: register, log in, join a room (/join <room>), chat. Uses goworld.js.
"use strict";

const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const client = new GoWorldClient(`${scheme}://${location.host}/ws`);

function notice(kind, text) {
  const el = $("notice");
  el.className = kind;
  el.textContent = text;
}

function showChat(avatar) {
  $("login").classList.add("hidden");
  $("chat").classList.remove("hidden");
  $("me").textContent = avatar.attrs.name || "";
  $("room").textContent = avatar.attrs.chatroom || "(none)";
  $("text").focus();
}

client.onOpen = () => { $("status").textContent = "connected"; };
// The gate tells us why before it closes us, or ahead of time when the server is going down.
client.onNotice = (code, text) => notice(code === "shutdown" ? "info" : "error", text);
client.onClose = (reason) => {
  $("status").textContent = "disconnected";
  notice("error", reason ? "Disconnected: " + reason + " (reload the page)" : "Connection lost.");
};

client.onEntityCreated = (entity) => {
  if (entity.isPlayer && entity.typeName === "Avatar") {
    showChat(entity);
    $("status").textContent = "connected: signed in";
  }
  if (entity.isPlayer && entity.typeName === "Account") $("status").textContent = "connected: please log in";
};

client.onAttrChange = (entity, key) => {
  if (entity === client.player && key === "chatroom") $("room").textContent = entity.attrs.chatroom || "(none)";
};

client.onCall = (entity, method, args) => {
  if (method === "ShowError") notice("error", args[0]);
  else if (method === "ShowInfo") notice("info", args[0]);
  else if (method === "OnRecvChat") {
    const li = document.createElement("li");
    const who = document.createElement("b");
    who.textContent = args[0] + ": ";
    li.appendChild(who);
    li.appendChild(document.createTextNode(args[1]));
    $("messages").appendChild(li);
    $("messages").scrollTop = $("messages").scrollHeight;
  }
};

function account() { return client.player && client.player.typeName === "Account" ? client.player : null; }

$("register").onclick = () => {
  if (account()) client.call(account().id, "Register", $("username").value, $("password").value);
};
$("loginButton").onclick = () => {
  if (account()) client.call(account().id, "Login", $("username").value, $("password").value);
};
$("join").onclick = () => {
  const room = $("roomName").value.trim();
  if (room) { client.callPlayer("SendChat", "/join " + room); notice("info", "Joined " + room); }
};
function send() {
  const text = $("text").value;
  if (text) { client.callPlayer("SendChat", text); $("text").value = ""; }
}
$("send").onclick = send;
$("text").addEventListener("keydown", (ev) => { if (ev.key === "Enter") send(); });

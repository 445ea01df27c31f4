"""A player: its name, status, ignore list and channels, and every client RPC of the chat.

GoWorld's chatroom client keeps working: ``SendChat("/join ROOM")`` sets the ``chatroom``
attribute and filter prop at once (as GoWorld does) and also joins channel ROOM when it exists
(a refusal, e.g. a ban, clears them again); ``SendChat(text)`` goes to the last joined channel
or room, and ``OnRecvChat(name, text)`` reaches everyone whose ``chatroom`` is that room. A
room that is no channel works as in GoWorld: no history, no moderation.

Throttles: one ``goworld.RateLimiter`` per bucket and player (fields: a reload keeps them),
below the engine's hard per-method limits in ``@goworld.rpc``.
"""

from __future__ import annotations

from typing import Any

import goworld

from . import rules, settings

_BUCKETS = {
    "message": (settings.MESSAGE_RATE, settings.MESSAGE_BURST, "you can send again"),
    "create": (settings.CREATE_RATE, settings.CREATE_BURST, "you can create another channel"),
    "search": (settings.SEARCH_RATE, settings.SEARCH_BURST, "you can search again"),
    "command": (settings.COMMAND_RATE, settings.COMMAND_BURST, "you can use commands again"),
}

#: moderation commands: what the Channel's Moderate is told (action, index of the user argument
#: or None, index of the extra argument or None)
_MODERATION = {
    "topic": (None, 1),
    "op": (1, None),
    "deop": (1, None),
    "kick": (1, None),
    "ban": (1, 2),
    "unban": (1, None),
    "timeout": (1, 2),
    "invite": (1, None),
    "private": (None, 1),
}


class Avatar(goworld.Entity):
    persistent = True
    aoi_distance = 100
    attributes = {
        "name": goworld.CLIENT | goworld.PERSISTENT,
        "chatroom": goworld.CLIENT,  # GoWorld's: the room joined with SendChat("/join ROOM")
        "status": goworld.CLIENT | goworld.PERSISTENT,
        "status_msg": goworld.CLIENT | goworld.PERSISTENT,
        "admin": goworld.CLIENT,  # from settings.ADMINS, never saved
        "channels": goworld.PERSISTENT,  # {channel: channel entity id}: rejoined at login
        "ignores": goworld.PERSISTENT,  # [user names]
    }

    def on_init(self) -> None:
        self.joined: dict[str, str] = {}  # channels confirmed in this session: name -> id
        self.current = ""  # the last joined channel or room: where SendChat(text) goes
        self.online = False
        self.limits = {k: goworld.RateLimiter(rate, burst, max_keys=1) for k, (rate, burst, _) in _BUCKETS.items()}

    def on_created(self) -> None:
        # Everything a client sees is set here, before a client is attached: later changes
        # would be attribute messages (GoWorld's 2017 client expects only the /join one).
        self.attrs.set_default("name", "noname")
        self.attrs["chatroom"] = ""
        self.attrs.set_default("status", "online")
        self.attrs.set_default("status_msg", "")
        self.attrs["admin"] = self.name in settings.ADMINS
        self.attrs.set_default("channels", {})
        self.attrs.set_default("ignores", [])

    @property
    def name(self) -> str:
        return self.attrs.get_str("name")

    @property
    def admin(self) -> bool:
        return self.attrs.get_bool("admin")

    # ---- connection ------------------------------------------------------------------------

    def on_client_connected(self) -> None:
        # Filter props live on the gate and every client handover clears them.
        self.online = True
        self.set_client_filter_prop("online", "1")
        room = self.attrs.get_str("chatroom")
        if room:
            self.set_client_filter_prop("chatroom", room)
        for channel in self.joined:
            self.set_client_filter_prop(f"ch.{channel}", "1")
        status, msg = self.attrs.get_str("status"), self.attrs.get_str("status_msg")
        goworld.call_service_any("Presence", "Online", self.id, self.name, status, msg)
        self.call_client("OnStatus", status, msg)
        self.call_client("OnIgnores", self._ignores())
        # Rejoin the channels of the last session (each answers with OnJoined, or a refusal).
        for channel_id in list(self.attrs.get_map("channels").values()):
            goworld.load_entity_anywhere("Channel", channel_id)  # a no-op once it runs
            self.call(channel_id, "Join", self.id, self.name, self.admin, status, msg, False)

    def on_client_disconnected(self) -> None:
        self.destroy()

    def on_destroy(self) -> None:
        if not self.online:
            return  # e.g. made and saved by Register
        self.online = False
        for channel_id in self.joined.values():
            self.call(channel_id, "Leave", self.id)  # the saved list rejoins them at login
        self.joined.clear()
        goworld.call_service_any("Presence", "Offline", self.id, self.name)

    @goworld.rpc(name="GetSpaceID")
    def get_space_id(self, caller: str) -> None:
        space = self.space
        self.call(caller, "OnGetAvatarSpaceID", self.id, space.id if space is not None else "")

    # ---- helpers ---------------------------------------------------------------------------

    def _error(self, text: str) -> None:
        self.call_client("ShowError", text)

    def _info(self, text: str) -> None:
        self.call_client("ShowInfo", text)

    def _take(self, bucket: str) -> bool:
        """Spend a token of ``bucket``; False (and the player told how long to wait) if none."""
        wait = self.limits[bucket].take()
        if wait:
            self._error(f"slow down: {_BUCKETS[bucket][2]} in {rules.format_wait(wait)}")
            return False
        return True

    def _ignores(self) -> list[str]:
        return [str(n) for n in self.attrs.get_list("ignores")]

    def _to_channel(self, channel: str, method: str, *args: Any) -> None:
        """Call a channel's method: directly when joined, else through ChannelDirectory."""
        channel_id = self.joined.get(channel)
        if channel_id is not None:
            self.call(channel_id, method, *args)
        else:
            goworld.call_service_any("ChannelDirectory", "Route", self.id, channel, method, list(args))

    def _forget_channel(self, channel: str) -> None:
        self.joined.pop(channel, None)
        channels = self.attrs.get_map("channels")
        if channel in channels:
            del channels[channel]
        self.set_client_filter_prop(f"ch.{channel}", "")
        if self.attrs.get_str("chatroom") == channel:
            self.attrs["chatroom"] = ""
            self.set_client_filter_prop("chatroom", "")
        if self.current == channel:
            self.current = next(reversed(self.joined), "")

    # ---- client RPCs -----------------------------------------------------------------------

    # A person types a few lines a second at most, none longer than a few kilobytes.
    @goworld.rpc(client=True, name="SendChat", rate=5, burst=20, max_arg_bytes=4096)
    def send_chat(self, text: str) -> None:
        if text.startswith("/"):
            command, err = rules.parse_command(text)
            if command is not None and command.name == "join":
                if self._take("command"):
                    self._legacy_join(command.args[0])
                return
            self._run(command, err)
            return
        target = self.current
        if not target:
            self._error("join a room first: /join <room>")
            return
        text, err = rules.clean_text(text, settings.TEXT_MAX)
        if err:
            self._error(err)
            return
        if not self._take("message"):
            return
        if target in self.joined:
            self.call(self.joined[target], "Post", self.id, text, "msg")
        elif target == self.attrs.get_str("chatroom"):  # a plain room, as in GoWorld
            self.call_filtered_clients("chatroom", "=", target, "OnRecvChat", self.name, text)
        else:
            self._error("join a room first: /join <room>")

    @goworld.rpc(client=True, name="Say", rate=10, burst=40, max_arg_bytes=4096)
    def say(self, channel: str, text: str) -> None:
        channel = rules.channel_key(channel)
        kind = "msg"
        if text.startswith("/me "):
            kind, text = "me", text[4:]
        if channel not in self.joined:
            self._error(f"you are not in #{rules.shorten(channel, 30)}: /join {rules.shorten(channel, 30)} first")
            return
        text, err = rules.clean_text(text, settings.TEXT_MAX)
        if err:
            self._error(err)
            return
        if self._take("message"):
            self.call(self.joined[channel], "Post", self.id, text, kind)

    @goworld.rpc(client=True, name="Command", rate=10, burst=40, max_arg_bytes=4096)
    def command(self, text: str) -> None:
        self._run(*rules.parse_command(text))

    @goworld.rpc(client=True, name="ListChannels", rate=10, burst=20, max_arg_bytes=512)
    def list_channels(self, query: str) -> None:
        query, err = rules.clean_text(query, 50, "query", empty_ok=True)
        if err:
            self._error(err)
        elif self._take("search"):
            goworld.call_service_any("ChannelDirectory", "List", self.id, query)

    @goworld.rpc(client=True, name="SetStatus", rate=10, burst=20, max_arg_bytes=1024)
    def set_status(self, status: str, message: str) -> None:
        status = status.lower()
        if status not in rules.STATUSES:
            self._error(f"the status is one of {', '.join(rules.STATUSES)}, not {rules.shorten(status)!r}")
            return
        message, err = rules.clean_text(message, settings.STATUS_MSG_MAX, "status message", empty_ok=True)
        if err:
            self._error(err)
        elif self._take("command"):
            self._set_status(status, message)

    # ---- commands --------------------------------------------------------------------------

    def _run(self, command: rules.Command | None, err: str | None) -> None:
        if command is None:
            self._error(err or "bad command")
            return
        spec = rules.COMMANDS[command.name]
        if not self._take(spec.bucket):
            return
        getattr(self, f"_cmd_{command.name}", self._cmd_moderate)(command)

    def _legacy_join(self, room: str) -> None:
        """GoWorld's /join: the room at once, and channel ``room`` if there is one."""
        if self.attrs.get_str("chatroom") != room:
            self.attrs["chatroom"] = room
        self.set_client_filter_prop("chatroom", room)
        self.current = room
        self._join(room, legacy=True)

    def _join(self, channel: str, *, legacy: bool) -> None:
        if channel not in self.joined and len(self.joined) >= settings.CHANNELS_MAX:
            self._error(f"you are in {settings.CHANNELS_MAX} channels already: /leave one first")
            return
        status, msg = self.attrs.get_str("status"), self.attrs.get_str("status_msg")
        args = (self.id, self.name, self.admin, status, msg, legacy)
        # Always through the directory, even for a channel joined before (answered with
        # OnJoined again): it loads the channel first, so a channel lost with a dead game comes
        # back; a call straight to that channel's id would be dropped while it is lost.
        goworld.call_service_any("ChannelDirectory", "Join", channel, *args)

    def _cmd_join(self, c: rules.Command) -> None:
        self._join(c.args[0], legacy=False)

    def _cmd_leave(self, c: rules.Command) -> None:
        channel = c.args[0]
        channel_id = self.joined.get(channel)
        if channel_id is None:
            self._error(f"you are not in #{channel}")
            return
        self.call(channel_id, "Leave", self.id)
        self._forget_channel(channel)
        self.call_client("OnLeft", channel, "left")

    def _cmd_create(self, c: rules.Command) -> None:
        channel, private = c.args[0], c.args[1] == "private"
        if len(self.joined) >= settings.CHANNELS_MAX:
            self._error(f"you are in {settings.CHANNELS_MAX} channels already: /leave one first")
            return
        goworld.call_service_any("ChannelDirectory", "Create", self.id, self.name, channel, private)

    def _cmd_moderate(self, c: rules.Command) -> None:
        user_at, arg_at = _MODERATION[c.name]
        user = c.args[user_at] if user_at is not None else ""
        arg = c.args[arg_at] if arg_at is not None else ""
        self._to_channel(c.args[0], "Moderate", self.id, self.name, self.admin, c.name, user, arg)

    def _cmd_msg(self, c: rules.Command) -> None:
        user, text = c.args
        if user == self.name:
            self._error("that is you")
            return
        goworld.call_service_any("Presence", "PM", self.id, self.name, user, text, self.admin)

    def _cmd_me(self, c: rules.Command) -> None:
        channel, text = c.args
        if channel not in self.joined:
            self._error(f"you are not in #{channel}: /join {channel} first")
            return
        self.call(self.joined[channel], "Post", self.id, text, "me")

    def _cmd_ignore(self, c: rules.Command) -> None:
        user = c.args[0]
        ignores = self.attrs.get_list("ignores")
        if user == self.name:
            self._error("you cannot ignore yourself")
        elif user in settings.ADMINS:
            self._error(f"you cannot ignore {user}: an admin")
        elif user in ignores:
            self._info(f"you ignore {user} already")
        elif len(ignores) >= settings.IGNORE_MAX:
            self._error(f"your ignore list is full ({settings.IGNORE_MAX} names): /unignore someone first")
        else:
            ignores.append(user)
            self._info(f"you ignore {user} now: their private messages are refused")
            self.call_client("OnIgnores", self._ignores())

    def _cmd_unignore(self, c: rules.Command) -> None:
        user = c.args[0]
        names = self._ignores()
        if user not in names:
            self._error(f"{user} is not on your ignore list")
            return
        names.remove(user)
        self.attrs["ignores"] = names
        self._info(f"you no longer ignore {user}")
        self.call_client("OnIgnores", names)

    def _cmd_status(self, c: rules.Command) -> None:
        self._set_status(c.args[0], c.args[1])

    def _set_status(self, status: str, message: str) -> None:
        self.attrs["status"] = status
        self.attrs["status_msg"] = message
        self.call_client("OnStatus", status, message)
        goworld.call_service_any("Presence", "Status", self.id, self.name, status, message)
        for channel_id in self.joined.values():
            self.call(channel_id, "MemberStatus", self.id, status, message)

    def _cmd_notice(self, c: rules.Command) -> None:
        if not self.admin:
            self._error("only admins can send notices")
            return
        goworld.call_service_any("Presence", "Notice", c.args[0], self.name)

    def _cmd_list(self, c: rules.Command) -> None:
        goworld.call_service_any("ChannelDirectory", "List", self.id, c.args[0])

    def _cmd_who(self, c: rules.Command) -> None:
        channel = c.args[0]
        if channel not in self.joined and not self.admin:
            self._error(f"you are not in #{channel}")
            return
        self._to_channel(channel, "Who", self.id)

    def _cmd_help(self, c: rules.Command) -> None:
        self._info(rules.help_text())

    # ---- answers from channels, the directory and Presence -----------------------------------

    @goworld.rpc(name="Notify")
    def notify(self, kind: str, text: str) -> None:
        self.call_client("ShowError" if kind == "error" else "ShowInfo", text)

    @goworld.rpc(name="JoinOk")
    def join_ok(self, channel: str, channel_id: str, info: dict, legacy: bool) -> None:
        if not self.online:
            self.call(channel_id, "Leave", self.id)
            return
        self.joined[channel] = channel_id
        channels = self.attrs.get_map("channels")
        if channels.get(channel) != channel_id:
            channels[channel] = channel_id
        self.set_client_filter_prop(f"ch.{channel}", "1")
        if legacy and self.attrs.get_str("chatroom") != channel:
            self.attrs["chatroom"] = channel
            self.set_client_filter_prop("chatroom", channel)
        if legacy or not self.current:
            self.current = channel
        self.call_client("OnJoined", channel, info)

    @goworld.rpc(name="JoinRefused")
    def join_refused(self, channel: str, reason: str, legacy: bool) -> None:
        self._forget_channel(channel)
        self._error(reason)

    @goworld.rpc(name="NoChannel")
    def no_channel(self, channel: str, legacy: bool) -> None:
        if legacy:
            self._info(f"joined room {channel}: a plain room (no history, no moderation); "
                       f"/create {channel} would make it a channel")
        else:
            self._error(f"no such channel #{channel}: /list shows the channels, /create {channel} makes it")

    @goworld.rpc(name="LeftChannel")
    def left_channel(self, channel: str, reason: str) -> None:
        legacy = self.attrs.get_str("chatroom") == channel
        if channel not in self.joined and not legacy:
            return
        self._forget_channel(channel)
        self.call_client("OnLeft", channel, reason)
        if legacy:  # GoWorld's client shows only ShowInfo/ShowError
            self._error(f"you left #{channel}: {reason}")

    @goworld.rpc(name="ChannelCreated")
    def channel_created(self, channel: str, channel_id: str) -> None:
        self._info(f"channel #{channel} created: you own it")
        status, msg = self.attrs.get_str("status"), self.attrs.get_str("status_msg")
        goworld.load_entity_anywhere("Channel", channel_id)
        self.call(channel_id, "Join", self.id, self.name, self.admin, status, msg, False)
        self.current = channel

    @goworld.rpc(name="MemberInfo")
    def member_info(self, channel: str, name: str, role: str, status: str, msg: str) -> None:
        self.call_client("OnMember", channel, name, role, status, msg)

    @goworld.rpc(name="ChannelList")
    def channel_list(self, items: list) -> None:
        self.call_client("OnChannelList", items)

    @goworld.rpc(name="DeliverPM")
    def deliver_pm(self, from_id: str, from_name: str, text: str, ts: float, from_admin: bool) -> None:
        if from_name in self._ignores() and not from_admin:
            self.call(from_id, "Notify", "error", f"{self.name} is not available")
            return
        self.call_client("OnPrivateMsg", from_name, self.name, text, ts)
        self.call(from_id, "PMDelivered", self.name, text, ts)

    @goworld.rpc(name="PMDelivered")
    def pm_delivered(self, to: str, text: str, ts: float) -> None:
        self.call_client("OnPrivateMsg", self.name, to, text, ts)

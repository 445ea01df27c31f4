"""A channel: persistent, one entity per channel (its id in KVDB ``channel$<name>``).

Saved state (attributes): name, topic, owner, ops, private, invited, bans ``{user: until}``,
timeouts ``{user: until}`` (Unix seconds; a ban until 0 has no end), the last ``HISTORY``
messages ``[ts, name, text, kind]``. Members are a field ``{avatar id: [name, status, msg]}``:
not saved (players rejoin at login), kept by a reload.

Every event goes to the members' clients as one filtered call on the client prop
``ch.<name>`` = ``"1"`` (each Avatar sets it on joining); messages also go to GoWorld's
clients as ``OnRecvChat`` on ``chatroom`` = name.
"""

from __future__ import annotations

import time
from collections.abc import Sized
from typing import Any

import goworld

from . import rules, settings
from .rules import RANK_ADMIN, RANK_OP, RANK_OWNER

_P = goworld.PERSISTENT


class Channel(goworld.Entity):
    persistent = True
    attributes = {
        "name": _P, "topic": _P, "owner": _P, "ops": _P, "private": _P, "invited": _P,
        "bans": _P, "timeouts": _P, "history": _P, "created": _P,
    }

    def on_init(self) -> None:
        self.members: dict[str, list[str]] = {}  # avatar id -> [name, status, status msg]
        self.save_due = False

    def on_created(self) -> None:  # new, or loaded from storage
        a = self.attrs
        a.set_default("topic", "")
        a.set_default("owner", "")
        a.set_default("ops", [])
        a.set_default("private", False)
        a.set_default("invited", [])
        a.set_default("bans", {})
        a.set_default("timeouts", {})
        a.set_default("history", [])
        a.set_default("created", time.time())
        self._tell_directory("Register")

    # ---- state -----------------------------------------------------------------------------

    @property
    def cname(self) -> str:
        return self.attrs.get_str("name")

    def _ops(self) -> list[str]:
        return [str(n) for n in self.attrs.get_list("ops")]

    def _member_id(self, name: str) -> str | None:
        for avatar_id, (member, _s, _m) in self.members.items():
            if member == name:
                return avatar_id
        return None

    def _rank(self, name: str, admin: bool = False) -> int:
        if admin:
            return RANK_ADMIN
        return rules.rank_of(name, owner=self.attrs.get_str("owner"), ops=self._ops(),
                             member=self._member_id(name) is not None)

    def _role(self, name: str) -> str:
        return rules.role_of(name, owner=self.attrs.get_str("owner"), ops=self._ops())

    def _info(self) -> dict[str, Any]:
        a = self.attrs
        return {
            "name": self.cname,
            "topic": a.get_str("topic"),
            "owner": a.get_str("owner"),
            "ops": self._ops(),
            "private": a.get_bool("private"),
            "members": [[n, self._role(n), s, m] for n, s, m in self.members.values()],
            "history": a.get_list("history").to_builtin()[-settings.HISTORY:],
        }

    def _changed(self) -> None:
        """Save soon (``goworld stop`` saves everything anyway)."""
        if not self.save_due:
            self.save_due = True
            self.add_callback(settings.SAVE_DELAY, "save_now")

    def save_now(self) -> None:
        self.save_due = False
        self.save()

    def _tell_directory(self, method: str = "Update") -> None:
        a = self.attrs
        goworld.call_service_any("ChannelDirectory", method, self.cname, self.id, a.get_str("topic"),
                                 len(self.members), a.get_bool("private"))

    # ---- broadcasting ----------------------------------------------------------------------

    def _broadcast(self, method: str, *args: Any) -> None:
        self.call_filtered_clients(f"ch.{self.cname}", "=", "1", method, *args)

    def _member_event(self, name: str, role: str, status: str = "", msg: str = "") -> None:
        self._broadcast("OnMember", self.cname, name, role, status, msg)

    def _record(self, name: str, text: str, kind: str) -> float:
        now = time.time()
        history = self.attrs.get_list("history")
        history.append([now, name, text, kind])
        if len(history) >= settings.HISTORY + 10:  # a ListAttr pops only its last item: rewrite
            self.attrs["history"] = history.to_builtin()[-settings.HISTORY:]
        self._changed()
        self._broadcast("OnChannelMsg", self.cname, name, text, now, kind)
        return now

    def _system(self, text: str) -> None:
        self._record("", text, "system")

    def _tell(self, avatar_id: str, kind: str, text: str) -> None:
        self.call(avatar_id, "Notify", kind, text)

    # ---- joining and leaving -----------------------------------------------------------------

    @goworld.rpc(name="Join")
    def join(self, avatar_id: str, name: str, admin: bool, status: str, msg: str, legacy: bool) -> None:
        ch = self.cname
        now = time.time()
        bans = self.attrs.get_map("bans")
        until = bans.get(name)
        if until is not None and not rules.active(until, now):
            del bans[name]
            self._changed()
        elif until is not None and not admin:
            self.call(avatar_id, "JoinRefused", ch,
                      f"you are banned from #{ch} until {rules.format_until(until)}", legacy)
            return
        already = avatar_id in self.members
        if (self.attrs.get_bool("private") and not already and self._rank(name, admin) < RANK_OP
                and name not in self.attrs.get_list("invited")):
            self.call(avatar_id, "JoinRefused", ch,
                      f"#{ch} is private: you need an invitation from an op (/invite {ch} {name})", legacy)
            return
        for other_id in [i for i, m in self.members.items() if m[0] == name and i != avatar_id]:
            del self.members[other_id]  # a stale entry of the same player
        self.members[avatar_id] = [name, status, msg]
        self.call(avatar_id, "JoinOk", ch, self.id, self._info(), legacy)
        if not already:
            self._member_event(name, self._role(name), status, msg)
            self._tell_directory()

    @goworld.rpc(name="Leave")
    def leave(self, avatar_id: str) -> None:
        member = self.members.pop(avatar_id, None)
        if member is not None:
            self._member_event(member[0], "")
            self._tell_directory()

    @goworld.rpc(name="MemberStatus")
    def member_status(self, avatar_id: str, status: str, msg: str) -> None:
        member = self.members.get(avatar_id)
        if member is not None:
            member[1], member[2] = status, msg
            self._member_event(member[0], self._role(member[0]), status, msg)

    @goworld.rpc(name="Who")
    def who(self, avatar_id: str) -> None:
        ch = self.cname
        names = []
        for name, status, msg in self.members.values():
            role = self._role(name)
            self.call(avatar_id, "MemberInfo", ch, name, role, status, msg)
            extra = ", ".join(x for x in (role if role != "member" else "", status if status != "online" else "", msg) if x)
            names.append(f"{name} ({extra})" if extra else name)
        self._tell(avatar_id, "info", f"#{ch}: {len(names)} member(s): {', '.join(sorted(names))}")

    # ---- posting ---------------------------------------------------------------------------

    @goworld.rpc(name="Post")
    def post(self, avatar_id: str, text: str, kind: str) -> None:
        ch = self.cname
        member = self.members.get(avatar_id)
        if member is None:
            self._tell(avatar_id, "error", f"you are not in #{ch}: /join {ch} first")
            self.call(avatar_id, "LeftChannel", ch, "not a member any more")
            return
        name = member[0]
        timeouts = self.attrs.get_map("timeouts")
        until = timeouts.get(name)
        if until is not None:
            if rules.active(until, time.time()):
                self._tell(avatar_id, "error",
                           f"you cannot post in #{ch} until {rules.format_until(until)} (timed out)")
                return
            del timeouts[name]
        text, err = rules.clean_text(text, settings.TEXT_MAX)
        if err or kind not in ("msg", "me"):
            self._tell(avatar_id, "error", err or f"bad message kind {kind!r}")
            return
        self._record(name, text, kind)
        self.call_filtered_clients("chatroom", "=", ch, "OnRecvChat", name,
                                   text if kind == "msg" else f"* {name} {text}")

    # ---- moderation ------------------------------------------------------------------------

    @goworld.rpc(name="Moderate")
    def moderate(self, actor_id: str, actor: str, admin: bool, action: str, target: str, arg: str) -> None:
        ch = self.cname
        rank = self._rank(actor, admin)
        need = RANK_OWNER if action in ("op", "deop", "private") else RANK_OP
        if rank < need:
            who = "the owner or an admin" if need == RANK_OWNER else "ops, the owner or an admin"
            self._tell(actor_id, "error", f"only {who} of #{ch} can use /{action}")
            return
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            self._tell(actor_id, "error", f"unknown action {action!r}")
            return
        if target and action in ("kick", "ban", "timeout"):
            target_rank = self._rank(target)
            if target == actor:
                self._tell(actor_id, "error", f"you cannot /{action} yourself")
                return
            if not rules.can_moderate(rank, target_rank):
                role = rules.ROLE_NAMES.get(target_rank, "member")
                self._tell(actor_id, "error", f"you cannot /{action} {target} in #{ch}: {target} is "
                           f"{'an' if role[0] in 'aeiou' else 'a'} {role} (your rank is not higher)")
                return
        handler(actor_id, actor, target, arg)

    def _remove(self, target: str, reason: str) -> bool:
        avatar_id = self._member_id(target)
        if avatar_id is None:
            return False
        del self.members[avatar_id]
        self.call(avatar_id, "LeftChannel", self.cname, reason)
        self._member_event(target, "")
        self._tell_directory()
        return True

    def _do_topic(self, actor_id: str, actor: str, target: str, topic: str) -> None:
        topic, err = rules.clean_text(topic, settings.TOPIC_MAX, "topic", empty_ok=True)
        if err:
            self._tell(actor_id, "error", err)
            return
        self.attrs["topic"] = topic
        self._changed()
        self._broadcast("OnTopic", self.cname, topic, actor)
        self._system(f"{actor} set the topic: {topic}" if topic else f"{actor} cleared the topic")
        self._tell_directory()

    def _do_op(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        ch = self.cname
        ops = self.attrs.get_list("ops")
        if target == self.attrs.get_str("owner"):
            self._tell(actor_id, "error", f"{target} owns #{ch}")
        elif target in ops:
            self._tell(actor_id, "error", f"{target} is an op of #{ch} already")
        elif not self._full(actor_id, "operator", ops):
            ops.append(target)
            self._changed()
            self._role_changed(target)
            self._system(f"{actor} made {target} an op")
            self._tell(actor_id, "info", f"{target} is an op of #{ch} now")

    def _do_deop(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        ch = self.cname
        ops = self._ops()
        if target not in ops:
            self._tell(actor_id, "error", f"{target} is not an op of #{ch}")
            return
        ops.remove(target)
        self.attrs["ops"] = ops
        self._changed()
        self._role_changed(target)
        self._system(f"{actor} removed {target} from the ops")
        self._tell(actor_id, "info", f"{target} is no longer an op of #{ch}")

    def _role_changed(self, name: str) -> None:
        avatar_id = self._member_id(name)
        if avatar_id is not None:
            _, status, msg = self.members[avatar_id]
            self._member_event(name, self._role(name), status, msg)

    def _full(self, actor_id: str, what: str, entries: Sized) -> bool:
        """Is the ``what`` list at CHANNEL_LIST_MAX (after dropping what expired)? Says so."""
        now = time.time()
        for key in ("bans", "timeouts"):
            table = self.attrs.get_map(key)
            for name in [n for n, until in table.items() if not rules.active(until, now)]:
                del table[name]
        if len(entries) < settings.CHANNEL_LIST_MAX:
            return False
        self._tell(actor_id, "error", f"the {what} list of #{self.cname} is full "
                   f"({settings.CHANNEL_LIST_MAX}): remove someone from it first")
        return True

    def _do_kick(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        if not self._remove(target, f"kicked by {actor}"):
            self._tell(actor_id, "error", f"{target} is not in #{self.cname}")
            return
        self._system(f"{target} was kicked by {actor}")
        self._tell(actor_id, "info", f"{target} was kicked from #{self.cname}")

    def _do_ban(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        ch = self.cname
        minutes = 0
        if arg:
            minutes, err = rules.parse_minutes(arg, 1, settings.BAN_MINUTES_MAX, "the duration")
            if err:
                self._tell(actor_id, "error", err)
                return
        until = time.time() + minutes * 60 if minutes else 0.0
        bans = self.attrs.get_map("bans")
        if target not in bans and self._full(actor_id, "ban", bans):
            return
        bans[target] = until
        ops = self._ops()
        if target in ops:
            ops.remove(target)
            self.attrs["ops"] = ops
        self._changed()
        when = f"until {rules.format_until(until)}" if until else "until unbanned"
        self._remove(target, f"banned by {actor} {when}")
        self._system(f"{target} was banned by {actor} {when}")
        self._tell(actor_id, "info", f"{target} is banned from #{ch} {when}")

    def _do_unban(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        ch = self.cname
        bans = self.attrs.get_map("bans")
        if target not in bans:
            self._tell(actor_id, "error", f"{target} is not banned from #{ch}")
            return
        del bans[target]
        self._changed()
        self._system(f"{actor} lifted the ban on {target}")
        self._tell(actor_id, "info", f"{target} may join #{ch} again")

    def _do_timeout(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        ch = self.cname
        minutes, err = rules.parse_minutes(arg, 1, settings.TIMEOUT_MINUTES_MAX, "the duration")
        if err:
            self._tell(actor_id, "error", err)
            return
        until = time.time() + minutes * 60
        timeouts = self.attrs.get_map("timeouts")
        if target not in timeouts and self._full(actor_id, "timeout", timeouts):
            return
        timeouts[target] = until
        self._changed()
        when = rules.format_until(until)
        self._system(f"{target} cannot post until {when} (timeout by {actor})")
        target_id = self._member_id(target)
        if target_id is not None:
            self._tell(target_id, "error", f"you cannot post in #{ch} until {when} (timeout by {actor})")
        self._tell(actor_id, "info", f"{target} cannot post in #{ch} until {when}")

    def _do_invite(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        ch = self.cname
        invited = self.attrs.get_list("invited")
        if target not in invited:
            if self._full(actor_id, "invitation", invited):
                return
            invited.append(target)
            self._changed()
        goworld.call_service_any("Presence", "Tell", target, "info",
                                 f"{actor} invited you to #{ch}: /join {ch}")
        self._tell(actor_id, "info", f"{target} may join #{ch} now")

    def _do_private(self, actor_id: str, actor: str, target: str, arg: str) -> None:
        ch = self.cname
        private = arg == "on"
        self.attrs["private"] = private
        self._changed()
        self._tell_directory()
        self._system(f"{actor} made the channel {'private' if private else 'public'}")
        self._tell(actor_id, "info", f"#{ch} is {'private: by invitation' if private else 'public'} now")

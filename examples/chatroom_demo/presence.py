"""Presence: who is online (a service, 1 shard): PM routing, statuses, global notices.

Avatars check in (``Online``) when their client arrives and out (``Offline``) when they go.
Notices reach every online client with one filtered call on the client prop ``online`` =
``"1"`` (each Avatar sets it).
"""

from __future__ import annotations

import time

import goworld


class Presence(goworld.Entity):
    def on_init(self) -> None:
        self.online: dict[str, list[str]] = {}  # name -> [avatar id, status, status msg]

    @goworld.rpc(name="Online")
    def on_line(self, avatar_id: str, name: str, status: str, msg: str) -> None:
        self.online[name] = [avatar_id, status, msg]

    @goworld.rpc(name="Offline")
    def off_line(self, avatar_id: str, name: str) -> None:
        entry = self.online.get(name)
        if entry is not None and entry[0] == avatar_id:
            del self.online[name]

    @goworld.rpc(name="Status")
    def status(self, avatar_id: str, name: str, status: str, msg: str) -> None:
        entry = self.online.get(name)
        if entry is not None and entry[0] == avatar_id:
            entry[1], entry[2] = status, msg

    @goworld.rpc(name="PM")
    def pm(self, from_id: str, from_name: str, to_name: str, text: str, from_admin: bool) -> None:
        entry = self.online.get(to_name)
        if entry is None:
            self.call(from_id, "Notify", "error", f"{to_name} is not online")
            return
        self.call(entry[0], "DeliverPM", from_id, from_name, text, time.time(), from_admin)

    @goworld.rpc(name="Tell")
    def tell(self, name: str, kind: str, text: str) -> None:
        entry = self.online.get(name)
        if entry is not None:
            self.call(entry[0], "Notify", kind, text)

    @goworld.rpc(name="Notice")
    def notice(self, text: str, by: str) -> None:
        self.call_filtered_clients("online", "=", "1", "OnNotice", text, by)

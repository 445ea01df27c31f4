"""ChannelDirectory: the service (1 shard) that knows every channel.

At start it loads every channel named in KVDB (``channel$<name>`` -> entity id) and makes the
default ones (settings.DEFAULT_CHANNELS) that do not exist yet; it creates channels, finds one
by name for joins and commands, and lists the public ones with their member counts and topics
(each Channel reports them). The table is a field: a reload keeps it; a restart rebuilds it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import goworld

from . import rules, settings

logger = logging.getLogger("chatroom")

PREFIX = "channel$"


class ChannelDirectory(goworld.Entity):
    def on_init(self) -> None:
        #: name -> {"id", "topic", "members", "private"}
        self.channels: dict[str, dict[str, Any]] = {}
        self.loaded = False
        #: joins that came before KVDB answered (a restarted game): answered once loaded
        self.waiting: list[tuple[Any, ...]] = []

    def on_created(self) -> None:
        goworld.kvdb_get_range(PREFIX, PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1), self._got_channels)

    def on_restored(self) -> None:
        if not self.loaded:  # a reload came before KVDB answered: that answer is lost
            self.on_created()

    def _got_channels(self, items: list[tuple[str, str]] | None, err: Exception | None) -> None:
        if err is not None or items is None:
            logger.error("ChannelDirectory: reading the channels from KVDB failed: %s; retrying", err)
            goworld.add_callback(2.0, self.on_created)
            return
        for key, channel_id in items:
            name = key[len(PREFIX):]
            self.channels.setdefault(name, {"id": channel_id, "topic": "", "members": 0, "private": False})
            goworld.load_entity_anywhere("Channel", channel_id)
        for name, topic in settings.DEFAULT_CHANNELS.items():
            if name not in self.channels:
                self._create(name, "", False, topic)
        self.loaded = True
        logger.info("ChannelDirectory: %d channel(s) loaded from KVDB", len(items))
        waiting, self.waiting = self.waiting, []
        for args in waiting:
            self.join(*args)

    def _create(self, name: str, owner: str, private: bool, topic: str = "") -> str:
        channel_id = goworld.create_entity_anywhere(
            "Channel", {"name": name, "owner": owner, "private": private, "topic": topic, "created": time.time()})
        self.channels[name] = {"id": channel_id, "topic": topic, "members": 0, "private": private}

        def stored(old: str | None, err: Exception | None) -> None:
            if err is not None:
                logger.error("ChannelDirectory: KVDB refused channel %s: %s", name, err)
            elif old is not None and old != channel_id:
                logger.error("ChannelDirectory: channel %s was in KVDB already (%s)", name, old)

        goworld.kvdb_get_or_put(PREFIX + name, channel_id, stored)
        return channel_id

    def _not_ready(self, avatar_id: str) -> bool:
        if not self.loaded:
            self.call(avatar_id, "Notify", "error", "the channel directory is still loading: try again in a moment")
        return not self.loaded

    # ---- from avatars ----------------------------------------------------------------------

    @goworld.rpc(name="Create")
    def create(self, avatar_id: str, owner: str, name: str, private: bool) -> None:
        if self._not_ready(avatar_id):
            return
        err = rules.check_channel_name(name)
        if err:
            self.call(avatar_id, "Notify", "error", err)
            return
        if name in self.channels:
            self.call(avatar_id, "Notify", "error", f"#{name} exists already: /join {name}")
            return
        if len(self.channels) >= settings.CHANNELS_TOTAL_MAX:
            self.call(avatar_id, "Notify", "error",
                      f"the server holds {settings.CHANNELS_TOTAL_MAX} channels already: join one")
            return
        channel_id = self._create(name, owner, private)
        logger.info("channel #%s created by %s (%s)", name, owner, "private" if private else "public")
        self.call(avatar_id, "ChannelCreated", name, channel_id)

    @goworld.rpc(name="Join")
    def join(self, name: str, avatar_id: str, user: str, admin: bool, status: str, msg: str, legacy: bool) -> None:
        entry = self.channels.get(name)
        if entry is None:
            if self.loaded:
                self.call(avatar_id, "NoChannel", name, legacy)
            elif len(self.waiting) < settings.JOINS_WAITING_MAX:
                self.waiting.append((name, avatar_id, user, admin, status, msg, legacy))
            elif not legacy:
                self._not_ready(avatar_id)
            return
        goworld.load_entity_anywhere("Channel", entry["id"])  # a no-op while it runs
        self.call(entry["id"], "Join", avatar_id, user, admin, status, msg, legacy)

    @goworld.rpc(name="Route")
    def route(self, avatar_id: str, name: str, method: str, args: list) -> None:
        """A command for a channel the avatar is not in (an op or admin acting from outside)."""
        entry = self.channels.get(name)
        if entry is None:
            if not self._not_ready(avatar_id):
                self.call(avatar_id, "Notify", "error", f"no such channel #{name}")
            return
        if method not in ("Moderate", "Who"):
            return
        goworld.load_entity_anywhere("Channel", entry["id"])
        self.call(entry["id"], method, *args)

    @goworld.rpc(name="List")
    def list(self, avatar_id: str, query: str) -> None:
        found = [
            [name, e["topic"], e["members"], e["private"]]
            for name, e in self.channels.items()
            if not e["private"] and rules.search_matches(query, name, e["topic"])
        ]
        found.sort(key=lambda item: (-item[2], item[0]))
        self.call(avatar_id, "ChannelList", found[: settings.LIST_MAX])

    # ---- from channels ---------------------------------------------------------------------

    @goworld.rpc(name="Register")
    def register(self, name: str, channel_id: str, topic: str, members: int, private: bool) -> None:
        entry = self.channels.get(name)
        if entry is not None and entry["id"] != channel_id:
            logger.warning("ChannelDirectory: #%s registered by %s, known as %s", name, channel_id, entry["id"])
        self.channels[name] = {"id": channel_id, "topic": topic, "members": members, "private": private}

    @goworld.rpc(name="Update")
    def update(self, name: str, channel_id: str, topic: str, members: int, private: bool) -> None:
        entry = self.channels.get(name)
        if entry is not None and entry["id"] == channel_id:
            entry.update(topic=topic, members=members, private=private)

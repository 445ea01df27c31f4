"""OnlineService (who is online) and SpaceService (spaces per kind, created on demand)."""

import logging
import time

import goworld

logger = logging.getLogger("goworld.test_game")

#: A space takes avatars until it holds this many; then another space of the kind is made.
SPACE_CAPACITY = 100
#: A space may be destroyed only if nobody was sent into it for this long (seconds).
DESTROY_AFTER_IDLE = 60.0


class OnlineService(goworld.Entity):
    """Sharded by avatar id: CheckIn on avatar creation, CheckOut on destroy."""

    def on_init(self) -> None:
        self.avatars: dict[str, tuple[str, int]] = {}

    @goworld.rpc(name="CheckIn")
    def check_in(self, avatar_id: str, name: str, level: int) -> None:
        self.avatars[avatar_id] = (name, level)
        logger.debug("%r: %s (%s, level %d) checked in, %d online", self, avatar_id, name, level, len(self.avatars))

    @goworld.rpc(name="CheckOut")
    def check_out(self, avatar_id: str) -> None:
        self.avatars.pop(avatar_id, None)


class _SpaceInfo:
    __slots__ = ("kind", "avatar_num", "last_enter")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.avatar_num = 0
        self.last_enter = time.time()


class SpaceService(goworld.Entity):
    """Sharded by space kind. Sends each avatar to the fullest space of the kind that still has
    room, creating a space (anywhere in the cluster) when there is none."""

    def on_init(self) -> None:
        self.spaces: dict[int, dict[str, _SpaceInfo]] = {}
        self.waiting: dict[int, list[str]] = {}  # kind -> avatars waiting for a new space

    def _pick(self, kind: int) -> str | None:
        best, best_num = None, -1
        for space_id, info in self.spaces.get(kind, {}).items():
            if best_num < info.avatar_num < SPACE_CAPACITY:
                best, best_num = space_id, info.avatar_num
        return best

    def _send(self, avatar_id: str, kind: int, space_id: str) -> None:
        info = self.spaces[kind][space_id]
        info.avatar_num += 1  # counted at once; the space reports the real number later
        info.last_enter = time.time()
        self.call(avatar_id, "DoEnterSpace", kind, space_id)

    @goworld.rpc(name="EnterSpace")
    def enter_space_of_kind(self, avatar_id: str, kind: int) -> None:
        space_id = self._pick(kind)
        if space_id is not None:
            self._send(avatar_id, kind, space_id)
            return
        first = kind not in self.waiting
        self.waiting.setdefault(kind, []).append(avatar_id)
        if first:
            goworld.create_space_anywhere(kind)

    @goworld.rpc(name="NotifySpaceLoaded")
    def notify_space_loaded(self, kind: int, space_id: str) -> None:
        self.spaces.setdefault(kind, {})[space_id] = _SpaceInfo(kind)
        for avatar_id in self.waiting.pop(kind, []):
            self._send(avatar_id, kind, space_id)

    @goworld.rpc(name="NotifyAvatarNum")
    def notify_avatar_num(self, kind: int, space_id: str, avatar_num: int) -> None:
        info = self.spaces.get(kind, {}).get(space_id)
        if info is not None:
            info.avatar_num = avatar_num

    @goworld.rpc(name="SpaceGone")
    def space_gone(self, kind: int, space_id: str) -> None:
        """An avatar could not enter ``space_id``: it died with its game. Not chosen again."""
        self.spaces.get(kind, {}).pop(space_id, None)

    @goworld.rpc(name="RequestDestroy")
    def request_destroy(self, kind: int, space_id: str) -> None:
        """An empty space asks to go; yes only if nobody was sent there for a while."""
        spaces = self.spaces.get(kind, {})
        info = spaces.get(space_id)
        ok = info is None or (info.avatar_num == 0 and time.time() - info.last_enter > DESTROY_AFTER_IDLE)
        if ok:
            spaces.pop(space_id, None)
        self.call(space_id, "ConfirmRequestDestroy", ok)

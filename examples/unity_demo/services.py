"""SpaceService (one space per kind, created on demand) and OnlineService (who is online)."""

import goworld


class SpaceService(goworld.Entity):
    def on_init(self) -> None:
        self.spaces: dict[int, str] = {}
        self.waiting: dict[int, list[str]] = {}

    @goworld.rpc(name="EnterSpace")
    def enter_space_of_kind(self, player_id: str, kind: int) -> None:
        space_id = self.spaces.get(kind)
        if space_id is not None:
            self.call(player_id, "DoEnterSpace", kind, space_id)
            return
        first = kind not in self.waiting
        self.waiting.setdefault(kind, []).append(player_id)
        if first:
            goworld.create_space_anywhere(kind)

    @goworld.rpc(name="NotifySpaceLoaded")
    def notify_space_loaded(self, kind: int, space_id: str) -> None:
        self.spaces[kind] = space_id
        for player_id in self.waiting.pop(kind, []):
            self.call(player_id, "DoEnterSpace", kind, space_id)


class OnlineService(goworld.Entity):
    def on_init(self) -> None:
        self.online: dict[str, str] = {}

    @goworld.rpc(name="CheckIn")
    def check_in(self, player_id: str, name: str) -> None:
        self.online[player_id] = name

    @goworld.rpc(name="CheckOut")
    def check_out(self, player_id: str) -> None:
        self.online.pop(player_id, None)

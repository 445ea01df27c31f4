import time

import goworld

APP_VERSION = "v1"


class Memo:
    """A plain Python object kept in an entity field (saved by freeze with pickle)."""

    def __init__(self, text: str) -> None:
        self.text = text


class Account(goworld.Entity):
    """Boot entity: Login(name) loads or creates the avatar and hands the client over."""

    @goworld.rpc(client=True, name="Login")
    def login(self, name: str) -> None:
        def got(avatar_id, err):
            if avatar_id:
                goworld.load_entity_anywhere("Avatar", avatar_id)
                self.call(avatar_id, "GetSpaceID", self.id)
                return
            avatar = goworld.create_entity_locally("Avatar", {"name": name})
            goworld.kvdb_put("avatar$" + name, avatar.id)
            self.give_client_to(avatar)

        goworld.kvdb_get("avatar$" + name, got)

    @goworld.rpc(name="OnGetAvatarSpaceID")
    def on_get_avatar_space_id(self, avatar_id: str, space_id: str) -> None:
        avatar = goworld.get_entity(avatar_id)
        if avatar is not None:
            self.give_client_to(avatar)
        else:
            self.attrs["loginAvatarID"] = avatar_id
            self.enter_space(space_id)

    def on_migrate_in(self) -> None:
        avatar = goworld.get_entity(self.attrs.get_str("loginAvatarID"))
        if avatar is not None:
            self.give_client_to(avatar)

    def on_client_disconnected(self) -> None:
        self.destroy()


class Avatar(goworld.Entity):
    persistent = True
    aoi_distance = 100
    attributes = {
        "name": goworld.ALL_CLIENTS | goworld.PERSISTENT,
        "level": goworld.CLIENT | goworld.PERSISTENT,
        "counter": goworld.CLIENT | goworld.PERSISTENT,
        "hp": goworld.ALL_CLIENTS,
        "bag": goworld.CLIENT,
        "secret": goworld.PERSISTENT,
    }

    def on_attrs_ready(self) -> None:
        self.attrs.set_default("level", 1)
        self.attrs.set_default("counter", 0)
        self.attrs.set_default("secret", "s3")
        self.attrs["hp"] = 100

    def on_client_connected(self) -> None:
        self.set_client_filter_prop("team", self.attrs.get_str("team_name", "blue"))

    # unlimited rate, 1 MiB of arguments: tests pump it every few ms through reloads
    # (test_reload) and with 100 kB strings (test_secure_transports)
    @goworld.rpc(client=True, name="Echo", rate=0, max_arg_bytes=1 << 20)
    def echo(self, seq: int, payload: str = "") -> None:
        self.call_client("OnEcho", seq, payload)

    @goworld.rpc(client=True, name="Incr")
    def incr(self) -> None:
        self.attrs["counter"] = self.attrs.get_int("counter") + 1

    # a busy game: each call takes ``ms`` of the game's time, then counts (test_safe_stop)
    @goworld.rpc(client=True, name="Work", rate=0)
    def work(self, ms: int) -> None:
        time.sleep(ms / 1000)
        self.attrs["counter"] = self.attrs.get_int("counter") + 1

    @goworld.rpc(client=True, name="SetHP")
    def set_hp(self, hp: int) -> None:
        self.attrs["hp"] = hp

    @goworld.rpc(client=True, name="PutBag")
    def put_bag(self, key: str, value: int) -> None:
        self.attrs.get_map("bag")[key] = value

    @goworld.rpc(client=True, name="WhichGame")
    def which_game(self) -> None:
        self.call_client("OnWhichGame", goworld.get_game_id())

    @goworld.rpc(client=True, name="EnterSpace")
    def enter_space_kind(self, kind: int) -> None:
        goworld.call_service_shard_key("SpaceService", str(kind), "EnterSpace", self.id, kind)

    @goworld.rpc(name="DoEnterSpace")
    def do_enter_space(self, space_id: str, x: float, z: float) -> None:
        self.enter_space(space_id, (x, 0.0, z))

    @goworld.rpc(client=True, name="Move")
    def move(self, x: float, z: float) -> None:
        self.set_position((x, 0.0, z))

    @goworld.rpc(client=True, name="Version")
    def version(self) -> None:
        self.call_client("OnVersion", APP_VERSION)

    @goworld.rpc(client=True, name="Remember")
    def remember(self, memo: str) -> None:
        self.memo = {"text": memo, "me": self}  # a plain Python field, with a self-reference

    @goworld.rpc(client=True, name="RememberObject")
    def remember_object(self, text: str) -> None:
        self.memo_obj = Memo(text)
        self.call_client("OnRemembered", text)

    @goworld.rpc(client=True, name="RecallObject")
    def recall_object(self) -> None:
        self.call_client("OnRecallObject", self.memo_obj.text)

    @goworld.rpc(client=True, name="Recall")
    def recall(self) -> None:
        memo = getattr(self, "memo", None)
        self.call_client("OnRecall", memo["text"] if memo else "", bool(memo) and memo["me"] is self)

    @goworld.rpc(client=True, name="StartTicker")
    def start_ticker(self, interval: float) -> None:
        self.ticks = 0
        self.add_timer(interval, "tick")

    def tick(self) -> None:
        self.ticks += 1
        self.call_client("OnTick", self.ticks)

    @goworld.rpc(client=True, name="CallMeLater")
    def call_me_later(self, delay: float, token: str) -> None:
        self.add_callback(delay, "called_back", token)

    def called_back(self, token: str) -> None:
        self.call_client("OnCalledBack", token)

    @goworld.rpc(client=True, name="BreakFreeze")
    def break_freeze(self, broken: bool) -> None:
        self.freeze_broken = broken
        self.call_client("OnBreakFreeze", broken)

    def on_freeze(self) -> None:
        if getattr(self, "freeze_broken", False):
            raise RuntimeError("this avatar refuses to freeze")

    @goworld.rpc(client=True, name="SpawnCrowd")
    def spawn_crowd(self, n: int) -> None:
        """n simple AOI entities spread over this avatar's space (benchmarks)."""
        space = self.space
        for i in range(n):
            space.create_entity("Dummy", ((i % 100) * 30.0, 0.0, (i // 100) * 30.0))
        self.call_client("OnSpawned", n)

    @goworld.rpc(client=True, name="EnableSync")
    def enable_sync(self, on: bool) -> None:
        self.set_client_syncing(on)
        self.call_client("OnSyncEnabled", on)

    @goworld.rpc(client=True, name="WhereAmI")
    def where_am_i(self) -> None:
        p = self.position
        self.call_client("OnWhereAmI", p.x, p.y, p.z, self.yaw)

    @goworld.rpc(client=True, name="MigrateToGame")
    def migrate_to_game(self, game_id: int) -> None:
        self.enter_space(goworld.get_nil_space_id(game_id))

    @goworld.rpc(client=True, name="Ping")
    def ping(self) -> None:
        goworld.call_service_any("EchoService", "Ping", self.id)

    @goworld.rpc(name="OnPong")
    def on_pong(self, game_id: int) -> None:
        self.call_client("OnPong", game_id)

    @goworld.rpc(client=True, name="Shout")
    def shout(self, text: str) -> None:
        self.call_all_clients("OnShout", self.attrs.get_str("name"), text)

    @goworld.rpc(client=True, name="TeamChat")
    def team_chat(self, team: str, text: str) -> None:
        self.call_filtered_clients("team", "=", team, "OnTeamChat", text)

    @goworld.rpc(client=True, name="JoinTeam")
    def join_team(self, team: str) -> None:
        self.attrs["team_name"] = team
        self.set_client_filter_prop("team", team)

    @goworld.rpc(name="GetSpaceID")
    def get_space_id(self, caller: str) -> None:
        self.call(caller, "OnGetAvatarSpaceID", self.id, self.space.id if self.space else "")

    def on_enter_space(self) -> None:
        if self.space is not None and not self.space.is_nil:
            self.call_client("OnEnteredSpace", self.space.kind, goworld.get_game_id())

    def on_migrate_in(self) -> None:
        self.call_client("OnMigrated", goworld.get_game_id())

    def on_client_disconnected(self) -> None:
        self.destroy()


class Dummy(goworld.Entity):
    aoi_distance = 100
    attributes = {"name": goworld.ALL_CLIENTS, "hp": goworld.ALL_CLIENTS, "bag": goworld.CLIENT}

    def on_created(self) -> None:
        self.attrs["name"] = "dummy"
        self.attrs["hp"] = 100
        self.attrs["bag"] = {"potion": 3, "coins": [1, 2, 3]}


class MySpace(goworld.Space):
    def on_space_created(self) -> None:
        if self.is_nil:
            return
        self.enable_aoi(100)
        goworld.call_service_shard_key("SpaceService", str(self.kind), "SpaceReady", self.kind, self.id)


class SpaceService(goworld.Entity):
    """Creates one space per kind somewhere in the cluster and sends avatars into it."""

    def on_init(self) -> None:
        self.spaces = {}
        self.waiting = {}

    @goworld.rpc(name="EnterSpace")
    def enter(self, avatar_id: str, kind: int) -> None:
        space_id = self.spaces.get(kind)
        if space_id is not None:
            self.call(avatar_id, "DoEnterSpace", space_id, 0.0, 0.0)
            return
        first = kind not in self.waiting
        self.waiting.setdefault(kind, []).append(avatar_id)
        if first:
            goworld.create_space_anywhere(kind)

    @goworld.rpc(name="SpaceReady")
    def space_ready(self, kind: int, space_id: str) -> None:
        self.spaces[kind] = space_id
        for avatar_id in self.waiting.pop(kind, []):
            self.call(avatar_id, "DoEnterSpace", space_id, 0.0, 0.0)


class EchoService(goworld.Entity):
    @goworld.rpc(name="Ping")
    def ping(self, avatar_id: str) -> None:
        self.call(avatar_id, "OnPong", goworld.get_game_id())

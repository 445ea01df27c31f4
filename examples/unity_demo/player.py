"""A player: moves by client sync, shoots monsters, takes damage."""

import goworld


class Player(goworld.Entity):
    persistent = True
    aoi_distance = 100
    attributes = {
        "name": goworld.ALL_CLIENTS | goworld.PERSISTENT,
        "lv": goworld.ALL_CLIENTS | goworld.PERSISTENT,
        "hp": goworld.ALL_CLIENTS,
        "hpmax": goworld.ALL_CLIENTS,
        "action": goworld.ALL_CLIENTS,
        "spaceKind": goworld.PERSISTENT,
    }

    def on_attrs_ready(self) -> None:
        self.attrs.set_default("name", "noname")
        self.attrs.set_default("lv", 1)
        self.attrs.set_default("spaceKind", 1)
        self.attrs["hpmax"] = 100
        self.attrs["hp"] = 100
        self.attrs["action"] = "idle"

    def on_created(self) -> None:
        self.set_client_syncing(True)

    def on_enter_space(self) -> None:
        self.set_client_syncing(True)

    def on_client_connected(self) -> None:
        goworld.call_service_shard_key(
            "OnlineService", self.id, "CheckIn", self.id, self.attrs.get_str("name")
        )
        self._enter_kind(self.attrs.get_int("spaceKind", 1))

    def on_client_disconnected(self) -> None:
        self.destroy()

    def on_destroy(self) -> None:
        goworld.call_service_shard_key("OnlineService", self.id, "CheckOut", self.id)

    def _enter_kind(self, kind: int) -> None:
        self.attrs["spaceKind"] = kind
        goworld.call_service_shard_key("SpaceService", str(kind), "EnterSpace", self.id, kind)

    @goworld.rpc(name="DoEnterSpace")
    def do_enter_space(self, kind: int, space_id: str) -> None:
        self.enter_space(space_id, (0.0, 0.0, 0.0))

    @goworld.rpc(name="GetSpaceID")
    def get_space_id(self, caller: str) -> None:
        self.call(caller, "OnGetPlayerSpaceID", self.id, self.space.id if self.space else "")

    @goworld.rpc(client=True, name="EnterSpace")
    def enter_space_rpc(self, kind: int) -> None:
        self._enter_kind(kind)

    @goworld.rpc(client=True, name="SetAction")
    def set_action(self, action: str) -> None:
        if self.attrs.get_int("hp") > 0:
            self.attrs["action"] = action

    @goworld.rpc(client=True, name="ShootMiss")
    def shoot_miss(self) -> None:
        self.call_all_clients("Shoot")

    @goworld.rpc(client=True, name="ShootHit")
    def shoot_hit(self, victim_id: str) -> None:
        self.call_all_clients("Shoot")
        victim = goworld.get_entity(victim_id)
        if victim is not None and victim.type_name == "Monster" and self.is_interested_in(victim):
            victim.take_damage(50)

    def take_damage(self, damage: int) -> None:
        hp = max(0, self.attrs.get_int("hp") - damage)
        self.attrs["hp"] = hp
        if hp == 0:
            self.attrs["action"] = "death"
            self.set_client_syncing(False)

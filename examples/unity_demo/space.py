"""The game's spaces: AOI on, monsters summoned while fewer than two per player."""

import goworld

SUMMON_INTERVAL = 5.0


class MySpace(goworld.Space):
    def on_space_created(self) -> None:
        if self.is_nil:
            return
        self.enable_aoi(100)
        goworld.call_service_shard_key("SpaceService", str(self.kind), "NotifySpaceLoaded", self.kind, self.id)
        self.add_timer(SUMMON_INTERVAL, "summon_monsters")

    def on_entity_enter_space(self, entity: goworld.Entity) -> None:
        if entity.type_name == "Player" and self.count_entities("Monster") == 0:
            self.summon_monsters()

    def summon_monsters(self) -> None:
        players = self.count_entities("Player")
        monsters = self.count_entities("Monster")
        while monsters < 2 * players:
            self.create_entity("Monster", (monsters * 2.0 - 3.0, 0.0, 6.0))
            monsters += 1

"""Monster AI: chase the nearest living player in sight at 2 units/s, attack it every second."""

import time

import goworld

CHASE_SPEED = 2.0  # units per second
ATTACK_RANGE = 3.0
ATTACK_INTERVAL = 1.0
AI_INTERVAL = 0.1


class Monster(goworld.Entity):
    aoi_distance = 100
    attributes = {
        "name": goworld.ALL_CLIENTS,
        "lv": goworld.ALL_CLIENTS,
        "hp": goworld.ALL_CLIENTS,
        "hpmax": goworld.ALL_CLIENTS,
        "action": goworld.ALL_CLIENTS,
    }

    def on_init(self) -> None:
        self.last_attack = 0.0

    def on_enter_space(self) -> None:
        self.attrs.set_default("name", "monster")
        self.attrs.set_default("lv", 1)
        self.attrs.set_default("hpmax", 100)
        self.attrs.set_default("hp", 100)
        self.attrs["action"] = "idle"
        self.add_timer(AI_INTERVAL, "ai")

    def _target(self) -> goworld.Entity | None:
        best, best_dist = None, 0.0
        for other in self.interested_in:
            if other.type_name == "Player" and other.attrs.get_int("hp") > 0:
                dist = self.distance_to(other)
                if best is None or dist < best_dist:
                    best, best_dist = other, dist
        return best

    def ai(self) -> None:
        if self.attrs.get_int("hp") <= 0:
            return
        target = self._target()
        if target is None:
            if self.attrs.get_str("action") != "idle":
                self.attrs["action"] = "idle"
            return
        self.face_to(target)
        if self.distance_to(target) > ATTACK_RANGE:
            here, there = self.position, target.position
            direction = (there - here).normalized()
            self.set_position(here + direction * (CHASE_SPEED * AI_INTERVAL))
            if self.attrs.get_str("action") != "move":
                self.attrs["action"] = "move"
            return
        now = time.monotonic()
        if now - self.last_attack >= ATTACK_INTERVAL:
            self.last_attack = now
            self.attrs["action"] = "move"  # GoWorld's demo shows attacks as "move" too
            self.call_all_clients("DisplayAttack", target.id)
            target.take_damage(10)

    def take_damage(self, damage: int) -> None:
        hp = max(0, self.attrs.get_int("hp") - damage)
        self.attrs["hp"] = hp
        if hp == 0:
            self.attrs["action"] = "death"
            self.add_callback(0.5, "destroy")

"""MySpace: AOI spaces with ten monsters; the nil space checks services and calls nil spaces."""

import logging

import goworld

logger = logging.getLogger("goworld.test_game")

SERVICES = ("OnlineService", "SpaceService", "MailService", "PublishSubscribeService")
MONSTERS_PER_SPACE = 10
DESTROY_CHECK_INTERVAL = 300.0  # seconds


class MySpace(goworld.Space):
    def on_init(self) -> None:
        self.destroy_check_timer = 0

    def on_space_created(self) -> None:
        if self.is_nil:
            return
        self.enable_aoi(100)
        goworld.call_service_shard_key("SpaceService", str(self.kind), "NotifySpaceLoaded", self.kind, self.id)
        for _ in range(MONSTERS_PER_SPACE):
            self.create_entity("Monster", (0.0, 0.0, 0.0))

    # ---- avatars come and go; empty spaces ask SpaceService to be destroyed ---------------

    def on_entity_enter_space(self, entity: goworld.Entity) -> None:
        if self.is_nil or entity.type_name != "Avatar":
            return
        if self.destroy_check_timer:
            self.cancel_timer(self.destroy_check_timer)
            self.destroy_check_timer = 0
        self._report_avatar_num()

    def on_entity_leave_space(self, entity: goworld.Entity) -> None:
        if self.is_nil or entity.type_name != "Avatar" or self.destroyed:
            return
        self._report_avatar_num()
        if self.count_entities("Avatar") == 0 and not self.destroy_check_timer:
            self.destroy_check_timer = self.add_timer(DESTROY_CHECK_INTERVAL, "check_for_destroy")

    def _report_avatar_num(self) -> None:
        goworld.call_service_shard_key(
            "SpaceService", str(self.kind), "NotifyAvatarNum", self.kind, self.id, self.count_entities("Avatar")
        )

    def check_for_destroy(self) -> None:
        if self.count_entities("Avatar") == 0:
            goworld.call_service_shard_key("SpaceService", str(self.kind), "RequestDestroy", self.kind, self.id)

    @goworld.rpc(name="ConfirmRequestDestroy")
    def confirm_request_destroy(self, ok: bool) -> None:
        if ok and self.count_entities("Avatar") == 0:
            logger.info("%r: destroyed, no avatar came for a while", self)
            self.destroy()

    # ---- the nil space -------------------------------------------------------------------

    def on_game_ready(self) -> None:
        logger.info("%r: game ready", self)
        self.add_callback(1.0, "check_services_ready")

    def check_services_ready(self) -> None:
        missing = [s for s in SERVICES if not goworld.check_service_entities_ready(s)]
        if missing:
            logger.info("waiting for services: %s", ", ".join(missing))
            self.add_callback(1.0, "check_services_ready")
            return
        logger.info("all services are ready")
        goworld.call_nil_spaces("TestCallNilSpaces", 1, "abc", True, 2.3)

    @goworld.rpc(name="TestCallNilSpaces")
    def test_call_nil_spaces(self, a, b, c, d) -> None:
        logger.info("TestCallNilSpaces(%r, %r, %r, %r): nil space calls work on game%d", a, b, c, d, goworld.get_game_id())

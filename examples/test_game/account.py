"""The boot entity: ``Login`` finds (or creates) the user's Avatar and hands the client over."""

import logging
import random

import goworld

logger = logging.getLogger("goworld.test_game")

PASSWORD = "123456"


class Account(goworld.Entity):
    def on_init(self) -> None:
        self.logging_in = False

    @goworld.rpc(client=True, name="Login")
    def login(self, username: str, password: str) -> None:
        if self.logging_in:
            logger.error("%r is already logging in: Login(%s) ignored", self, username)
            return
        if password != PASSWORD:
            self.call_client("OnLogin", False)
            return
        self.logging_in = True
        self.call_client("OnLogin", True)

        def got_avatar_id(avatar_id: str | None, err: Exception | None) -> None:
            if self.destroyed:
                return
            if err is not None:
                logger.error("%r: KVDB get %s failed: %s", self, username, err)
                return
            if not avatar_id:
                avatar = goworld.create_entity_locally("Avatar")
                logger.info("%s logs in: new avatar %s", username, avatar.id)
                goworld.kvdb_put(username, avatar.id)
                self.give_client_to(avatar)
                return
            logger.info("%s logs in: loading avatar %s", username, avatar_id)
            self._find_avatar(avatar_id)

        goworld.kvdb_get(username, got_avatar_id)

    def _find_avatar(self, avatar_id: str) -> None:
        # The call waits at the dispatcher until the avatar is loaded (or is a no-op load:
        # the avatar is already somewhere).
        goworld.load_entity_anywhere("Avatar", avatar_id)
        self.call(avatar_id, "GetSpaceID", self.id)

    @goworld.rpc(name="OnGetAvatarSpaceID")
    def on_get_avatar_space_id(self, avatar_id: str, space_id: str) -> None:
        avatar = goworld.get_entity(avatar_id)
        if avatar is not None:
            self.give_client_to(avatar)
            return
        # Go where the avatar is (normally its game's nil space), then hand the client over.
        self.attrs["loginAvatarID"] = avatar_id
        self.enter_space(space_id)

    def on_migrate_in(self) -> None:
        avatar_id = self.attrs.get_str("loginAvatarID")
        avatar = goworld.get_entity(avatar_id)
        if avatar is not None:
            self.give_client_to(avatar)
        else:  # it moved on meanwhile: ask again a little later
            self.add_callback(random.uniform(0, 3), "retry_login_to_avatar", avatar_id)

    @goworld.rpc(name="RetryLoginToAvatar")
    def retry_login_to_avatar(self, avatar_id: str) -> None:
        self._find_avatar(avatar_id)

    def on_client_disconnected(self) -> None:
        self.destroy()

"""The boot entity of every client: registration and login."""

import logging

import goworld

logger = logging.getLogger("chatroom")


class Account(goworld.Entity):
    def on_init(self) -> None:
        self.logging_in = False

    # Limits on calls from a client (the game's defaults: 50 calls/s, 64 KiB): a person registers
    # once and logs in a few times; a client refused too often is closed (client_rpc_max_strikes).
    @goworld.rpc(client=True, name="Register", rate=0.2, burst=3, max_arg_bytes=512)
    def register(self, username: str, password: str) -> None:
        if not username or not password:
            self.call_client("ShowError", "user name and password must not be empty")
            return

        def got_password(old: str | None, err: Exception | None) -> None:
            if err is not None:
                self.call_client("ShowError", "server error, please try again later")
                return
            if old is not None:
                self.call_client("ShowError", "this account already exists")
                return
            avatar = goworld.create_entity_locally("Avatar", {"name": username})
            avatar_id = avatar.id
            avatar.destroy()  # saves it
            goworld.kvdb_put(f"avatarID${username}", avatar_id)
            self.call_client("ShowInfo", "registered: you can log in now")

        goworld.kvdb_get_or_put(f"password${username}", password, got_password)

    @goworld.rpc(client=True, name="Login", rate=1, burst=5, max_arg_bytes=512)
    def login(self, username: str, password: str) -> None:
        if self.logging_in:
            return

        def got_password(stored: str | None, err: Exception | None) -> None:
            if err is not None or stored is None:
                self.call_client("ShowError", "no such account")
                return
            if stored != password:
                self.call_client("ShowError", "wrong password")
                return
            self.logging_in = True
            goworld.kvdb_get(f"avatarID${username}", got_avatar_id)

        def got_avatar_id(avatar_id: str | None, err: Exception | None) -> None:
            if err is not None or not avatar_id:
                self.logging_in = False
                self.call_client("ShowError", "this account has no avatar")
                return
            goworld.load_entity_anywhere("Avatar", avatar_id)
            self.call(avatar_id, "GetSpaceID", self.id)

        goworld.kvdb_get(f"password${username}", got_password)

    @goworld.rpc(name="OnGetAvatarSpaceID")
    def on_get_avatar_space_id(self, avatar_id: str, space_id: str) -> None:
        avatar = goworld.get_entity(avatar_id)
        if avatar is not None:
            self.give_client_to(avatar)
            return
        self.attrs["loginAvatarID"] = avatar_id
        self.enter_space(space_id)  # migrate to the avatar's game, then hand the client over

    def on_migrate_in(self) -> None:
        avatar_id = self.attrs.get_str("loginAvatarID")
        avatar = goworld.get_entity(avatar_id)
        if avatar is not None:
            self.give_client_to(avatar)
        else:
            self.call_client("ShowError", "login failed, please try again")

    def on_client_disconnected(self) -> None:
        self.destroy()

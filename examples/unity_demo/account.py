"""Register and log in; the client is handed to the player's ``Player`` entity."""

import goworld


class Account(goworld.Entity):
    def on_init(self) -> None:
        self.logging_in = False

    @goworld.rpc(client=True, name="Register")
    def register(self, username: str, password: str) -> None:
        if not username or not password:
            self.call_client("ShowError", "user name and password must not be empty")
            return

        def got(old: str | None, err: Exception | None) -> None:
            if err is not None:
                self.call_client("ShowError", "server error, please try again")
            elif old is not None:
                self.call_client("ShowError", "this account already exists")
            else:
                player = goworld.create_entity_locally("Player", {"name": username})
                player_id = player.id
                player.destroy()  # saves it
                goworld.kvdb_put(f"playerID${username}", player_id)
                self.call_client("ShowInfo", "registered: you can log in now")

        goworld.kvdb_get_or_put(f"password${username}", password, got)

    @goworld.rpc(client=True, name="Login")
    def login(self, username: str, password: str) -> None:
        if self.logging_in:
            return

        def got_password(stored: str | None, err: Exception | None) -> None:
            if err is not None or stored is None:
                self.call_client("ShowError", "no such account")
            elif stored != password:
                self.call_client("ShowError", "wrong password")
            else:
                self.logging_in = True
                goworld.kvdb_get(f"playerID${username}", got_player)

        def got_player(player_id: str | None, err: Exception | None) -> None:
            if err is not None or not player_id:
                self.logging_in = False
                self.call_client("ShowError", "this account has no player")
                return
            goworld.load_entity_anywhere("Player", player_id)
            self.call(player_id, "GetSpaceID", self.id)

        goworld.kvdb_get(f"password${username}", got_password)

    @goworld.rpc(name="OnGetPlayerSpaceID")
    def on_get_player_space_id(self, player_id: str, space_id: str) -> None:
        player = goworld.get_entity(player_id)
        if player is not None:
            self.give_client_to(player)
        else:
            self.attrs["loginPlayerID"] = player_id
            self.enter_space(space_id)

    def on_migrate_in(self) -> None:
        player = goworld.get_entity(self.attrs.get_str("loginPlayerID"))
        if player is not None:
            self.give_client_to(player)
        else:
            self.call_client("ShowError", "login failed, please try again")

    def on_client_disconnected(self) -> None:
        self.destroy()

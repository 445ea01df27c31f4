"""The boot entity of a client of the gate. The lockstep demo's pages talk to the lockstep
process directly, so an Account only says where to find the game."""

import goworld


class Account(goworld.Entity):
    def on_client_connected(self) -> None:
        self.call_client(
            "ShowInfo",
            "the lockstep demo runs in the browser: open /static/index.html on [lockstep] http_addr",
        )

    def on_client_disconnected(self) -> None:
        self.destroy()

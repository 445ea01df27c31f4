"""A player: a name, the room it is in, and chat."""

import goworld


class Avatar(goworld.Entity):
    persistent = True
    aoi_distance = 100
    attributes = {
        "name": goworld.CLIENT | goworld.PERSISTENT,
        "chatroom": goworld.CLIENT,
    }

    def on_created(self) -> None:
        self.attrs.set_default("name", "noname")
        self.attrs["chatroom"] = ""

    def on_client_connected(self) -> None:
        # Filter props live on the gate and every client handover clears them.
        room = self.attrs.get_str("chatroom")
        if room:
            self.set_client_filter_prop("chatroom", room)

    # A person types a few lines a second at most, none longer than a few kilobytes.
    @goworld.rpc(client=True, name="SendChat", rate=5, burst=20, max_arg_bytes=4096)
    def send_chat(self, text: str) -> None:
        if text.startswith("/"):
            parts = text[1:].split()
            if len(parts) == 2 and parts[0] == "join":
                room = parts[1]
                self.set_client_filter_prop("chatroom", room)
                self.attrs["chatroom"] = room
            else:
                self.call_client("ShowError", f"unknown command: {text} (try /join <room>)")
            return
        room = self.attrs.get_str("chatroom")
        if not room:
            self.call_client("ShowError", "join a room first: /join <room>")
            return
        self.call_filtered_clients("chatroom", "=", room, "OnRecvChat", self.attrs.get_str("name"), text)

    @goworld.rpc(name="GetSpaceID")
    def get_space_id(self, caller: str) -> None:
        space = self.space
        self.call(caller, "OnGetAvatarSpaceID", self.id, space.id if space is not None else "")

    def on_client_disconnected(self) -> None:
        self.destroy()

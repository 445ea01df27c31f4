import json
import os

import goworld

EVENTS = "lockstep_events.jsonl"


def _note(kind: str, data: object) -> None:
    with open(EVENTS, "a") as f:
        f.write(json.dumps({"event": kind, "pid": os.getpid(), "data": data}) + "\n")


class RoomKeeper(goworld.Entity):
    def on_created(self) -> None:
        goworld.create_lockstep_room(self, [11, 12, 13], seed=7)
        goworld.create_lockstep_room(
            self, list(range(100, 120)), on_created="OnRefused", on_result="OnRefusedResult"
        )
        more = int(os.environ.get("LOCKSTEP_APP_MORE_ROOMS", "0"))
        if more:  # later, once every lockstep process has joined (placement test)
            self.add_callback(3.0, "MakeRooms", more)

    def MakeRooms(self, count: int) -> None:
        for n in range(count):
            goworld.create_lockstep_room(self, [21 + n, 41 + n])

    @goworld.rpc(name="OnLockstepRoom")
    def on_lockstep_room(self, info: dict) -> None:
        _note("created", info)

    @goworld.rpc(name="OnLockstepResult")
    def on_lockstep_result(self, result: dict) -> None:
        _note("result", result)

    @goworld.rpc(name="OnRefused")
    def on_refused(self, info: dict) -> None:
        _note("refused", info)

    @goworld.rpc(name="OnRefusedResult")
    def on_refused_result(self, result: dict) -> None:
        _note("refused_result", result)


class Account(goworld.Entity):
    """The boot entity every app needs; these tests log no player in."""

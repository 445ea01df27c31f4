"""A game package for the lockstep tests: game code asks for rooms and hears their results.

``RoomKeeper`` (a service, one shard) asks for a room of players 11, 12 and 13 when it is
created, and for one with more players than ``[lockstep] max_players`` allows; every answer
is appended as a JSON line to ``lockstep_events.jsonl`` in the cluster's directory, with the
pid of the game that heard it (a reload replaces the process)."""

import goworld

from .keeper import Account, RoomKeeper

goworld.register_entity(Account)
goworld.register_service(RoomKeeper, 1)

"""unity_demo: our port of GoWorld's Unity demo server (PROTOCOL.md §11).

Players log in through a boot ``Account``, land in a space (one per kind, made on demand by
``SpaceService``), move with client-synced positions, and shoot monsters; ``Monster`` AI chases
the nearest living player and attacks it every second; ``MySpace`` summons monsters while there
are fewer than two per player. GoWorld's Unity client speaks the 2018 protocol generation: run
it with this directory's goworld.ini, whose gate has ``legacy_client_protocol = 2018``.
"""

import goworld

from .account import Account
from .monster import Monster
from .player import Player
from .services import OnlineService, SpaceService
from .space import MySpace

goworld.register_space(MySpace)
goworld.register_entity(Account)
goworld.register_entity(Player)
goworld.register_entity(Monster)
goworld.register_service(SpaceService, 3)
goworld.register_service(OnlineService, 3)

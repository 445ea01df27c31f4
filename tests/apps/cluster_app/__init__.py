"""A game package for the cluster tests: login, attributes, RPCs both ways, AOI spaces,
migration between games, services and persistence, each reachable from a client."""

import goworld

from .entities import Account, Avatar, Dummy, EchoService, MySpace, SpaceService

goworld.register_space(MySpace)
goworld.register_entity(Account)
goworld.register_entity(Avatar)
goworld.register_entity(Dummy)
goworld.register_service(SpaceService, 2)
goworld.register_service(EchoService, 3)

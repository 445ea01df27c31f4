"""goworld: a distributed game-server engine in Python, wire-compatible with GoWorld.

Game code imports only this package::

    import goworld

    class Avatar(goworld.Entity):
        persistent = True
        aoi_distance = 100
        attributes = {"name": goworld.ALL_CLIENTS | goworld.PERSISTENT}

        @goworld.rpc(client=True, name="Say")
        def say(self, text: str) -> None:
            self.call_all_clients("OnSay", self.id, text)

    goworld.register_entity(Avatar)

Layering inside this package (a layer imports only the layers below it):

* L4 this facade (``api``) — the public names below
* L3 ``cluster`` and ``rpc`` (gRPC streams), ``storage``, ``kvdb``, ``net`` (client transports)
* L2 ``entity`` (entities, spaces, attributes, AOI, the registry, the runtime protocol)
* L1 ``proto`` (the client wire protocol, no I/O) and ``config`` (goworld.ini)
* L0 ``errors``, ``log``

The process roles live in the top-level packages ``dispatcher``, ``gate`` and ``game``; they
import ``goworld`` and never each other.
"""

# ``goworld.rpc`` names both the decorator (bound below) and the subpackage of generated gRPC
# modules, and importing a subpackage sets it as an attribute of its parent. The subpackage
# (which loads neither gRPC nor protobuf by itself) is therefore imported first and the
# decorator bound over it; a later ``goworld.rpc.cluster_pb2`` import leaves the decorator be.
from goworld import rpc as _rpc_subpackage
from goworld.api import *  # noqa: F403 -- the facade functions are the public API
from goworld.api import __all__ as _api_all
from goworld.entity.attrs import ListAttr, MapAttr
from goworld.entity.client import GameClient
from goworld.entity.entity import Entity
from goworld.entity.registry import ALL_CLIENTS, CLIENT, PERSISTENT, rpc
from goworld.entity.space import Space
from goworld.entity.vector import Vector3
from goworld.ratelimit import RateLimiter

del _rpc_subpackage

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Entity",
    "Space",
    "Vector3",
    "MapAttr",
    "ListAttr",
    "GameClient",
    "rpc",
    "CLIENT",
    "ALL_CLIENTS",
    "PERSISTENT",
    "RateLimiter",
    *_api_all,
]

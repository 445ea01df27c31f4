"""goworld: a distributed game-server engine in Python, wire-compatible with GoWorld.

Layering inside this package (a layer imports only the layers below it):

* L3 ``rpc`` (gRPC cluster schema) and, later, ``net``, ``storage``, ``kvdb``
* L2 ``entity`` (entities, spaces, attributes, AOI) — arrives with the cluster engine
* L1 ``proto`` (the client wire protocol, no I/O) and ``config`` (goworld.ini)
* L0 ``errors``, ``log``

The process roles live in the top-level packages ``dispatcher``, ``gate`` and ``game``; they
import ``goworld`` and never each other. The public game-developer API (``Entity``, ``Space``,
``register_entity`` ...) is exported from here once the engine exists.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

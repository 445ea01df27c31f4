"""The one exception tree of the project.

::

    GoWorldError
    ├── ConfigError          bad goworld.ini: names the file, section, key and value
    ├── ProtocolError        bytes that do not follow the wire protocol
    │   ├── LocalProtocolError   we tried to send something the protocol forbids
    │   └── RemoteProtocolError  the peer sent something malformed (close that peer only)
    │       └── PacketTooLarge   a frame length above the 32 MiB cap
    ├── StorageError         a storage or KVDB backend failed (retried and reported)
    └── EntityError          misuse of the entity API
        ├── EntityNotFound
        ├── RPCNotExposed    a client called a method that is not declared for clients
        └── RPCArgumentError     arguments that do not fit an RPC's signature (registry)

Defined beside the code that raises them, in the same tree:

    GoWorldError
    ├── AuthRefused          a cluster stream's credentials are refused (goworld.cluster.auth)
    ├── LockstepClosed       a lockstep client's connection is gone (goworld.lockstep.client)
    ├── RoomRefused          a lockstep room cannot be created (goworld.lockstep.rooms)
    ├── ReplayError          a lockstep input log that cannot be read or replayed (goworld.lockstep.replay)
    ├── FieldsError          an entity's own fields cannot be captured (goworld.entity.state)
    ├── FreezeError          a reload snapshot cannot be taken or read (game.freeze)
    ├── GamePackageError     the game package does not load (game.loader)
    │   └── HotSwapError     an in-place reload refused the new code (game.hotswap)
    ├── GoToolchainMissing   no Go to build GoWorld's bot (goworld.gobot)
    ├── BuildError           building GoWorld's programs failed (goworld.gobot)
    ├── BenchError           a benchmark scenario could not measure (goworld.bench)
    ├── Unaddressable        the ini names no host to ask a process of another host (goworld.ops_client)
    └── ProtocolError
        └── RemoteProtocolError
            ├── LockstepDecodeError     a lockstep body that does not parse (goworld.lockstep.codec)
            └── PacketTooLarge
                └── LockstepPacketTooLarge  a lockstep body over 1024 bytes (goworld.lockstep.codec)

Decoders in :mod:`goworld.proto` raise only :class:`RemoteProtocolError` (or its subclass
:class:`PacketTooLarge`) on malformed input; nothing else escapes them.
"""

from __future__ import annotations

__all__ = [
    "GoWorldError",
    "ConfigError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PacketTooLarge",
    "StorageError",
    "EntityError",
    "EntityNotFound",
    "RPCNotExposed",
]


class GoWorldError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(GoWorldError):
    """A configuration file is invalid.

    The message always names the file, and where they apply the section, key and value.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        section: str | None = None,
        key: str | None = None,
        value: str | None = None,
    ) -> None:
        self.path = path
        self.section = section
        self.key = key
        self.value = value
        where = []
        if path is not None:
            where.append(str(path))
        if section is not None:
            where.append(f"[{section}]")
        if key is not None:
            where.append(key if value is None else f"{key} = {value!r}")
        super().__init__(f"{' '.join(where)}: {message}" if where else message)


class ProtocolError(GoWorldError):
    """Bytes that do not follow the wire protocol. Not raised directly."""


class LocalProtocolError(ProtocolError):
    """We were asked to encode something the protocol cannot carry (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent malformed bytes. The connection to that peer should be closed."""


class PacketTooLarge(RemoteProtocolError):
    """A frame announced a payload larger than the allowed maximum.

    ``payloads`` holds the complete payloads that preceded the bad header in the same input,
    so a reader can still handle them (as GoWorld, which reads packet by packet, would).
    """

    def __init__(self, message: str, payloads: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.payloads: list[bytes] = payloads or []


class StorageError(GoWorldError):
    """A storage or KVDB operation failed."""


class EntityError(GoWorldError):
    """Misuse of the entity API."""


class EntityNotFound(EntityError):
    """No entity with that id exists where it was looked up."""


class RPCNotExposed(EntityError):
    """A method was called by a party it is not exposed to."""

"""Entity ids, client ids, nil-space ids and the dispatcher shard (PROTOCOL.md §1.5).

An id is 12 raw bytes — 4 bytes of Unix time (big-endian), 3 bytes of the md5 of the host
name, 2 bytes of the pid (big-endian), a 3-byte per-process counter starting at 1 — written
in base64 without padding over the alphabet ``A-Z a-z 0-9 _ .``. That always gives 16 ASCII
characters, which is what travels on the wire (raw, no length prefix).

In Python an id is a ``str`` of 16 characters. Wire bytes are mapped to ``str`` with latin-1,
so any 16 bytes a client sends survive a round trip unchanged; :func:`is_valid_id` tells
whether they are a well-formed id.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import platform
import struct
import time
from collections.abc import Callable
from typing import NewType

__all__ = [
    "EntityID",
    "ClientID",
    "ID_LENGTH",
    "IdGenerator",
    "new_entity_id",
    "new_client_id",
    "nil_space_id",
    "dispatcher_shard",
    "is_valid_id",
]

EntityID = NewType("EntityID", str)
ClientID = NewType("ClientID", str)

ID_LENGTH = 16

_STD_TO_GW = bytes.maketrans(b"+/", b"_.")
_ALPHABET = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_."
)
_pack_time = struct.Struct(">I").pack
_pack_pid = struct.Struct(">H").pack


def _encode12(raw: bytes) -> str:
    return base64.b64encode(raw).translate(_STD_TO_GW).decode("ascii")


class IdGenerator:
    """Generates unique 16-character ids for one process.

    The machine and process parts are computed once; ``clock`` gives Unix seconds.
    """

    def __init__(
        self,
        *,
        hostname: str | None = None,
        pid: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        host = platform.node() if hostname is None else hostname
        self._machine = hashlib.md5(host.encode("utf-8")).digest()[:3]
        self._pid = _pack_pid((os.getpid() if pid is None else pid) & 0xFFFF)
        self._counter = itertools.count(1)
        self._time = time.time if clock is None else clock

    def new_id(self) -> str:
        """Return a fresh id (unique within this process for 2**24 ids per second)."""
        n = next(self._counter) & 0xFFFFFF
        raw = (
            _pack_time(int(self._time()) & 0xFFFFFFFF)
            + self._machine
            + self._pid
            + n.to_bytes(3, "big")
        )
        return _encode12(raw)


_default_generator: IdGenerator | None = None


def _generator() -> IdGenerator:
    global _default_generator
    if _default_generator is None or _default_generator._pid != _pack_pid(os.getpid() & 0xFFFF):
        _default_generator = IdGenerator()
    return _default_generator


def new_entity_id() -> EntityID:
    """A fresh entity id from this process's generator."""
    return EntityID(_generator().new_id())


def new_client_id() -> ClientID:
    """A fresh client id (same generator as entity ids, as in GoWorld)."""
    return ClientID(_generator().new_id())


def nil_space_id(game_id: int) -> EntityID:
    """The fixed id of game ``game_id``'s nil space: ``nil_space_id(1) == "AAAAAAAAAAAAAAAx"``."""
    if game_id <= 0:
        raise ValueError(f"game id must be positive, got {game_id}")
    digits = str(game_id).encode("ascii")
    if len(digits) > 12:
        raise ValueError(f"game id too large: {game_id}")
    return EntityID(_encode12(digits.rjust(12, b"\x00")))


def dispatcher_shard(entity_id: str, num_dispatchers: int) -> int:
    """The 1-based id of the dispatcher that owns ``entity_id`` (only the last two chars count)."""
    return ((ord(entity_id[14]) << 8) + ord(entity_id[15])) % num_dispatchers + 1


def is_valid_id(value: str) -> bool:
    """True if ``value`` is 16 characters of the id alphabet."""
    return len(value) == ID_LENGTH and _ALPHABET.issuperset(value)

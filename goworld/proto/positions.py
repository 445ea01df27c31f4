"""Position/yaw records and the cluster's batches of them: the one place their bytes are laid out.

A *record* is an EntityID (16 raw bytes) and ``x, y, z, yaw`` as little-endian float32: the
body of a client's SYNC_POSITION_YAW_FROM_CLIENT (PROTOCOL.md §2.2) and each element of a
SYNC_POSITION_YAW_ON_CLIENTS (1502) body (§2.3, layout ``records`` in
:mod:`goworld.proto.messages`). Position sync is the hottest traffic there is, so the cluster
moves records as concatenated bytes, never as objects:

- gate -> game: SYNC_POSITION_YAW_FROM_CLIENT envelopes carry records back to back;
- game -> gate: SYNC_POSITION_YAW_ON_CLIENTS envelopes carry *addressed records*, a ClientID
  (16 bytes) before each record, and the gate regroups them per client (:func:`by_client`).

The functions here are the only code that knows those offsets; the gate and the game call them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = [
    "POSITION",
    "RECORD",
    "RECORD_SIZE",
    "ADDRESSED_SIZE",
    "pack_record",
    "iter_records",
    "record_entity_id",
    "by_client",
    "split_records",
]

#: ``x, y, z, yaw`` after the EntityID.
POSITION = struct.Struct("<ffff")
#: EntityID + position.
RECORD = struct.Struct("<16sffff")
RECORD_SIZE = RECORD.size  # 32
#: ClientID + record (game -> gate batches).
ADDRESSED_SIZE = 16 + RECORD_SIZE  # 48


def pack_record(entity_id: bytes, x: float, y: float, z: float, yaw: float) -> bytes:
    """A record for ``entity_id`` (its 16 latin-1 bytes)."""
    return entity_id + POSITION.pack(x, y, z, yaw)


def iter_records(batch: bytes) -> Iterator[tuple[str, float, float, float, float]]:
    """``(entity id, x, y, z, yaw)`` for each whole record of a batch (a trailing partial
    record is ignored)."""
    whole = len(batch) - len(batch) % RECORD_SIZE
    for eid, x, y, z, yaw in RECORD.iter_unpack(memoryview(batch)[:whole]):
        yield eid.decode("latin-1"), x, y, z, yaw


def record_entity_id(record: bytes) -> str:
    """The EntityID a record (or a client's SYNC body after its msgtype) names."""
    return record[:16].decode("latin-1")


def split_records(batch: bytes) -> Iterator[tuple[str, bytes]]:
    """``(entity id, the record's 32 bytes)`` for each whole record of a batch."""
    for off in range(0, len(batch) - RECORD_SIZE + 1, RECORD_SIZE):
        record = batch[off : off + RECORD_SIZE]
        yield record[:16].decode("latin-1"), record


def by_client(batch: bytes) -> dict[str, list[bytes]]:
    """Addressed records regrouped: ClientID -> that client's records, in batch order."""
    per_client: dict[str, list[bytes]] = {}
    for off in range(0, len(batch) - ADDRESSED_SIZE + 1, ADDRESSED_SIZE):
        cid = batch[off : off + 16].decode("latin-1")
        records = per_client.get(cid)
        if records is None:
            records = per_client[cid] = []
        records.append(batch[off + 16 : off + ADDRESSED_SIZE])
    return per_client

"""Rooms that outlive their process: a write-ahead journal per room.

A lockstep match must never change a frame a client has seen: clients simulate from the
frames, and none of them can roll back. So a room brought back after its process died must
know every frame that went out. Each room therefore writes to its own file, *before* the
packets leave, every fact a client could have seen:

* ``new``: id, members, seed, tokens, owner, creation time (Unix);
* ``start``: StartMsg's time and the tick it came on;
* ``send``: the frame counter of a send and the tick, with the inputs of the frames it closes
  (a send without inputs still moves the counter: clients saw those frames empty);
* ``result``: a player's reported winner;
* ``end``: the game is over (a room that ended is not brought back).

Records are msgpack arrays behind a u32 length, appended with one ``write()`` each to a file
opened ``O_APPEND`` (no fsync: the page cache outlives a killed process, not a dead host).
The file goes when the room is forgotten. At start the process reads every file left in its
directory (:meth:`RoomJournal.load_all`): a torn last record (killed mid-write) is dropped, as
it was never acted on; an unreadable file is logged and set aside (``.bad``).

A room brought back (:meth:`goworld.lockstep.room.Room.restore`) has every player offline; a
reconnecting client (a new session, Connect with the same room and player, then Ready) gets
the original StartMsg and the frames it asks for (``resumeFrame``), and the room goes on from
the last frame sent, its clock paused while it was down and until someone is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from goworld.lockstep.frames import InputTuple

__all__ = ["RoomImage", "RoomJournal", "JOURNAL_SUFFIX"]

logger = logging.getLogger("goworld.lockstep")

JOURNAL_SUFFIX = ".journal"
_LEN = struct.Struct("<I")
#: a record longer than this is corruption, not a record (a send of 60 frames of 16 inputs is
#: well under 64 KiB)
_MAX_RECORD = 16 * 1024 * 1024


@dataclass(slots=True)
class RoomImage:
    """What a journal says about one room."""

    room_id: int
    members: list[int]
    seed: int
    tokens: dict[int, str] | None
    owner: Any
    created_wall: float
    start_time: int = 0  # 0: not started (ready state)
    ticks: int = 0  # ticks run when the last record was written
    sent: int = 0  # frame counter at the last send
    inputs: dict[int, list[InputTuple]] = field(default_factory=dict)
    results: dict[int, int] = field(default_factory=dict)
    ended: str | None = None

    def apply(self, record: list[Any]) -> None:
        kind = record[0]
        if kind == "start":
            self.start_time, self.ticks = int(record[1]), int(record[2])
        elif kind == "send":
            self.sent, self.ticks = int(record[1]), int(record[2])
            for frame, items in record[3]:
                self.inputs[int(frame)] = [tuple(int(v) for v in item) for item in items]  # type: ignore[misc]
        elif kind == "result":
            self.results[int(record[1])] = int(record[2])
        elif kind == "end":
            self.ended = str(record[1])
        else:
            raise ValueError(f"unknown record {kind!r}")


class RoomJournal:
    """The journal files of one lockstep process, one per room, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[int, int] = {}  # room id -> fd
        self.write_errors = 0
        self.records = 0

    def path(self, room_id: int) -> Path:
        return self.directory / f"{room_id}{JOURNAL_SUFFIX}"

    # ---- writing -------------------------------------------------------------------------

    def open(self, room_id: int, records: list[list[Any]]) -> bool:
        """Start ``room_id``'s file with ``records`` (a new room's ``new``, or a restored
        room's state so far), replacing any file it had at once (a rename); False (logged)
        if it cannot be written: the room then runs without a journal."""
        path = self.path(room_id)
        tmp = path.with_suffix(".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(b"".join(_frame(record) for record in records))
            tmp.replace(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self._failed(room_id, exc)
            return False
        self._close(room_id)
        self._files[room_id] = fd
        self.records += len(records)
        return True

    def write(self, room_id: int, record: list[Any]) -> bool:
        fd = self._files.get(room_id)
        if fd is None:
            return False
        data = _frame(record)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            self._failed(room_id, exc)
            self._close(room_id)
            return False
        self.records += 1
        return True

    def _failed(self, room_id: int, exc: OSError) -> None:
        self.write_errors += 1
        logger.error(
            "room %d: cannot write its journal %s (%s): it goes on, but would not survive a "
            "crash of this process", room_id, self.path(room_id), exc,
        )

    def _close(self, room_id: int) -> None:
        fd = self._files.pop(room_id, None)
        if fd is not None:
            os.close(fd)

    def remove(self, room_id: int) -> None:
        """The room is gone: its file too."""
        self._close(room_id)
        try:
            self.path(room_id).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("room %d: cannot remove its journal: %s", room_id, exc)

    def close(self) -> None:
        """Close every file, keeping them (a stop that leaves rooms to a successor)."""
        for room_id in list(self._files):
            self._close(room_id)

    @property
    def open_files(self) -> int:
        return len(self._files)

    # ---- reading -------------------------------------------------------------------------

    def load_all(self) -> list[RoomImage]:
        """Every room the files describe, ended ones included (the caller drops those)."""
        images: list[RoomImage] = []
        if not self.directory.is_dir():
            return images
        for path in sorted(self.directory.glob(f"*{JOURNAL_SUFFIX}")):
            try:
                images.append(read(path))
            except (OSError, ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
                bad = path.with_suffix(".bad")
                logger.error("lockstep journal %s is unreadable (%s): moved to %s", path, exc, bad.name)
                with contextlib.suppress(OSError):
                    path.rename(bad)
        return images


def _frame(record: list[Any]) -> bytes:
    data: bytes = msgpack.packb(record, use_bin_type=True)
    return _LEN.pack(len(data)) + data


def read(path: Path) -> RoomImage:
    """The room one journal file describes (a torn last record is left out)."""
    data = path.read_bytes()
    records: list[list[Any]] = []
    pos = 0
    while pos + _LEN.size <= len(data):
        (size,) = _LEN.unpack_from(data, pos)
        if size > _MAX_RECORD:
            raise ValueError(f"record of {size} bytes at offset {pos}")
        end = pos + _LEN.size + size
        if end > len(data):
            break  # torn: written when the process died
        records.append(msgpack.unpackb(data[pos + _LEN.size : end], raw=False, strict_map_key=False))
        pos = end
    if not records or records[0][0] != "new":
        raise ValueError("no 'new' record first")
    _, room_id, members, seed, tokens, owner, created_wall = records[0]
    image = RoomImage(
        int(room_id),
        [int(m) for m in members],
        int(seed),
        {int(k): str(v) for k, v in tokens.items()} if tokens is not None else None,
        tuple(owner) if isinstance(owner, list) else owner,
        float(created_wall),
    )
    for record in records[1:]:
        image.apply(record)
    return image

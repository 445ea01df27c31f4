"""Packet framing (PROTOCOL.md §1.2): ``u32 payload_len`` (little-endian) + payload.

The length counts the payload only. Payloads above :data:`MAX_PAYLOAD` (32 MiB) are refused:
on receive with :class:`~goworld.errors.PacketTooLarge`, on send with
:class:`~goworld.errors.LocalProtocolError`. A zero length is a valid frame (the packet layer
hands the empty payload up; decoding it then fails).
"""

from __future__ import annotations

import struct

from goworld.errors import LocalProtocolError, PacketTooLarge

__all__ = ["MAX_PAYLOAD", "HEADER_SIZE", "frame", "Framer"]

MAX_PAYLOAD = 32 * 1024 * 1024
HEADER_SIZE = 4
_LEN = struct.Struct("<I")


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return _LEN.pack(n) + payload


class Framer:
    """Reassembles payloads from a byte stream split at arbitrary points.

    ``feed(data)`` returns every payload completed by ``data``, in order. After it raises
    :class:`PacketTooLarge` (whose ``payloads`` are the complete ones before the bad header)
    the stream is unusable: close the connection.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete payload."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        unpack = _LEN.unpack_from
        while end - pos >= HEADER_SIZE:
            (n,) = unpack(buf, pos)
            if n > self._max:
                raise PacketTooLarge(
                    f"frame announces {n} bytes, more than the {self._max}-byte limit", out
                )
            stop = pos + HEADER_SIZE + n
            if stop > end:
                break
            out.append(bytes(buf[pos + HEADER_SIZE : stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return out

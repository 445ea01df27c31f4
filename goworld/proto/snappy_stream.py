"""Sans-I/O snappy *framing format* stream, both directions.

With ``compress_connection=1`` a gate wraps the whole client byte stream (TCP, KCP or
WebSocket, below the packet layer and above TLS) in the snappy framing format, the one
golang/snappy's ``NewWriter``/``NewReader`` produce and consume (PROTOCOL.md §3.1).
This module turns plain bytes into that format and back. It does no I/O: the caller
hands bytes in and puts the returned bytes on the wire or gives them to the packet layer.

The format, in short
--------------------
A stream is a run of *chunks*. Every chunk starts with a 4-byte header: one byte of
chunk type, then the length of the body that follows as a 3-byte little-endian
integer (the header itself is not counted)::

    +----------+----------------------+------------------------+
    | type: u8 | body_len: u24 LE     | body: body_len bytes   |
    +----------+----------------------+------------------------+

The chunk types:

``0xff`` stream identifier
    Its body is the six ASCII bytes ``sNaPpY``, so the whole chunk is
    ``ff 06 00 00 73 4e 61 50 70 59``. A stream must begin with it. It may appear again
    later (for example where two streams were concatenated) and must then be identical.
``0x00`` compressed data
    Body: a 4-byte little-endian *masked* CRC-32C of the uncompressed data, then the
    data compressed as one raw snappy block (no framing of its own).
``0x01`` uncompressed data
    Body: the same masked CRC-32C, then the data as is.
``0x02``-``0x7f`` reserved, unskippable
    A reader that does not know them must fail.
``0x80``-``0xfd`` reserved, skippable; ``0xfe`` padding
    A reader ignores their bodies.

The checksum is CRC-32C (Castagnoli) of the *uncompressed* bytes, "masked" by rotating
it right by 15 bits and adding the constant ``0xa282ead8`` modulo 2**32. This way a
stream that embeds CRCs of its own content does not checksum itself into trivial values.

A data chunk never holds more than 65 536 uncompressed bytes. The writer cuts every
write into pieces of at most that size. It compresses each piece and sends the compressed
form only when that saves at least one eighth of the piece; otherwise it sends the piece
uncompressed. This matches what the Go writer does, byte for byte. The stream identifier
goes out once, in front of the first chunk the writer ever emits.

Limits enforced on input
------------------------
A hostile peer must not be able to make us buffer up to 16 MiB (the largest length a
header can announce) before we notice that something is wrong. So the length is checked
as soon as the 4-byte header is complete:

* identifier: exactly 6;
* uncompressed chunk: 4 to 4 + 65 536;
* compressed chunk: 4 to 4 + the largest raw snappy encoding of 65 536 bytes (76 490);
* skippable and padding chunks may be of any length, but their bodies are dropped as
  they arrive and are never buffered.

Errors
------
Every malformed input raises :class:`goworld.errors.RemoteProtocolError`; nothing else
escapes :meth:`SnappyStreamDecoder.feed`. After an error the decoder is *broken*: any
later call to :meth:`~SnappyStreamDecoder.feed` raises ``RemoteProtocolError`` again, and
the data of chunks that were complete in the failing call is not returned. The caller is
expected to close the connection.
"""

from __future__ import annotations

import struct

import cramjam
import google_crc32c

from goworld.errors import RemoteProtocolError

__all__ = [
    "STREAM_IDENTIFIER",
    "MAX_UNCOMPRESSED_CHUNK",
    "SnappyStreamEncoder",
    "SnappyStreamDecoder",
]

#: The chunk every stream starts with: type 0xff, length 6, body ``sNaPpY``.
STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"

#: The most uncompressed bytes one data chunk may carry.
MAX_UNCOMPRESSED_CHUNK = 65536

_CHUNK_COMPRESSED = 0x00
_CHUNK_UNCOMPRESSED = 0x01
_CHUNK_PADDING = 0xFE
_CHUNK_IDENTIFIER = 0xFF
_LAST_UNSKIPPABLE = 0x7F

_IDENTIFIER_BODY = b"sNaPpY"
_CRC_SIZE = 4
_HEADER_SIZE = 4

# The largest raw snappy block that 65 536 input bytes can compress to (76 490).
_MAX_COMPRESSED_BLOCK = int(cramjam.snappy.compress_raw_max_len(bytes(MAX_UNCOMPRESSED_CHUNK)))
_MAX_COMPRESSED_BODY = _CRC_SIZE + _MAX_COMPRESSED_BLOCK
_MAX_UNCOMPRESSED_BODY = _CRC_SIZE + MAX_UNCOMPRESSED_CHUNK

# Header word and CRC packed together: the header as one u32 LE is type | (len << 8).
_HEADER_AND_CRC = struct.Struct("<II")
_U32 = struct.Struct("<I")

# Exceptions the snappy backend may raise on bad input; all are turned into
# RemoteProtocolError.
_BACKEND_ERRORS = (cramjam.DecompressionError, ValueError, OverflowError, BufferError)


def _masked_crc32c(data: bytes) -> int:
    """Return the CRC-32C of *data* masked as the framing format requires."""
    crc: int = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class SnappyStreamEncoder:
    """Turns bytes written by the application into snappy framing-format bytes.

    One encoder serves one direction of one connection. It remembers only whether the
    stream identifier has been written yet.
    """

    __slots__ = ("_started",)

    def __init__(self) -> None:
        self._started = False

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """Return the wire bytes for one write of *data*.

        The first call that has data to write puts the stream identifier in front.
        *data* is cut into chunks of at most :data:`MAX_UNCOMPRESSED_CHUNK` bytes. Each
        chunk is compressed unless that saves less than one eighth of its size.
        ``encode(b"")`` returns ``b""`` and writes nothing, not even the identifier.
        """
        size = len(data)
        if size == 0:
            return b""
        if type(data) is not bytes:
            # The CRC routine accepts only real bytes objects.
            data = bytes(data)
        parts: list[bytes | cramjam.Buffer] = []
        if not self._started:
            parts.append(STREAM_IDENTIFIER)
            self._started = True
        if size <= MAX_UNCOMPRESSED_CHUNK:
            self._append_chunk(parts, data)
        else:
            for start in range(0, size, MAX_UNCOMPRESSED_CHUNK):
                self._append_chunk(parts, data[start : start + MAX_UNCOMPRESSED_CHUNK])
        return b"".join(parts)

    @staticmethod
    def _append_chunk(parts: list[bytes | cramjam.Buffer], piece: bytes) -> None:
        crc = _masked_crc32c(piece)
        compressed = cramjam.snappy.compress_raw(piece)
        compressed_len = len(compressed)
        if compressed_len < len(piece) - len(piece) // 8:
            parts.append(_HEADER_AND_CRC.pack(((compressed_len + _CRC_SIZE) << 8) | _CHUNK_COMPRESSED, crc))
            parts.append(compressed)
        else:
            parts.append(_HEADER_AND_CRC.pack(((len(piece) + _CRC_SIZE) << 8) | _CHUNK_UNCOMPRESSED, crc))
            parts.append(piece)


class SnappyStreamDecoder:
    """Turns snappy framing-format bytes from the peer back into the original bytes.

    :meth:`feed` accepts the wire bytes cut anywhere, keeps an incomplete chunk buffered
    until the rest arrives, and returns the data of every chunk completed so far.
    """

    __slots__ = ("_buffer", "_started", "_skip", "_error")

    def __init__(self) -> None:
        # Bytes of a chunk that is not complete yet (never more than one chunk's worth).
        self._buffer = bytearray()
        # Whether the stream identifier has been seen.
        self._started = False
        # Body bytes of a skippable chunk that have not arrived yet; they are dropped.
        self._skip = 0
        # The first error raised; once set, the decoder refuses all input.
        self._error: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Consume *data* from the wire; return the uncompressed bytes now available.

        Raises:
            RemoteProtocolError: the stream is malformed (no identifier first, a bad
                checksum, a reserved unskippable chunk, a length out of range, a corrupt
                compressed body), or an earlier call already failed.
        """
        if self._error is not None:
            raise RemoteProtocolError(f"snappy stream: decoder already failed: {self._error}")
        try:
            return self._feed(data)
        except RemoteProtocolError as exc:
            self._error = str(exc)
            raise

    def _feed(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._skip:
            # Still inside the body of a skippable chunk: drop what belongs to it.
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            if dropped:
                data = memoryview(data)[dropped:]
        if not data:
            return b""
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            # Nothing buffered: parse the caller's bytes in place, copy only the leftover.
            source = data
        parts: list[bytes] = []
        view = memoryview(source)
        try:
            consumed = self._parse(view, parts)
            leftover = bytes(view[consumed:]) if source is not buffer and consumed < len(view) else None
        finally:
            view.release()
        if source is buffer:
            del buffer[:consumed]
        elif leftover is not None:
            buffer += leftover
        if not parts:
            return b""
        return b"".join(parts)

    def _parse(self, view: memoryview, parts: list[bytes]) -> int:
        """Decode every complete chunk in *view*; return how many bytes were used."""
        end = len(view)
        pos = 0
        while end - pos >= _HEADER_SIZE:
            (word,) = _U32.unpack_from(view, pos)
            chunk_type = word & 0xFF
            body_len = word >> 8
            if not self._started and chunk_type != _CHUNK_IDENTIFIER:
                raise RemoteProtocolError(
                    f"snappy stream: does not start with the stream identifier (first chunk type 0x{chunk_type:02x})"
                )
            if chunk_type > _LAST_UNSKIPPABLE and chunk_type != _CHUNK_IDENTIFIER:
                # Skippable or padding: drop the body, however much of it is here.
                available = min(body_len, end - pos - _HEADER_SIZE)
                pos += _HEADER_SIZE + available
                self._skip = body_len - available
                continue
            self._check_length(chunk_type, body_len)
            body_start = pos + _HEADER_SIZE
            body_end = body_start + body_len
            if body_end > end:
                break
            if chunk_type == _CHUNK_IDENTIFIER:
                if view[body_start:body_end] != _IDENTIFIER_BODY:
                    raise RemoteProtocolError(
                        f"snappy stream: bad stream identifier {bytes(view[body_start:body_end])!r}"
                    )
                self._started = True
            else:
                (expected_crc,) = _U32.unpack_from(view, body_start)
                payload = view[body_start + _CRC_SIZE : body_end]
                if chunk_type == _CHUNK_COMPRESSED:
                    chunk_data = _decompress(payload)
                else:
                    chunk_data = bytes(payload)
                if _masked_crc32c(chunk_data) != expected_crc:
                    raise RemoteProtocolError(
                        f"snappy stream: checksum mismatch in chunk of type 0x{chunk_type:02x} "
                        f"({len(chunk_data)} bytes of data)"
                    )
                if chunk_data:
                    parts.append(chunk_data)
            pos = body_end
        return pos

    @staticmethod
    def _check_length(chunk_type: int, body_len: int) -> None:
        """Reject an unskippable chunk whose announced body length is out of range."""
        if chunk_type == _CHUNK_IDENTIFIER:
            if body_len != len(_IDENTIFIER_BODY):
                raise RemoteProtocolError(f"snappy stream: stream identifier chunk of length {body_len}, expected 6")
        elif chunk_type == _CHUNK_COMPRESSED:
            if not _CRC_SIZE < body_len <= _MAX_COMPRESSED_BODY:
                raise RemoteProtocolError(
                    f"snappy stream: compressed chunk of length {body_len}, "
                    f"expected {_CRC_SIZE + 1} to {_MAX_COMPRESSED_BODY}"
                )
        elif chunk_type == _CHUNK_UNCOMPRESSED:
            if not _CRC_SIZE <= body_len <= _MAX_UNCOMPRESSED_BODY:
                raise RemoteProtocolError(
                    f"snappy stream: uncompressed chunk of length {body_len}, "
                    f"expected {_CRC_SIZE} to {_MAX_UNCOMPRESSED_BODY}"
                )
        else:
            raise RemoteProtocolError(f"snappy stream: reserved unskippable chunk type 0x{chunk_type:02x}")


def _decompress(block: memoryview) -> bytes:
    """Decompress one raw snappy block of at most 65 536 bytes, or raise."""
    try:
        size = cramjam.snappy.decompress_raw_len(block)
    except _BACKEND_ERRORS as exc:
        raise RemoteProtocolError(f"snappy stream: corrupt compressed chunk: {exc}") from exc
    if size > MAX_UNCOMPRESSED_CHUNK:
        raise RemoteProtocolError(
            f"snappy stream: compressed chunk decodes to {size} bytes, more than {MAX_UNCOMPRESSED_CHUNK}"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(block))
    except _BACKEND_ERRORS as exc:
        raise RemoteProtocolError(f"snappy stream: corrupt compressed chunk: {exc}") from exc

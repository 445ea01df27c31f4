"""Tests for goworld.proto.snappy_stream (snappy framing format, PROTOCOL.md §3.1)."""

from __future__ import annotations

import random
import struct

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goworld.errors import RemoteProtocolError
from goworld.proto.snappy_stream import (
    MAX_UNCOMPRESSED_CHUNK,
    STREAM_IDENTIFIER,
    SnappyStreamDecoder,
    SnappyStreamEncoder,
)

# ---------------------------------------------------------------------------------------
# Independent helpers: a table-driven CRC-32C and a chunk walker, written from the spec so
# that the tests do not lean on the implementation under test.
# ---------------------------------------------------------------------------------------


def _make_crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # reflected Castagnoli
        table.append(crc)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def ref_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def ref_masked(data: bytes) -> int:
    crc = ref_crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def chunk(chunk_type: int, body: bytes) -> bytes:
    """Build one chunk by hand: type, 3-byte LE length, body."""
    return bytes([chunk_type]) + len(body).to_bytes(3, "little") + body


def data_chunk(chunk_type: int, data: bytes, payload: bytes | None = None, crc: int | None = None) -> bytes:
    """A type 0x00/0x01 chunk for *data*; *payload* is what follows the CRC (default: data)."""
    crc = ref_masked(data) if crc is None else crc
    return chunk(chunk_type, struct.pack("<I", crc) + (data if payload is None else payload))


def walk_chunks(stream: bytes) -> list[tuple[int, bytes]]:
    """Split a complete stream into (type, body) pairs."""
    out = []
    pos = 0
    while pos < len(stream):
        assert len(stream) - pos >= 4, "truncated header"
        chunk_type = stream[pos]
        length = int.from_bytes(stream[pos + 1 : pos + 4], "little")
        body = stream[pos + 4 : pos + 4 + length]
        assert len(body) == length, "truncated body"
        out.append((chunk_type, body))
        pos += 4 + length
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    prev = 0
    for p in points + [len(data)]:
        pieces.append(data[prev:p])
        prev = p
    return pieces


def decode_pieces(pieces: list[bytes]) -> bytes:
    dec = SnappyStreamDecoder()
    return b"".join(dec.feed(p) for p in pieces)


def encode_all(*writes: bytes) -> bytes:
    enc = SnappyStreamEncoder()
    return b"".join(enc.encode(w) for w in writes)


# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------

_seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def random_payload(draw: st.DrawFn, max_size: int = 200_000) -> bytes:
    """Incompressible bytes of any size up to *max_size* (beyond one 64 KiB chunk)."""
    size = draw(st.integers(0, max_size))
    return random.Random(draw(_seeds)).randbytes(size)


@st.composite
def compressible_payload(draw: st.DrawFn, max_size: int = 200_000) -> bytes:
    """Highly repetitive bytes: a short drawn pattern repeated, size up to *max_size*."""
    pattern = draw(st.binary(min_size=1, max_size=16))
    size = draw(st.integers(0, max_size))
    return (pattern * (size // len(pattern) + 1))[:size]


@st.composite
def mixed_payload(draw: st.DrawFn) -> bytes:
    """Alternating runs of random and repetitive data, so chunks of both types appear."""
    parts = draw(st.lists(st.one_of(random_payload(40_000), compressible_payload(40_000)), max_size=6))
    return b"".join(parts)


payloads = st.one_of(
    st.binary(max_size=2_000),
    random_payload(),
    compressible_payload(),
    mixed_payload(),
)

big = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------
# Reference checks on the test helpers and known-good streams
# ---------------------------------------------------------------------------------------


def test_reference_crc32c_check_value() -> None:
    # The standard CRC-32C check value (RFC 3720 appendix B.4 / "123456789").
    assert ref_crc32c(b"123456789") == 0xE3069283
    assert ref_crc32c(b"") == 0
    assert ref_crc32c(b"\x00" * 32) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeroes


def test_identifier_constant() -> None:
    assert bytes.fromhex("ff060000734e61507059") == STREAM_IDENTIFIER
    assert STREAM_IDENTIFIER[4:] == b"sNaPpY"


# b"hello", 5 bytes. A raw snappy block of it would be 6 bytes (varint 05, literal tag 10,
# "hello"), which does not save 1/8 of 5 bytes, so the writer emits an uncompressed chunk:
#   ff 06 00 00 73 4e 61 50 70 59   stream identifier "sNaPpY"
#   01                              chunk type: uncompressed
#   09 00 00                        body length 9 = 4 (CRC) + 5 (data)
#   bb 1f 1c 19                     masked CRC-32C("hello") = 0x191c1fbb, LE
#                                   (CRC-32C("hello") = 0x9a71bb4c; rotated right by 15
#                                    -> 0x769934e3; + 0xa282ead8 mod 2**32 -> 0x191c1fbb)
#   68 65 6c 6c 6f                  "hello"
HELLO_STREAM = bytes.fromhex("ff060000734e61507059" "01090000" "bb1f1c19" "68656c6c6f")

# b"a" * 100. The raw snappy block is 9 bytes:
#   64          varint 100 (uncompressed length)
#   00 61       literal, length 1 (tag (1-1)<<2 | 0b00), "a"
#   fe 01 00    copy with 2-byte offset: tag (64-1)<<2 | 0b10, length 64, offset 1
#   8a 01 00    copy with 2-byte offset: tag (35-1)<<2 | 0b10, length 35, offset 1
# 9 < 100 - 100//8, so the writer emits a compressed chunk:
#   ff 06 00 00 73 4e 61 50 70 59   stream identifier
#   00                              chunk type: compressed
#   0d 00 00                        body length 13 = 4 (CRC) + 9 (block)
#   1f a8 b5 fd                     masked CRC-32C of the *uncompressed* 100 bytes, LE
#   64 00 61 fe 01 00 8a 01 00      the block
A100_STREAM = bytes.fromhex("ff060000734e61507059" "000d0000" "1fa8b5fd" "640061fe01008a0100")


def test_known_masked_crcs() -> None:
    assert ref_crc32c(b"hello") == 0x9A71BB4C
    assert ref_masked(b"hello") == 0x191C1FBB
    assert HELLO_STREAM[14:18] == struct.pack("<I", ref_masked(b"hello"))
    assert A100_STREAM[14:18] == struct.pack("<I", ref_masked(b"a" * 100))


def test_known_stream_hello() -> None:
    assert SnappyStreamEncoder().encode(b"hello") == HELLO_STREAM
    assert SnappyStreamDecoder().feed(HELLO_STREAM) == b"hello"


def test_known_stream_repeated_a() -> None:
    assert SnappyStreamEncoder().encode(b"a" * 100) == A100_STREAM
    assert SnappyStreamDecoder().feed(A100_STREAM) == b"a" * 100
    # The block itself must be a valid raw snappy block for the same data.
    assert bytes(cramjam.snappy.decompress_raw(A100_STREAM[18:])) == b"a" * 100


def test_hand_built_literal_only_compressed_chunk() -> None:
    # A compressed chunk that does not actually save anything is still valid input.
    block = bytes([5, (5 - 1) << 2]) + b"hello"  # varint 5, one literal of 5 bytes
    stream = STREAM_IDENTIFIER + data_chunk(0x00, b"hello", payload=block)
    assert SnappyStreamDecoder().feed(stream) == b"hello"


def test_empty_data_chunks_decode_to_nothing() -> None:
    stream = STREAM_IDENTIFIER + data_chunk(0x01, b"") + data_chunk(0x00, b"", payload=b"\x00") + HELLO_STREAM[10:]
    assert SnappyStreamDecoder().feed(stream) == b"hello"


# ---------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------


@big
@given(payloads)
def test_round_trip_whole(data: bytes) -> None:
    wire = SnappyStreamEncoder().encode(data)
    assert SnappyStreamDecoder().feed(wire) == data


@settings(deadline=None, max_examples=25)
@given(st.one_of(st.binary(max_size=600), random_payload(3_000), compressible_payload(3_000)))
def test_round_trip_one_byte_at_a_time(data: bytes) -> None:
    wire = SnappyStreamEncoder().encode(data)
    dec = SnappyStreamDecoder()
    out = bytearray()
    for i in range(len(wire)):
        out += dec.feed(wire[i : i + 1])
    assert out == data


def test_round_trip_one_byte_at_a_time_large() -> None:
    data = random.Random(7).randbytes(70_000) + b"xyz" * 30_000
    wire = SnappyStreamEncoder().encode(data)
    dec = SnappyStreamDecoder()
    out = bytearray()
    for i in range(len(wire)):
        out += dec.feed(wire[i : i + 1])
    assert out == data


@big
@given(payloads, st.lists(st.integers(min_value=0), max_size=30))
def test_round_trip_random_splits(data: bytes, cuts: list[int]) -> None:
    wire = SnappyStreamEncoder().encode(data)
    assert decode_pieces(split_at(wire, cuts)) == data


@big
@given(st.lists(payloads, max_size=5), st.lists(st.integers(min_value=0), max_size=30))
def test_round_trip_many_writes(writes: list[bytes], cuts: list[int]) -> None:
    wire = encode_all(*writes)
    identifiers = [t for t, _ in walk_chunks(wire)].count(0xFF)
    assert identifiers == (1 if any(writes) else 0)
    assert decode_pieces(split_at(wire, cuts)) == b"".join(writes)


def test_feed_accepts_bytes_like() -> None:
    wire = SnappyStreamEncoder().encode(memoryview(b"hello world " * 20))
    dec = SnappyStreamDecoder()
    out = dec.feed(bytearray(wire[:20])) + dec.feed(memoryview(wire)[20:])
    assert out == b"hello world " * 20
    assert isinstance(out, bytes)


def test_concatenated_streams_repeat_identifier() -> None:
    wire = SnappyStreamEncoder().encode(b"first ") + SnappyStreamEncoder().encode(b"second")
    assert wire.count(STREAM_IDENTIFIER) == 2
    assert SnappyStreamDecoder().feed(wire) == b"first second"


# ---------------------------------------------------------------------------------------
# Interoperability with an independent implementation (cramjam / Rust snap crate)
# ---------------------------------------------------------------------------------------


@big
@given(payloads, st.lists(st.integers(min_value=0), max_size=10))
def test_decode_cramjam_stream(data: bytes, cuts: list[int]) -> None:
    wire = bytes(cramjam.snappy.compress(data))
    assert decode_pieces(split_at(wire, cuts)) == data


@big
@given(st.lists(payloads, max_size=4))
def test_cramjam_decodes_our_stream(writes: list[bytes]) -> None:
    wire = encode_all(*writes)
    assert bytes(cramjam.snappy.decompress(wire)) == b"".join(writes)


# ---------------------------------------------------------------------------------------
# Encoder output shape
# ---------------------------------------------------------------------------------------


def test_empty_encode_writes_nothing() -> None:
    enc = SnappyStreamEncoder()
    assert enc.encode(b"") == b""
    assert enc.encode(b"x").startswith(STREAM_IDENTIFIER)
    assert enc.encode(b"") == b""


def test_identifier_only_once() -> None:
    enc = SnappyStreamEncoder()
    outputs = [enc.encode(b"abc" * n) for n in range(1, 6)]
    assert outputs[0].startswith(STREAM_IDENTIFIER)
    assert all(not out.startswith(STREAM_IDENTIFIER) for out in outputs[1:])
    chunks = walk_chunks(b"".join(outputs))
    assert [t for t, _ in chunks].count(0xFF) == 1


def test_incompressible_data_uses_uncompressed_chunks() -> None:
    data = random.Random(1).randbytes(150_000)
    chunks = walk_chunks(SnappyStreamEncoder().encode(data))
    assert chunks[0] == (0xFF, b"sNaPpY")
    types = [t for t, _ in chunks[1:]]
    assert types == [0x01, 0x01, 0x01]
    assert [len(body) - 4 for _, body in chunks[1:]] == [65536, 65536, 150_000 - 2 * 65536]
    assert b"".join(body[4:] for _, body in chunks[1:]) == data
    for _, body in chunks[1:]:
        assert body[:4] == struct.pack("<I", ref_masked(body[4:]))


def test_compressible_data_uses_compressed_chunks() -> None:
    data = b"GoWorld entity sync " * 10_000  # 200 000 bytes
    chunks = walk_chunks(SnappyStreamEncoder().encode(data))
    assert [t for t, _ in chunks] == [0xFF, 0x00, 0x00, 0x00, 0x00]
    pieces = [bytes(cramjam.snappy.decompress_raw(body[4:])) for _, body in chunks[1:]]
    assert [len(p) for p in pieces] == [65536, 65536, 65536, 200_000 - 3 * 65536]
    assert b"".join(pieces) == data
    for (_, body), piece in zip(chunks[1:], pieces, strict=True):
        assert body[:4] == struct.pack("<I", ref_masked(piece))


@settings(deadline=None, max_examples=50)
@given(mixed_payload())
def test_chunk_type_follows_one_eighth_rule(data: bytes) -> None:
    chunks = walk_chunks(SnappyStreamEncoder().encode(data))
    offset = 0
    for chunk_type, body in chunks[1:]:
        piece = data[offset : offset + MAX_UNCOMPRESSED_CHUNK]
        offset += len(piece)
        compressed_len = len(cramjam.snappy.compress_raw(piece))
        worth_it = compressed_len < len(piece) - len(piece) // 8
        assert chunk_type == (0x00 if worth_it else 0x01)
        assert body[:4] == struct.pack("<I", ref_masked(piece))
    assert offset == len(data)


# ---------------------------------------------------------------------------------------
# Skippable chunks
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_type", [0x80, 0x9A, 0xFD, 0xFE])
def test_skippable_and_padding_chunks_are_skipped(chunk_type: int) -> None:
    stream = (
        STREAM_IDENTIFIER
        + chunk(chunk_type, b"ignored \x00\xff")
        + HELLO_STREAM[10:]
        + chunk(chunk_type, b"")
        + A100_STREAM[10:]
    )
    assert SnappyStreamDecoder().feed(stream) == b"hello" + b"a" * 100
    assert decode_pieces([stream[i : i + 1] for i in range(len(stream))]) == b"hello" + b"a" * 100


def test_large_skippable_chunk_is_not_buffered() -> None:
    body_len = 0xFFFFFF  # the largest length a header can announce
    dec = SnappyStreamDecoder()
    assert dec.feed(STREAM_IDENTIFIER + bytes([0xFE]) + body_len.to_bytes(3, "little")) == b""
    block = b"\x00" * 100_000
    remaining = body_len
    while remaining:
        n = min(remaining, len(block))
        assert dec.feed(block[:n]) == b""
        assert len(dec._buffer) == 0
        remaining -= n
    # The rest of the feed after the skipped body is decoded normally, even within one call.
    assert dec.feed(HELLO_STREAM[10:]) == b"hello"


def test_skip_ends_inside_a_feed() -> None:
    dec = SnappyStreamDecoder()
    pad = chunk(0xFE, b"p" * 1000)
    wire = STREAM_IDENTIFIER + pad + HELLO_STREAM[10:]
    assert dec.feed(wire[:500]) == b""
    assert dec.feed(wire[500:]) == b"hello"


# ---------------------------------------------------------------------------------------
# Malformed input: RemoteProtocolError, and nothing else
# ---------------------------------------------------------------------------------------


def assert_rejected(stream: bytes, match: str | None = None) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        SnappyStreamDecoder().feed(stream)
    # Same result when the bytes trickle in.
    with pytest.raises(RemoteProtocolError, match=match):
        dec = SnappyStreamDecoder()
        for i in range(len(stream)):
            dec.feed(stream[i : i + 1])


def test_missing_identifier() -> None:
    assert_rejected(HELLO_STREAM[10:], match="stream identifier")
    assert_rejected(chunk(0xFE, b"") + HELLO_STREAM, match="stream identifier")


def test_wrong_identifier_body() -> None:
    assert_rejected(chunk(0xFF, b"SnAPpY") + HELLO_STREAM[10:], match="identifier")
    assert_rejected(HELLO_STREAM + chunk(0xFF, b"sNaPpZ"), match="identifier")


@pytest.mark.parametrize("length", [0, 5, 7, 0xFFFFFF])
def test_wrong_identifier_length(length: int) -> None:
    header = b"\xff" + length.to_bytes(3, "little")
    assert_rejected(header, match="length")
    assert_rejected(HELLO_STREAM + header, match="length")


def test_bad_crc_uncompressed() -> None:
    assert_rejected(STREAM_IDENTIFIER + data_chunk(0x01, b"hello", crc=ref_masked(b"hellO")), match="checksum")
    # An unmasked CRC is wrong too.
    assert_rejected(STREAM_IDENTIFIER + data_chunk(0x01, b"hello", crc=ref_crc32c(b"hello")), match="checksum")


def test_bad_crc_compressed() -> None:
    bad = bytearray(A100_STREAM)
    bad[14] ^= 0x01
    assert_rejected(bytes(bad), match="checksum")


@pytest.mark.parametrize("chunk_type", [0x02, 0x03, 0x42, 0x7F])
def test_reserved_unskippable_chunk(chunk_type: int) -> None:
    assert_rejected(HELLO_STREAM + chunk(chunk_type, b"abc"), match="reserved")
    # Rejected as soon as the header is in, before any body.
    with pytest.raises(RemoteProtocolError):
        SnappyStreamDecoder().feed(HELLO_STREAM + bytes([chunk_type]) + b"\xff\xff\xff")


@pytest.mark.parametrize(
    ("chunk_type", "length"),
    [
        (0x01, 65536 + 5),
        (0x01, 0xFFFFFF),
        (0x01, 3),
        (0x01, 0),
        (0x00, int(cramjam.snappy.compress_raw_max_len(bytes(65536))) + 5),
        (0x00, 0xFFFFFF),
        (0x00, 4),
        (0x00, 0),
    ],
)
def test_absurd_chunk_length_rejected_from_header(chunk_type: int, length: int) -> None:
    # Only the header is sent: the decoder must not wait for 16 MiB before failing.
    header = bytes([chunk_type]) + length.to_bytes(3, "little")
    with pytest.raises(RemoteProtocolError, match="length"):
        SnappyStreamDecoder().feed(STREAM_IDENTIFIER + header)


def test_largest_legal_lengths_are_accepted() -> None:
    data = random.Random(3).randbytes(65536)
    stream = STREAM_IDENTIFIER + data_chunk(0x01, data)
    assert len(stream) == 10 + 4 + 65540
    assert SnappyStreamDecoder().feed(stream) == data


@pytest.mark.parametrize(
    "block",
    [
        b"\x05\x10hell",  # literal runs past the end
        b"\x05",  # length only
        b"\xff\xff\xff\xff\xff\xff",  # varint that never ends
        b"\x64\x00\x61\xfe\x05\x00\x8a\x01\x00",  # copy offset 5 before the start of output
        b"\x03\x10hello",  # more data than the declared length
    ],
)
def test_corrupt_compressed_body(block: bytes) -> None:
    assert_rejected(STREAM_IDENTIFIER + data_chunk(0x00, b"hello", payload=block), match="corrupt|checksum")


def test_compressed_chunk_decoding_beyond_64k() -> None:
    data = b"a" * 65537
    block = bytes(cramjam.snappy.compress_raw(data))
    assert_rejected(STREAM_IDENTIFIER + data_chunk(0x00, data, payload=block), match="65536")


def test_decoder_stays_broken() -> None:
    dec = SnappyStreamDecoder()
    with pytest.raises(RemoteProtocolError):
        dec.feed(HELLO_STREAM[10:])
    with pytest.raises(RemoteProtocolError, match="already failed"):
        dec.feed(HELLO_STREAM)
    with pytest.raises(RemoteProtocolError):
        dec.feed(b"")


def _feed_all_expect_only_protocol_errors(stream: bytes, cuts: list[int]) -> None:
    dec = SnappyStreamDecoder()
    try:
        for piece in split_at(stream, cuts):
            dec.feed(piece)
    except RemoteProtocolError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=400), st.booleans(), st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_arbitrary_bytes(junk: bytes, with_identifier: bool, cuts: list[int]) -> None:
    _feed_all_expect_only_protocol_errors((STREAM_IDENTIFIER if with_identifier else b"") + junk, cuts)


@st.composite
def structured_junk(draw: st.DrawFn) -> bytes:
    """Chunks with plausible headers (all types, small lengths) and arbitrary bodies."""
    out = [STREAM_IDENTIFIER]
    for _ in range(draw(st.integers(0, 6))):
        chunk_type = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF]))
        body = draw(st.binary(max_size=40))
        if draw(st.booleans()) and chunk_type in (0x00, 0x01):
            payload = body
            if chunk_type == 0x00:
                body = bytes(cramjam.snappy.compress_raw(payload))
            crc = ref_masked(payload) if draw(st.booleans()) else draw(st.integers(0, 2**32 - 1))
            body = struct.pack("<I", crc) + body
        out.append(chunk(chunk_type, body))
    return b"".join(out)


@settings(max_examples=300)
@given(structured_junk(), st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_structured_chunks(stream: bytes, cuts: list[int]) -> None:
    _feed_all_expect_only_protocol_errors(stream, cuts)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.binary(max_size=300), compressible_payload(3_000)),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0), max_size=5),
)
def test_fuzz_mutated_valid_stream(data: bytes, flips: list[tuple[int, int]], cuts: list[int]) -> None:
    wire = bytearray(SnappyStreamEncoder().encode(data) or STREAM_IDENTIFIER)
    for index, xor in flips:
        wire[index % len(wire)] ^= xor
    _feed_all_expect_only_protocol_errors(bytes(wire), cuts)

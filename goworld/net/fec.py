"""kcp-go's FEC layer: shard header, Reed-Solomon parity and recovery (sans-I/O, stdlib only).

Wire format (kcp-go v5, no crypt; PROTOCOL.md §3.4). Every datagram starts with a 6-byte header::

    u32 LE seqid | u16 LE flag (0xf1 data, 0xf2 parity) | ...
    data shard:   u16 LE size (= 2 + len(kcp)) | kcp bytes
    parity shard: Reed-Solomon parity over the data shards' bytes from offset 6 on

Seqids count up by one per shard and wrap at the largest multiple of ``data + parity`` below
2**32, so ``seqid % (data + parity)`` is the shard's index in its group: indices ``< data`` are
data shards, the rest parity. A sender that sends no parity still skips the parity seqids, or a
kcp-go receiver sees its FEC "out of sync".

The parity matches klauspost/reedsolomon's default code (the one kcp-go uses): GF(2^8) with
polynomial 0x11d and generator 2, and the coding matrix is a Vandermonde matrix made
systematic (``V * inverse(V[:data])``). Shards of a group are zero-padded to the longest one.
Multiplying a shard by a constant is one ``bytes.translate`` and adding shards is one big-int
XOR, so the arithmetic runs in C.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from functools import lru_cache

__all__ = [
    "FEC_HEADER_SIZE",
    "FEC_HEADER_SIZE_PLUS2",
    "TYPE_DATA",
    "TYPE_PARITY",
    "FECDecoder",
    "FECEncoder",
    "coding_matrix",
    "encode_parity",
]

FEC_HEADER_SIZE = 6
FEC_HEADER_SIZE_PLUS2 = 8
TYPE_DATA = 0xF1
TYPE_PARITY = 0xF2

DATA_HEADER = struct.Struct("<IHH")  # seqid, flag, size
PARITY_HEADER = struct.Struct("<IH")  # seqid, flag
_U16 = struct.Struct("<H")

Matrix = list[list[int]]

# -- GF(2^8) arithmetic ------------------------------------------------------------------------

_EXP = [0] * 510
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _EXP[_i + 255] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
del _x, _i


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _inverse(a: int) -> int:
    return _EXP[255 - _LOG[a]]


def _exp(a: int, n: int) -> int:
    if n == 0:
        return 1
    return 0 if a == 0 else _EXP[(_LOG[a] * n) % 255]


@lru_cache(maxsize=256)
def _mul_table(c: int) -> bytes:
    """The 256-byte ``bytes.translate`` table multiplying every byte by ``c``."""
    return bytes(_mul(c, x) for x in range(256))


def _mat_mul(a: Matrix, b: Matrix) -> Matrix:
    out = []
    for row in a:
        new = []
        for c in range(len(b[0])):
            acc = 0
            for k, v in enumerate(row):
                acc ^= _mul(v, b[k][c])
            new.append(acc)
        out.append(new)
    return out


def _mat_invert(m: Matrix) -> Matrix:
    """Gauss-Jordan inversion over GF(2^8); raises ValueError for a singular matrix."""
    n = len(m)
    work = [list(row) + [int(i == j) for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if work[r][col]), None)
        if pivot is None:
            raise ValueError("singular matrix")
        work[col], work[pivot] = work[pivot], work[col]
        inv = _inverse(work[col][col])
        work[col] = [_mul(inv, v) for v in work[col]]
        for r in range(n):
            factor = work[r][col]
            if r != col and factor:
                work[r] = [v ^ _mul(factor, p) for v, p in zip(work[r], work[col], strict=True)]
    return [row[n:] for row in work]


@lru_cache(maxsize=16)
def coding_matrix(data_shards: int, parity_shards: int) -> tuple[tuple[int, ...], ...]:
    """klauspost/reedsolomon's default matrix: rows ``0..data-1`` are the identity."""
    total = data_shards + parity_shards
    vandermonde = [[_exp(r, c) for c in range(data_shards)] for r in range(total)]
    top_inverse = _mat_invert(vandermonde[:data_shards])
    return tuple(tuple(row) for row in _mat_mul(vandermonde, top_inverse))


def _combine(coefficients: list[int] | tuple[int, ...], shards: list[bytes], size: int) -> bytes:
    """``sum(c * shard)`` over GF(2^8), each shard zero-padded to ``size`` bytes."""
    acc = 0
    for c, shard in zip(coefficients, shards, strict=True):
        if c == 1:
            acc ^= int.from_bytes(shard, "little")
        elif c:
            acc ^= int.from_bytes(shard.translate(_mul_table(c)), "little")
    return acc.to_bytes(size, "little")  # little-endian: padding zeros are the high bytes


def encode_parity(shards: list[bytes], parity_shards: int) -> list[bytes]:
    """klauspost/reedsolomon ``New(len(shards), parity_shards).Encode``: the parity shards,
    each as long as the longest data shard (shorter ones count as zero-padded)."""
    rows = coding_matrix(len(shards), parity_shards)[len(shards) :]
    size = max(map(len, shards))
    return [_combine(row, shards, size) for row in rows]


# -- encoder / decoder -------------------------------------------------------------------------


class FECEncoder:
    """Wraps outgoing KCP datagrams in data shards and emits parity after each group.

    ``encode(kcp_bytes)`` returns the datagrams to send: the data shard, followed by the
    group's parity shards when it completes the group (if ``parity`` is on).
    """

    def __init__(self, data_shards: int = 10, parity_shards: int = 3, *, parity: bool = True):
        if data_shards <= 0 or parity_shards <= 0:
            raise ValueError("FEC needs at least one data and one parity shard")
        self.data_shards = data_shards
        self.parity_shards = parity_shards
        self.parity = parity
        total = data_shards + parity_shards
        self._paws = 0xFFFFFFFF // total * total
        self._next = 0
        self._count = 0
        self._group: list[bytes] = []  # whole data datagrams of the current group

    def encode(self, kcp_bytes: bytes) -> list[bytes]:
        datagram = DATA_HEADER.pack(self._next, TYPE_DATA, len(kcp_bytes) + 2) + kcp_bytes
        self._next = (self._next + 1) % self._paws
        self._count += 1
        if self.parity:
            self._group.append(datagram)
        if self._count < self.data_shards:
            return [datagram]
        out = [datagram]
        if self.parity:
            out.extend(self._parity_shards())
        else:
            self._next = (self._next + self.parity_shards) % self._paws
        self._count = 0
        self._group = []
        return out

    def _parity_shards(self) -> list[bytes]:
        payloads = [d[FEC_HEADER_SIZE:] for d in self._group]
        out = []
        for parity in encode_parity(payloads, self.parity_shards):
            out.append(PARITY_HEADER.pack(self._next, TYPE_PARITY) + parity)
            self._next = (self._next + 1) % self._paws
        return out


class FECDecoder:
    """Collects shards by group and rebuilds lost data shards from parity.

    ``feed(seqid, flag, payload)`` takes a shard's bytes after the 6-byte header and returns
    the KCP bytes of data shards it could recover (usually none). Data shards are fed to KCP
    directly by the caller; this only fills gaps. At most ``max_groups`` incomplete groups are
    kept, holding at most ``max_shards`` shards (kcp-go's limit: three groups' worth; the
    oldest groups go first); once a group completes, it and every older group are forgotten
    (as kcp-go does). A shard longer than ``max_shard_bytes`` (the MTU: no peer sends one) is
    dropped, so a session holds at most ``max_shards * max_shard_bytes`` here.
    """

    def __init__(
        self, data_shards: int = 10, parity_shards: int = 3, *, max_groups: int = 32,
        max_shards: int = 0, max_shard_bytes: int = 1400,
    ):
        self.data_shards = data_shards
        self.parity_shards = parity_shards
        self._total = data_shards + parity_shards
        self._ngroups = (0xFFFFFFFF // self._total * self._total) // self._total
        self._matrix = coding_matrix(data_shards, parity_shards)
        self._max_groups = max_groups
        self._max_shards = max_shards or 3 * self._total
        self._max_shard_bytes = max_shard_bytes
        self._held = 0  # shards in _groups
        self._groups: OrderedDict[int, dict[int, bytes]] = OrderedDict()
        self._done: int | None = None  # newest completed group id
        self.recovered = 0

    def _is_old(self, gid: int) -> bool:
        if self._done is None:
            return False
        diff = (gid - self._done) % self._ngroups
        return diff == 0 or diff > self._ngroups // 2

    def feed(self, seqid: int, flag: int, payload: bytes) -> list[bytes]:
        gid, index = divmod(seqid, self._total)
        if (index < self.data_shards) != (flag == TYPE_DATA) or self._is_old(gid):
            return []
        if len(payload) > self._max_shard_bytes:
            return []
        groups = self._groups
        group = groups.get(gid)
        if group is None:
            group = groups[gid] = {}
        if index in group:
            return []
        group[index] = payload
        self._held += 1
        while len(groups) > self._max_groups or self._held > self._max_shards:
            oldest, dropped = next(iter(groups.items()))
            if oldest == gid:
                break
            del groups[oldest]
            self._held -= len(dropped)
        if len(group) < self.data_shards:
            return []
        self._done = gid
        for old in [g for g in groups if self._is_old(g)]:
            self._held -= len(groups.pop(old))
        missing = [k for k in range(self.data_shards) if k not in group]
        return self._recover(group, missing) if missing else []

    def _recover(self, group: dict[int, bytes], missing: list[int]) -> list[bytes]:
        chosen = tuple(sorted(group)[: self.data_shards])
        decode = _decode_matrix(self._matrix, chosen)
        shards = [group[i] for i in chosen]
        size = max(map(len, shards))
        out = []
        for k in missing:
            shard = _combine(decode[k], shards, size)
            (length,) = _U16.unpack_from(shard)
            if 2 <= length <= len(shard):
                out.append(shard[2:length])
                self.recovered += 1
        return out


@lru_cache(maxsize=64)
def _decode_matrix(
    matrix: tuple[tuple[int, ...], ...], chosen: tuple[int, ...]
) -> tuple[tuple[int, ...], ...]:
    """Inverse of the coding matrix's rows for the shards we have: data = inv * shards."""
    return tuple(tuple(row) for row in _mat_invert([list(matrix[i]) for i in chosen]))

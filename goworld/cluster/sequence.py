"""Batch numbering on cluster streams: what a broken stream lost is written again, nothing twice.

A stream between a game (or gate, or lockstep process) and a dispatcher can break while both
processes live on (a reset connection, a partition). Whatever was in flight then (in a socket
buffer, or written by gRPC but never read) is gone with the connection. To get it back without
acknowledgements on the hot path:

* every process draws a random :data:`EPOCH` when it starts;
* the sender side of a conversation (:class:`Outgoing`: one per peer, kept across that peer's
  streams) numbers each batch it writes (``seq``, counting on across reconnects), stamps its
  own epoch, and keeps the last :data:`RETAINED_BATCHES` batches (at most
  :data:`RETAINED_BYTES`) with the epoch of the process they were written to;
* when a stream to the same peer comes back, the sender first writes the retained batches again
  (``resent``, ``dest_epoch`` = that process's epoch);
* the receiving side (:class:`Incoming`) takes a numbered batch only if its number is new for
  that sender's epoch, and a resent one only if it was written to this very process.

So a batch lost in flight arrives after all, once, in order; a peer that restarted (a new
epoch) gets nothing meant for its predecessor, and a restarted sender starts a new numbering.

The two directions of a stream acknowledge each other for free: every batch a side writes
carries what it has taken from the other so far (``ack``, ``ack_epoch``: its
:class:`Incoming`'s last number and the epoch it belongs to), and the other side drops the
retained batches up to that number (they arrived; a resend could only be refused as a
duplicate). Under traffic both ways, the retention holds only what is in flight, not the last
256 batches; a quiet direction still keeps at most the retention.
Unnumbered batches (``seq`` 0: a hello, or a peer without this module) are always taken.
What was written longer ago than the retention was long delivered (TCP keeps order; only the
last moments can be lost); a gap the retention could not cover is counted and logged.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque

from goworld.cluster.envelopes import Batch, Envelope

__all__ = ["EPOCH", "RETAINED_BATCHES", "RETAINED_BYTES", "Incoming", "Outgoing"]

logger = logging.getLogger("goworld.cluster")

#: This process's epoch (never 0).
EPOCH = secrets.randbits(63) | 1
#: How many written batches a sender keeps for a resend, and how many bytes at most.
RETAINED_BATCHES = 256
RETAINED_BYTES = 8 * 1024 * 1024


class Outgoing:
    """The sending side of one conversation (this process to one peer process)."""

    __slots__ = ("epoch", "next_seq", "peer_epoch", "incoming", "_retained", "_retained_bytes")

    def __init__(
        self, epoch: int = EPOCH, peer_epoch: int = 0, incoming: Incoming | None = None
    ) -> None:
        self.epoch = epoch
        self.next_seq = 1
        #: the epoch of the process the stream now reaches (0: not known yet)
        self.peer_epoch = peer_epoch
        self._retained: deque[tuple[int, int, list[Envelope], int]] = deque()
        self._retained_bytes = 0
        #: the other direction of this conversation: what our batches acknowledge, and where
        #: the peer's acknowledgements of ours arrive
        self.incoming = incoming
        if incoming is not None:
            incoming.outgoing = self

    def stamp(self, messages: list[Envelope], size: int) -> Batch:
        """The batch to write for ``messages`` (``size``: their weight in bytes), numbered and
        kept for a resend."""
        seq = self.next_seq
        self.next_seq = seq + 1
        retained = self._retained
        retained.append((seq, self.peer_epoch, messages, size))
        self._retained_bytes += size
        while len(retained) > RETAINED_BATCHES or (
            self._retained_bytes > RETAINED_BYTES and len(retained) > 1
        ):
            self._retained_bytes -= retained.popleft()[3]
        incoming = self.incoming
        if incoming is not None and incoming.last_seq:
            return Batch(messages=messages, seq=seq, epoch=self.epoch,
                         ack=incoming.last_seq, ack_epoch=incoming.peer_epoch)
        return Batch(messages=messages, seq=seq, epoch=self.epoch)

    def acked(self, epoch: int, seq: int) -> None:
        """The peer has taken our batches up to ``seq`` of ``epoch``: no resend needed."""
        if epoch != self.epoch:
            return  # about a predecessor of this process
        retained = self._retained
        while retained and retained[0][0] <= seq:
            self._retained_bytes -= retained.popleft()[3]

    def resend(self) -> list[Batch]:
        """The retained batches, to be written first on a new stream to the same peer."""
        return [
            Batch(messages=messages, seq=seq, epoch=self.epoch, resent=True, dest_epoch=dest)
            for seq, dest, messages, _ in self._retained
        ]

    @property
    def retained(self) -> int:
        return len(self._retained)


class Incoming:
    """The receiving side of one conversation: which batches to take."""

    __slots__ = ("epoch", "peer_epoch", "last_seq", "duplicates", "refused", "gaps", "outgoing")

    def __init__(self, epoch: int = EPOCH) -> None:
        #: the other direction (set by :class:`Outgoing`): told what the peer acknowledges
        self.outgoing: Outgoing | None = None
        self.epoch = epoch  # this process's
        self.peer_epoch = 0  # the sender's, from its numbered batches
        self.last_seq = 0
        self.duplicates = 0  # batches seen before (a resend of what had arrived)
        self.refused = 0  # resent batches written to another process (our predecessor)
        self.gaps = 0  # batches lost for good: the resend did not reach back far enough

    def accept(self, batch: Batch) -> bool:
        if batch.ack and self.outgoing is not None:
            self.outgoing.acked(batch.ack_epoch, batch.ack)
        seq = batch.seq
        if not seq:
            return True
        if batch.resent and batch.dest_epoch != self.epoch:
            self.refused += 1
            return False
        if batch.epoch != self.peer_epoch:
            if batch.resent:  # from a sender we never heard: not for us
                self.refused += 1
                return False
            self.peer_epoch, self.last_seq = batch.epoch, 0  # a new sender process
        if seq <= self.last_seq:
            self.duplicates += 1
            return False
        if self.last_seq and seq > self.last_seq + 1:
            lost = seq - self.last_seq - 1
            self.gaps += lost
            logger.error("%d batches from epoch %x were lost for good (beyond the resend "
                         "window)", lost, self.peer_epoch)
        self.last_seq = seq
        return True

"""goworld.cluster.sequence: numbering, retention and the receiver's rules, without I/O."""

from __future__ import annotations

import logging

import pytest

from goworld.cluster.envelopes import Batch, Envelope
from goworld.cluster.sequence import RETAINED_BATCHES, RETAINED_BYTES, Incoming, Outgoing

A, B, C = 0xA1, 0xB1, 0xC1  # epochs: the sender, the receiver, a restarted receiver


def env(n: int) -> Envelope:
    return Envelope(msgtype=6, name=str(n))


def names(batches: list[Batch]) -> list[str]:
    return [e.name for b in batches for e in b.messages]


def test_batches_are_numbered_across_streams_and_resent_to_the_same_process() -> None:
    out = Outgoing(epoch=A, peer_epoch=B)
    inc = Incoming(epoch=B)
    written = [out.stamp([env(i)], 10) for i in range(5)]
    assert [b.seq for b in written] == [1, 2, 3, 4, 5] and {b.epoch for b in written} == {A}
    for b in written[:3]:  # 4 and 5 were lost with the stream
        assert inc.accept(b)
    again = out.resend()
    assert all(b.resent and b.dest_epoch == B for b in again)
    taken = [b for b in again if inc.accept(b)]
    assert names(taken) == ["3", "4"] and inc.duplicates == 3  # exactly the lost ones
    assert inc.accept(out.stamp([env(6)], 10)) and inc.last_seq == 6


def test_a_restarted_receiver_refuses_what_was_meant_for_its_predecessor() -> None:
    out = Outgoing(epoch=A, peer_epoch=B)
    for i in range(3):
        out.stamp([env(i)], 10)
    fresh = Incoming(epoch=C)
    assert not any(fresh.accept(b) for b in out.resend())
    assert fresh.refused == 3
    out.peer_epoch = C  # it has heard from the new process
    assert fresh.accept(out.stamp([env(9)], 10))  # new traffic is taken


def test_a_restarted_sender_starts_a_new_numbering() -> None:
    inc = Incoming(epoch=B)
    old = Outgoing(epoch=A, peer_epoch=B)
    for i in range(4):
        assert inc.accept(old.stamp([env(i)], 10))
    new = Outgoing(epoch=C, peer_epoch=B)  # the same peer name, a new process
    assert inc.accept(new.stamp([env(0)], 10)) and inc.peer_epoch == C and inc.last_seq == 1
    assert not inc.accept(old.resend()[-1])  # the dead process's resends: not its epoch now


def test_unnumbered_batches_are_always_taken() -> None:
    inc = Incoming(epoch=B)
    assert inc.accept(Batch(messages=[env(1)]))
    assert inc.accept(Batch(messages=[env(1)], epoch=A))  # a hello: seq 0
    assert inc.last_seq == 0


def test_retention_is_bounded_and_a_gap_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    out = Outgoing(epoch=A, peer_epoch=B)
    for i in range(RETAINED_BATCHES + 10):
        out.stamp([env(i)], 10)
    assert out.retained == RETAINED_BATCHES
    big = Outgoing(epoch=A, peer_epoch=B)
    for i in range(5):
        big.stamp([env(i)], RETAINED_BYTES // 2)
    assert big.retained == 2  # at most RETAINED_BYTES (one batch is always kept)
    inc = Incoming(epoch=B)
    inc.accept(Batch(messages=[], seq=1, epoch=A))
    with caplog.at_level(logging.ERROR, "goworld.cluster"):
        assert inc.accept(Batch(messages=[], seq=5, epoch=A, resent=True, dest_epoch=B))
    assert inc.gaps == 3 and "3 batches from epoch a1 were lost for good" in caplog.text


def test_each_direction_acknowledges_the_other_and_the_retention_keeps_only_what_is_in_flight() -> None:
    # process A (a game) and process B (a dispatcher), each with both directions paired
    a_in = Incoming(epoch=A)
    a_out = Outgoing(epoch=A, peer_epoch=B, incoming=a_in)
    b_in = Incoming(epoch=B)
    b_out = Outgoing(epoch=B, peer_epoch=A, incoming=b_in)
    first = [a_out.stamp([env(i)], 10) for i in range(4)]
    assert all(b.ack == 0 for b in first)  # A has taken nothing from B yet: no ack field
    for b in first[:3]:  # the fourth is still in flight
        assert b_in.accept(b)
    reply = b_out.stamp([env(100)], 10)
    assert (reply.ack, reply.ack_epoch) == (3, A)
    assert a_out.retained == 4
    assert a_in.accept(reply)
    assert a_out.retained == 1  # batches 1-3 arrived: only the fourth is kept
    assert [b.seq for b in a_out.resend()] == [4]
    # and A's next batch acknowledges B's reply, so B keeps nothing
    assert b_in.accept(first[3]) and b_out.retained == 1 and b_in.outgoing is b_out
    assert b_in.accept(a_out.stamp([env(5)], 10))
    assert b_out.retained == 0
    # an acknowledgement about another epoch of ours (a predecessor) changes nothing
    kept = b_out.stamp([env(101)], 10)
    b_out.acked(0xDEAD, kept.seq)
    assert b_out.retained == 1
    # a duplicate still carries its ack: acknowledgements are read before the numbering rules
    dup = Batch(messages=[env(7)], seq=1, epoch=A, ack=kept.seq, ack_epoch=B)
    assert not b_in.accept(dup) and b_out.retained == 0

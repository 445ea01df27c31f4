"""FilterIndex (PROTOCOL.md §4.11): unit tests, and a differential test against a naive model."""

from __future__ import annotations

import operator
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gate.filters import FilterIndex
from goworld.proto.messages import FilterOp

NAIVE_OPS: dict[int, Callable[[str, str], bool]] = {
    FilterOp.EQ: operator.eq,
    FilterOp.NE: operator.ne,
    FilterOp.GT: operator.gt,
    FilterOp.LT: operator.lt,
    FilterOp.GE: operator.ge,
    FilterOp.LE: operator.le,
}


def matched(index: FilterIndex, key: str, op: int, value: str) -> list[str]:
    result = list(index.match(key, op, value))
    assert len(result) == len(set(result)), f"duplicate client in {result}"
    return sorted(result)


def test_set_and_match_equal() -> None:
    idx = FilterIndex()
    idx.set("a", "room", "lobby")
    idx.set("b", "room", "lobby")
    idx.set("c", "room", "hall")
    assert matched(idx, "room", FilterOp.EQ, "lobby") == ["a", "b"]
    assert matched(idx, "room", FilterOp.EQ, "hall") == ["c"]
    assert matched(idx, "room", FilterOp.EQ, "none") == []
    assert matched(idx, "nokey", FilterOp.EQ, "lobby") == []


def test_setting_a_key_again_replaces_the_old_value() -> None:
    idx = FilterIndex()
    idx.set("a", "room", "lobby")
    idx.set("a", "room", "hall")
    assert matched(idx, "room", FilterOp.EQ, "lobby") == []
    assert matched(idx, "room", FilterOp.EQ, "hall") == ["a"]
    assert matched(idx, "room", FilterOp.NE, "x") == ["a"]
    assert idx.get("a") == {"room": "hall"}
    idx.set("a", "room", "hall")  # same value again: still exactly once
    assert matched(idx, "room", FilterOp.NE, "x") == ["a"]


def test_clear_removes_every_prop_of_a_client() -> None:
    idx = FilterIndex()
    idx.set("a", "room", "lobby")
    idx.set("a", "lv", "3")
    idx.set("b", "lv", "3")
    idx.clear("a")
    assert idx.get("a") == {}
    assert not idx.has_key("room")
    assert idx.has_key("lv")
    assert matched(idx, "lv", FilterOp.EQ, "3") == ["b"]
    idx.clear("a")  # clearing twice, or an unknown client, is harmless
    idx.clear("nobody")
    idx.clear("b")
    assert not idx.has_key("lv")


def test_get_returns_a_copy() -> None:
    idx = FilterIndex()
    idx.set("a", "k", "v")
    props = idx.get("a")
    props["k"] = "changed"
    assert idx.get("a") == {"k": "v"}


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (FilterOp.EQ, "10", ["c10"]),
        (FilterOp.NE, "10", ["c1", "c100", "c9"]),
        (FilterOp.LT, "9", ["c1", "c10", "c100"]),  # byte-wise: "10" < "9"
        (FilterOp.GT, "10", ["c100", "c9"]),
        (FilterOp.LE, "10", ["c1", "c10"]),
        (FilterOp.GE, "10", ["c10", "c100", "c9"]),
    ],
)
def test_comparisons_are_byte_wise(op: FilterOp, value: str, expected: list[str]) -> None:
    idx = FilterIndex()
    for v in ("1", "10", "100", "9"):
        idx.set(f"c{v}", "lv", v)
    assert matched(idx, "lv", op, value) == expected


def test_non_ascii_order_is_utf8_byte_order() -> None:
    idx = FilterIndex()
    idx.set("a", "k", "z")
    idx.set("b", "k", "é")  # U+00E9, UTF-8 c3 a9 > 7a
    idx.set("c", "k", "\U0001f600")  # 4-byte UTF-8 sorts above every BMP character
    idx.set("d", "k", "\uffff")
    assert matched(idx, "k", FilterOp.GT, "z") == ["b", "c", "d"]
    assert matched(idx, "k", FilterOp.GT, "\uffff") == ["c"]
    for a in ("z", "é", "\U0001f600", "\uffff"):
        for b in ("z", "é", "\U0001f600", "\uffff"):
            assert (a < b) == (a.encode() < b.encode())


def test_unknown_op_matches_nothing() -> None:
    idx = FilterIndex()
    idx.set("a", "k", "v")
    assert matched(idx, "k", 6, "v") == []
    assert matched(idx, "k", 255, "a") == []


# ---- differential test ---------------------------------------------------------------------

CLIENTS = st.sampled_from(["c0", "c1", "c2", "c3", "c4"])
KEYS = st.sampled_from(["", "lv", "room", "é"])
VALUES = st.sampled_from(["", "1", "10", "9", "a", "é", "\U0001f600"]) | st.text(max_size=3)

OPERATORS = st.sampled_from([int(op) for op in FilterOp])
#: (kind, client, key, op, value); each kind uses the fields it needs.
Action = tuple[str, str, str, int, str]
ACTIONS = st.tuples(
    st.sampled_from(["set", "set", "clear", "match"]), CLIENTS, KEYS, OPERATORS, VALUES
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ACTIONS, max_size=50))
def test_index_agrees_with_a_naive_model(actions: list[Action]) -> None:
    idx = FilterIndex()
    model: dict[str, dict[str, str]] = {}
    for kind, client, key, op, value in actions:
        if kind == "set":
            idx.set(client, key, value)
            model.setdefault(client, {})[key] = value
        elif kind == "clear":
            idx.clear(client)
            model.pop(client, None)
        else:
            expected = sorted(
                c for c, props in model.items() if key in props and NAIVE_OPS[op](props[key], value)
            )
            assert matched(idx, key, op, value) == expected
        for c in ("c0", "c1", "c2", "c3", "c4"):
            assert idx.get(c) == model.get(c, {})
        for k in ("", "lv", "room", "é"):
            assert idx.has_key(k) == any(k in p for p in model.values())

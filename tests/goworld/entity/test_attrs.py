"""Tests for goworld.entity.attrs: the deltas each mutation emits (PROTOCOL.md §4.3).

A :class:`Recorder` listener records ``(kind, root_key, path, key/index, value)`` tuples; the
property test at the end replays them on a plain-dict "client replica" exactly as a GoWorld
client does (walk the path from its last element to its first, starting at the root map) and
checks the replica converges to ``tree.to_builtin()``.
"""

from __future__ import annotations

import copy
import enum
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goworld.entity.attrs import AttrListener, AttrPath, ListAttr, MapAttr, to_builtin
from goworld.errors import EntityError

Event = tuple[Any, ...]


class Recorder:
    """An :class:`AttrListener` that records every call."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.unpicklable = lambda: None  # pickling a tree must never reach the listener

    def on_map_attr_change(
        self, root_key: str, path: AttrPath | None, key: str, value: Any
    ) -> None:
        self.events.append(("change", root_key, path, key, value))

    def on_map_attr_del(self, root_key: str, path: AttrPath | None, key: str) -> None:
        self.events.append(("del", root_key, path, key))

    def on_map_attr_clear(self, root_key: str, path: AttrPath | None) -> None:
        self.events.append(("clear", root_key, path))

    def on_list_attr_change(
        self, root_key: str, path: AttrPath | None, index: int, value: Any
    ) -> None:
        self.events.append(("lchange", root_key, path, index, value))

    def on_list_attr_pop(self, root_key: str, path: AttrPath | None) -> None:
        self.events.append(("lpop", root_key, path))

    def on_list_attr_append(self, root_key: str, path: AttrPath | None, value: Any) -> None:
        self.events.append(("lappend", root_key, path, value))

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events


def _listener_check(listener: AttrListener) -> None:
    """Static check that Recorder satisfies the protocol (mypy)."""


_listener_check(Recorder())


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def root(rec: Recorder) -> MapAttr:
    m = MapAttr()
    m.bind(rec)
    return m


def strict_eq(a: Any, b: Any) -> bool:
    """Equality that also requires identical types (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# -- MapAttr operations --------------------------------------------------------------------


def test_root_set_has_nil_path_and_root_key_is_key(root: MapAttr, rec: Recorder) -> None:
    root["hp"] = 10
    root["name"] = "bob"
    assert rec.take() == [("change", "hp", None, "hp", 10), ("change", "name", None, "name", "bob")]


def test_setting_same_value_emits_again(root: MapAttr, rec: Recorder) -> None:
    root["hp"] = 10
    root["hp"] = 10
    assert len(rec.take()) == 2


def test_nested_set_path_is_leaf_first(root: MapAttr, rec: Recorder) -> None:
    root["a"] = {"b": {"c": [{}]}}
    rec.take()
    root["a"]["b"]["c"][0]["x"] = 1.5
    assert rec.take() == [("change", "a", [0, "c", "b", "a"], "x", 1.5)]


def test_container_value_is_a_plain_deep_copy(root: MapAttr, rec: Recorder) -> None:
    root["m"] = {"l": [1, {"k": b"x"}]}
    ((_, _, _, _, value),) = rec.take()
    assert strict_eq(value, {"l": [1, {"k": b"x"}]})
    root["m"]["l"].append(2)
    assert value == {"l": [1, {"k": b"x"}]}  # later mutations do not leak into the sent copy


def test_set_default_emits_only_when_absent(root: MapAttr, rec: Recorder) -> None:
    assert root.set_default("lv", 1) == 1
    assert root.setdefault("lv", 5) == 1
    stored = root.set_default("m", {"a": 1})
    assert isinstance(stored, MapAttr) and stored is root["m"]
    assert rec.take() == [("change", "lv", None, "lv", 1), ("change", "m", None, "m", {"a": 1})]


def test_del_and_pop_emit_del(root: MapAttr, rec: Recorder) -> None:
    root.update({"a": 1, "b": 2}, c=3)
    assert rec.take() == [
        ("change", "a", None, "a", 1),
        ("change", "b", None, "b", 2),
        ("change", "c", None, "c", 3),
    ]
    del root["a"]
    assert root.pop("b") == 2
    assert root.pop("zz", "dflt") == "dflt"
    assert rec.take() == [("del", "a", None, "a"), ("del", "b", None, "b")]
    with pytest.raises(KeyError):
        del root["a"]
    with pytest.raises(KeyError):
        root.pop("a")
    assert rec.take() == []


def test_nested_del(root: MapAttr, rec: Recorder) -> None:
    root["m"] = {"x": 1}
    rec.take()
    del root["m"]["x"]
    assert rec.take() == [("del", "m", ["m"], "x")]


def test_clear_nested_emits_path_of_cleared_map(root: MapAttr, rec: Recorder) -> None:
    root["m"] = {"x": {"y": 1}}
    rec.take()
    root["m"]["x"].clear()
    root["m"].clear()
    root["m"].clear()  # no change detection
    assert rec.take() == [("clear", "m", ["x", "m"]), ("clear", "m", ["m"]), ("clear", "m", ["m"])]


def test_clear_root_is_an_error(root: MapAttr, rec: Recorder) -> None:
    root["a"] = 1
    rec.take()
    with pytest.raises(EntityError):
        root.clear()
    assert root == {"a": 1} and rec.take() == []


def test_clear_detaches_children(root: MapAttr, rec: Recorder) -> None:
    root["m"] = {"x": {"y": 1}}
    inner = root["m"]["x"]
    root["m"].clear()
    rec.take()
    inner["y"] = 2
    assert rec.take() == [] and inner.parent is None


def test_get_map_and_get_list_auto_create(root: MapAttr, rec: Recorder) -> None:
    m = root.get_map("m")
    lst = m.get_list("l")
    assert root.get_map("m") is m and m.get_list("l") is lst
    assert rec.take() == [("change", "m", None, "m", {}), ("change", "m", ["m"], "l", [])]
    root["s"] = 1
    with pytest.raises(EntityError):
        root.get_map("s")
    with pytest.raises(EntityError):
        root.get_list("m")


def test_typed_getters(root: MapAttr) -> None:
    assert (root.get_int("x"), root.get_str("x"), root.get_float("x"), root.get_bool("x")) == (
        0,
        "",
        0.0,
        False,
    )
    assert root.get_int("x", 7) == 7 and root.get("x") is None and root.get("x", 3) == 3
    root.update(i=3, f=2.5, s="s", b=True)
    assert root.get_int("i") == 3 and root.get_int("f") == 2 and root.get_float("i") == 3.0
    assert type(root.get_float("i")) is float
    assert root.get_str("s") == "s" and root.get_bool("b") is True
    getters: list[tuple[Callable[[str], Any], str]] = [
        (root.get_int, "s"),
        (root.get_str, "i"),
        (root.get_bool, "i"),
    ]
    for getter, key in getters:
        with pytest.raises(EntityError, match=repr(key)):
            getter(key)


def test_mapping_protocol(root: MapAttr) -> None:
    root.update([("a", 1), ("b", [1])])
    assert "a" in root and "z" not in root and 5 not in root
    assert len(root) == 2 and list(root) == ["a", "b"] and list(root.keys()) == ["a", "b"]
    assert list(root.values()) == [1, [1]] and dict(root.items()) == {"a": 1, "b": [1]}
    assert root["a"] == 1 and isinstance(root["b"], ListAttr)
    with pytest.raises(KeyError):
        root["z"]
    other = MapAttr({"x": 1})
    root.update(other)
    assert root["x"] == 1


# -- ListAttr operations -------------------------------------------------------------------


def test_list_operations(root: MapAttr, rec: Recorder) -> None:
    lst = root.get_list("l")
    lst.append(1)
    lst.extend([2, "three"])
    lst[-1] = 3
    lst[0] = {"k": [True]}
    assert lst.pop() == 3
    del lst[-1]
    assert lst == [{"k": [True]}]
    assert rec.take() == [
        ("change", "l", None, "l", []),
        ("lappend", "l", ["l"], 1),
        ("lappend", "l", ["l"], 2),
        ("lappend", "l", ["l"], "three"),
        ("lchange", "l", ["l"], 2, 3),
        ("lchange", "l", ["l"], 0, {"k": [True]}),
        ("lpop", "l", ["l"]),
        ("lpop", "l", ["l"]),
    ]
    lst[0]["k"].append(False)
    assert rec.take() == [("lappend", "l", ["k", 0, "l"], False)]


def test_list_index_validation(root: MapAttr, rec: Recorder) -> None:
    lst = root.get_list("l")
    with pytest.raises(IndexError):
        lst.pop()
    lst.extend([1, 2, 3])
    rec.take()
    for bad in (3, -4):
        with pytest.raises(IndexError):
            lst[bad] = 0
        with pytest.raises(IndexError):
            lst[bad]
    for wrong in ("0", 1.0, True):
        with pytest.raises(EntityError):
            lst[wrong] = 0  # type: ignore[index]
    with pytest.raises(EntityError, match="last"):
        lst.pop(0)
    assert lst.pop(2) == 3 and lst[-1] == 2 and lst[0:2] == [1, 2]
    assert 2 in lst and list(lst) == [1, 2] and len(lst) == 2
    assert rec.take() == [("lpop", "l", ["l"])]


def test_list_indices_in_paths_are_plain_ints(root: MapAttr, rec: Recorder) -> None:
    class Idx(enum.IntEnum):
        ONE = 1

    root["l"] = [[], [{}]]
    rec.take()
    root["l"][Idx.ONE][0]["k"] = 1
    ((_, _, path, _, _),) = rec.take()
    assert path == [0, 1, "l"] and [type(p) for p in path] == [int, int, str]


# -- the complexAttr example (PROTOCOL.md §4.3 and §10 DoTestComplexAttr) ------------------


def test_complex_attr_example(root: MapAttr, rec: Recorder) -> None:
    complex_attr = root.get_map("complexAttr")
    key1 = complex_attr.get_map("key1")
    key2 = key1.get_list("key2")
    key2.append(True)
    key2.append([])
    key2[1].append({})
    root["complexAttr"]["key1"]["key2"][1][0]["finalkey"] = "iamhere"
    assert rec.take() == [
        ("change", "complexAttr", None, "complexAttr", {}),
        ("change", "complexAttr", ["complexAttr"], "key1", {}),
        ("change", "complexAttr", ["key1", "complexAttr"], "key2", []),
        ("lappend", "complexAttr", ["key2", "key1", "complexAttr"], True),
        ("lappend", "complexAttr", ["key2", "key1", "complexAttr"], []),
        ("lappend", "complexAttr", [1, "key2", "key1", "complexAttr"], {}),
        ("change", "complexAttr", [0, 1, "key2", "key1", "complexAttr"], "finalkey", "iamhere"),
    ]
    assert root.to_builtin() == {
        "complexAttr": {"key1": {"key2": [True, [{"finalkey": "iamhere"}]]}}
    }
    complex_attr.clear()
    assert rec.take() == [("clear", "complexAttr", ["complexAttr"])]
    assert root.to_builtin() == {"complexAttr": {}}


# -- detached containers, attaching, re-parenting --------------------------------------------


def test_detached_containers_are_silent_until_attached(root: MapAttr, rec: Recorder) -> None:
    m = MapAttr()
    m["a"] = 1
    m.get_list("l").extend([1, {"x": 2}])
    m["l"][1]["y"] = 3
    del m["a"]
    assert rec.take() == []
    root["sub"] = m
    assert rec.take() == [("change", "sub", None, "sub", {"l": [1, {"x": 2, "y": 3}]})]
    m["l"][1]["z"] = 4
    assert rec.take() == [("change", "sub", [1, "l", "sub"], "z", 4)]


def test_attach_into_list_emits_one_append(root: MapAttr, rec: Recorder) -> None:
    lst = root.get_list("l")
    rec.take()
    lst.append(MapAttr({"a": [1]}))
    assert rec.take() == [("lappend", "l", ["l"], {"a": [1]})]


def test_popped_container_is_detached_and_can_move(root: MapAttr, rec: Recorder) -> None:
    root["a"] = {"inner": {"v": 1}}
    root["b"] = []
    inner = root["a"]["inner"]
    inner["v"] = 2  # computes and caches the path ["inner", "a"]
    rec.take()
    moved = root["a"].pop("inner")
    assert moved is inner and inner.parent is None and inner.key is None
    inner["v"] = 3
    assert rec.take() == [("del", "a", ["a"], "inner")]
    root["b"].append(inner)
    inner["v"] = 4
    assert rec.take() == [("lappend", "b", ["b"], {"v": 3}), ("change", "b", [0, "b"], "v", 4)]


def test_replaced_container_is_detached(root: MapAttr, rec: Recorder) -> None:
    root["m"] = {"x": 1}
    old = root["m"]
    root["m"] = 5
    rec.take()
    old["x"] = 2
    assert rec.take() == [] and old.parent is None
    root["l"] = [{}]
    old_item = root["l"][0]
    root["l"][0] = 1
    rec.take()
    old_item["k"] = 1
    assert rec.take() == [] and old_item.parent is None


def test_reparenting_is_an_error(root: MapAttr, rec: Recorder) -> None:
    root["a"] = {"x": 1}
    rec.take()
    with pytest.raises(EntityError, match=r"'b'.*already attached"):
        root["b"] = root["a"]
    with pytest.raises(EntityError, match="already attached"):
        root["a"] = root["a"]
    with pytest.raises(EntityError):
        root.get_list("l").append(root["a"])
    rec.take()
    with pytest.raises(EntityError):
        MapAttr()["r"] = root  # a bound root is attached to its owner
    with pytest.raises(EntityError):
        root["c"] = {"nested": root["a"]}
    root["c"] = root["a"].to_builtin()  # the documented way to copy
    assert root["c"] == root["a"] and root["c"] is not root["a"]
    assert rec.take() == [("change", "c", None, "c", {"x": 1})]


def test_a_container_cannot_contain_itself() -> None:
    m = MapAttr()
    with pytest.raises(EntityError, match="itself"):
        m["self"] = m
    m["child"] = {}
    with pytest.raises(EntityError, match="itself"):
        m["child"]["loop"] = {"deep": [m]}
    lst = ListAttr()
    with pytest.raises(EntityError, match="itself"):
        lst.append(lst)
    assert m.parent is None and m == {"child": {}} and lst.parent is None


def test_failed_assignment_releases_adopted_containers(root: MapAttr, rec: Recorder) -> None:
    free = MapAttr({"k": 1})
    with pytest.raises(EntityError, match=r"'x'\['bad'\]"):
        root["x"] = {"ok": {"inner": [free]}, "bad": object()}
    assert free.parent is None and "x" not in root and rec.take() == []
    with pytest.raises(EntityError):
        MapAttr({"a": free, "b": {1, 2}})
    with pytest.raises(EntityError):
        ListAttr([free, set()])
    root["x"] = {"free": free}
    assert free.parent is root["x"]


def test_bind_rules(rec: Recorder) -> None:
    m = MapAttr({"a": {"b": 1}})
    m.bind(rec)
    m.bind(rec)  # idempotent
    assert m.is_bound and not m["a"].is_bound
    with pytest.raises(EntityError):
        m.bind(Recorder())
    with pytest.raises(EntityError):
        m["a"].bind(rec)
    with pytest.raises(EntityError):
        m["a"].unbind()
    m["a"]["b"] = 2
    m.unbind()
    m["a"]["b"] = 3
    m.clear()  # an unbound top-level map may be cleared
    assert rec.take() == [("change", "a", ["a"], "b", 2)] and not m.is_bound


def test_path_properties(root: MapAttr) -> None:
    root["a"] = {"l": [{}]}
    leaf = root["a"]["l"][0]
    assert leaf.parent is root["a"]["l"] and leaf.key == 0
    assert leaf.path == [0, "l", "a"] and leaf.root_key == "a"
    assert root.path is None and root.root_key is None and root.key is None
    detached = ListAttr([{}])
    assert detached[0].path == [0] and detached[0].root_key is None


def test_listener_may_not_corrupt_cached_path(root: MapAttr, rec: Recorder) -> None:
    root["a"] = {}
    root["a"]["x"] = 1
    rec.events[-1][2].append("garbage")
    root["a"]["x"] = 2
    assert rec.events[-1] == ("change", "a", ["a"], "x", 2)


# -- normalisation -------------------------------------------------------------------------


def test_value_normalisation(root: MapAttr) -> None:
    class Color(enum.IntEnum):
        RED = 1

    class Name(str, enum.Enum):  # noqa: UP042 - str() of this mix-in is "Name.BOB"
        BOB = "bob"

    class F(float):
        pass

    root.update(n=None, b=False, i=-(2**63), u=2**64 - 1, f=1.5, s="s", y=b"\x00")
    root.update(e=Color.RED, name=Name.BOB, ff=F(2.0), t=(1, (2, {"k": 3})))
    assert type(root["e"]) is int and type(root["name"]) is str and type(root["ff"]) is float
    assert isinstance(root["t"], ListAttr) and isinstance(root["t"][1][1], MapAttr)
    assert strict_eq(
        root.to_builtin(),
        {
            "n": None, "b": False, "i": -(2**63), "u": 2**64 - 1, "f": 1.5, "s": "s",
            "y": b"\x00", "e": 1, "name": "bob", "ff": 2.0, "t": [1, [2, {"k": 3}]],
        },
    )  # fmt: skip


@pytest.mark.parametrize(
    "value, where",
    [
        ({1, 2}, "'k'"),
        (object(), "'k'"),
        (2**64, "'k'"),
        (-(2**63) - 1, "'k'"),
        ({"a": [1, {"b": 1j}]}, r"'k'\['a'\]\[1\]\['b'\]"),
        ({1: "int key"}, r"'k'\[1\]"),
        (bytearray(b"x"), "'k'"),
    ],
)
def test_rejected_values_name_the_key(root: MapAttr, rec: Recorder, value: Any, where: str) -> None:
    with pytest.raises(EntityError, match=where):
        root["k"] = value
    with pytest.raises(EntityError):
        root.get_list("l").append(value)
    rec.take()
    assert "k" not in root and root["l"] == [] and rec.take() == []


def test_map_keys_must_be_str(root: MapAttr) -> None:
    with pytest.raises(EntityError):
        root[1] = 1  # type: ignore[index]
    with pytest.raises(EntityError):
        MapAttr({("t",): 1})  # type: ignore[dict-item]


# -- conversion, equality, pickling ----------------------------------------------------------


def test_to_builtin_and_client_filter(root: MapAttr) -> None:
    root.update(name="n", hp=1, secret={"x": [1]}, bag={"items": [{"id": 2}]})
    full = root.to_builtin()
    assert type(full) is dict and type(full["bag"]["items"]) is list
    assert type(full["bag"]["items"][0]) is dict
    assert root.to_builtin(keys={"name", "bag", "missing"}) == {
        "name": "n",
        "bag": {"items": [{"id": 2}]},
    }
    assert root.to_builtin(keys=frozenset()) == {}
    assert to_builtin(root["bag"]) == {"items": [{"id": 2}]} and to_builtin(5) == 5
    assert MapAttr.from_builtin(full) == full and ListAttr.from_builtin([1, [2]]) == [1, [2]]


class Inventory(MapAttr):
    """A user subclass (module level so that it pickles)."""

    __slots__ = ()


def test_subclasses_keep_their_type(root: MapAttr, rec: Recorder) -> None:
    inv = Inventory({"slots": [1]})
    root["inv"] = inv
    assert rec.take() == [("change", "inv", None, "inv", {"slots": [1]})]
    assert to_builtin(inv) == {"slots": [1]} and type(to_builtin(inv)) is dict
    assert type(pickle.loads(pickle.dumps(inv))) is Inventory and type(inv.copy()) is Inventory


def test_equality(root: MapAttr) -> None:
    root["a"] = {"l": [1, {"m": 2}]}
    assert root == {"a": {"l": [1, {"m": 2}]}} and {"a": {"l": [1, {"m": 2}]}} == root  # noqa: SIM300
    assert root["a"]["l"] == [1, {"m": 2}] and root["a"]["l"] == ListAttr([1, {"m": 2}])
    assert root != {"a": {}} and root["a"]["l"] != (1, {"m": 2}) and root != 5
    assert MapAttr({"x": 1}) == MapAttr({"x": 1})
    with pytest.raises(TypeError):
        hash(root)
    with pytest.raises(TypeError):
        hash(root["a"]["l"])
    assert repr(MapAttr({"l": [1]})) == "MapAttr({'l': ListAttr([1])})"


def test_pickle_keeps_structure_but_not_the_listener(root: MapAttr, rec: Recorder) -> None:
    root.update(a=1, m={"l": [True, [{"k": b"v"}]]})
    rec.take()
    clone = pickle.loads(pickle.dumps(root))  # Recorder holds a lambda: pickling it would fail
    assert strict_eq(clone.to_builtin(), root.to_builtin())
    assert not clone.is_bound and isinstance(clone["m"]["l"][1][0], MapAttr)
    clone["m"]["l"][1][0]["k"] = 1
    assert rec.take() == []
    other = Recorder()
    clone.bind(other)  # the owner re-binds after unpickling
    clone["m"]["l"][1][0]["k"] = 2
    assert other.take() == [("change", "m", [0, 1, "l", "m"], "k", 2)]
    nested = pickle.loads(pickle.dumps(root["m"]["l"]))
    assert nested == [True, [{"k": b"v"}]] and nested.parent is None


def test_copies_are_detached(root: MapAttr, rec: Recorder) -> None:
    root["m"] = {"l": [{"x": 1}]}
    rec.take()
    for dup in (copy.copy(root["m"]), copy.deepcopy(root["m"]), root["m"].copy()):
        assert dup == root["m"] and dup.parent is None
        dup["l"][0]["x"] = 9
        root["other" + str(id(dup))] = dup  # a detached copy may be attached
        assert rec.take()[0][0] == "change"
    assert root["m"]["l"].copy() == [{"x": 1}]


# -- property test: a client replica converges ------------------------------------------------


class Replica:
    """Applies deltas to a plain dict the way a GoWorld client does."""

    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}

    def _walk(self, root_key: str, path: AttrPath | None, key: str | None = None) -> Any:
        node: Any = self.attrs
        if path is None:
            assert root_key == key
            return node
        assert path and root_key == path[-1]
        for k in reversed(path):
            node = node[k]
        return node

    def on_map_attr_change(
        self, root_key: str, path: AttrPath | None, key: str, value: Any
    ) -> None:
        self._walk(root_key, path, key)[key] = copy.deepcopy(value)

    def on_map_attr_del(self, root_key: str, path: AttrPath | None, key: str) -> None:
        del self._walk(root_key, path, key)[key]

    def on_map_attr_clear(self, root_key: str, path: AttrPath | None) -> None:
        assert path is not None
        self._walk(root_key, path).clear()

    def on_list_attr_change(
        self, root_key: str, path: AttrPath | None, index: int, value: Any
    ) -> None:
        assert type(index) is int
        self._walk(root_key, path)[index] = copy.deepcopy(value)

    def on_list_attr_pop(self, root_key: str, path: AttrPath | None) -> None:
        self._walk(root_key, path).pop()

    def on_list_attr_append(self, root_key: str, path: AttrPath | None, value: Any) -> None:
        self._walk(root_key, path).append(copy.deepcopy(value))


KEYS = st.sampled_from(["a", "b", "c", "d"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
    | st.binary(max_size=3)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)


def _containers(node: Any) -> list[MapAttr | ListAttr]:
    found: list[MapAttr | ListAttr] = [node]
    for child in node.values() if isinstance(node, MapAttr) else node:
        if isinstance(child, (MapAttr, ListAttr)):
            found.extend(_containers(child))
    return found


def _map_op(data: st.DataObject, m: MapAttr, is_root: bool, loose: list[Any]) -> None:
    key = data.draw(KEYS)
    ops = ["set", "set", "del", "set_default", "get_map", "get_list", "update"]
    ops += ["attach"] if loose else []
    ops += [] if is_root else ["clear"]
    op = data.draw(st.sampled_from(ops))
    if op == "set":
        m[key] = data.draw(VALUES)
    elif op == "attach":
        m[key] = loose.pop(data.draw(st.integers(0, len(loose) - 1)))
    elif op == "del":
        if key in m:
            removed = m.pop(key)
            if isinstance(removed, (MapAttr, ListAttr)):
                loose.append(removed)
    elif op == "set_default":
        m.set_default(key, data.draw(VALUES))
    elif op == "get_map":
        if not isinstance(m.get(key, MapAttr()), MapAttr):
            del m[key]
        m.get_map(key)
    elif op == "get_list":
        if not isinstance(m.get(key, ListAttr()), ListAttr):
            del m[key]
        m.get_list(key)
    elif op == "update":
        m.update(data.draw(st.dictionaries(KEYS, VALUES, max_size=2)))
    else:
        m.clear()


def _list_op(data: st.DataObject, lst: ListAttr, loose: list[Any]) -> None:
    ops = ["append", "extend"] + (["set", "pop"] if lst else []) + (["attach"] if loose else [])
    op = data.draw(st.sampled_from(ops))
    if op == "append":
        lst.append(data.draw(VALUES))
    elif op == "extend":
        lst.extend(data.draw(st.lists(VALUES, max_size=2)))
    elif op == "set":
        lst[data.draw(st.integers(-len(lst), len(lst) - 1))] = data.draw(VALUES)
    elif op == "attach":
        lst.append(loose.pop(data.draw(st.integers(0, len(loose) - 1))))
    else:
        removed = lst.pop()
        if isinstance(removed, (MapAttr, ListAttr)):
            loose.append(removed)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_client_replica_converges(data: st.DataObject) -> None:
    replica = Replica()
    root = MapAttr()
    root.bind(replica)
    loose: list[Any] = []  # popped containers, reattached later
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        if loose and data.draw(st.integers(0, 4)) == 0:
            before = copy.deepcopy(replica.attrs)
            target = data.draw(st.sampled_from(_containers(data.draw(st.sampled_from(loose)))))
            if isinstance(target, MapAttr):
                _map_op(data, target, False, [])
            else:
                _list_op(data, target, [])
            assert replica.attrs == before  # detached trees emit nothing
            continue
        target = data.draw(st.sampled_from(_containers(root)))
        if isinstance(target, MapAttr):
            _map_op(data, target, target is root, loose)
        else:
            _list_op(data, target, loose)
        assert strict_eq(replica.attrs, root.to_builtin())


def _shape(node: Any, parent: Any = None, key: Any = None) -> list[Any]:
    """Every container's type, parent, key, listener and path, depth first."""
    out = [(type(node).__name__, node._parent is parent, node._pkey == key,
            node._listener, node.path)]
    items = node.items() if isinstance(node, MapAttr) else enumerate(node)
    for k, child in items:
        if isinstance(child, (MapAttr, ListAttr)):
            out += _shape(child, node, k)
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_trusted_rebuild_equals_a_checked_build(data: st.DataObject) -> None:
    # A restore rebuilds attributes from our own to_builtin() output without re-checking
    # them: the tree must come out exactly as MapAttr(data) + bind would make it.
    value = data.draw(st.dictionaries(KEYS, VALUES, max_size=5))
    checked_rec, trusted_rec = Recorder(), Recorder()
    checked = MapAttr(value)
    checked.bind(checked_rec)
    trusted = MapAttr.from_trusted(checked.to_builtin(), trusted_rec)
    assert strict_eq(trusted.to_builtin(), checked.to_builtin())
    assert [s[:3] + s[4:] for s in _shape(trusted)] == [s[:3] + s[4:] for s in _shape(checked)]
    assert all(s[3] is trusted_rec for s in _shape(trusted))
    # ... and behaves the same: the same operations emit the same events.
    for root in (checked, trusted):
        for c in _containers(root):
            if isinstance(c, MapAttr):
                c["k"] = [1, {"z": 2}]
            else:
                c.append({"n": 1})
    assert checked_rec.take() == trusted_rec.take()
    assert strict_eq(trusted.to_builtin(), checked.to_builtin())

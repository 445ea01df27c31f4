"""Tests for goworld.entity.registry: type declarations and RPC argument binding (PROTOCOL.md §4.2, §4.4).

Declarations are checked when a type is registered: attribute flags (ALL_CLIENTS implies
CLIENT), PERSISTENT only on persistent types, one space type, services with >= 1 shard that
are not persistent, one method per RPC wire name. ``RpcMethod.bind_args`` follows GoWorld's
typed decoding: an int fits a float parameter but a float never fits an int one, missing
trailing arguments take their default or zero value, extra arguments are an error.
"""

from typing import Any

import pytest

from goworld.entity.entity import Entity
from goworld.entity.registry import (
    ALL_CLIENTS,
    CLIENT,
    PERSISTENT,
    SPACE_TYPE_NAME,
    AttrFlag,
    Registry,
    RPCArgumentError,
    RpcMethod,
    rpc,
)
from goworld.entity.space import Space
from goworld.errors import EntityError

# ---- declarations --------------------------------------------------------------------------


class Plain(Entity):
    attributes = {
        "everyone": ALL_CLIENTS,
        "own": CLIENT,
        "bare_all": AttrFlag.ALL_CLIENTS,  # the raw bit, without CLIENT
        "server": 0,
    }


class Saved(Entity):
    persistent = True
    aoi_distance = 50
    attributes = {"name": ALL_CLIENTS | PERSISTENT, "gold": PERSISTENT, "hp": CLIENT}


def test_flags_all_clients_implies_client() -> None:
    desc = Registry().register_entity(Plain)
    assert desc.attr_flags["everyone"] == AttrFlag.CLIENT | AttrFlag.ALL_CLIENTS
    assert desc.attr_flags["bare_all"] == AttrFlag.CLIENT | AttrFlag.ALL_CLIENTS
    assert desc.attr_flags["own"] == AttrFlag.CLIENT
    assert desc.attr_flags["server"] == AttrFlag.NONE
    assert desc.client_keys == {"everyone", "own", "bare_all"}
    assert desc.all_client_keys == {"everyone", "bare_all"}
    assert desc.persistent_keys == frozenset()
    assert not desc.persistent and not desc.use_aoi


def test_persistent_type_keys_and_aoi() -> None:
    desc = Registry().register_entity(Saved)
    assert desc.persistent
    assert desc.use_aoi and desc.aoi_distance == 50.0
    assert desc.persistent_keys == {"name", "gold"}
    assert desc.client_keys == {"name", "hp"}
    assert desc.all_client_keys == {"name"}


def test_attributes_are_inherited_and_overridden() -> None:
    class Base(Entity):
        attributes = {"a": CLIENT, "b": CLIENT}

    class Child(Base):
        attributes = {"b": ALL_CLIENTS, "c": 0}

    desc = Registry().register_entity(Child)
    assert desc.attr_flags == {
        "a": AttrFlag.CLIENT,
        "b": AttrFlag.CLIENT | AttrFlag.ALL_CLIENTS,
        "c": AttrFlag.NONE,
    }


def test_persistent_attr_on_non_persistent_type_is_rejected() -> None:
    class Bad(Entity):
        attributes = {"gold": PERSISTENT}

    with pytest.raises(EntityError, match="PERSISTENT"):
        Registry().register_entity(Bad)


@pytest.mark.parametrize("flag", ["client", None, 1.5j, object()], ids=repr)
def test_bad_flag_values_are_rejected(flag: Any) -> None:
    cls = type("BadFlag", (Entity,), {"attributes": {"x": flag}})
    with pytest.raises(EntityError, match="bad flags"):
        Registry().register_entity(cls)


@pytest.mark.parametrize("flag", [8, 64, -1], ids=repr)
def test_flag_values_outside_the_known_bits_are_rejected(flag: int) -> None:
    # Only CLIENT | ALL_CLIENTS | PERSISTENT (7) exist; anything else is a typo, not a flag.
    # (A persistent type, so that -1 is not rejected merely for containing PERSISTENT.)
    cls = type("BadBits", (Entity,), {"persistent": True, "attributes": {"x": flag}})
    with pytest.raises(EntityError, match="bad flags"):
        Registry().register_entity(cls)


@pytest.mark.parametrize("key", ["", 1, None, b"x"], ids=repr)
def test_bad_attribute_names_are_rejected(key: Any) -> None:
    cls = type("BadName", (Entity,), {"attributes": {key: CLIENT}})
    with pytest.raises(EntityError, match="attribute names"):
        Registry().register_entity(cls)


def test_attributes_must_be_a_dict() -> None:
    cls = type("BadAttrs", (Entity,), {"attributes": ["a", "b"]})
    with pytest.raises(EntityError, match="must be a dict"):
        Registry().register_entity(cls)


@pytest.mark.parametrize("aoi", [-1, "100"], ids=repr)
def test_bad_aoi_distance_is_rejected(aoi: Any) -> None:
    cls = type("BadAOI", (Entity,), {"aoi_distance": aoi})
    with pytest.raises(EntityError, match="aoi_distance"):
        Registry().register_entity(cls)


def test_register_entity_checks_class_and_name() -> None:
    reg = Registry()
    with pytest.raises(EntityError, match="not an Entity subclass"):
        reg.register_entity(object)
    with pytest.raises(EntityError, match="reserved"):
        reg.register_entity(Plain, SPACE_TYPE_NAME)
    reg.register_entity(Plain)
    reg.register_entity(Plain)  # same class again: harmless
    with pytest.raises(EntityError, match="registered twice"):
        reg.register_entity(Saved, "Plain")
    assert reg.get("Plain").cls is Plain
    with pytest.raises(EntityError, match="unknown entity type"):
        reg.get("Nope")


def test_registering_an_instance_instead_of_a_class_is_an_entity_error() -> None:
    # The "is not an Entity subclass" check exists, but `cls.__name__` is read before it.
    with pytest.raises(EntityError, match="not an Entity subclass"):
        Registry().register_entity(Plain())  # type: ignore[arg-type]


def test_two_methods_with_the_same_wire_name_are_rejected() -> None:
    class Dup(Entity):
        @rpc(name="Hit")
        def hit_a(self) -> None: ...

        @rpc(name="Hit")
        def hit_b(self) -> None: ...

    with pytest.raises(EntityError, match="'Hit'"):
        Registry().register_entity(Dup)


def test_a_wire_name_equal_to_another_methods_name_is_rejected() -> None:
    class Dup(Entity):
        @rpc
        def Hit(self) -> None: ...

        @rpc(name="Hit")
        def other(self) -> None: ...

    with pytest.raises(EntityError):
        Registry().register_entity(Dup)


def test_overriding_an_rpc_in_a_subclass_is_fine() -> None:
    class Base(Entity):
        @rpc(client=True, name="Hit")
        def hit(self, n: int) -> None: ...

    class Child(Base):
        @rpc(all_clients=True, name="Hit")
        def hit(self, n: int, extra: str = "") -> None: ...

    desc = Registry().register_entity(Child)
    assert desc.rpcs["Hit"].all_clients
    assert len(desc.rpcs["Hit"].converters) == 2


def test_only_one_space_type() -> None:
    class S1(Space): ...

    class S2(Space): ...

    reg = Registry()
    desc = reg.register_space(S1)
    assert desc.is_space and desc.name == SPACE_TYPE_NAME
    assert reg.space_desc is desc and reg.types[SPACE_TYPE_NAME] is desc
    reg.register_space(S1)  # the same class again is fine
    with pytest.raises(EntityError, match="only one space type"):
        reg.register_space(S2)
    with pytest.raises(EntityError, match="not a Space subclass"):
        Registry().register_space(Plain)


@pytest.mark.parametrize("shards", [0, -1, 1.0, "2", None], ids=repr)
def test_services_need_at_least_one_shard(shards: Any) -> None:
    class Svc(Entity): ...

    reg = Registry()
    with pytest.raises(EntityError, match="shard count"):
        reg.register_service(Svc, shards)
    assert "Svc" not in reg.services


def test_services_cannot_be_persistent() -> None:
    class PSvc(Entity):
        persistent = True

    reg = Registry()
    with pytest.raises(EntityError, match="cannot be persistent"):
        reg.register_service(PSvc, 2)
    assert "PSvc" not in reg.services


def test_service_registration() -> None:
    class Svc(Entity):
        @rpc
        def Ping(self) -> None: ...

    reg = Registry()
    desc = reg.register_service(Svc, 3, "Counter")
    assert desc.service_shards == 3
    assert reg.services["Counter"] is desc and reg.types["Counter"] is desc
    assert "Ping" in desc.rpcs


# ---- rpc exposure ----------------------------------------------------------------------------


class Exposed(Entity):
    @rpc
    def server(self) -> None: ...

    @rpc(client=True)
    def own(self) -> None: ...

    @rpc(all_clients=True, name="Shout")
    def shout(self) -> None: ...

    def not_an_rpc(self) -> None: ...


def test_exposure_flags() -> None:
    rpcs = Registry().register_entity(Exposed).rpcs
    assert (rpcs["server"].client, rpcs["server"].all_clients) == (False, False)
    assert (rpcs["own"].client, rpcs["own"].all_clients) == (True, False)
    # all_clients implies the own client too
    assert (rpcs["Shout"].client, rpcs["Shout"].all_clients) == (True, True)
    assert rpcs["Shout"].attr_name == "shout" and rpcs["Shout"].wire_name == "Shout"
    assert "shout" not in rpcs
    assert "not_an_rpc" not in rpcs and "on_created" not in rpcs


# ---- bind_args ---------------------------------------------------------------------------------


class Typed(Entity):
    @rpc
    def i(self, v: int) -> None: ...

    @rpc
    def f(self, v: float) -> None: ...

    @rpc
    def s(self, v: str) -> None: ...

    @rpc
    def b(self, v: bool) -> None: ...

    @rpc
    def by(self, v: bytes) -> None: ...

    @rpc
    def li(self, v: list) -> None: ...  # type: ignore[type-arg]

    @rpc
    def lg(self, v: list[int]) -> None: ...

    @rpc
    def d(self, v: dict) -> None: ...  # type: ignore[type-arg]

    @rpc
    def dg(self, v: dict[str, int]) -> None: ...

    @rpc
    def anything(self, v: Any) -> None: ...

    @rpc
    def untyped(self, v) -> None: ...  # type: ignore[no-untyped-def]

    @rpc
    def defaults(self, a: int, b: str = "dflt", c: float = 1.5) -> None: ...

    @rpc
    def zeros(self, a: int, b: float, c: str, d: bool, e: bytes, f: list[int], g: dict[str, int]) -> None: ...

    @rpc
    def required_any(self, a: int, v: Any) -> None: ...

    @rpc
    def required_untyped(self, v) -> None: ...  # type: ignore[no-untyped-def]

    @rpc
    def star(self, a: int, *rest: Any) -> None: ...


@pytest.fixture(scope="module")
def typed() -> dict[str, RpcMethod]:
    return Registry().register_entity(Typed).rpcs


def _ok(typed: dict[str, RpcMethod], name: str, args: list[Any]) -> list[Any]:
    return typed[name].bind_args(args)


def _bad(typed: dict[str, RpcMethod], name: str, args: list[Any]) -> None:
    with pytest.raises(RPCArgumentError):
        typed[name].bind_args(args)


def test_int_param(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "i", [3]) == [3]
    assert _ok(typed, "i", [-(1 << 63)]) == [-(1 << 63)]
    for bad in (1.0, 2.5, True, False, "3", None, b"3", [3]):
        _bad(typed, "i", [bad])


def test_float_param(typed: dict[str, RpcMethod]) -> None:
    out = _ok(typed, "f", [3])
    assert out == [3.0] and type(out[0]) is float
    assert _ok(typed, "f", [2.5]) == [2.5]
    for bad in (True, "2.5", None, [1.0]):
        _bad(typed, "f", [bad])


def test_str_param(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "s", ["héllo"]) == ["héllo"]
    assert _ok(typed, "s", ["héllo".encode()]) == ["héllo"]
    assert _ok(typed, "s", [None]) == [""]
    for bad in (1, 1.5, True, ["a"], {"a": 1}):
        _bad(typed, "s", [bad])


def test_bool_param(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "b", [True]) == [True]
    assert _ok(typed, "b", [False]) == [False]
    for bad in (0, 1, 1.0, "true", None):
        _bad(typed, "b", [bad])


def test_bytes_param(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "by", [b"\x00\xff"]) == [b"\x00\xff"]
    for bad in ("x", 1, None):
        _bad(typed, "by", [bad])


def test_list_and_dict_params(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "li", [[1, "a"]]) == [[1, "a"]]
    assert _ok(typed, "lg", [[1, 2]]) == [[1, 2]]
    assert _ok(typed, "d", [{"a": 1}]) == [{"a": 1}]
    assert _ok(typed, "dg", [{"a": 1}]) == [{"a": 1}]
    for name in ("li", "lg"):
        for bad in ({"a": 1}, "ab", 1, None, (1, 2)):
            _bad(typed, name, [bad])
    for name in ("d", "dg"):
        for bad in ([1], "ab", 1, None):
            _bad(typed, name, [bad])


def test_any_and_untyped_params_take_anything(typed: dict[str, RpcMethod]) -> None:
    for value in (1, 1.5, "x", None, [1], {"a": 2}, True, b"b"):
        assert _ok(typed, "anything", [value]) == [value]
        assert _ok(typed, "untyped", [value]) == [value]


def test_missing_trailing_args_take_defaults(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "defaults", [1]) == [1, "dflt", 1.5]
    assert _ok(typed, "defaults", [1, "x"]) == [1, "x", 1.5]
    assert _ok(typed, "defaults", [1, "x", 2]) == [1, "x", 2.0]


def test_missing_trailing_args_take_zero_values(typed: dict[str, RpcMethod]) -> None:
    out = _ok(typed, "zeros", [])
    assert out == [0, 0.0, "", False, b"", [], {}]
    assert _ok(typed, "zeros", [7, 1]) == [7, 1.0, "", False, b"", [], {}]
    # the typed checks still apply to the arguments that are present
    _bad(typed, "zeros", [1.5])


def test_zero_value_containers_are_fresh_per_call() -> None:
    # GoWorld decodes a new zero value for every call. A method that fills the list it was
    # given (a missing trailing `list[int]` argument) must not see it again in the next call.
    rpcs = Registry().register_entity(Typed).rpcs
    first = rpcs["zeros"].bind_args([])
    first[5].append(99)
    first[6]["leak"] = 1
    second = rpcs["zeros"].bind_args([])
    assert second[5] == [] and second[6] == {}


def test_required_args_without_a_zero_value_error(typed: dict[str, RpcMethod]) -> None:
    _bad(typed, "required_any", [1])
    _bad(typed, "required_any", [])
    _bad(typed, "required_untyped", [])
    assert _ok(typed, "required_any", [1, None]) == [1, None]


def test_extra_args_error(typed: dict[str, RpcMethod]) -> None:
    _bad(typed, "i", [1, 2])
    _bad(typed, "defaults", [1, "x", 2.0, "extra"])
    with pytest.raises(RPCArgumentError, match="takes 1 arguments, got 2"):
        typed["i"].bind_args([1, 2])


def test_varargs_accept_extra_args(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "star", [1]) == [1]
    assert _ok(typed, "star", [1, "a", 2.5, None]) == [1, "a", 2.5, None]
    _bad(typed, "star", [1.5, "a"])


def test_varargs_missing_leading_int_gets_zero(typed: dict[str, RpcMethod]) -> None:
    assert _ok(typed, "star", []) == [0]


def test_bind_args_accepts_tuples_and_does_not_mutate_input(typed: dict[str, RpcMethod]) -> None:
    args = (3, "x")
    assert typed["defaults"].bind_args(args) == [3, "x", 1.5]
    assert args == (3, "x")
    lst = [b"abc"]
    assert typed["s"].bind_args(lst) == ["abc"]
    assert lst == [b"abc"]


def test_error_message_names_the_parameter(typed: dict[str, RpcMethod]) -> None:
    with pytest.raises(RPCArgumentError, match="v: expected an integer, got float"):
        typed["i"].bind_args([1.0])
    with pytest.raises(RPCArgumentError, match="missing argument 2"):
        typed["required_any"].bind_args([1])


# ---- limits on calls from clients ------------------------------------------------------------


class Limited(Entity):
    @rpc(client=True)
    def plain(self) -> None: ...

    @rpc(client=True, rate=2)
    def rated(self) -> None: ...

    @rpc(client=True, rate=0.5, burst=4, max_arg_bytes=128)
    def everything(self) -> None: ...

    @rpc(all_clients=True, rate=0, max_arg_bytes=0)
    def unlimited(self) -> None: ...

    @rpc(client=True, rate=None, max_arg_bytes=None)
    def unlimited_none(self) -> None: ...

    @rpc(client=True, burst=7)
    def default_rate(self) -> None: ...

    @rpc(client=True, rate=10, burst=None)
    def default_burst(self) -> None: ...

    @rpc
    def server(self) -> None: ...


def _limits(name: str) -> tuple[float | None, float | None, int | None]:
    method = Registry().register_entity(Limited).rpcs[name]
    return method.rate, method.burst, method.max_arg_bytes


def test_rpc_limits_left_out_are_the_games_defaults() -> None:
    assert _limits("plain") == (None, None, None)  # None: the game's client_rpc_* defaults
    assert _limits("server") == (None, None, None)  # never applied: servers are not limited


def test_rpc_limits_as_declared() -> None:
    assert _limits("rated") == (2.0, 2.0, None)  # burst defaults to max(1, rate)
    assert _limits("everything") == (0.5, 4.0, 128)
    assert _limits("default_rate") == (None, 7.0, None)  # the game's rate, this burst
    assert _limits("default_burst") == (10.0, 10.0, None)


def test_rpc_limits_zero_or_none_mean_unlimited() -> None:
    assert _limits("unlimited") == (0.0, None, 0)
    assert _limits("unlimited_none") == (0.0, None, 0)


def test_a_slow_rate_still_allows_one_call_at_once() -> None:
    @rpc(client=True, rate=0.1)
    def slow(self: Entity) -> None: ...

    assert slow.__goworld_rpc__.burst == 1.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": -1}, "rate must be a number >= 0"),
        ({"rate": "fast"}, "rate must be a number"),
        ({"rate": True}, "rate must be a number"),
        ({"rate": float("inf")}, "rate must be a number"),
        ({"rate": float("nan")}, "rate must be a number"),
        ({"rate": 5, "burst": 0.5}, "burst must be a number >= 1"),
        ({"rate": 0, "burst": 3}, "burst needs a rate"),
        ({"max_arg_bytes": -1}, "max_arg_bytes must be an int >= 0"),
        ({"max_arg_bytes": 1.5}, "max_arg_bytes must be an int"),
        ({"max_arg_bytes": False}, "max_arg_bytes must be an int"),
    ],
)
def test_bad_rpc_limits_are_declaration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EntityError, match=message):
        rpc(client=True, **kwargs)


@pytest.mark.parametrize("kwargs", [{"rate": 1}, {"burst": 2}, {"max_arg_bytes": 10}, {"rate": None}])
def test_limits_on_a_method_clients_cannot_call_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(EntityError, match="limit calls from clients"):
        rpc(**kwargs)
    rpc(all_clients=True, **kwargs)  # fine there


def test_goworld_rpc_takes_the_limits() -> None:
    import goworld

    class Chat(Entity):
        @goworld.rpc(client=True, name="Say", rate=3, burst=6, max_arg_bytes=1000)
        def say(self, text: str) -> None: ...

    method = Registry().register_entity(Chat).rpcs["Say"]
    assert (method.attr_name, method.rate, method.burst, method.max_arg_bytes) == ("say", 3.0, 6.0, 1000)

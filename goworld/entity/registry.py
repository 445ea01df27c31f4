"""Entity type declarations: attribute flags, RPC exposure, persistence, AOI (PROTOCOL.md §4.2, §4.4).

A game package declares its types with plain class attributes and decorators::

    class Avatar(goworld.Entity):
        persistent = True
        aoi_distance = 100                       # uses AOI
        attributes = {"name": goworld.ALL_CLIENTS | goworld.PERSISTENT, "exp": goworld.CLIENT}

        @goworld.rpc(client=True)                # the own client may call it
        def Say(self, channel: str, text: str) -> None: ...

        @goworld.rpc                             # other entities (servers) may call it
        def GetSpaceID(self, caller: str) -> None: ...

Exposure is declared, never inferred: a client may call only ``client=True`` methods on its own
entity and ``all_clients=True`` methods on any entity; servers may call any ``@rpc`` method.
Arguments are checked against the method's annotations (int, float, str, bool, bytes, list,
dict, Any) the way GoWorld's typed decoding does: an int fits a float parameter, a float never
fits an int one; missing trailing arguments get their default, or the zero value of their
annotated type; extra arguments are an error. A failed check is :class:`RPCArgumentError`.

Client-callable methods also carry limits, enforced per client by the game (``game.call_limits``)
before the arguments are decoded::

    @goworld.rpc(client=True, rate=2, burst=5, max_arg_bytes=512)
    def Login(self, username: str, password: str) -> None: ...

``rate`` is calls per second per client (a token bucket holding ``burst`` calls; ``burst``
defaults to ``max(1, rate)``), ``max_arg_bytes`` the size of the encoded arguments. A limit left
out takes the game's default (``client_rpc_rate``, ``client_rpc_burst``,
``client_rpc_max_arg_bytes`` in ``[game_common]``); ``0`` or ``None`` means unlimited. Limits
apply to calls from clients only, never to calls between servers, and may only be declared on
client-callable methods.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntFlag
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from goworld.errors import EntityError

if TYPE_CHECKING:  # entity.py imports this module
    from goworld.entity.entity import Entity

__all__ = [
    "AttrFlag",
    "CLIENT",
    "ALL_CLIENTS",
    "PERSISTENT",
    "rpc",
    "RpcMethod",
    "RPCArgumentError",
    "EntityTypeDesc",
    "Registry",
    "SPACE_TYPE_NAME",
    "DEFAULT",
]

SPACE_TYPE_NAME = "__space__"


class AttrFlag(IntFlag):
    NONE = 0
    CLIENT = 1
    ALL_CLIENTS = 2
    PERSISTENT = 4


#: Sent to the entity's own client.
CLIENT = AttrFlag.CLIENT
#: Sent to the own client and to the clients of every entity that sees this one (implies CLIENT).
ALL_CLIENTS = AttrFlag.ALL_CLIENTS | AttrFlag.CLIENT
#: Saved to storage (persistent entity types only).
PERSISTENT = AttrFlag.PERSISTENT
_ALL_FLAGS = int(AttrFlag.CLIENT | AttrFlag.ALL_CLIENTS | AttrFlag.PERSISTENT)


class RPCArgumentError(EntityError):
    """An RPC was called with arguments that do not fit its parameters."""


_ZERO: dict[Any, Any] = {int: 0, float: 0.0, str: "", bool: False, bytes: b""}
F = TypeVar("F", bound=Callable[..., Any])


class _Default:
    """The value of a limit left out of ``@rpc``: the game's default applies."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


#: A limit of ``@rpc`` left to the game's configured default (the value of an omitted argument).
DEFAULT: Any = _Default()


@dataclass(frozen=True, slots=True)
class _RpcMark:
    name: str | None
    client: bool
    all_clients: bool
    rate: float | None = None  # None: the game's default; 0.0: unlimited
    burst: float | None = None  # None: the game's default
    max_arg_bytes: int | None = None  # None: the game's default; 0: unlimited


def rpc(
    fn: F | None = None,
    *,
    client: bool = False,
    all_clients: bool = False,
    name: str | None = None,
    rate: float | None = DEFAULT,
    burst: float | None = DEFAULT,
    max_arg_bytes: int | None = DEFAULT,
) -> Any:
    """Expose a method as an RPC. ``name`` is the wire name (default: the method's name).

    ``rate`` (calls/s per client), ``burst`` and ``max_arg_bytes`` limit calls from clients
    (module docstring); raises :class:`EntityError` for a bad limit, or a limit on a method
    clients cannot call."""
    exposed = client or all_clients
    limits = _limits(rate, burst, max_arg_bytes)
    if not exposed and any(v is not DEFAULT for v in (rate, burst, max_arg_bytes)):
        raise EntityError(
            "@rpc: rate, burst and max_arg_bytes limit calls from clients; "
            "declare them with client=True or all_clients=True"
        )

    def mark(f: F) -> F:
        f.__goworld_rpc__ = _RpcMark(name, exposed, all_clients, *limits)  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def _number(what: str, value: Any, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < math.inf:
        raise EntityError(f"@rpc: {what} must be a number >= {low:g}, got {value!r}")
    return float(value)


def _limits(rate: Any, burst: Any, max_arg_bytes: Any) -> tuple[float | None, float | None, int | None]:
    """The declared limits as stored on :class:`RpcMethod` (None: the game's default)."""
    r = None if rate is DEFAULT else 0.0 if rate is None else _number("rate", rate, 0)
    if burst is DEFAULT or burst is None:
        b = max(1.0, r) if r else None
    elif r == 0.0:
        raise EntityError("@rpc: burst needs a rate (rate=0 or None means unlimited)")
    else:
        b = _number("burst", burst, 1)
    if max_arg_bytes is DEFAULT:
        m = None
    elif max_arg_bytes is None:
        m = 0
    elif isinstance(max_arg_bytes, bool) or not isinstance(max_arg_bytes, int) or max_arg_bytes < 0:
        raise EntityError(f"@rpc: max_arg_bytes must be an int >= 0, got {max_arg_bytes!r}")
    else:
        m = max_arg_bytes
    return r, b, m


def _converter(annotation: Any, pname: str) -> Callable[[Any], Any] | None:
    if annotation in (inspect.Parameter.empty, Any, object):
        return None
    if annotation is float:
        def to_float(v: Any) -> float:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            raise RPCArgumentError(f"{pname}: expected a number, got {type(v).__name__}")
        return to_float
    if annotation is int:
        def to_int(v: Any) -> int:
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            raise RPCArgumentError(f"{pname}: expected an integer, got {type(v).__name__}")
        return to_int
    if annotation is str:
        def to_str(v: Any) -> str:
            if isinstance(v, str):
                return v
            if isinstance(v, bytes):
                return v.decode("utf-8", "replace")
            if v is None:
                return ""
            raise RPCArgumentError(f"{pname}: expected a string, got {type(v).__name__}")
        return to_str
    if annotation is bool:
        def to_bool(v: Any) -> bool:
            if isinstance(v, bool):
                return v
            raise RPCArgumentError(f"{pname}: expected a bool, got {type(v).__name__}")
        return to_bool
    origin = getattr(annotation, "__origin__", annotation)
    if origin in (list, dict, bytes):
        def check(v: Any) -> Any:
            if isinstance(v, origin):
                return v
            raise RPCArgumentError(
                f"{pname}: expected {origin.__name__}, got {type(v).__name__}"
            )
        return check
    return None


@dataclass(slots=True)
class RpcMethod:
    """One exposed method: its wire name, who may call it, its argument checks, and the limits
    on calls from clients (None: the game's default; 0: unlimited)."""

    wire_name: str
    attr_name: str
    client: bool
    all_clients: bool
    converters: tuple[Callable[[Any], Any] | None, ...]
    fill: tuple[Any, ...]  # value for each missing trailing parameter; _REQUIRED if none
    varargs: bool
    rate: float | None = None  # calls per second per client
    burst: float | None = None  # calls a client may make at once (the bucket's size)
    max_arg_bytes: int | None = None  # encoded argument bytes

    def bind_args(self, args: tuple[Any, ...] | list[Any]) -> list[Any]:
        """Check and convert ``args``; raises :class:`RPCArgumentError`."""
        n = len(self.converters)
        if len(args) > n and not self.varargs:
            raise RPCArgumentError(f"{self.wire_name} takes {n} arguments, got {len(args)}")
        out = list(args)
        for i, conv in enumerate(self.converters[: len(out)]):
            if conv is not None:
                out[i] = conv(out[i])
        for i in range(len(out), n):
            fill = self.fill[i]
            if fill is _REQUIRED:
                raise RPCArgumentError(f"{self.wire_name}: missing argument {i + 1}")
            out.append(fill() if isinstance(fill, _Fresh) else fill)
        return out


class _Fresh:
    """A zero value built anew for every call (an empty list or dict must not be shared)."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory

    def __call__(self) -> Any:
        return self.factory()


_REQUIRED = object()


def _rpc_method(attr_name: str, fn: Callable[..., Any], mark: _RpcMark) -> RpcMethod:
    sig = inspect.signature(fn)
    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    params = list(sig.parameters.values())[1:]  # skip self
    converters = []
    fill = []
    varargs = False
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            varargs = True
            continue
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        ann = hints.get(p.name, p.annotation)
        converters.append(_converter(ann, p.name))
        if p.default is not p.empty:
            fill.append(p.default)
        else:
            zero = _ZERO.get(ann, _REQUIRED)
            if zero is _REQUIRED and getattr(ann, "__origin__", ann) in (list, dict):
                zero = _Fresh(getattr(ann, "__origin__", ann))
            fill.append(zero)
    return RpcMethod(
        mark.name or attr_name,
        attr_name,
        mark.client,
        mark.all_clients,
        tuple(converters),
        tuple(fill),
        varargs,
        mark.rate,
        mark.burst,
        mark.max_arg_bytes,
    )


@dataclass(slots=True)
class EntityTypeDesc:
    """Everything the runtime needs to know about one registered type."""

    name: str
    cls: type[Entity]
    persistent: bool = False
    aoi_distance: float = 0.0
    attr_flags: dict[str, AttrFlag] = field(default_factory=dict)
    client_keys: frozenset[str] = frozenset()
    all_client_keys: frozenset[str] = frozenset()
    persistent_keys: frozenset[str] = frozenset()
    rpcs: dict[str, RpcMethod] = field(default_factory=dict)
    is_space: bool = False
    service_shards: int = 0

    @property
    def use_aoi(self) -> bool:
        return self.aoi_distance > 0


def describe(cls: type[Entity], name: str, *, is_space: bool = False, service_shards: int = 0) -> EntityTypeDesc:
    """Build the descriptor of ``cls``; raises :class:`EntityError` on a bad declaration."""
    persistent = bool(getattr(cls, "persistent", False))
    aoi = getattr(cls, "aoi_distance", 0) or 0
    if not isinstance(aoi, (int, float)) or aoi < 0:
        raise EntityError(f"{name}.aoi_distance must be a non-negative number, got {aoi!r}")
    flags: dict[str, AttrFlag] = {}
    for klass in reversed(cls.__mro__):
        declared = klass.__dict__.get("attributes")
        if declared is None:
            continue
        if not isinstance(declared, dict):
            raise EntityError(f"{name}.attributes must be a dict of attribute name -> flags")
        for key, flag in declared.items():
            if not isinstance(key, str) or not key:
                raise EntityError(f"{name}.attributes: attribute names are non-empty strings, got {key!r}")
            try:
                value = int(flag)
            except (TypeError, ValueError) as exc:
                raise EntityError(f"{name}.attributes[{key!r}]: bad flags {flag!r}") from exc
            if isinstance(flag, bool) or not 0 <= value <= _ALL_FLAGS:
                raise EntityError(
                    f"{name}.attributes[{key!r}]: bad flags {flag!r} (combine CLIENT, "
                    "ALL_CLIENTS and PERSISTENT with |)"
                )
            flags[key] = AttrFlag(value)
    if any(f & AttrFlag.ALL_CLIENTS for f in flags.values()):
        flags = {k: (f | AttrFlag.CLIENT if f & AttrFlag.ALL_CLIENTS else f) for k, f in flags.items()}
    persistent_keys = frozenset(k for k, f in flags.items() if f & AttrFlag.PERSISTENT)
    if persistent_keys and not persistent:
        raise EntityError(
            f"{name}: attributes {sorted(persistent_keys)} are PERSISTENT but the type is not "
            "(set persistent = True)"
        )
    if service_shards and persistent:
        raise EntityError(f"{name}: a service cannot be persistent")
    rpcs: dict[str, RpcMethod] = {}
    for attr_name in dir(cls):
        fn = getattr(cls, attr_name, None)
        mark = getattr(fn, "__goworld_rpc__", None)
        if mark is None or not callable(fn):
            continue
        method = _rpc_method(attr_name, fn, mark)
        if method.wire_name in rpcs and rpcs[method.wire_name].attr_name != attr_name:
            raise EntityError(f"{name}: two methods expose the RPC name {method.wire_name!r}")
        rpcs[method.wire_name] = method
    return EntityTypeDesc(
        name=name,
        cls=cls,
        persistent=persistent,
        aoi_distance=float(aoi),
        attr_flags=flags,
        client_keys=frozenset(k for k, f in flags.items() if f & AttrFlag.CLIENT),
        all_client_keys=frozenset(k for k, f in flags.items() if f & AttrFlag.ALL_CLIENTS),
        persistent_keys=persistent_keys,
        rpcs=rpcs,
        is_space=is_space,
        service_shards=service_shards,
    )


class Registry:
    """The types one game package registers (filled when the package is imported)."""

    def __init__(self) -> None:
        self.types: dict[str, EntityTypeDesc] = {}
        self.space_desc: EntityTypeDesc | None = None
        self.services: dict[str, EntityTypeDesc] = {}

    def register_entity(self, cls: type, name: str | None = None) -> EntityTypeDesc:
        from goworld.entity.entity import Entity

        if not (isinstance(cls, type) and issubclass(cls, Entity)):
            raise EntityError(f"register_entity({name!r}): {cls!r} is not an Entity subclass")
        name = name or cls.__name__
        if name == SPACE_TYPE_NAME:
            raise EntityError(f"{SPACE_TYPE_NAME} is reserved for the space type")
        if name in self.types and self.types[name].cls is not cls:
            raise EntityError(f"entity type {name!r} registered twice")
        desc = describe(cls, name)
        self.types[name] = desc
        return desc

    def register_space(self, cls: type) -> EntityTypeDesc:
        from goworld.entity.space import Space

        if not (isinstance(cls, type) and issubclass(cls, Space)):
            raise EntityError(f"register_space: {cls!r} is not a Space subclass")
        if self.space_desc is not None and self.space_desc.cls is not cls:
            raise EntityError(
                f"only one space type may be registered ({self.space_desc.cls.__name__} already is)"
            )
        desc = describe(cls, SPACE_TYPE_NAME, is_space=True)
        self.space_desc = self.types[SPACE_TYPE_NAME] = desc
        return desc

    def register_service(self, cls: type, shards: int, name: str | None = None) -> EntityTypeDesc:
        name = name or cls.__name__
        if not isinstance(shards, int) or shards < 1:
            raise EntityError(f"service {name!r}: shard count must be a positive int, got {shards!r}")
        self.register_entity(cls, name)
        desc = describe(cls, name, service_shards=shards)
        self.types[name] = self.services[name] = desc
        return desc

    def get(self, name: str) -> EntityTypeDesc:
        try:
            return self.types[name]
        except KeyError:
            raise EntityError(f"unknown entity type {name!r}") from None

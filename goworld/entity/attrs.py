"""Entity attribute containers that emit GoWorld's client deltas (PROTOCOL.md §4.2, §4.3).

An entity's attributes are a tree: a *root* :class:`MapAttr` whose values are scalars
(``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``) or nested :class:`MapAttr` /
:class:`ListAttr` containers. The entity binds itself to the root as an :class:`AttrListener`
(:meth:`MapAttr.bind`); from then on every mutation anywhere in the tree calls the listener
synchronously, once, with the message GoWorld would send::

    MapAttr  m[k] = v, set_default (absent key), get_map/get_list (auto-create)  -> 1004 change
             del m[k], pop(k)                                                    -> 1005 del
             clear() (nested maps only; clearing the root is an EntityError)      -> 1012 clear
    ListAttr l[i] = v                                                            -> 1006 change
             pop() (last item only)                                              -> 1007 pop
             append(v), extend(vs) (one per item)                                -> 1008 append

There is no change detection: setting an identical value emits again, as in GoWorld.

Each call carries ``root_key`` (the top-level attribute the change hangs under, so the entity can
look up its Client/AllClients/Persistent flags without walking) and ``path``: the **leaf-first**
keys from the changed container up to, but excluding, the root map; ``None`` for a change on the
root map itself (then ``root_key == key``). List indices in paths are plain ``int``. A value that
is a container is passed as a fresh plain deep copy (:meth:`MapAttr.to_builtin`).

Rules:

* **Normalisation.** Values are normalised on assignment: ``dict`` becomes a :class:`MapAttr`,
  ``list``/``tuple`` a :class:`ListAttr` (deeply); subclasses of the scalar types are coerced to
  the base type; ``int`` must fit int64/uint64. Anything else, and non-``str`` map keys, raise
  :class:`~goworld.errors.EntityError` naming the key.
* **One parent.** A container has exactly one parent. Assigning a container that is already
  attached (or a bound root, or an ancestor of the target) raises ``EntityError``, as GoWorld
  panics on re-parenting. Remove it first (``pop``/``del`` detach it) or assign
  ``c.to_builtin()`` to store a copy. A replaced or removed container is detached.
* **Detached trees are silent.** Containers not connected to a bound root emit nothing;
  attaching one with content emits a single change carrying its full deep value.
* **Pickling / copying** produces a *detached* deep copy: neither the listener nor the parent
  is pickled; the owner re-binds the root after unpickling.

Performance: the listener is propagated down the tree when a subtree is attached (like GoWorld's
``owner``), so a mutation on an unbound tree costs one ``is None`` check; paths are computed
lazily, only when a listener exists, and cached until the container is detached.
"""

from __future__ import annotations

from collections.abc import Collection, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Protocol, overload

from goworld.errors import EntityError

__all__ = ["AttrListener", "AttrPath", "MapAttr", "ListAttr", "to_builtin"]

#: A leaf-first attribute path: map keys (``str``) and list indices (``int``).
AttrPath = list[str | int]

_INT_MIN = -(1 << 63)
_INT_END = 1 << 64  # exclusive: ints up to 2**64-1 are encoded as uint64
_PLAIN = frozenset({str, float, bool, bytes, type(None)})
_MISSING: Any = object()
# The base types' own conversions: str(SomeStrEnum.X) would give "SomeStrEnum.X".
_COERCE: tuple[tuple[type, Any], ...] = (
    (int, int.__index__),
    (float, float.__float__),
    (str, str.__str__),
    (bytes, bytes),
)


class AttrListener(Protocol):
    """What a bound root :class:`MapAttr` reports to, normally its entity.

    The message number each call stands for is in brackets.
    """

    def on_map_attr_change(
        self, root_key: str, path: AttrPath | None, key: str, value: Any
    ) -> None:
        """``map[key] = value`` [1004]."""

    def on_map_attr_del(self, root_key: str, path: AttrPath | None, key: str) -> None:
        """``del map[key]`` [1005]."""

    def on_map_attr_clear(self, root_key: str, path: AttrPath | None) -> None:
        """``map.clear()`` on a nested map [1012]; ``path`` is the cleared map's path."""

    def on_list_attr_change(
        self, root_key: str, path: AttrPath | None, index: int, value: Any
    ) -> None:
        """``list[index] = value`` [1006]."""

    def on_list_attr_pop(self, root_key: str, path: AttrPath | None) -> None:
        """``list.pop()`` of the last item [1007]."""

    def on_list_attr_append(self, root_key: str, path: AttrPath | None, value: Any) -> None:
        """``list.append(value)`` [1008]."""


def to_builtin(value: Any) -> Any:
    """Return ``value`` with every container replaced by a plain deep copy (dict/list)."""
    t = type(value)
    if t is MapAttr:
        return _map_builtin(value._data)
    if t is ListAttr:
        return _list_builtin(value._items)
    if isinstance(value, _Attr):
        return value.to_builtin()
    return value


def _map_builtin(data: dict[str, Any]) -> dict[str, Any]:
    # A C-level copy, then only the containers replaced: most values are plain, and this
    # runs for every client create body and every snapshot.
    out = dict(data)
    for k, v in data.items():
        t = type(v)
        if t is MapAttr:
            out[k] = _map_builtin(v._data)
        elif t is ListAttr:
            out[k] = _list_builtin(v._items)
        elif t not in _PLAIN and t is not int and isinstance(v, _Attr):
            out[k] = v.to_builtin()
    return out


def _list_builtin(items: list[Any]) -> list[Any]:
    out = list(items)
    for i, v in enumerate(items):
        t = type(v)
        if t is MapAttr:
            out[i] = _map_builtin(v._data)
        elif t is ListAttr:
            out[i] = _list_builtin(v._items)
        elif t not in _PLAIN and t is not int and isinstance(v, _Attr):
            out[i] = v.to_builtin()
    return out


def _loc(where: str | None, key: str | int) -> str:
    return repr(key) if where is None else f"{where}[{key!r}]"


def _normalise(value: Any, where: str | None, key: str | int, adopted: list[_Attr]) -> Any:
    """Return the stored form of ``value``; containers it adopts are appended to ``adopted``."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is int:
        if _INT_MIN <= value < _INT_END:
            return value
        raise EntityError(f"attribute {_loc(where, key)}: int {value} does not fit int64/uint64")
    if isinstance(value, _Attr):
        if value._parent is not None or value._listener is not None:
            raise EntityError(
                f"attribute {_loc(where, key)}: {type(value).__name__} is already attached "
                "elsewhere; pop it first or assign .to_builtin()"
            )
        adopted.append(value)
        return value
    if isinstance(value, dict):
        m = MapAttr()
        m._fill(value, _loc(where, key), adopted)
        return m
    if isinstance(value, (list, tuple)):
        lst = ListAttr()
        lst._fill(value, _loc(where, key), adopted)
        return lst
    for base, plain in _COERCE:  # subclasses (IntEnum, str-mixin Enum, ...) -> base type
        if isinstance(value, base):
            return _normalise(plain(value), where, key, adopted)
    raise EntityError(
        f"attribute {_loc(where, key)}: unsupported value type {type(value).__name__}"
    )


class _Attr:
    """State shared by both containers: parent link, listener and cached path."""

    __slots__ = ("_parent", "_pkey", "_listener", "_path")

    def __init__(self) -> None:
        self._parent: MapAttr | ListAttr | None = None
        self._pkey: str | int | None = None
        self._listener: AttrListener | None = None
        self._path: tuple[str | int, ...] | None = None  # cached; only while a listener is set

    # -- tree structure -------------------------------------------------------------------
    @property
    def parent(self) -> MapAttr | ListAttr | None:
        """The container holding this one, or ``None`` for a top-level container."""
        return self._parent

    @property
    def key(self) -> str | int | None:
        """This container's key (or index) in its parent, or ``None`` at the top."""
        return self._pkey

    @property
    def path(self) -> AttrPath | None:
        """Leaf-first keys from this container up to (excluding) its top; ``None`` at the top."""
        if self._parent is None:
            return None
        return list(self._compute_path())

    @property
    def root_key(self) -> str | None:
        """The top-level attribute this container hangs under; ``None`` at the top."""
        if self._parent is None:
            return None
        last = self._compute_path()[-1]
        return last if isinstance(last, str) else None

    def _compute_path(self) -> tuple[str | int, ...]:
        path = self._path
        if path is None:
            parts: list[str | int] = []
            node: _Attr = self
            while node._parent is not None:
                parts.append(node._pkey)  # type: ignore[arg-type]
                node = node._parent
            path = tuple(parts)
            if self._listener is not None:
                self._path = path
        return path

    def _emit_target(self, key: str | None = None) -> tuple[str, AttrPath | None]:
        """``(root_key, path)`` for a change on this container (``key`` when it is the root)."""
        if self._parent is None:
            return key, None  # type: ignore[return-value]
        path = self._path or self._compute_path()
        return path[-1], list(path)  # type: ignore[return-value]

    def _prepare(self, key: str | int, value: Any) -> Any:
        """Normalise ``value`` for storing under ``key``; undo adoptions if that fails."""
        adopted: list[_Attr] = []
        top: _Attr = self  # found first: adopting relinks the adopted containers
        while top._parent is not None:
            top = top._parent
        try:
            value = _normalise(value, None, key, adopted)
            if adopted and any(a is top for a in adopted):
                raise EntityError(f"attribute {key!r}: a container cannot contain itself")
        except BaseException:
            for a in adopted:
                a._parent = a._pkey = None
            raise
        return value

    def _adopt(self, child: _Attr, key: str | int) -> None:
        child._parent = self  # type: ignore[assignment]
        child._pkey = key
        if self._listener is not None:
            child._set_listener(self._listener)

    @staticmethod
    def _release(child: Any) -> None:
        if isinstance(child, _Attr):
            child._parent = child._pkey = None
            if child._listener is not None:
                child._set_listener(None)

    def _set_listener(self, listener: AttrListener | None) -> None:
        raise NotImplementedError  # pragma: no cover

    def to_builtin(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


class MapAttr(_Attr):
    """A map attribute: ``str`` keys to attribute values. See the module docstring."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._data: dict[str, Any] = {}
        if data:
            self._build(data)

    @classmethod
    def from_builtin(cls, data: Mapping[str, Any]) -> MapAttr:
        """Build a detached tree from a plain mapping (as decoded from storage or migration)."""
        return cls(data)

    @classmethod
    def from_trusted(
        cls, data: dict[str, Any], listener: AttrListener | None = None,
        parent: MapAttr | ListAttr | None = None, pkey: str | int | None = None,
    ) -> MapAttr:
        """Rebuild a tree from our own :meth:`to_builtin` output (a freeze snapshot), bound
        to ``listener``, skipping the checks ``MapAttr(data)`` makes: that data was a valid
        tree when it was taken, and restoring 10k entities must not pay for them twice."""
        m = cls.__new__(cls)
        m._parent = parent
        m._pkey = pkey
        m._listener = listener
        m._path = None
        m._data = store = {}
        for k, v in data.items():
            t = type(v)
            if t is dict:
                v = MapAttr.from_trusted(v, listener, m, k)
            elif t is list:
                v = ListAttr.from_trusted(v, listener, m, k)
            store[k] = v
        return m

    def _build(self, data: Mapping[str, Any]) -> None:
        adopted: list[_Attr] = []
        try:
            self._fill(data, None, adopted)
        except BaseException:
            for a in adopted:
                a._parent = a._pkey = None
            raise

    def _fill(self, data: Mapping[str, Any], where: str | None, adopted: list[_Attr]) -> None:
        store = self._data
        for k, v in data.items():
            if type(k) is not str:
                raise EntityError(f"attribute {_loc(where, k)}: map keys must be str")
            v = _normalise(v, where, k, adopted)
            if isinstance(v, _Attr):
                v._parent, v._pkey = self, k
            store[k] = v

    # -- binding to an owner --------------------------------------------------------------
    def bind(self, listener: AttrListener) -> None:
        """Make this map an entity's root attribute map, reporting changes to ``listener``.

        Binding emits nothing: the current content reaches clients inside 1002 clientData.
        """
        if self._parent is not None:
            raise EntityError("only a top-level MapAttr can be bound as a root")
        if self._listener is not None and self._listener is not listener:
            raise EntityError("MapAttr is already bound to another owner")
        self._set_listener(listener)

    def unbind(self) -> None:
        """Stop reporting changes (the owner is destroyed or freezing)."""
        if self._parent is not None:
            raise EntityError("only a top-level MapAttr can be unbound")
        self._set_listener(None)

    @property
    def is_bound(self) -> bool:
        """Whether this is a root map bound to a listener."""
        return self._parent is None and self._listener is not None

    def _set_listener(self, listener: AttrListener | None) -> None:
        self._listener = listener
        self._path = None
        for v in self._data.values():
            if isinstance(v, _Attr):
                v._set_listener(listener)

    # -- reading --------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key``, or ``default``."""
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def keys(self) -> KeysView[str]:
        """A read-only view of the keys."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """A read-only view of the stored values (nested containers, not copies)."""
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """A read-only view of ``(key, value)`` pairs."""
        return self._data.items()

    def _typed(self, key: str, default: Any, types: tuple[type, ...], name: str) -> Any:
        v = self._data.get(key, _MISSING)
        if v is _MISSING:
            return default
        if isinstance(v, types):
            return v
        raise EntityError(f"attribute {key!r} is {type(v).__name__}, not {name}")

    def get_int(self, key: str, default: int = 0) -> int:
        """``key`` as an int (floats truncate, like GoWorld's ``GetInt``), or ``default``."""
        v = self._typed(key, _MISSING, (int, float), "int")
        return default if v is _MISSING else int(v)

    def get_float(self, key: str, default: float = 0.0) -> float:
        """``key`` as a float (ints convert), or ``default``."""
        v = self._typed(key, _MISSING, (int, float), "float")
        return default if v is _MISSING else float(v)

    def get_str(self, key: str, default: str = "") -> str:
        """``key`` as a str, or ``default``."""
        return self._typed(key, default, (str,), "str")  # type: ignore[no-any-return]

    def get_bool(self, key: str, default: bool = False) -> bool:
        """``key`` as a bool, or ``default``."""
        return self._typed(key, default, (bool,), "bool")  # type: ignore[no-any-return]

    def get_map(self, key: str) -> MapAttr:
        """The MapAttr at ``key``; a missing key is set to a new empty map (emits 1004 ``{}``)."""
        v = self._data.get(key, _MISSING)
        if v is _MISSING:
            v = MapAttr()
            self[key] = v
        elif not isinstance(v, MapAttr):
            raise EntityError(f"attribute {key!r} is {type(v).__name__}, not MapAttr")
        return v

    def get_list(self, key: str) -> ListAttr:
        """The ListAttr at ``key``; a missing key is set to a new empty list (emits 1004 ``[]``)."""
        v = self._data.get(key, _MISSING)
        if v is _MISSING:
            v = ListAttr()
            self[key] = v
        elif not isinstance(v, ListAttr):
            raise EntityError(f"attribute {key!r} is {type(v).__name__}, not ListAttr")
        return v

    # -- writing --------------------------------------------------------------------------
    def __setitem__(self, key: str, value: Any) -> None:
        if type(key) is not str:
            raise EntityError(f"attribute key {key!r}: map keys must be str")
        t = type(value)
        if not (t in _PLAIN or (t is int and _INT_MIN <= value < _INT_END)):
            value = self._prepare(key, value)
        data = self._data
        old = data.get(key)
        if old is not None:
            self._release(old)
        data[key] = value
        if isinstance(value, _Attr):
            self._adopt(value, key)
            if self._listener is not None:
                root_key, path = self._emit_target(key)
                self._listener.on_map_attr_change(root_key, path, key, value.to_builtin())
        elif self._listener is not None:
            root_key, path = self._emit_target(key)
            self._listener.on_map_attr_change(root_key, path, key, value)

    def set_default(self, key: str, value: Any) -> Any:
        """Set ``key`` only if absent (emitting 1004 then); return the stored value."""
        v = self._data.get(key, _MISSING)
        if v is _MISSING:
            self[key] = value
            v = self._data[key]
        return v

    setdefault = set_default

    def update(
        self, other: Mapping[str, Any] | MapAttr | Iterable[tuple[str, Any]] = (), /, **kw: Any
    ) -> None:
        """Set every pair, one 1004 each, in order."""
        pairs = other.items() if isinstance(other, (Mapping, MapAttr)) else other
        for k, v in pairs:
            self[k] = v
        for k, v in kw.items():
            self[k] = v

    def __delitem__(self, key: str) -> None:
        self.pop(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` (emits 1005) and return its value; a container comes back detached.

        A missing key returns ``default`` without emitting, or raises ``KeyError``.
        """
        data = self._data
        if key not in data:
            if default is _MISSING:
                raise KeyError(key)
            return default
        value = data.pop(key)
        self._release(value)
        if self._listener is not None:
            root_key, path = self._emit_target(key)
            self._listener.on_map_attr_del(root_key, path, key)
        return value

    def clear(self) -> None:
        """Remove every key (emits one 1012). Clearing a bound root raises ``EntityError``."""
        if self._parent is None and self._listener is not None:
            raise EntityError("cannot clear an entity's root attribute map")
        for v in self._data.values():
            self._release(v)
        self._data.clear()
        if self._listener is not None:
            root_key, path = self._emit_target()
            self._listener.on_map_attr_clear(root_key, path)

    # -- conversion -----------------------------------------------------------------------
    def to_builtin(self, keys: Collection[str] | None = None) -> dict[str, Any]:
        """A plain deep copy; with ``keys``, only those top-level keys (client data filter)."""
        if keys is None:
            return _map_builtin(self._data)
        return _map_builtin({k: v for k, v in self._data.items() if k in keys})

    def copy(self) -> MapAttr:
        """A detached deep copy."""
        return type(self)(self.to_builtin())

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.to_builtin(),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MapAttr):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


class ListAttr(_Attr):
    """A list attribute. Only the last item can be removed (GoWorld has no insert/remove)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] | None = None) -> None:
        super().__init__()
        self._items: list[Any] = []
        if items:
            adopted: list[_Attr] = []
            try:
                self._fill(items, None, adopted)
            except BaseException:
                for a in adopted:
                    a._parent = a._pkey = None
                raise

    @classmethod
    def from_trusted(
        cls, items: list[Any], listener: AttrListener | None = None,
        parent: MapAttr | ListAttr | None = None, pkey: str | int | None = None,
    ) -> ListAttr:
        """See :meth:`MapAttr.from_trusted`."""
        a = cls.__new__(cls)
        a._parent = parent
        a._pkey = pkey
        a._listener = listener
        a._path = None
        a._items = store = []
        for i, v in enumerate(items):
            t = type(v)
            if t is dict:
                v = MapAttr.from_trusted(v, listener, a, i)
            elif t is list:
                v = ListAttr.from_trusted(v, listener, a, i)
            store.append(v)
        return a

    @classmethod
    def from_builtin(cls, items: Iterable[Any]) -> ListAttr:
        """Build a detached list from plain values."""
        return cls(items)

    def _fill(self, items: Iterable[Any], where: str | None, adopted: list[_Attr]) -> None:
        store = self._items
        for v in items:
            i = len(store)
            v = _normalise(v, where, i, adopted)
            if isinstance(v, _Attr):
                v._parent, v._pkey = self, i
            store.append(v)

    def _set_listener(self, listener: AttrListener | None) -> None:
        self._listener = listener
        self._path = None
        for v in self._items:
            if isinstance(v, _Attr):
                v._set_listener(listener)

    def _index(self, index: object) -> int:
        if type(index) is not int:
            if isinstance(index, bool) or not isinstance(index, int):
                raise EntityError(f"list index must be int, not {type(index).__name__}")
            index = int.__index__(index)
        n = len(self._items)
        i: int = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"list index {index} out of range (size {n})")
        return i

    # -- reading --------------------------------------------------------------------------
    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if type(index) is slice:
            return self._items[index]
        return self._items[self._index(index)]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __contains__(self, value: object) -> bool:
        return value in self._items

    # -- writing --------------------------------------------------------------------------
    def __setitem__(self, index: int, value: Any) -> None:
        i = self._index(index)
        t = type(value)
        if not (t in _PLAIN or (t is int and _INT_MIN <= value < _INT_END)):
            value = self._prepare(i, value)
        items = self._items
        self._release(items[i])
        items[i] = value
        if isinstance(value, _Attr):
            self._adopt(value, i)
            if self._listener is not None:
                root_key, path = self._emit_target()
                self._listener.on_list_attr_change(root_key, path, i, value.to_builtin())
        elif self._listener is not None:
            root_key, path = self._emit_target()
            self._listener.on_list_attr_change(root_key, path, i, value)

    def append(self, value: Any) -> None:
        """Append ``value`` (emits 1008)."""
        items = self._items
        i = len(items)
        t = type(value)
        if not (t in _PLAIN or (t is int and _INT_MIN <= value < _INT_END)):
            value = self._prepare(i, value)
        items.append(value)
        if isinstance(value, _Attr):
            self._adopt(value, i)
            if self._listener is not None:
                root_key, path = self._emit_target()
                self._listener.on_list_attr_append(root_key, path, value.to_builtin())
        elif self._listener is not None:
            root_key, path = self._emit_target()
            self._listener.on_list_attr_append(root_key, path, value)

    def extend(self, values: Iterable[Any]) -> None:
        """Append each value in turn (one 1008 per item)."""
        for v in values:
            self.append(v)

    def pop(self, index: int = -1) -> Any:
        """Remove and return the last item (emits 1007); a container comes back detached.

        Only the last item can be popped: another index raises ``EntityError``.
        """
        items = self._items
        if not items:
            raise IndexError("pop from empty ListAttr")
        if self._index(index) != len(items) - 1:
            raise EntityError(f"ListAttr can only pop its last item, not index {index}")
        value = items.pop()
        self._release(value)
        if self._listener is not None:
            root_key, path = self._emit_target()
            self._listener.on_list_attr_pop(root_key, path)
        return value

    def __delitem__(self, index: int) -> None:
        self.pop(index)

    # -- conversion -----------------------------------------------------------------------
    def to_builtin(self) -> list[Any]:
        """A plain deep copy."""
        return _list_builtin(self._items)

    def copy(self) -> ListAttr:
        """A detached deep copy."""
        return type(self)(self.to_builtin())

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.to_builtin(),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListAttr):
            return self._items == other._items
        if isinstance(other, list):
            return self._items == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

"""Per-gate index of client filter properties for filtered calls (PROTOCOL.md §4.11).

Games set string properties on clients (``SetClientFilterProp``); a filtered call selects the
clients whose property ``key`` compares to ``value`` with one of ``= != > < >= <=``. Strings
compare byte-wise (UTF-8 order equals code-point order, so Python's ``str`` comparison is
right): ``"10" < "9"``. Equality, the common case, is a dict lookup.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator

from goworld.proto.messages import FilterOp

__all__ = ["FilterIndex"]

_COMPARE: dict[int, Callable[[str, str], bool]] = {
    FilterOp.NE: operator.ne,
    FilterOp.GT: operator.gt,
    FilterOp.LT: operator.lt,
    FilterOp.GE: operator.ge,
    FilterOp.LE: operator.le,
}


class FilterIndex:
    """``key -> value -> {client ids}``, plus each client's own props for removal."""

    __slots__ = ("_by_key", "_props")

    def __init__(self) -> None:
        self._by_key: dict[str, dict[str, set[str]]] = {}
        self._props: dict[str, dict[str, str]] = {}

    def set(self, client_id: str, key: str, value: str) -> None:
        props = self._props.setdefault(client_id, {})
        old = props.get(key)
        if old is not None:
            self._discard(key, old, client_id)
        props[key] = value
        self._by_key.setdefault(key, {}).setdefault(value, set()).add(client_id)

    def clear(self, client_id: str) -> None:
        """Remove every property of ``client_id``."""
        props = self._props.pop(client_id, None)
        if props:
            for key, value in props.items():
                self._discard(key, value, client_id)

    def get(self, client_id: str) -> dict[str, str]:
        return dict(self._props.get(client_id, {}))

    def has_key(self, key: str) -> bool:
        return key in self._by_key

    def _discard(self, key: str, value: str, client_id: str) -> None:
        values = self._by_key[key]
        clients = values[value]
        clients.discard(client_id)
        if not clients:
            del values[value]
            if not values:
                del self._by_key[key]

    def match(self, key: str, op: int, value: str) -> Iterable[str]:
        """Client ids whose ``key`` property satisfies ``prop <op> value``."""
        values = self._by_key.get(key)
        if not values:
            return ()
        if op == FilterOp.EQ:
            return values.get(value, ())
        compare = _COMPARE.get(op)
        if compare is None:
            return ()
        return _iter_matching(values, compare, value)


def _iter_matching(
    values: dict[str, set[str]], compare: Callable[[str, str], bool], value: str
) -> Iterator[str]:
    for prop, clients in values.items():
        if compare(prop, value):
            yield from clients

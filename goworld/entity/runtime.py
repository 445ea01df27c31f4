"""What entities need from the process that hosts them, and the one deliberate global.

:class:`Runtime` is implemented by the game process (``game.runtime.GameRuntime``). Entities
reach it through ``self._rt``; the ``goworld`` facade functions (``goworld.call`` ...) reach it
through :func:`current`, which ``python -m game`` binds once at start-up. Tests bind their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from goworld.errors import GoWorldError

if TYPE_CHECKING:
    from goworld.entity.client import GameClient
    from goworld.entity.entity import Entity
    from goworld.entity.registry import Registry
    from goworld.entity.space import Space
    from goworld.entity.vector import Vector3

__all__ = ["Runtime", "bind", "current", "unbind"]


class Runtime(Protocol):
    game_id: int
    registry: Registry

    # client messages (routed through the owner's dispatcher)
    def send_client(self, client: GameClient, msgtype: int, body: bytes) -> None: ...
    def send_clients(self, clients: Iterable[GameClient], msgtype: int, body: bytes) -> None: ...
    def set_filter_prop(self, client: GameClient, key: str, value: str) -> None: ...
    def clear_filter_props(self, client: GameClient) -> None: ...
    def call_filtered_clients(
        self, key: str, op: str, value: str, method: str, args: tuple[Any, ...]
    ) -> None: ...
    def client_bound(self, entity: Entity, client: GameClient) -> None: ...
    def client_unbound(self, entity: Entity, client: GameClient) -> None: ...

    # entities
    def get_entity(self, entity_id: str) -> Entity | None: ...
    def create_entity_locally(
        self,
        type_name: str,
        *,
        entity_id: str | None = None,
        space: Space | None = None,
        pos: Vector3 | None = None,
        attrs: dict[str, Any] | None = None,
        client: GameClient | None = None,
    ) -> Entity: ...
    def load_entity_locally(
        self, type_name: str, entity_id: str, *, space: Space | None = None, pos: Vector3 | None = None
    ) -> None: ...
    def create_entity_somewhere(
        self, game_id: int, type_name: str, attrs: dict[str, Any] | None = None
    ) -> str: ...
    def load_entity_somewhere(self, type_name: str, entity_id: str, game_id: int) -> None: ...
    def destroy_entity(self, entity: Entity) -> None: ...
    def save_entity(self, entity: Entity) -> None: ...
    def enter_space(self, entity: Entity, space_id: str, pos: Vector3) -> None: ...
    def mark_sync(self, entity: Entity) -> None: ...

    # calls and time
    def call(self, entity_id: str, method: str, args: tuple[Any, ...]) -> None: ...
    def call_nil_spaces(self, method: str, args: tuple[Any, ...]) -> None: ...
    def post(self, fn: Callable[[], Any]) -> None: ...
    def add_entity_timer(
        self, entity: Entity, interval: float, method: str, args: tuple[Any, ...], *, repeat: bool
    ) -> int: ...
    def cancel_entity_timer(self, entity: Entity, timer_id: int) -> None: ...


_current: Runtime | None = None


def bind(runtime: Runtime) -> None:
    """Make ``runtime`` the one the facade functions use (once per process)."""
    global _current
    _current = runtime


def unbind() -> None:
    global _current
    _current = None


def current() -> Any:
    """The bound runtime; raises when called outside a game process."""
    if _current is None:
        raise GoWorldError("no game runtime: this call only works inside a running game")
    return _current

"""Loading a game package: import it with a fresh registry active, then check what it declared.

A game package is a directory with an ``__init__.py`` (e.g. ``examples/test_game``). It is
imported under its own name with its parent directory on ``sys.path``; its module-level
``register_*`` calls fill the :class:`~goworld.entity.registry.Registry`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from goworld import api
from goworld.entity.registry import Registry
from goworld.errors import EntityError, GoWorldError

__all__ = ["load_game_package", "GamePackageError"]


class GamePackageError(GoWorldError):
    """The game package could not be imported or declares something invalid."""


def load_game_package(path: str | Path, *, boot_entity: str | None = None) -> Registry:
    pkg_dir = Path(path).resolve()
    if not (pkg_dir / "__init__.py").is_file():
        raise GamePackageError(f"{pkg_dir} is not a Python package (no __init__.py)")
    parent, name = str(pkg_dir.parent), pkg_dir.name
    registry = Registry()
    api.activate_registry(registry)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    try:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
        importlib.import_module(name)
    except EntityError as exc:
        raise GamePackageError(f"{pkg_dir}: {exc}") from exc
    except Exception as exc:
        raise GamePackageError(f"{pkg_dir}: importing failed: {type(exc).__name__}: {exc}") from exc
    finally:
        api.activate_registry(None)
    if not registry.types:
        raise GamePackageError(f"{pkg_dir}: registers no entity types")
    if boot_entity is not None and boot_entity not in registry.types:
        raise GamePackageError(
            f"{pkg_dir}: boot_entity {boot_entity!r} (goworld.ini) is not a registered type; "
            f"registered: {', '.join(sorted(registry.types))}"
        )
    return registry

"""The one factory behind :func:`goworld.storage.open_storage` and :func:`goworld.kvdb.open_kvdb`.

Each of them is a table (``[section] type`` -> :class:`Backend`) and a call to
:func:`open_backend`, so both follow the same rules:

* an unknown type, a file backend without ``path`` and (for backends that check it) a bad
  ``url`` are :class:`~goworld.errors.StorageError`\\ s naming the section and the value;
* a backend's module is imported only when its type is opened (``import goworld.storage``
  loads no driver);
* every real backend comes wrapped in the kind's resilient wrapper, named (``describe``) by
  ``"<type> <section> <path>"`` for a file backend and by the backend's own ``describe``
  otherwise; a backend with ``resilient=False`` (``memory``) comes bare.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from goworld.errors import StorageError

__all__ = ["Backend", "open_backend"]


@dataclass(frozen=True)
class Backend:
    """How to build one backend type from its config section."""

    #: ``"module:Class"``, imported when this type is opened.
    target: str
    #: The constructor's positional arguments, from the config section.
    args: Callable[[Any], tuple[Any, ...]] = lambda cfg: ()
    #: A file backend: ``path`` is required and names the backend.
    needs_path: bool = False
    #: The constructor raises ValueError for an unusable ``url``.
    checks_url: bool = False
    #: Wrap it in the kind's resilient wrapper (all but the in-memory test backend).
    resilient: bool = True


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def open_backend(
    section: str, cfg: Any, backends: Mapping[str, Backend], wrapper: str, **resilience: Any
) -> Any:
    """Build the backend ``cfg.type`` names in ``backends``; connects on first use, never here.

    ``section`` names the ini section in errors and ``describe`` (``storage``, ``kvdb``);
    ``wrapper`` is the ``"module:Class"`` of the resilient wrapper, given ``resilience``.

    Raises:
        StorageError: the type is unknown, or its settings are unusable.
    """
    backend = backends.get(cfg.type)
    if backend is None:
        raise StorageError(f"[{section}] type = {cfg.type!r}: unknown {section} type")
    if backend.needs_path and cfg.path is None:
        raise StorageError(f"[{section}] type = {cfg.type} needs a path")
    cls = _load(backend.target)
    try:
        inner = cls(*backend.args(cfg))
    except ValueError as exc:
        if not backend.checks_url:
            raise
        raise StorageError(f"[{section}] type = {cfg.type}: url {cfg.url!r}: {exc}") from exc
    if not backend.resilient:
        return inner
    describe = f"{cfg.type} {section} {cfg.path}" if backend.needs_path else inner.describe
    return _load(wrapper)(inner, describe=describe, **resilience)

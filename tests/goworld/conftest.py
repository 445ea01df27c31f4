"""Fixtures shared by the tests of the goworld package."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from goworld import log


@pytest.fixture
def goworld_logger() -> Iterator[None]:
    """Put the `goworld` logger back as it was after a test that calls log.configure."""
    root = logging.getLogger("goworld")
    saved = (list(root.handlers), root.level, root.propagate, log._installed)
    top = list(logging.getLogger().handlers)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        handlers, root.level, root.propagate, log._installed = saved
        for handler in handlers:
            root.addHandler(handler)
        logging.getLogger().handlers[:] = top
        log._root_handlers = []

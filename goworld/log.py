"""Named loggers and the one place that configures logging handlers.

Loggers: ``goworld.{config,proto,dispatcher,gate,game,storage,rpc,cli}``. Library modules only
call :func:`get_logger`; process entry points (``__main__`` modules and ``cli.py``) call
:func:`configure`. Formatting is lazy (``%s``); traffic logging sits behind
``logger.isEnabledFor(logging.DEBUG)`` guards.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["get_logger", "configure", "LEVELS"]

#: goworld.ini log levels (GoWorld's names) -> logging levels.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(component: str) -> logging.Logger:
    """The logger ``goworld.<component>``."""
    return logging.getLogger(f"goworld.{component}")


def configure(
    *, level: str = "info", log_file: str | Path | None = None, stderr: bool = True
) -> None:
    """Install handlers on the ``goworld`` logger (file and/or stderr) at ``level``."""
    root = logging.getLogger("goworld")
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    if stderr:
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(formatter)
        root.addHandler(stream_handler)
    root.propagate = False

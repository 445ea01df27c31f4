"""Compiles goworld/entity/aoi_grid.py with mypyc (the rest of the build is in pyproject.toml).

``pip install -e .`` (scripts/setup) builds the extension next to the source. The module is
plain Python too: with ``GOWORLD_NO_MYPYC=1``, without mypy in the build environment, or
when the C build fails, the package installs without it and ``goworld.entity.aoi`` runs the
source (``goworld.entity.aoi.COMPILED`` says which).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

COMPILED_MODULES = ["goworld/entity/aoi_grid.py"]


def mypyc_extensions() -> list[Extension]:
    if os.environ.get("GOWORLD_NO_MYPYC", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("setup.py: mypyc is not available; aoi_grid stays pure Python", file=sys.stderr)
        return []
    try:
        extensions: list[Extension] = mypycify(COMPILED_MODULES, opt_level="3")
    except (Exception, SystemExit) as exc:  # mypy found an error: build without
        print(f"setup.py: mypyc failed ({exc!r}); aoi_grid stays pure Python", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True  # a failed C compile leaves the pure-Python module
    return extensions


setup(ext_modules=mypyc_extensions())

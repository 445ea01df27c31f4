"""Debian's chromium for the browser tests (driven by Playwright), and the flags it needs here
(running as root: no sandbox; no GPU; nothing that reaches the network on its own)."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

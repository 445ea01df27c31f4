"""Builds the kcp-go test peer (tests/goworld/net/kcp_peer, a test tool, not project code).

Shared by tests/goworld/net/test_kcp.py and tests/integration/test_lockstep_kcp_go.py. The
peer is built with ``go build`` (GOPATH mode against Debian's golang-github-xtaci-kcp-dev when
installed, else through the Go module proxy) and cached in ~/.cache/goworld-test/ under a hash
of its sources and the Go version. What happens when it cannot be built is decided by
:func:`require_kcp_peer` alone.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = ["require_kcp_peer"]

KCP_PEER_DIR = Path(__file__).parent / "kcp_peer"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goworld-test"

#: Debian's golang-github-xtaci-kcp-dev (kcp-go v5.6.1, same FEC framing as GoWorld's
#: v5.4.19) installs the sources here; scripts/install-test-deps installs it.
DEBIAN_GOCODE = Path("/usr/share/gocode")
DEBIAN_KCP_GO = DEBIAN_GOCODE / "src/github.com/xtaci/kcp-go"


def _build_with_debian_sources(go: str, tmp: Path) -> tuple[bool, str]:
    """GOPATH build against Debian's packaged kcp-go (its import path gets its /v5 alias)."""
    gopath = tmp / "gopath"
    alias = gopath / "src/github.com/xtaci/kcp-go/v5"
    alias.parent.mkdir(parents=True)
    alias.symlink_to(DEBIAN_KCP_GO)
    src = gopath / "src/kcp_peer"
    src.mkdir(parents=True)
    shutil.copy2(KCP_PEER_DIR / "main.go", src / "main.go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{gopath}:{DEBIAN_GOCODE}", "GOFLAGS": ""}
    return _go_build(go, src, tmp / "kcp_peer", env, "Debian's golang-github-xtaci-kcp-dev")


def _build_with_modules(go: str, tmp: Path) -> tuple[bool, str]:
    src = tmp / "src"
    shutil.copytree(KCP_PEER_DIR, src)
    env = {**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false"}
    return _go_build(go, src, tmp / "kcp_peer", env, "github.com/xtaci/kcp-go/v5 v5.4.19 (Go modules)")


def _go_build(go: str, src: Path, out: Path, env: dict[str, str], origin: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            [go, "build", "-o", str(out), "."],
            cwd=src, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"building the kcp-go test peer from {origin} timed out"
    if proc.returncode != 0:
        return False, (
            f"could not build the kcp-go test peer from {origin}; `go build` said:\n"
            f"{proc.stderr.strip()[-3000:]}"
        )
    return True, ""


@functools.cache
def _build_kcp_peer() -> tuple[Path | None, str]:
    """Build (or find in the cache) the kcp-go peer: (path, "") or (None, why not)."""
    go = shutil.which("go")
    if go is None:
        return None, "the Go toolchain is not on PATH; it is needed to build the kcp-go test peer"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        path = KCP_PEER_DIR / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    digest.update(version.encode())
    digest.update(str(DEBIAN_KCP_GO.is_dir()).encode())
    target = CACHE_DIR / f"kcp_peer-{digest.hexdigest()[:16]}"
    if target.exists():
        return target, ""
    with tempfile.TemporaryDirectory() as tmp:
        if DEBIAN_KCP_GO.is_dir():
            ok, why = _build_with_debian_sources(go, Path(tmp))
        else:
            ok, why = _build_with_modules(go, Path(tmp))
        if not ok:
            return None, why
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy2(Path(tmp) / "kcp_peer", partial)
        os.replace(partial, target)
    return target, ""


def require_kcp_peer() -> Path:
    """The kcp-go peer, or a FAILED test saying why it could not be built.

    scripts/install-test-deps installs Debian's kcp-go sources, so a missing peer is a broken
    setup, not a reason to skip. (The Go module proxy here refuses github.com/xtaci/kcp-go/v5,
    so the module build is only a fallback for machines without Debian's package.)
    """
    path, reason = _build_kcp_peer()
    if path is None:
        pytest.fail(reason, pytrace=False)
    return path

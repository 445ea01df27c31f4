"""Regenerate goworld/rpc/cluster_pb2*.py from goworld/rpc/cluster.proto.

The generated modules are committed (so a plain install needs no code generation); run this
after editing the .proto. tests/goworld/rpc/test_generated.py checks they are up to date.

Usage: python scripts/gen_proto.py [OUTPUT_ROOT]   (default: the repository root)
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "goworld/rpc/cluster.proto"


def generate(out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        PROTO,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)

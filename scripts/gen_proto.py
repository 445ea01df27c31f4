"""Regenerate the committed protobuf modules from their .proto files.

* goworld/rpc/cluster.proto -> goworld/rpc/cluster_pb2.py, .pyi and cluster_pb2_grpc.py
* goworld/lockstep/lockstep.proto -> goworld/lockstep/lockstep_pb2.py and .pyi (no services)

The generated modules are committed (so a plain install needs no code generation); run this
after editing a .proto. tests/goworld/rpc/test_cluster_schema.py and
tests/goworld/lockstep/test_schema.py check they are up to date.

Usage: python scripts/gen_proto.py [OUTPUT_ROOT]   (default: the repository root)
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
#: (proto file relative to ROOT, whether it declares gRPC services)
PROTOS = [
    ("goworld/rpc/cluster.proto", True),
    ("goworld/lockstep/lockstep.proto", False),
]


def generate(out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    for proto, services in PROTOS:
        args = [
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"-I{include}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
        ]
        if services:
            args.append(f"--grpc_python_out={out_root}")
        args.append(proto)
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)

"""Regenerate the committed protobuf code in shared/pb from proto/.

Run as `python scripts/gen_proto.py [OUTDIR]`; with no OUTDIR it rewrites shared/pb in place.
The freshness test runs it into a temporary folder and compares bytes, so the generators are
pinned in pyproject.toml. Imports are rewritten from `cagnet.v1` to `shared.pb.cagnet.v1`
because the .proto package names stay short and stable on the wire.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "shared" / "pb"


def generate(out: Path) -> None:
    # The mypy-protobuf plugins are console scripts beside this interpreter.
    bindir = Path(sys.executable).parent
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = out / "cagnet"
        if target.exists():
            shutil.rmtree(target)
        for path in sorted(Path(tmp).rglob("*.py*")):
            rel = path.relative_to(tmp)
            text = path.read_text()
            text = re.sub(r"\bfrom cagnet\.v1 import\b", "from shared.pb.cagnet.v1 import", text)
            text = re.sub(r"\bimport cagnet\.v1\.", "import shared.pb.cagnet.v1.", text)
            text = re.sub(r"\bcagnet\.v1\.(\w+_pb2)\b", r"shared.pb.cagnet.v1.\1", text)
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
        for pkg in [out / "cagnet", out / "cagnet" / "v1"]:
            (pkg / "__init__.py").write_text("")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)

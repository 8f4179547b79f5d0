"""The committed protobuf code is exactly what the pinned generators make from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True)
    committed = ROOT / "shared" / "pb" / "cagnet"
    fresh = tmp_path / "cagnet"
    names = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert names == sorted(
        p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    stale = [str(n) for n in names if (fresh / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"regenerate with `make proto`: stale {stale}"

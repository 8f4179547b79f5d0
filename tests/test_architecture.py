"""node/ and coordinator/ meet only over gRPC: neither imports the other, and shared/ imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("node", {"coordinator", "cagnet"}),
        ("coordinator", {"node", "cagnet"}),
        ("shared", {"node", "coordinator", "cagnet"}),
    ],
)
def test_no_forbidden_imports(package: str, forbidden: set[str]) -> None:
    bad = sorted(f"{path} imports {mod}" for path, mod in _imports(package) if mod in forbidden)
    assert not bad, bad

"""node/ and coordinator/ meet only over gRPC: neither imports the other, and shared/ imports neither.
No shipped code names a particular authority or CAG: members and reference data come from the
network's signed files and the shipped data files."""

from __future__ import annotations

import ast
import re
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


# A GSS code of an authority, district or region, or the name of one of the seed CAG's members.
NAMES_A_PLACE = re.compile(r"E1[0-9]{7}|E0[6-9][0-9]{6}|(?i:kent|medway|surrey|sussex|brighton|south[ _]east)")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (examples there are documentation)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _places_named(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string (docstrings aside) or name in `source` that names a place."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        if text and NAMES_A_PLACE.search(text):
            found.append((node.lineno, text))
    return found


@pytest.mark.parametrize("package", ["node", "coordinator", "shared", "cagnet"])
def test_no_shipped_code_names_an_authority(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for path in (ROOT / package).rglob("*.py")
        if "pb" not in path.relative_to(ROOT).parts  # generated from proto/
        for line, text in _places_named(path.read_text())
    ]
    assert not bad, bad


def test_the_check_catches_a_hard_coded_authority_but_not_a_docstring_example() -> None:
    source = '"""E.g. Kent."""\nKENT = "E10000016"\ndef f():\n    """Medway."""\n    return {"x": "South East CAG"}\n'
    assert sorted(_places_named(source)) == [(2, "E10000016"), (2, "KENT"), (5, "South East CAG")]

"""The shape the code must keep: node/ and coordinator/ meet only over gRPC (neither imports the
other, and shared/ imports neither); the kinds registry and the node's answers never import gRPC; no
import cycle between modules (tests/import_graph.py reads the graph). No shipped code names a
particular authority or CAG: members and reference data come from the network's signed files and
the shipped data files."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import import_graph

ROOT = Path(__file__).resolve().parent.parent


PACKAGES = ("node", "coordinator", "shared", "cagnet")


def _top(target: str) -> str:
    return target.split(".")[0]


def _is_grpc(target: str) -> bool:
    """grpc itself, its companions (grpc_health, grpc_status, ...) and the generated stubs."""
    return _top(target).startswith("grpc") or target.split(".")[-1].endswith("_grpc")


# What each package may not import. `cagnet` (the CLI and the demo) may import everything.
LAYERS = [
    ("node", lambda t: _top(t) in {"coordinator", "cagnet"}),
    ("coordinator", lambda t: _top(t) in {"node", "cagnet"}),
    ("shared", lambda t: _top(t) in {"node", "coordinator", "cagnet"}),
]

# Plain functions that are testable without gRPC: the kinds registry and the node's answers.
TRANSPORT_FREE = ["shared.kinds", "node.answers"]

# Cycles tolerated for now, each with the reason; a new one fails the test.
KNOWN_CYCLES = {
    # `cagnet demo` imports the demo lazily (start-up time), and the demo prints with the CLI's
    # renderers in cagnet/cli/, whose package __init__ wires every command: renderers in a module
    # outside cagnet/cli/ would end it.
    ("cagnet.cli", "cagnet.demo"),
}


@pytest.mark.parametrize(("package", "is_forbidden"), LAYERS, ids=[p for p, _ in LAYERS])
def test_no_forbidden_imports(package: str, is_forbidden: Callable[[str], bool]) -> None:
    bad = import_graph.forbidden(ROOT, package, is_forbidden)
    assert not bad, bad


@pytest.mark.parametrize("package", TRANSPORT_FREE)
def test_answers_and_kinds_never_import_grpc(package: str) -> None:
    folder = ROOT.joinpath(*package.split("."))
    if not folder.is_dir():
        pytest.skip(f"{package} does not exist yet")
    bad = import_graph.forbidden(ROOT, package, _is_grpc)
    assert not bad, bad


def test_no_import_cycles() -> None:
    found = import_graph.cycles(import_graph.graph(ROOT, PACKAGES))
    new = [c for c in found if tuple(c) not in KNOWN_CYCLES]
    assert not new, new


# --- the checks themselves, on a small synthetic tree with planted violations -------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


PLANTED = {
    "node/__init__.py": "",
    "node/store.py": "def open_store():\n    from node.migrations import STORE  # late\n    return STORE\n",
    "node/migrations/__init__.py": "from node.store import open_store\n",
    "node/answers/__init__.py": "",
    "node/answers/supply.py": "from shared.pb.cagnet.v1 import node_pb2_grpc\n",
    "node/answers/movement.py": "from . import supply\n",
    "node/rpc.py": "import grpc\nfrom coordinator.bundle import Bundle\n",
    "coordinator/__init__.py": "",
    "coordinator/bundle.py": "from shared.dsse import sign\nBundle = object\n",
    "shared/__init__.py": "",
    "shared/dsse.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shared.audit import Entry\n",
    "shared/audit.py": "from ..coordinator.bundle import Bundle\nfrom shared import dsse\n",
    "shared/kinds/__init__.py": "import grpc_health.v1\n",
}


def test_the_checks_catch_planted_violations(tmp_path: Path) -> None:
    root = _tree(tmp_path, PLANTED)
    edges = import_graph.graph(root, ["node", "coordinator", "shared"])
    # A late import closes a cycle; a TYPE_CHECKING one does not (shared.dsse <-> shared.audit).
    assert import_graph.cycles(edges) == [["node.migrations", "node.store"]]
    assert "node.answers.supply" in edges["node.answers.movement"]  # relative imports resolved
    layers = dict(LAYERS)
    assert import_graph.forbidden(root, "node", layers["node"]) == [
        "node/rpc.py:2 imports coordinator.bundle",
        "node/rpc.py:2 imports coordinator.bundle.Bundle",
    ]
    assert import_graph.forbidden(root, "shared", layers["shared"]) == [
        "shared/audit.py:1 imports coordinator.bundle",
        "shared/audit.py:1 imports coordinator.bundle.Bundle",
    ]
    assert import_graph.forbidden(root, "coordinator", layers["coordinator"]) == []
    assert import_graph.forbidden(root, "node.answers", _is_grpc) == [
        "node/answers/supply.py:1 imports shared.pb.cagnet.v1.node_pb2_grpc"
    ]
    assert import_graph.forbidden(root, "shared.kinds", _is_grpc) == [
        "shared/kinds/__init__.py:1 imports grpc_health.v1"
    ]


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

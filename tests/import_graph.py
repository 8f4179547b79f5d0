"""The project's import graph read from source with `ast` (nothing is imported): which module
imports which, for the architecture contracts in tests/test_architecture.py. Every import counts,
at the top of a module or inside a function (a late import still closes a cycle when it runs),
except those under `if TYPE_CHECKING:`, which never run."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "node.store"
    path: Path  # its file, relative to the root
    line: int
    target: str  # the imported name in full, e.g. "node.ledger.SqlReleaseStore" or "grpc"


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of `packages` under `root` by dotted name (a package by its __init__.py),
    generated protobuf code (any folder named pb) aside."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "pb" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name | ast.Attribute):
            name = node.test.id if isinstance(node.test, ast.Name) else node.test.attr
            if name == "TYPE_CHECKING":
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def imports(root: Path, packages: Iterable[str]) -> Iterator[Import]:
    """Every import statement's targets, relative imports resolved."""
    for module, path in modules(root, packages).items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = _type_checking_only(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        rel = path.relative_to(root)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, rel, node.lineno, alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                yield Import(module, rel, node.lineno, base)
                for alias in node.names:
                    yield Import(module, rel, node.lineno, f"{base}.{alias.name}")


def graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """module -> the project modules it imports. Importing a.b.c also runs a and a.b (their
    __init__), so those count too, except a package the importer is itself inside."""
    packages = list(packages)
    known = modules(root, packages)
    edges: dict[str, set[str]] = {m: set() for m in known}
    for imp in imports(root, packages):
        target = imp.target
        while target and target not in known:
            target = target.rpartition(".")[0]
        if not target:
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in known and name != imp.module and not imp.module.startswith(name + "."):
                edges[imp.module].add(name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        # Recursive: the project's import chains are a few dozen deep at most.
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def forbidden(root: Path, package: str, is_forbidden: Callable[[str], bool]) -> list[str]:
    """'path:line imports target' for every import in `package` (a dotted name, e.g. "node" or
    "node.answers") whose target `is_forbidden(target)` says is not allowed."""
    top = package.split(".")[0]
    return sorted(
        {
            f"{imp.path}:{imp.line} imports {imp.target}"
            for imp in imports(root, [top])
            if (imp.module == package or imp.module.startswith(package + ".")) and is_forbidden(imp.target)
        }
    )

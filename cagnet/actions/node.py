"""A member node's folder as its officer works on it: its manifest and store, its audit log and the
names of the parties in it, and an import checked (and, when every row is good, written, and the
standard table set protected again for the records): what `cagnet node import | audit |
completeness` and the console's node pages call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import NodeConfig
    from node.imports.check import Check
    from shared.manifest import Manifest

__all__ = [
    "KINDS",
    "audit_log",
    "check_file",
    "in_node",
    "node_manifest",
    "node_store",
    "party_names",
    "protect_edition",
]

KINDS = ("providers", "services", "contracts", "client-records", "outcomes", "kpi1-returns", "occupancy-returns")


def node_manifest(config: NodeConfig) -> Manifest:
    """The node's current manifest, from its verified chain."""
    from node.network.governance import node_manifests

    return node_manifests(config).current()


def node_store(nodedir: Path) -> tuple[NodeConfig, Engine]:
    """The node's configuration and its store, opened (the caller disposes of the engine)."""
    from node.config import load_config
    from node.store import ensure_authority, open_store
    from shared.authorities import register_of

    config = load_config(nodedir)
    engine = open_store(config.database_url)
    ensure_authority(engine, authority_code=config.authority, register=register_of(node_manifest(config)))
    return config, engine


def audit_log(nodedir: Path) -> Engine:
    return node_store(nodedir)[1]


def party_names(nodedir: Path) -> dict[str, str]:
    """The names the node's verified manifest chain gives the parties its audit log names."""

    from node.config import load_config
    from node.network.governance import node_manifests

    names: dict[str, str] = {}
    for manifest, _ in node_manifests(load_config(nodedir)).history:
        names.update({p.id: p.name for p in manifest.parties})
    return names


def in_node(nodedir: Path, path: Path) -> Path:
    """A mapping profile named as given, else in the node folder (where profiles are kept)."""
    if path.exists() or path.is_absolute():
        return path
    return nodedir / path


def check_file(
    nodedir: Path,
    kind: str,
    file: Path,
    *,
    dry_run: bool,
    sheet: str | None = None,
    encoding: str = "auto",
    mapping: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> tuple[Check, Engine]:
    """Check a file as an import of `kind` into the node's store, and with `dry_run` False write it
    when every row is good (all or nothing): what `cagnet node import` and the console's imports
    page both do. Returns the check (preview, counts, every problem) and the open store; a mapping
    profile that cannot be used raises ImportError_."""
    from node.client_records import PersonSealer, load_person_key
    from node.imports.check import check_import
    from node.imports.mapping import Translator, load_profile
    from shared.authorities import register_of

    config, engine = node_store(nodedir)
    register = register_of(node_manifest(config))
    try:
        profile = load_profile(in_node(nodedir, mapping)) if mapping is not None else None
    except BaseException:
        engine.dispose()
        raise
    translator = Translator(profile, register=register)
    sealer = PersonSealer(load_person_key(config.person_key_path)) if kind == "client-records" else None
    check = check_import(
        engine,
        kind=kind,
        path=file,
        dry_run=dry_run,
        sealer=sealer,
        register=register,
        translator=translator,
        sheet=sheet,
        encoding=encoding,  # type: ignore[arg-type]  # checked against ENCODINGS by the callers
        progress=progress,
        on_phase=on_phase,
    )
    if not dry_run and not check.problems:
        if on_phase is not None:
            on_phase("protecting")
        protect_edition(config, engine)
    return check, engine


def protect_edition(config: NodeConfig, engine: Engine) -> bool:
    """The standard table set protected again for the records just written (a new edition, kept in
    the store, so the node's next standard question is a lookup). False when the network's policy
    has no set, or the node has no valid policy yet (it protects the set when it starts)."""
    from node.editions_build import prepare_edition
    from shared.errors import Unavailable

    try:
        return prepare_edition(config, engine)
    except Unavailable:
        return False  # the records are written; the serving node protects the set at its start

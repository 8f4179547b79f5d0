"""`cagnet node ...`: what an authority's SP team runs on its own node."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cagnet.cli.audit import audit_app
from shared.logs import LogFormat

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import NodeConfig
    from shared.manifest import Manifest

app = typer.Typer(help="Run and manage one authority's node.", no_args_is_help=True)

err = Console(stderr=True)
NodeDir = Annotated[Path, typer.Argument(help="The node folder made by `cagnet node init`.")]


def _manifest(config: NodeConfig) -> Manifest:
    from node.network.governance import node_manifests

    return node_manifests(config).current()


def _engine(nodedir: Path):  # type: ignore[no-untyped-def]
    from node.config import load_config
    from node.store import ensure_authority, open_store
    from shared.authorities import register_of

    config = load_config(nodedir)
    engine = open_store(config.database_url)
    ensure_authority(engine, authority_code=config.authority, register=register_of(_manifest(config)))
    return config, engine


def _audit_log(nodedir: Path) -> Engine:
    return _engine(nodedir)[1]


def _party_names(nodedir: Path) -> dict[str, str]:
    """The names the node's verified manifest chain gives the parties its audit log names."""

    from node.config import load_config
    from node.network.governance import node_manifests

    names: dict[str, str] = {}
    for manifest, _ in node_manifests(load_config(nodedir)).history:
        names.update({p.id: p.name for p in manifest.parties})
    return names


app.add_typer(
    audit_app(
        about="The node's hash-chained audit log.",
        metavar="NODEDIR",
        folder_help="The node folder made by `cagnet node init`.",
        open_log=_audit_log,
        principal_names=lambda nodedir: _party_names(nodedir),
    ),
    name="audit",
)


@app.command("synth")
def synth(
    nodedir: NodeDir,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 1,
    clients: Annotated[
        int | None, typer.Option(help="How many client records (default: about 3.9 per 1,000 people a year).")
    ] = None,
    no_clients: Annotated[bool, typer.Option("--no-clients", help="Load supply only, no client records.")] = False,
) -> None:
    """Load realistic synthetic providers, services and contracts for this node's authority, sized by
    its population in the network's register, and client records and outcomes for the financial
    years 2008-09 and 2009-10 (sharing repeat movers with the network's members as listed now)."""

    from node.client_records import load_person_key
    from node.synthetic import supply as synth_mod
    from shared.authorities import register_of

    if clients is not None and clients < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--clients")
    config, engine = _engine(nodedir)
    manifest = _manifest(config)
    with err.status(f"generating synthetic data for {config.authority} (seed {seed})"):
        counts = synth_mod.load(
            engine,
            authority_code=config.authority,
            seed=seed,
            person_key=load_person_key(config.person_key_path),
            clients=clients,
            with_clients=not no_clients,
            register=register_of(manifest),
            members=[p.id for p in manifest.members],
        )
    err.print(f"[green]loaded[/] {counts}")


KINDS = ("providers", "services", "contracts", "client-records", "outcomes")


@app.command("import")
def import_(
    nodedir: NodeDir,
    kind: Annotated[str, typer.Argument(help="providers, services, contracts, client-records or outcomes")],
    file: Annotated[Path, typer.Argument(help="A CSV file (UTF-8; an Excel BOM is fine).", exists=False)],
) -> None:
    """Import a CSV file: every row is checked, and nothing is written unless every row is good.
    Import providers, services and contracts, then client records, then outcomes."""

    from node.client_records import PersonSealer, load_person_key
    from node.imports.records import import_client_records, import_outcomes
    from node.imports.supply import ImportSummary, import_csv
    from shared.authorities import register_of

    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="KIND")
    config, engine = _engine(nodedir)
    with Progress(
        TextColumn(f"importing {file.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("import", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary: ImportSummary
        if kind == "client-records":
            # The person fields are sealed under this node's own key as they are read.
            sealer = PersonSealer(load_person_key(config.person_key_path))
            register = register_of(_manifest(config))
            summary = import_client_records(engine, path=file, sealer=sealer, progress=tick, register=register)
        elif kind == "outcomes":
            summary = import_outcomes(engine, path=file, progress=tick)
        else:
            summary = import_csv(engine, kind=kind, path=file, progress=tick)  # type: ignore[arg-type]
    err.print(f"[green]imported[/] {summary}")


@app.command("upgrade")
def upgrade(nodedir: NodeDir) -> None:
    """Bring the node database to this cagnet's schema, in place (back it up first). Prints each
    schema's revision before and after; running it again changes nothing."""

    from node.config import load_config
    from node.migrations import STORE
    from node.store import store_engine
    from shared.migrate import missing_sqlite_file, upgrade_database

    config = load_config(nodedir)
    missing = missing_sqlite_file(config.database_url)
    if missing is not None:
        err.print(f"no node database at {missing} yet: the first command that opens it makes it at this revision")
        return
    engine = store_engine(config.database_url)
    try:
        upgrade_database(engine, STORE, err.print)
    finally:
        engine.dispose()
    err.print("[green]the node database is up to date[/]")


LogFormatOpt = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        help="text, or json for one object per line (default: log_format in node.toml, else text).",
    ),
]


@app.command("serve")
def serve_(nodedir: NodeDir, log_format: LogFormatOpt = None) -> None:
    """Serve this node's aggregates over mTLS until stopped (Ctrl-C or SIGTERM). Metrics are
    served on metrics_listen when node.toml (or CAGNET_NODE_METRICS_LISTEN) sets it."""

    from node.config import load_config
    from node.rpc.server import serve
    from shared import logs

    config = load_config(nodedir)
    if log_format is not None:
        config = config.model_copy(update={"log_format": log_format.value})
    logs.configure(config.log_format)
    # Through the log, not the console: with --log-format json every line on stderr is one object.
    logging.getLogger("cagnet.node").info("node %s listening on %s", config.authority, config.listen)
    serve(config)


@app.command("backup")
def backup_(
    nodedir: NodeDir,
    out: Annotated[Path, typer.Option("--out", help="The archive to write (a new file; .tar.gz).")],
) -> None:
    """Back up the node while it serves: a consistent copy of its database (audit log and release
    ledger included), its keys, node.toml and the network manifest, with a SHA-256 for every file.
    The archive holds the node's PRIVATE KEYS: keep it encrypted and off the node's host."""

    from node.backup import backup
    from node.config import load_config

    config = load_config(nodedir)
    with err.status(f"backing up {config.authority}'s node"):
        summary = backup(config, out)
    err.print(
        f"[green]backed up[/] {summary.authority}: {summary.files} files, database "
        f"{summary.database_bytes:,} bytes, audit log {summary.audit_entries} entries (chain verified)"
    )
    err.print(f"wrote {summary.path} (mode 0600), SHA-256 {summary.sha256}")
    err.print("[bold red]this archive holds the node's private keys[/]: keep it encrypted and off this host")


@app.command("restore")
def restore_(
    archive: Annotated[Path, typer.Argument(help="An archive written by `cagnet node backup`.")],
    nodedir: Annotated[Path, typer.Argument(help="A new (absent or empty) folder for the restored node.")],
    database_url: Annotated[
        str | None,
        typer.Option(
            help="An empty database to restore into (default: CAGNET_NODE_DATABASE_URL, else NODEDIR/node.db "
            "for an SQLite node, else the node's own PostgreSQL URL)."
        ),
    ] = None,
) -> None:
    """Restore a node from a backup: every file is checked against the archive's SHA-256 list and
    the audit log against its recorded head before anything is written."""
    from node.backup import restore

    summary = restore(archive, nodedir, database_url=database_url)
    err.print(
        f"[green]restored[/] {summary.authority}'s node into {summary.nodedir}: {summary.files} files, "
        f"audit log {summary.audit_entries} entries (chain verified)"
    )
    err.print(f"database: {summary.database_url}")
    err.print(f"next: cagnet node audit verify {nodedir}, then cagnet node serve {nodedir}")


@app.command("sync-manifest")
def sync_manifest(
    nodedir: NodeDir,
    endpoint: Annotated[str | None, typer.Option(help="The coordinator (default: as the manifest says).")] = None,
) -> None:
    """Fetch the coordinator's latest manifest now; accept it only as the next verified version(s)
    of this node's own chain (`cagnet node serve` does this every manifest_poll_s seconds)."""
    from node.network.governance import Member

    with Member(nodedir, endpoint=endpoint) as member:
        synced = member.sync()
    if synced.accepted:
        err.print(f"[green]accepted[/] manifest versions {', '.join(map(str, synced.accepted))}")
    err.print(f"manifest version {synced.version} in force")


def node_init(
    nodedir: Annotated[Path, typer.Argument(help="An empty folder for this node.")],
    network_dir: Annotated[Path, typer.Option("--network", help="The network folder to join.")],
    authority: Annotated[
        str, typer.Option(help="The authority's GSS code (2011), as the network's register lists it.")
    ],
    endpoint: Annotated[str, typer.Option(help="host:port this node will listen on.")],
    linkage_key: Annotated[
        Path | None,
        typer.Option(
            help="The network linkage key, copied from a member node (identity/linkage.key). The first"
            " member leaves it out and a new key is made; the coordinator must never hold it."
        ),
    ] = None,
) -> None:
    """Create a node's keys and configuration and admit it to the network (founding phase), or
    write its join request for `cagnet network propose-join` (a governed network)."""
    from cagnet.cli.governance import write_join_request
    from coordinator import network
    from node.answers import linkage
    from node.config import complete_join, init_node
    from shared import pki

    # Refuse a file that is not a key before anything is made.
    key = linkage.load_linkage_key(linkage_key) if linkage_key is not None else None
    request = init_node(
        nodedir,
        authority=authority,
        endpoint=endpoint,
        manifest_path=network.manifest_path(network_dir),
        linkage_key=key,
        register=network.read_register(network_dir),
    )
    if key is None:
        err.print(
            f"made a new network linkage key in {nodedir / 'identity' / 'linkage.key'}: give a copy to each"
            " member that joins (`--linkage-key`), never to the coordinator"
        )
    if network.read(network_dir).governed:
        signed = write_join_request(nodedir, request)
        err.print(
            f"node {request.name} ({authority}) created in {nodedir}; the network is governed by its members:"
            f" hand {signed} to a member authority, who runs `cagnet network propose-join {signed} --node"
            f" THEIR_NODEDIR`; once a quorum approves, `cagnet node complete-join {nodedir} --network {network_dir}`"
        )
        return
    cert, ca_cert, manifest = network.admit(network_dir, request)
    complete_join(
        nodedir,
        cert_pem=pki.cert_pem(cert),
        ca_pem=pki.cert_pem(ca_cert),
        coordinator_key=network.coordinator_key_b64(network_dir),
    )
    err.print(
        f"[green]node {request.name} ({authority})[/] created in {nodedir}, "
        f"listed in manifest version {manifest.version}"
    )

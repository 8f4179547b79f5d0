"""`cagnet node ...`: what an authority's SP team runs on its own node."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cagnet.actions.node import KINDS, check_file, protect_edition
from cagnet.actions.node import audit_log as _audit_log
from cagnet.actions.node import node_manifest as _manifest
from cagnet.actions.node import node_store as _engine
from cagnet.actions.node import party_names as _party_names
from cagnet.cli.audit import audit_app
from cagnet.cli.common import stdout_console
from shared.logs import LogFormat

app = typer.Typer(help="Run and manage one authority's node.", no_args_is_help=True)

err = stdout_console(stderr=True)  # piped into a log, a message stays whole
KINDS_HELP = "providers, services, contracts, client-records, outcomes, kpi1-returns or occupancy-returns"
NodeDir = Annotated[Path, typer.Argument(help="The node folder made by `cagnet node init`.")]


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
    with err.status("protecting the standard table set for the records as they are now"):
        if protect_edition(config, engine):
            err.print("the standard table set is protected for these records (a new edition)")


@app.command("import")
def import_(
    nodedir: NodeDir,
    kind: Annotated[str, typer.Argument(help=KINDS_HELP)],
    file: Annotated[
        Path, typer.Argument(help="A CSV file (UTF-8, UTF-8 with BOM or Windows-1252) or an Excel workbook (.xlsx).")
    ],
    sheet: Annotated[str | None, typer.Option(help="The worksheet to read (default: the first).")] = None,
    encoding: Annotated[
        str, typer.Option(help="auto (UTF-8, else Windows-1252, and said), utf-8 or windows-1252.")
    ] = "auto",
    mapping: Annotated[
        Path | None, typer.Option(help="A mapping profile (TOML) for the source system: `cagnet node mapping suggest`.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and check everything, show a preview, write nothing.")
    ] = False,
    errors: Annotated[Path | None, typer.Option(help="Write every problem to this CSV file (opens in Excel).")] = None,
) -> None:
    """Import a CSV or Excel file: every row is checked, and nothing is written unless every row is
    good. Import providers, services and contracts, then client records, then outcomes; the quarterly
    KPI 1 and occupancy returns after the services they are for."""
    from node.imports.check import linkable_by_provider, write_error_report
    from node.imports.present import show_check
    from node.imports.reading import ENCODINGS
    from shared.errors import ImportError_

    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="KIND")
    if encoding not in ENCODINGS:
        raise typer.BadParameter(f"must be one of {', '.join(ENCODINGS)}", param_hint="--encoding")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{'checking' if dry_run else 'reading'} {file.name}", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        def phase(step: str) -> None:
            # Reading locks nothing; a large file on SQLite is then built beside the table a little
            # at a time, and only the last step holds the store's write lock (node.imports.swap).
            if dry_run:
                return
            if step == "staged":
                progress.update(task, description=f"writing {file.name} to the store")
            elif step == "building":
                progress.update(task, description=f"writing {file.name} beside the store's table (it still answers)")
            elif step == "built":
                progress.update(task, description=f"swapping {file.name}'s rows in")
            elif step == "protecting":
                progress.update(task, description="protecting the standard table set for the records as they are now")

        try:
            check, engine = check_file(
                nodedir,
                kind,
                file,
                dry_run=dry_run,
                sheet=sheet,
                encoding=encoding,
                mapping=mapping,
                progress=tick,
                on_phase=phase,
            )
        except ImportError_ as exc:
            err.print(f"[red]the mapping profile cannot be used[/]:{exc.detail}")
            raise typer.Exit(2) from None
    show_check(err, check, dry_run=dry_run)
    if errors is not None and check.problems:
        write_error_report(check.problems, errors)
        err.print(f"every problem ({len(check.problems)}) is in {errors}")
    if check.problems:
        raise typer.Exit(1)
    if kind == "client-records" and not dry_run:
        shares = linkable_by_provider(engine)
        if any(linked < n for _, _, n, linked in shares):
            err.print("client records that can be linked across authorities (surname, initial and date of birth):")
            for ref, name, n, linked in shares:
                err.print(f"  {ref} {name}: {linked:,} of {n:,} ({100 * linked / n:.0f}%)")


mapping_app = typer.Typer(help="Mapping profiles: how a source system's export becomes cagnet's columns.")
app.add_typer(mapping_app, name="mapping")


@mapping_app.command("suggest")
def mapping_suggest(
    file: Annotated[Path, typer.Argument(help="An export of the source system (CSV or .xlsx).")],
    kind: Annotated[str | None, typer.Option(help="The kind of file (default: found from its headers).")] = None,
    node: Annotated[
        Path | None, typer.Option(help="The node folder: its district names and the network's register.")
    ] = None,
    sheet: Annotated[str | None, typer.Option(help="The worksheet to read (default: the first).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the profile here (default: print it).")] = None,
) -> None:
    """Propose a mapping profile from a file's headers and values, for the officer to read and
    edit: each header matched to a cagnet column, each listed value against the vocabulary."""
    from node.config import load_config
    from node.imports.suggest import suggest_profile
    from shared.authorities import register_of

    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="--kind")
    authority = register = None
    if node is not None:
        config = load_config(node)
        register = register_of(_manifest(config))
        authority = register.authority(config.authority)
    suggestion = suggest_profile(file, kind=kind, sheet=sheet, authority=authority, register=register)
    for problem in suggestion.problems:
        err.print(f"[red]{problem}[/]")
    if suggestion.problems:
        raise typer.Exit(1)
    text = suggestion.toml(file.name)
    if suggestion.read_as:
        err.print(f"{file.name}: {suggestion.read_as}; read as {suggestion.kind}")
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}: read every line marked CHECK or FILL IN, then `cagnet node import ... --dry-run`")


@app.command("template")
def template(
    kind: Annotated[str, typer.Argument(help=KINDS_HELP)],
    out: Annotated[Path, typer.Option("--out", help="The workbook to write (.xlsx).")],
    node: Annotated[
        Path | None, typer.Option(help="The node folder: its districts, and the register's authorities.")
    ] = None,
) -> None:
    """Write an Excel template for one kind of import: the columns, a notes row, and drop-down
    lists of the values each column accepts."""
    from node.config import load_config
    from node.imports.template import write_template
    from shared.authorities import register_of, shipped_register

    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="KIND")
    authority = None
    register = shipped_register()
    if node is not None:
        config = load_config(node)
        register = register_of(_manifest(config))
        authority = register.authority(config.authority)
    write_template(kind, out, authority=authority, register=register)
    err.print(f"wrote {out}: fill in the sheet {kind!r} from row 3, then `cagnet node import NODEDIR {kind} {out}`")


@app.command("completeness")
def completeness_(
    nodedir: NodeDir,
    from_date: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD.")] = None,
    year: Annotated[
        int | None, typer.Option(help="A financial year by its first calendar year: 2009 is April 2009 to March 2010.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Also write the report as CSV, for Excel.")] = None,
) -> None:
    """Per provider and service: client records and outcomes received each quarter against units,
    the share with unknown origin, the share linkable, and the services that sent nothing: the
    list for chasing returns (default: the latest four quarters with records)."""
    import csv
    import json
    from datetime import date

    from node import completeness as report_mod

    first, last = _day(from_date, "--from"), _day(to_date, "--to")
    if year is not None:
        if first or last:
            raise typer.BadParameter("give --year or --from/--to, not both", param_hint="--year")
        first, last = date(year, 4, 1), date(year + 1, 3, 31)
    _, engine = _engine(nodedir)
    try:
        report = report_mod.completeness(engine, first_day=first, last_day=last)
    finally:
        engine.dispose()
    if csv_file is not None:
        with csv_file.open("w", newline="", encoding="utf-8-sig") as f:  # with a BOM: Excel reads it as UTF-8
            csv.writer(f).writerows(report_mod.csv_rows(report))
        err.print(f"wrote {csv_file}")
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    stdout_console().print(report_mod.table(report))
    nothing = report.sent_nothing
    if nothing:
        err.print(f"[bold]{len(nothing)} services sent nothing[/] in {', '.join(report.quarters)}:")
        for s in nothing:
            err.print(f"  {s.provider} ({s.provider_ref}): {s.service} ({s.service_ref}), {s.units} {s.service_type}")
    else:
        err.print("every service with units sent client records in the period")


def _day(value: str | None, option: str):  # type: ignore[no-untyped-def]
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a date in the form YYYY-MM-DD: {value!r}", param_hint=option) from None


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
    if config.transport == "dial-out":
        logging.getLogger("cagnet.node").info("node %s dials out to the coordinator (no port open)", config.authority)
    else:
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
    dial_out: Annotated[
        bool,
        typer.Option(
            "--dial-out",
            help="Open no inbound port: the node holds a connection to the coordinator and is asked on it;"
            " the manifest lists it so (docs/onboarding.md, Firewall).",
        ),
    ] = False,
) -> None:
    """On one machine (a demo or a test network): create a node's keys and configuration beside the
    operator's network folder and admit it (founding phase), or write its join request for
    `cagnet network propose-join` (a governed network). An authority on its own machine joins with
    `cagnet node join --invite`, founding members included."""
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
        transport="dial-out" if dial_out else "listen",
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

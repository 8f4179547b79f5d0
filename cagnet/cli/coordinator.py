"""`cagnet coordinator ...`: run the coordinator, bring its databases up to date, read its audit log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cagnet.cli.audit import audit_app
from cagnet.cli.common import err
from shared import logs

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)


@app.command("serve")
def coordinator_serve(
    netdir: Annotated[Path, typer.Argument()],
    listen: Annotated[
        str | None, typer.Option(help="host:port (default: the manifest's coordinator endpoint).")
    ] = None,
    onboarding: Annotated[
        str | None,
        typer.Option(
            help="host:port of the onboarding port, where joining authorities with an invite connect"
            " (default: onboarding_listen in coordinator.toml; off when neither is given)."
        ),
    ] = None,
    log_format: Annotated[
        logs.LogFormat | None,
        typer.Option(
            "--log-format",
            help="text, or json for one object per line (default: log_format in coordinator.toml, else text).",
        ),
    ] = None,
) -> None:
    """Run the coordinator until stopped (Ctrl-C or SIGTERM). Metrics are served on metrics_listen
    when coordinator.toml (or CAGNET_COORDINATOR_METRICS_LISTEN) sets it."""

    from coordinator import network
    from coordinator.migrations import check_databases
    from coordinator.server import serve
    from coordinator.settings import CoordinatorSettings

    settings = CoordinatorSettings.load(netdir)  # a bad setting is reported before anything starts
    logs.configure(log_format.value if log_format is not None else settings.log_format)
    check_databases(netdir)  # and so is a database that needs `cagnet coordinator upgrade`
    address = listen or network.read(netdir).coordinator_endpoint
    onboarding_address = onboarding or settings.onboarding_address
    # Through the log, not the console: with --log-format json every line on stderr is one object.
    logging.getLogger("cagnet.coordinator").info(
        "coordinator listening on %s (mTLS)%s",
        address,
        f", onboarding on {onboarding_address} (TLS)" if onboarding_address else "",
    )
    serve(netdir, listen=address, onboarding_listen=onboarding_address)


@app.command("upgrade")
def coordinator_upgrade(
    netdir: Annotated[Path, typer.Argument(help="The network folder the coordinator serves.")],
) -> None:
    """Bring the coordinator's databases (register, feeds, audit log) to this cagnet's schema, in place
    (back them up first). Prints each schema's revision before and after; running it again changes nothing."""

    from sqlalchemy import create_engine

    from coordinator import network
    from coordinator.migrations import databases
    from shared.migrate import missing_sqlite_file, upgrade_database

    if not network.manifest_path(netdir).is_file():
        raise typer.BadParameter(f"{netdir} is not a network folder (no manifest)", param_hint="NETDIR")
    for store, url in databases(netdir):
        missing = missing_sqlite_file(url)
        if missing is not None:
            err.print(f"{store.title}: none at {missing} yet (made at this revision when first used)")
            continue
        engine = create_engine(url)
        try:
            upgrade_database(engine, store, err.print)
        finally:
            engine.dispose()
    err.print("[green]the coordinator's databases are up to date[/]")


def _audit_log(netdir: Path) -> Engine:
    from coordinator import audit as coordinator_audit
    from coordinator import network
    from shared import audit as shared_audit

    if not network.manifest_path(netdir).is_file():
        raise typer.BadParameter(f"{netdir} is not a network folder (no manifest)", param_hint="NETDIR")
    return shared_audit.open_log(coordinator_audit.database_url(netdir))


def _party_names(netdir: Path) -> dict[str, str]:
    from coordinator import network

    return network.party_names(netdir)


app.add_typer(
    audit_app(
        about="The coordinator's hash-chained audit log: every call to its services, and every scheduled snapshot.",
        metavar="NETDIR",
        folder_help="The network folder the coordinator serves.",
        open_log=_audit_log,
        principal_names=_party_names,
    ),
    name="audit",
)

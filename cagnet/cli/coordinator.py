"""`cagnet coordinator ...`: run the coordinator, bring its databases up to date, read its audit log."""

from __future__ import annotations

import logging
import sys
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
    advertise: Annotated[
        str | None,
        typer.Option(
            help="host:port the manifest is to list for the coordinator, when it is not the one listed: a new"
            " manifest version (founding phase). Without it, a --listen that differs from the listed address"
            " asks first (and is refused when nobody is there to answer).",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Publish the --listen address without asking (scripts).")] = False,
) -> None:
    """Run the coordinator until stopped (Ctrl-C or SIGTERM). Metrics are served on metrics_listen
    when coordinator.toml (or CAGNET_COORDINATOR_METRICS_LISTEN) sets it. The manifest's coordinator
    address changes only when you say so (--advertise, or --yes/confirming a new --listen address):
    nodes and kits find the coordinator there, and one made earlier follows a change only while it
    can still reach the old address (docs/deploy.md)."""

    from coordinator import network
    from coordinator.migrations import check_databases
    from coordinator.server import serve
    from coordinator.settings import CoordinatorSettings

    settings = CoordinatorSettings.load(netdir)  # a bad setting is reported before anything starts
    logs.configure(log_format.value if log_format is not None else settings.log_format)
    check_databases(netdir)  # and so is a database that needs `cagnet coordinator upgrade`
    listed = network.read(netdir).coordinator_endpoint
    address = listen or listed
    advertise = advertise or _advertised(listed, address, yes=yes)
    onboarding_address = onboarding or settings.onboarding_address
    # Through the log, not the console: with --log-format json every line on stderr is one object.
    logging.getLogger("cagnet.coordinator").info(
        "coordinator listening on %s (mTLS)%s",
        address,
        f", onboarding on {onboarding_address} (TLS)" if onboarding_address else "",
    )
    serve(netdir, listen=address, onboarding_listen=onboarding_address, advertise=advertise)


def _advertised(listed: str, listen: str, *, yes: bool) -> str | None:
    """The address to publish for a coordinator told to --listen where the manifest does not say,
    after asking; None to keep the listed one. A listed address with port 0 (a network made with
    one to be filled in) takes the --listen address; a wildcard host on the listed port keeps it."""
    if listen == listed:
        return None
    port = listed.rpartition(":")[2]
    if not listed or port == "0":
        return listen
    listen_host, _, listen_port = listen.rpartition(":")
    if listen_port == port and listen_host.strip("[]") in ("0.0.0.0", "::", ""):
        return None  # every interface, the listed port: the listed address still reaches it
    question = (
        f"The manifest lists the coordinator at {listed}; nodes and kits look for it there. Publish {listen} as its "
        "address in a new manifest version?"
    )
    if yes or (sys.stdin.isatty() and typer.confirm(question)):
        return listen
    raise typer.BadParameter(
        f"{listen} is not the coordinator's address in the manifest ({listed}). Give --advertise {listen} (or --yes) "
        f"to publish it, or --advertise {listed} to listen on {listen} while the manifest keeps {listed} (behind a "
        "proxy or NAT). Nodes and kits follow a new address only while they can still reach the old one: in a "
        "governed network, members approve `cagnet network propose-endpoint coordinator HOST:PORT` first.",
        param_hint="--listen",
    )


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

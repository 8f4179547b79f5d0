"""`cagnet network ...`, `cagnet coordinator ...`, `cagnet query ...` and `cagnet verify`:
what the network operator and a CAG chair run."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from coordinator import bundle as bundle_mod
from coordinator import network
from coordinator.bundle import Bundle, verify_bundle

network_app = typer.Typer(help="Create and inspect a network folder.", no_args_is_help=True)
coordinator_app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)
query_app = typer.Typer(help="Joint queries across the member nodes (as the CAG chair).", no_args_is_help=True)

out = Console()
err = Console(stderr=True)


def _default_network() -> Path | None:
    env = os.environ.get("CAGNET_NETWORK")
    return Path(env) if env else None


NetworkOpt = Annotated[Path | None, typer.Option("--network", help="The network folder (default: $CAGNET_NETWORK).")]


def _netdir(value: Path | None) -> Path:
    netdir = value or _default_network()
    if netdir is None:
        raise typer.BadParameter("give --network NETDIR or set CAGNET_NETWORK", param_hint="--network")
    return netdir


@network_app.command("init")
def network_init(
    netdir: Annotated[Path, typer.Argument(help="An empty folder for the network's keys and manifest.")],
    name: Annotated[str, typer.Option(help="The network's name.")] = "South East CAG",
    coordinator_endpoint: Annotated[
        str, typer.Option(help="host:port the coordinator will listen on.")
    ] = "127.0.0.1:7100",
) -> None:
    """Create a network: its CA, the coordinator's identity, a cag-chair principal and the manifest."""
    manifest = network.init_network(netdir, name=name, coordinator_endpoint=coordinator_endpoint)
    err.print(f"[green]network {manifest.network!r} created[/] in {netdir} (manifest version {manifest.version})")


@network_app.command("show")
def network_show(netdir: Annotated[Path, typer.Argument()]) -> None:
    """List the parties in the (verified) manifest."""
    manifest = network.read(netdir)
    table = Table(title=f"{manifest.network}: manifest version {manifest.version}")
    for col in ("party", "name", "roles", "endpoint", "key id"):
        table.add_column(col)
    for p in manifest.parties:
        table.add_row(p.id, p.name, ",".join(p.roles), p.endpoint, p.keyid[:16])
    out.print(table)


@coordinator_app.command("serve")
def coordinator_serve(
    netdir: Annotated[Path, typer.Argument()],
    listen: Annotated[
        str | None, typer.Option(help="host:port (default: the manifest's coordinator endpoint).")
    ] = None,
) -> None:
    """Run the coordinator until stopped (Ctrl-C or SIGTERM)."""
    from coordinator.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address = listen or network.read(netdir).coordinator_endpoint
    err.print(f"coordinator listening on {address}")
    serve(netdir, listen=address)


def render_supply_map(bundle: Bundle, console: Console) -> None:
    r = bundle.result
    codes = [a.authority for a in r.authorities]
    names = {a.authority: a.name for a in r.authorities}
    totals = Table(title=f"{bundle.network}: joint supply map (manifest v{bundle.manifest_version})")
    for col in ("authority", "population", "services", "units", "designated services"):
        totals.add_column(col, justify="right" if col != "authority" else "left")
    for a in r.authorities:
        totals.add_row(a.name, f"{a.population:,}", f"{a.services:,}", f"{a.units:,}", f"{a.designated_services:,}")
    totals.add_row("[bold]CAG[/]", f"{r.population:,}", f"{r.services:,}", f"{r.units:,}", f"{r.designated_services:,}")
    console.print(totals)

    rates = Table(title="Units per 1,000 population by client group (shortfall against the CAG rate, in units)")
    rates.add_column("client group")
    for code in codes:
        rates.add_column(names[code], justify="right")
    rates.add_column("CAG", justify="right")
    for g in r.client_groups:
        cells = []
        for code in codes:
            short = g.shortfall[code]
            mark = f" [red](-{short:,})[/]" if short > 0 else ""
            cells.append(f"{g.rates[code]:.2f}{mark}")
        rates.add_row(f"{g.client_group:>2} {g.name}", *cells, f"{g.cag_rate:.2f}")
    console.print(rates)
    _render_coverage(bundle, console)


def _render_coverage(bundle: Bundle, console: Console) -> None:
    console.print(f"answered: {', '.join(bundle.answered) or 'none'}")
    if bundle.missing:
        for m in bundle.missing:
            console.print(f"[yellow]missing[/]: {m.authority} — {m.reason}")
        console.print("[yellow]CAG figures above cover only the authorities that answered.[/]")


@query_app.command("supply-map")
def query_supply_map(
    network_dir: NetworkOpt = None,
    by_district: Annotated[bool, typer.Option(help="Break down by district as well.")] = False,
    deadline_ms: Annotated[int, typer.Option(help="Per-node deadline (0: the coordinator's default).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verified bundle as JSON.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Save the signed bundle for `cagnet verify`.")] = None,
    principal: Annotated[str, typer.Option(help="The principal to act as.")] = "cag-chair",
) -> None:
    """The joint supply map: per-authority and CAG supply, rates per 1,000 and gaps."""
    from coordinator.client import joint_query

    netdir = _netdir(network_dir)
    bundle, envelope = joint_query(
        netdir, kind="supply-map", principal=principal, by_district=by_district, node_deadline_ms=deadline_ms
    )
    if out_file is not None:
        bundle_mod.save(out_file, envelope, network_dir=netdir)
        err.print(f"signed bundle saved to {out_file} (check it with `cagnet verify {out_file}`)")
    if as_json:
        print(json.dumps(bundle.model_dump(mode="json"), indent=2))
    else:
        render_supply_map(bundle, out)


def verify(
    file: Annotated[Path, typer.Argument(help="A bundle saved with `cagnet query ... --out FILE`.")],
    network_dir: NetworkOpt = None,
) -> None:
    """Re-check a saved bundle offline: every signature, every binding, and the combined result."""
    envelope, hint = bundle_mod.load(file)
    netdir = network_dir or _default_network() or hint
    if netdir is None:
        raise typer.BadParameter("the file names no network folder; give --network", param_hint="--network")
    manifest = network.read(netdir)
    bundle = verify_bundle(envelope, manifest)
    out.print(
        f"[green]verified[/]: {bundle.kind} bundle from {bundle.network}, "
        f"{len(bundle.contributions)} signed contributions ({', '.join(bundle.answered)}), "
        f"result recomputed and identical; missing: {', '.join(m.authority for m in bundle.missing) or 'none'}"
    )

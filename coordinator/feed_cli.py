"""`cagnet feed publish` (as the CAG chair) and `cagnet feed subscribe` (as a regional board)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from coordinator.cli import NetworkOpt, _netdir, err, out
from coordinator.feeds import FeedSnapshot
from shared import vocabulary

feed_app = typer.Typer(help="The signed sub-regional feed for regional housing boards.", no_args_is_help=True)


def render_snapshot(snapshot: FeedSnapshot) -> None:
    table = Table(title=f"{snapshot.network}: feed snapshot {snapshot.sequence} ({snapshot.published_at})")
    for col in ("client group", "units", "per 1,000", "from outside CAG", "between CAG auth.", "KPI 2"):
        table.add_column(col, justify="left" if col == "client group" else "right")
    flows = {f.client_group: f for f in snapshot.flows}
    kpi = {k.client_group: k for k in snapshot.kpi2}
    for row in snapshot.supply:
        f, k = flows.get(row.client_group), kpi.get(row.client_group)
        table.add_row(
            f"{row.client_group} {vocabulary.CLIENT_GROUPS[row.client_group]}"[:30],
            f"{row.units:,}",
            f"{row.units_per_1000:.2f}",
            "-" if f is None else ("" if f.from_outside.complete else "≥") + f"{f.from_outside.count:,}",
            "-" if f is None else ("" if f.between_authorities.complete else "≥") + f"{f.between_authorities.count:,}",
            "-" if k is None or k.percent_planned is None else f"{k.percent_planned:.0f}%",
        )
    out.print(table)
    by_status = ", ".join(f"{s} {n}" for s, n in snapshot.providers.by_status.items()) or "none logged"
    out.print(f"providers in the accreditation register: {by_status}")
    out.print(f"authorities: {', '.join(snapshot.authorities)}; policy {snapshot.policy_digest[:19]}…")
    for m in snapshot.missing:
        out.print(f"[yellow]missing[/]: {m.authority} — {m.reason}")


@feed_app.command("publish")
def feed_publish(
    network_dir: NetworkOpt = None,
    from_date: Annotated[str, typer.Option("--from", help="Client records from this day (YYYY-MM-DD).")] = "",
    to_date: Annotated[str, typer.Option("--to", help="Client records to this day (YYYY-MM-DD).")] = "",
    principal: Annotated[str, typer.Option(help="The principal to act as (a CAG chair).")] = "cag-chair",
) -> None:
    """Sign the feed's joint queries as the CAG chair; the coordinator runs them and stores a snapshot."""
    from coordinator.feed_client import publish

    snapshot = publish(_netdir(network_dir), principal=principal, from_date=from_date, to_date=to_date)
    err.print(f"[green]snapshot {snapshot.sequence} published[/] and verified")
    render_snapshot(snapshot)


@feed_app.command("subscribe")
def feed_subscribe(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the snapshots (JSON, CSV, signed envelope).")],
    network_dir: NetworkOpt = None,
    follow: Annotated[bool, typer.Option(help="Keep waiting for new snapshots until stopped.")] = False,
    principal: Annotated[str, typer.Option(help="The principal to act as.")] = "regional-board",
) -> None:
    """Fetch, verify and write every snapshot after those already in --out (resuming where it left off)."""
    from coordinator.feed_client import subscribe

    written = subscribe(
        _netdir(network_dir),
        out_dir,
        principal=principal,
        follow=follow,
        on_snapshot=lambda s: err.print(f"snapshot {s.sequence} verified and written"),
    )
    err.print(f"{len(written)} new snapshot(s) in {out_dir}")

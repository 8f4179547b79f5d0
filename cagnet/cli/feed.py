"""`cagnet feed publish`, `authorise`, `mandate` and `revoke` (as the CAG chair) and `cagnet feed
subscribe` (as a regional board)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cagnet.actions.labels import currency_lines, snapshot_periods
from cagnet.cli.common import NetworkOpt, _netdir, err, out

if TYPE_CHECKING:
    from coordinator.feeds.snapshot import FeedSnapshot, KpiRow
    from shared.mandate import FeedMandate

feed_app = typer.Typer(help="The signed sub-regional feed for regional housing boards.", no_args_is_help=True)


def _kpi(k: KpiRow | None) -> str:
    if k is None:
        return "-"
    if k.percent_planned is not None:
        return f"{k.percent_planned:.0f}%"
    # A percentage with a suppressed part is withheld, never worked out from "at least" counts.
    return "-" if k.planned.complete and k.departures.complete else "[yellow]withheld[/]"


def render_snapshot(snapshot: FeedSnapshot) -> None:
    from shared import vocabulary

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
            _kpi(k),
        )
    out.print(table)
    out.print(snapshot_periods(snapshot))
    out.print("[dim]≥: a suppressed count is left out of the sum. KPI 2 withheld: a part is suppressed.[/]")
    by_status = ", ".join(f"{s} {n}" for s, n in snapshot.providers.by_status.items()) or "none logged"
    out.print(f"providers in the accreditation register: {by_status} (on {snapshot.providers.on})")
    for line in currency_lines(snapshot.currency):
        out.print(f"[dim]{line}[/]")
    out.print(f"authorities: {', '.join(snapshot.authorities)}; policy {snapshot.policy_digest[:19]}…")
    for m in snapshot.missing:
        out.print(f"[yellow]missing[/]: {m.authority} — {m.reason}")


@feed_app.command("publish")
def feed_publish(
    network_dir: NetworkOpt = None,
    from_date: Annotated[str, typer.Option("--from", help="Client records from this day (YYYY-MM-DD).")] = "",
    to_date: Annotated[str, typer.Option("--to", help="Client records to this day (YYYY-MM-DD).")] = "",
    principal: Annotated[
        str, typer.Option(help="The principal to act as, a CAG chair (default: a kit's own, else cag-chair).")
    ] = "",
) -> None:
    """Sign the feed's joint queries as the CAG chair; the coordinator runs them and stores a snapshot."""
    from coordinator.feeds.client import publish

    snapshot = publish(_netdir(network_dir), principal=principal, from_date=from_date, to_date=to_date)
    err.print(f"[green]snapshot {snapshot.sequence} published[/] and verified")
    render_snapshot(snapshot)


def _when(value: str, option: str, *, end_of_day: bool) -> datetime:
    """A day (YYYY-MM-DD: its start, or with `end_of_day` the start of the next) or a time (ISO 8601,
    UTC unless it says otherwise)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1 if end_of_day else 0)
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a day (YYYY-MM-DD) or an ISO 8601 time", param_hint=option
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def render_mandate(mandate: FeedMandate) -> None:
    from shared.mandate import format_interval

    starts, ends = mandate.not_before.isoformat(), mandate.not_after.isoformat()
    out.print(
        f"mandate {mandate.mandate_id} signed by {mandate.chair} for {mandate.network}: a snapshot every "
        f"{format_interval(mandate.interval_s)} from {starts} to {ends}"
    )
    for q in mandate.queries:
        if q.kind == "supply-map":
            out.print(f"  {q.kind} (supply as it stands)")
            continue
        records = (
            f"client records from {q.from_date or 'the first'} to {q.to_date or 'the last'}"
            if q.from_date or q.to_date
            else "all client records"
        )
        out.print(f"  {q.kind} ({records}, period {q.period})")


@feed_app.command("authorise")
def feed_authorise(
    every: Annotated[str, typer.Option(help="How often the coordinator may publish: 7d, 24h, 30m, ...")],
    network_dir: NetworkOpt = None,
    until: Annotated[
        str, typer.Option(help="The last day (YYYY-MM-DD, inclusive) or time it holds; default one year.")
    ] = "",
    starting: Annotated[
        str, typer.Option(help="When the first slot begins (YYYY-MM-DD or ISO time); default now.")
    ] = "",
    from_date: Annotated[str, typer.Option("--from", help="Client records from this day (YYYY-MM-DD).")] = "",
    to_date: Annotated[str, typer.Option("--to", help="Client records to this day (YYYY-MM-DD).")] = "",
    principal: Annotated[
        str, typer.Option(help="The principal to act as, a CAG chair (default: a kit's own, else cag-chair).")
    ] = "",
) -> None:
    """Sign a standing mandate for the coordinator's schedule to publish the feed's queries, at most
    once an interval, until it ends or is revoked; it replaces any mandate before it."""

    from coordinator.feeds.client import authorise
    from shared.mandate import format_interval, parse_interval

    try:
        every_s = parse_interval(every)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--every") from None
    not_before = _when(starting, "--starting", end_of_day=False) if starting else datetime.now(UTC)
    not_after = _when(until, "--until", end_of_day=True) if until else not_before + timedelta(days=365)
    if not_after <= not_before:
        raise typer.BadParameter("the mandate must end after it starts", param_hint="--until")
    mandate, path = authorise(
        _netdir(network_dir),
        every_s=every_s,
        not_before=not_before,
        not_after=not_after,
        principal=principal,
        from_date=from_date,
        to_date=to_date,
    )
    err.print(f"[green]mandate signed[/] and written to {path}")
    render_mandate(mandate)
    err.print(
        f"The coordinator publishes under it when its settings say `publish_every` (at least "
        f"{format_interval(every_s)}) in the \\[feed] section of coordinator.toml; `cagnet feed revoke` ends it."
    )


@feed_app.command("mandate")
def feed_mandate(network_dir: NetworkOpt = None) -> None:
    """Show the mandate the coordinator's schedule publishes under (verified), if any."""
    from coordinator.feeds.client import current_mandate, mandate_path

    netdir = _netdir(network_dir)
    found = current_mandate(netdir)
    if found is None:
        err.print(f"no mandate at {mandate_path(netdir)}: the coordinator publishes no scheduled snapshots")
        return
    render_mandate(found[0])


@feed_app.command("revoke")
def feed_revoke(network_dir: NetworkOpt = None) -> None:
    """Remove the mandate: the coordinator's schedule publishes nothing more under it."""
    from coordinator.feeds.client import revoke

    netdir = _netdir(network_dir)
    mandate, path = revoke(netdir)
    if mandate is None:
        err.print(f"no valid mandate was at {path}; there is none now: the schedule publishes nothing")
    else:
        # The commands exactly as they run, with this folder filled in: the member's node is yours to name.
        rotate = f"cagnet network rotate-key {mandate.chair} --network {netdir} --node NODEDIR --overlap-days 0"
        roles = f"cagnet network propose-roles {mandate.chair} --role regional-board --network {netdir} --node NODEDIR"
        err.print(
            f"[green]mandate {mandate.mandate_id} revoked[/]: removed from {path}. A coordinator that kept a copy "
            f"could still use it until {mandate.not_after.isoformat()}. To end it at every node, a member authority "
            f"(NODEDIR: its node's folder) proposes rotating the chair's key:\n  {rotate}\nor taking away its "
            f"cag-chair role:\n  {roles}\nand a quorum approves (docs/feeds.md).",
            soft_wrap=True,
        )


@feed_app.command("subscribe")
def feed_subscribe(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the snapshots (JSON, CSV, signed envelope).")],
    network_dir: NetworkOpt = None,
    follow: Annotated[bool, typer.Option(help="Keep waiting for new snapshots until stopped.")] = False,
    principal: Annotated[
        str, typer.Option(help="The principal to act as (default: a kit's own, else regional-board).")
    ] = "",
) -> None:
    """Fetch, verify and write every snapshot after those already in --out (resuming where it left off)."""
    from coordinator import network
    from coordinator.feeds.client import subscribe

    netdir = _netdir(network_dir)
    written = subscribe(
        netdir,
        out_dir,
        principal=principal or network.kit_principal(netdir) or "regional-board",
        follow=follow,
        on_snapshot=lambda s: err.print(f"snapshot {s.sequence} verified and written"),
    )
    err.print(f"{len(written)} new snapshot(s) in {out_dir}")

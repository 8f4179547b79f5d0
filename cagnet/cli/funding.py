"""`cagnet query fair-shares | grant`: what a CAG needs for a commissioning discussion about money.
The designated cross-authority services and each member's share of their intake (the figure a
joint funding split starts from), and each authority's SP grant beside its contracted spend with a
projected grant scenario. Each prints tables, or with `--json` the verified bundle (and for the
grant the analysis worked out from it); `--out FILE` keeps the signed bundle for `cagnet verify`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cagnet.actions.asking import member_asker
from cagnet.actions.labels import query_of
from cagnet.cli.common import AskerOpt, FormatOpt, PrincipalOpt, _netdir, err, label_cap, out
from cagnet.cli.query import _render_coverage
from cagnet.cli.records import (
    DeadlineOpt,
    FromOpt,
    GroupOpt,
    JsonOpt,
    OutOpt,
    ToOpt,
    _abbrev,
    _ask,
    _table,
    _whole_period_command,
    span_label,
)

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle
    from shared.grant import GrantAnalysis
    from shared.reference import ReferenceData


def render_fair_shares(bundle: Bundle, console: Console) -> None:
    from shared.kinds.fair_shares import OUTSIDE, JointFairShares

    r = bundle.result
    assert isinstance(r, JointFairShares)
    origins = [*r.authorities, OUTSIDE]
    table = _table(
        f"Designated cross-authority services and each authority's share of their intake, {span_label(bundle)}"
    )
    for col in ("host", "group", "type", "service", "units", "intake"):
        table.add_column(col, overflow="fold", max_width=label_cap(console, 18) if col == "service" else None)
    for origin in origins:
        table.add_column("outside" if origin == OUTSIDE else _abbrev(origin), no_wrap=True, justify="right")
    for hosted in r.services:
        s = hosted.service
        shares = [s.shares.get(o, "") for o in origins] if s.shares else ["-"] * len(origins)
        table.add_row(
            _abbrev(hosted.host),
            str(s.client_group),
            s.service_type,
            s.name,
            f"{s.units:,}",
            s.intake_band or "too small",
            *shares,
        )
    console.print(table)
    console.print(
        f"[dim]{len(r.services)} designated services, {r.units:,} units; shares given for {r.described}, withheld"
        f" for {r.withheld} whose intake is too small to describe. Shares are of the intake whose previous"
        " authority is known, in fixed bands; 'few' is a count within the small-count threshold, none included."
        " Domestic violence services are shown without provider, name or district.[/]"
    )
    _render_coverage(bundle, console)


query_fair_shares = _whole_period_command(
    "fair-shares",
    render_fair_shares,
    "Designated cross-authority services (type, group, capacity, host) and, for each with enough intake over the"
    " period, each member authority's share of it in bands: where a joint funding split starts.",
)


def _money(value: int | None) -> str:
    return "*" if value is None else f"£{value:,}"


def _rate(value: float | None) -> str:
    return "*" if value is None else f"{value:,.2f}"


def render_grant(analysis: GrantAnalysis, console: Console) -> None:
    a = analysis
    scenario = any(x.change_percent for x in a.authorities)
    table = _table(f"SP grant {a.year} beside contracted spend a year")
    for col in (
        "authority",
        "population",
        "grant",
        "spend",
        "spend/grant",
        *(("change", "projected grant") if scenario else ()),
    ):
        table.add_column(col, justify="left" if col == "authority" else "right", no_wrap=True)
    for x in a.authorities:
        share = "-" if x.spend_share_of_grant is None else f"{x.spend_share_of_grant:.1f}%"
        grant = "no figure" if x.grant is None else _money(x.grant)
        extra = (f"{x.change_percent:+g}%", _money(x.projected_grant)) if scenario else ()
        table.add_row(x.name, f"{x.population:,}", grant, _money(x.spend), share, *extra)
    table.add_row("[bold]CAG[/]", "", _money(a.cag_grant), _money(a.cag_spend), "")
    console.print(table)

    types = _table("Spend per unit a week by service type, across the CAG")
    for col in ("service type", "units", "spend", "£/unit/week"):
        types.add_column(col, justify="left" if col == "service type" else "right", no_wrap=True)
    for t in a.service_types:
        types.add_row(t.service_type, f"{t.units:,}", _money(t.spend), _rate(t.per_unit_week))
    console.print(types)

    groups = _table("Spend per 1,000 population by client group, against the CAG's lower quartile")
    heads = ["group", "at", "units", "£/unit/week", "£ per 1,000", "CAG LQ"]
    heads += ["projected", "below LQ"] if scenario else ["below LQ"]
    for col in heads:
        groups.add_column(col, justify="left" if col in ("group", "at") else "right", no_wrap=True)
    for g in a.groups:
        flag = "[red]now[/]" if g.below_now else "[yellow]falls below[/]" if g.falls_below else ""
        cells = [_rate(g.projected_per_1000), flag] if scenario else [flag]
        groups.add_row(
            f"{g.client_group:>2} {g.name}"[:28],
            _abbrev(g.authority),
            f"{g.units:,}",
            _rate(g.per_unit_week),
            _rate(g.per_1000),
            _rate(g.cag_lower_quartile),
            *cells,
        )
    console.print(groups)
    falling = [g for g in a.groups if g.falls_below]
    if scenario:
        if falling:
            console.print("[yellow]Under the projected grant, these fall below the CAG's lower quartile:[/]")
            for g in falling:
                console.print(
                    f"  {_abbrev(g.authority)}: {g.client_group} {g.name} "
                    f"(£{g.per_1000:,.2f} -> £{g.projected_per_1000:,.2f} per 1,000; LQ £{g.cag_lower_quartile:,.2f})"
                )
        else:
            console.print("[green]Under the projected grant, no client group falls below the CAG's lower quartile.[/]")
    console.print(
        "[dim]Spend is contract value a year as each node released it (* withheld where a few providers dominate);"
        " the scenario moves each authority's spend with its grant. Grant figures are the network's signed"
        " reference data.[/]"
    )
    if a.no_grant_figure:
        console.print(f"[yellow]no SP grant figure for {a.year}[/]: {', '.join(a.no_grant_figure)}")


def query_grant(
    network_dir: AskerOpt = None,
    year: Annotated[
        int | None, typer.Option(help="The grant's year (default: the latest every authority has).")
    ] = None,
    grant_change: Annotated[
        list[str] | None,
        typer.Option(
            "--grant-change",
            help="A projected change to the grant in percent: CODE=PCT for one authority (repeat), or PCT for all.",
        ),
    ] = None,
    client_group: GroupOpt = None,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """Each authority's SP grant beside its contracted spend, spend per unit and per 1,000 by client
    group and service type, and with `--grant-change` which groups would fall below the CAG's lower
    quartile. Asks the joint supply map (the bundle `--out` saves); the grant comes from the manifest."""
    from coordinator import network
    from coordinator.joint import bundle as bundle_mod
    from coordinator.joint.client import joint_query
    from shared import dsse
    from shared.grant import grant_and_spend, parse_grant_changes
    from shared.kinds.supply import JointSupplyMap
    from shared.pb.cagnet.v1 import node_pb2
    from shared.reference import reference_of
    from shared.serde import supply_map_from_proto

    netdir = _netdir(network_dir)
    reference = reference_of(network.read(netdir))
    bundle, envelope = joint_query(
        netdir,
        member_asker=member_asker,
        kind="supply-map",
        principal=principal,
        client_groups=client_group or (),
        node_deadline_ms=deadline_ms,
    )
    if out_file is not None:
        bundle_mod.save(out_file, envelope, network_dir=netdir)
        err.print(f"signed bundle saved to {out_file} (check it with `cagnet verify {out_file}`)")
    assert isinstance(bundle.result, JointSupplyMap)
    # Each node's released map, from its signed contribution in the verified bundle.
    maps = [
        supply_map_from_proto(node_pb2.SupplyMapResponse.FromString(dsse.Envelope.from_json(c.response).payload))
        for c in bundle.contributions
    ]
    changes = parse_grant_changes(grant_change or [], bundle.answered)
    analysis = grant_and_spend(bundle.result, maps, reference, year=year, changes=changes)
    if as_json:
        print(
            json.dumps({"bundle": bundle.model_dump(mode="json"), "grant": analysis.model_dump(mode="json")}, indent=2)
        )
        return
    render_grant(analysis, out)
    _render_coverage(bundle, out)


def render_spend(bundle: Bundle, console: Console, reference: ReferenceData | None = None) -> None:
    from shared import vocabulary
    from shared.kinds.spend import JointSpend
    from shared.reference import GRANT

    r = bundle.result
    assert isinstance(r, JointSpend)
    query = query_of(bundle)
    year = int(query.from_date[:4]) if query.from_date[5:10] == "04-01" else None
    totals = {row.authority: row for row in r.rows if row.client_group == 0}
    table = _table(f"Contracted spend a year beside the SP grant, {span_label(bundle)}")
    for col in ("authority", "grant", "spend", "units", "£/unit/week", "new clients", "£/new client"):
        table.add_column(col, justify="left" if col == "authority" else "right", no_wrap=True)
    for code in (*r.authorities, ""):
        t = totals.get(code)
        if t is None:
            continue
        grant = reference.value(code, year, GRANT) if reference is not None and year and code else None
        if code == "" and reference is not None and year:
            grants = [reference.value(c, year, GRANT) for c in r.authorities]
            grant = None if any(g is None for g in grants) else sum(g for g in grants if g is not None)
        table.add_row(
            r.names.get(code, "[bold]CAG[/]"),
            "-" if grant is None else f"£{grant:,}",
            _money(t.annual_value),
            f"{t.units:,}",
            _rate(t.per_unit_week),
            "*" if t.clients is None else f"{t.clients:,}",
            _rate(t.per_client),
        )
    console.print(table)
    cells = _table("Spend per unit a week and per new client, by client group and service type (CAG, then each)")
    heads = ["client group", "service type", "CAG £/unit/wk", "CAG £/client", *(_abbrev(a) for a in r.authorities)]
    for col in heads:
        cells.add_column(col, justify="left" if col in ("client group", "service type") else "right", no_wrap=True)
    by_key = {(row.authority, row.client_group, row.service_type): row for row in r.rows}
    for row in r.rows:
        if row.authority or not row.service_type:
            continue
        at = [by_key.get((a, row.client_group, row.service_type)) for a in r.authorities]
        cells.add_row(
            f"{row.client_group:>2} {vocabulary.CLIENT_GROUPS[row.client_group]}"[:26],
            row.service_type,
            _rate(row.per_unit_week),
            _rate(row.per_client),
            *("-" if x is None else _rate(x.per_client) for x in at),
        )
    console.print(cells)
    console.print(
        "[dim]Money is contract value a year as each node released it under the money rules (minimum contributors,"
        " dominance, p%); new clients are rounded and small counts suppressed. A ratio is shown (*) withheld when"
        " either part is; a CAG figure when any authority's part is. Per new client in the period: read it for"
        " short-term services (long-term services take few new clients a year).[/]"
    )
    _render_coverage(bundle, console)


def query_spend(
    network_dir: AskerOpt = None,
    year: Annotated[
        int | None, typer.Option(help="A financial year by its first calendar year (2009: April 2009 - March 2010).")
    ] = None,
    from_date: FromOpt = "",
    to_date: ToOpt = "",
    client_group: GroupOpt = None,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """Spend per unit and per new client by client group and service type, from contract values
    released under the money rules, with each authority's SP grant for the year beside its spend."""
    from coordinator import network
    from shared.reference import reference_of

    if year is not None:
        if from_date or to_date:
            raise typer.BadParameter("give --year or --from/--to, not both", param_hint="--year")
        from_date, to_date = f"{year}-04-01", f"{year + 1}-03-31"
    bundle = _ask(
        "spend",
        network_dir,
        principal=principal,
        deadline_ms=deadline_ms,
        out_file=out_file,
        as_json=as_json,
        fmt=fmt,
        from_date=from_date,
        to_date=to_date,
        period="all",
        client_groups=client_group or (),
    )
    if bundle is not None:
        render_spend(bundle, out, reference_of(network.read(_netdir(network_dir))))


# `cagnet query ...` commands about money and shared services, in the order `--help` lists them.
QUERY_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("fair-shares", query_fair_shares),
    ("spend", query_spend),
    ("grant", query_grant),
)

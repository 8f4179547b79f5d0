"""`cagnet query kpi1 | utilisation | unmet-demand`: the CAG's joint questions about the services' quarterly
returns, as a CAG chair asks them. Each prints tables, or with `--json` the verified bundle;
`--out FILE` keeps the signed bundle for `cagnet verify`. `utilisation --cost` also asks the spend
question and shows the cost per occupied unit beside the cost per unit."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

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
    _abbrev,
    _ask,
    _group_label,
    _table,
    _whole_period_command,
)

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle
    from shared.kinds.records import Tally
    from shared.kinds.returns import OccupiedCost
    from shared.kinds.supply import JointSupplyMap

ToOpt = Annotated[str, typer.Option("--to", help="Last day of the period, YYYY-MM-DD (default: every return).")]


def _share(percent: float | None, part: Tally, whole: Tally) -> str:
    if percent is not None:
        return f"{percent:.1f}%"
    if part.complete and whole.complete:
        return "-"  # nothing reported
    return "[yellow]withheld[/]"


def _quarters_label(bundle: Bundle) -> str:
    query = query_of(bundle)
    if not query.from_date and not query.to_date:
        return "every quarterly return"
    return f"quarters from {query.from_date or 'the first return'} to {query.to_date or 'the latest return'}"


def render_kpi1(bundle: Bundle, console: Console) -> None:
    from shared.kinds.returns import CAG, JointKpi1

    r = bundle.result
    assert isinstance(r, JointKpi1)
    heads = [*r.authorities, CAG]
    table = _table(f"KPI 1: long-term services' users maintaining independent living, {_quarters_label(bundle)}")
    table.add_column("client group", overflow="fold", max_width=label_cap(console, 26))
    for head in heads:
        table.add_column(_abbrev(head), justify="right", no_wrap=True)
    cells = {(row.authority, row.client_group): row for row in r.rows}
    reasons = []
    for group in sorted({row.client_group for row in r.rows}, key=lambda g: (g == 0, g)):
        values = []
        for head in heads:
            row = cells.get((head, group))
            if row is None:
                values.append("")
                continue
            values.append(_share(row.percent_maintaining, row.maintaining, row.service_users))
            if head == CAG and row.percent_maintaining is None and row.reason:
                reasons.append(f"{_group_label(group)}: {row.reason}")
        table.add_row(_group_label(group), *values)
    console.print(table)
    console.print(
        "[dim]From each long-term service's quarterly KPI 1 return: users counted once a quarter (user-quarters)."
        " - : no users. withheld: a count is suppressed, so no share is worked out from it. Shares come from the"
        " released (rounded) counts.[/]"
    )
    for reason in reasons:
        console.print(f"  CAG withheld, {reason}")
    _render_coverage(bundle, console)


def render_utilisation(bundle: Bundle, console: Console, supply: JointSupplyMap | None = None) -> None:
    from shared.kinds.returns import CAG, JointUtilisation

    r = bundle.result
    assert isinstance(r, JointUtilisation)
    heads = [*r.authorities, CAG]
    cells = {(row.authority, row.client_group, row.service_type): row for row in r.rows}
    units = {t.service_type: t.units for t in supply.service_types} if supply is not None else {}
    if supply is not None:
        units[""] = supply.units
    reasons = []
    by_type = _table(f"Occupancy by service type, % of units in use occupied, {_quarters_label(bundle)}")
    by_type.add_column("service type", overflow="fold", max_width=label_cap(console, 26))
    for head in heads:
        by_type.add_column(_abbrev(head), justify="right", no_wrap=True)
    if supply is not None:
        by_type.add_column("CAG units", justify="right", no_wrap=True)
    types = sorted({row.service_type for row in r.rows if row.client_group == 0}, key=lambda t: (t == "", t))
    for service_type in types:
        values = []
        for head in heads:
            row = cells.get((head, 0, service_type))
            values.append("" if row is None else _share(row.percent_occupied, row.occupied, row.void))
            if head == CAG and row is not None and row.percent_occupied is None and row.reason:
                reasons.append(f"{service_type or 'every service type'}: {row.reason}")
        extra = [f"{units.get(service_type, 0):,}"] if supply is not None else []
        by_type.add_row(service_type or "every service type", *values, *extra)
    console.print(by_type)
    by_group = _table("Occupancy by client group, every service type")
    by_group.add_column("client group", overflow="fold", max_width=label_cap(console, 26))
    for head in heads:
        by_group.add_column(_abbrev(head), justify="right", no_wrap=True)
    for group in sorted({row.client_group for row in r.rows if row.client_group}):
        values = []
        for head in heads:
            row = cells.get((head, group, ""))
            values.append("" if row is None else _share(row.percent_occupied, row.occupied, row.void))
        by_group.add_row(_group_label(group), *values)
    console.print(by_group)
    console.print(
        "[dim]From each service's quarterly occupancy return: units occupied and void at each quarter's end"
        " (unit-quarters); units out of use are neither. - : none reported. withheld: a count is suppressed, so"
        " no rate is worked out from it. A low unit cost with low occupancy is not good value: read these beside"
        " the VFM benchmarks.[/]"
    )
    if supply is not None:
        console.print("[dim]CAG units: capacity by service type, from the joint supply map as it stands today.[/]")
    for reason in reasons:
        console.print(f"  CAG withheld, {reason}")
    _render_coverage(bundle, console)


def render_occupied_cost(cost: OccupiedCost, console: Console) -> None:
    """Cost per unit and per occupied unit a week by service type, at each authority and the CAG."""
    from shared.kinds.returns import CAG

    heads = [*cost.authorities, CAG]
    cells = {(row.authority, row.service_type): row for row in cost.rows if row.client_group == 0}
    table = _table(
        f"Cost per occupied unit a week by service type: £ a unit / % occupied / £ an occupied unit"
        f" (spend {cost.spend_period or 'as asked'}, occupancy {cost.occupancy_period or 'every return'})"
    )
    table.add_column("service type", overflow="fold", max_width=label_cap(console, 26))
    for head in heads:
        table.add_column(_abbrev(head), justify="right", no_wrap=True)

    def money(value: float | None) -> str:
        return "*" if value is None else f"{value:,.0f}"

    for service_type in sorted({t for _a, t in cells}, key=lambda t: (t == "", t)):
        values = []
        for head in heads:
            row = cells.get((head, service_type))
            if row is None:
                values.append("-")
                continue
            occupied = "*" if row.percent_occupied is None else f"{row.percent_occupied:.0f}%"
            values.append(f"{money(row.per_unit_week)} / {occupied} / {money(row.per_occupied_unit_week)}")
        table.add_row(service_type or "every service type", *values)
    console.print(table)
    console.print(
        "[dim]£ a unit a week is the contract value a year over the units (the spend answer, under the money rules:"
        " minimum contributors, dominance, p%); an occupied unit's is that over the share of units in use"
        " occupied at the quarters' ends. A low unit cost with low occupancy reads differently: each occupied"
        " unit costs more. * : withheld (a part is); - : no occupancy return for it. Read beside the VFM"
        " benchmarks (`cagnet query vfm`).[/]"
    )


def _count(tally: Tally) -> str:
    if tally.complete:
        return f"{tally.count:,}"
    return f"≥{tally.count:,}*" if tally.count else "*"


def render_unmet_demand(bundle: Bundle, console: Console) -> None:
    """People waiting at the quarters' ends and referrals refused, by service type and by client
    group, at each authority and across the CAG: two counts of people, never added together."""
    from shared.kinds.returns import CAG, JointUnmetDemand

    r = bundle.result
    assert isinstance(r, JointUnmetDemand)
    heads = [*r.authorities, CAG]
    cells = {(row.authority, row.client_group, row.service_type): row for row in r.rows}
    reasons = []
    for title, keys in (
        (
            f"Waiting list / referrals refused by service type, {_quarters_label(bundle)}",
            [(0, t) for t in sorted({row.service_type for row in r.rows}, key=lambda t: (t == "", t))],
        ),
        (
            "Waiting list / referrals refused by client group, every service type",
            [(g, "") for g in sorted({row.client_group for row in r.rows if row.client_group})],
        ),
    ):
        table = _table(title)
        table.add_column(
            "service type" if keys and keys[0][0] == 0 else "client group",
            overflow="fold",
            max_width=label_cap(console, 26),
        )
        for head in heads:
            table.add_column(_abbrev(head), justify="right", no_wrap=True)
        for group, service_type in keys:
            values = []
            for head in heads:
                row = cells.get((head, group, service_type))
                values.append("-" if row is None else f"{_count(row.waiting)} / {_count(row.refused)}")
                if head == CAG and row is not None and row.reason and group == 0:
                    reasons.append(f"{service_type or 'every service type'}: {row.reason}")
            label = (service_type or "every service type") if group == 0 else _group_label(group)
            table.add_row(label, *values)
        console.print(table)
    console.print(
        "[dim]From each service's quarterly occupancy return: people on the waiting list at each quarter's end"
        " (someone waiting at two quarters' ends counts twice), and referrals the service refused in the quarter."
        " Counts of people: small ones suppressed (refuges and refugees at their stricter threshold), the rest"
        " rounded. * : suppressed; ≥ : a CAG sum with a suppressed part. Read beside occupancy: a full service with"
        " a long list is short of units; a list beside voids says the referral route, not the supply, is the gap.[/]"
    )
    for reason in reasons:
        console.print(f"  CAG short, {reason}")
    _render_coverage(bundle, console)


query_kpi1 = _whole_period_command(
    "kpi1",
    render_kpi1,
    "KPI 1: long-term services' users maintaining independent living, by client group, per authority and CAG.",
)


query_unmet_demand = _whole_period_command(
    "unmet-demand",
    render_unmet_demand,
    "Unmet demand: people on services' waiting lists at the quarters' ends and referrals refused, by service type"
    " and client group, per authority and CAG (from the quarterly occupancy returns).",
)


def query_utilisation(
    network_dir: AskerOpt = None,
    from_date: FromOpt = "",
    to_date: ToOpt = "",
    client_group: GroupOpt = None,
    supply: Annotated[
        bool, typer.Option("--supply/--no-supply", help="Also ask the joint supply map, for the units beside.")
    ] = True,
    cost: Annotated[
        bool,
        typer.Option(
            "--cost",
            help="Also ask the spend question for the same dates and show the cost per unit and per occupied unit"
            " a week (--json: the utilisation bundle, the spend bundle and the costs; --format csv: their tables).",
        ),
    ] = False,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """Utilisation: occupancy by service type and client group, per authority and CAG, beside the
    CAG's units (the joint supply map); with `--cost`, the cost per occupied unit beside the cost
    per unit."""
    asked: dict[str, Any] = {
        "from_date": from_date,
        "to_date": to_date,
        "period": "all",
        "client_groups": client_group or (),
    }
    bundle = _ask(
        "utilisation",
        network_dir,
        principal=principal,
        deadline_ms=deadline_ms,
        out_file=out_file,
        as_json=as_json and not cost,
        fmt="table" if cost else fmt,
        **asked,
    )
    if bundle is None:
        return
    costs = None
    if cost:
        from shared.kinds.returns import JointUtilisation, occupied_unit_costs
        from shared.kinds.spend import JointSpend

        spend = _ask(
            "spend", network_dir, principal=principal, deadline_ms=deadline_ms, out_file=None, as_json=False, **asked
        )
        assert spend is not None and isinstance(spend.result, JointSpend)
        assert isinstance(bundle.result, JointUtilisation)
        costs = occupied_unit_costs(spend.result, bundle.result)
        if fmt == "csv" and not as_json:
            import sys

            from cagnet.actions.tables import model_tables, result_tables, tables_csv

            period = f"spend {costs.spend_period}; occupancy {costs.occupancy_period}"
            tables = [*result_tables(bundle), *model_tables("cost per occupied unit", costs, period)]
            sys.stdout.write(tables_csv(tables))
            return
        if as_json or fmt == "json":
            document = {
                "bundle": bundle.model_dump(mode="json"),
                "spend": spend.model_dump(mode="json"),
                "cost": costs.model_dump(mode="json"),
            }
            print(json.dumps(document, indent=2))
            return

    supply_map = None
    if supply:
        from coordinator.joint.client import joint_query
        from shared.errors import CagnetError
        from shared.kinds.supply import JointSupplyMap

        try:
            map_bundle, _ = joint_query(
                _netdir(network_dir),
                member_asker=member_asker,
                kind="supply-map",
                principal=principal,
                client_groups=client_group or (),
                node_deadline_ms=deadline_ms,
            )
        except CagnetError as exc:
            err.print(f"[yellow]the supply map was not answered[/]: {exc}")
        else:
            assert isinstance(map_bundle.result, JointSupplyMap)
            supply_map = map_bundle.result
    render_utilisation(bundle, out, supply_map)
    if costs is not None:
        render_occupied_cost(costs, out)


# `cagnet query ...` commands on quarterly returns, in the order `cagnet query --help` lists them.
QUERY_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("kpi1", query_kpi1),
    ("utilisation", query_utilisation),
    ("unmet-demand", query_unmet_demand),
)

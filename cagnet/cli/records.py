"""`cagnet query movement | net-flow | kpi | non-local-services | repeat-movers | plan`: the CAG's
joint questions about client records, as a CAG chair asks them, and which of them would be
answered now. Each prints tables, or with `--json` the verified bundle; `--out FILE` keeps the
signed bundle for `cagnet verify`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cagnet.actions.asking import member_asker
from cagnet.actions.labels import place_label, query_of, span_label
from cagnet.cli.common import (
    AskerOpt,
    FormatOpt,
    PrincipalOpt,
    _netdir,
    check_format,
    err,
    label_cap,
    out,
    print_bundle,
)
from cagnet.cli.query import _render_coverage

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle
    from shared.kinds.records import JointMovement, PlanRow, Tally

FromOpt = Annotated[str, typer.Option("--from", help="First day of the period, YYYY-MM-DD (default: all records).")]
ToOpt = Annotated[str, typer.Option("--to", help="Last day of the period, YYYY-MM-DD (default: all records).")]
GroupOpt = Annotated[
    list[int] | None,
    typer.Option("--client-group", "-g", help="Only this SP client group (1-21); repeat for several."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the verified bundle as JSON.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Save the signed bundle for `cagnet verify`.")]
DeadlineOpt = Annotated[int, typer.Option(help="Per-node deadline in ms (0: the coordinator's default).")]


def _ask(
    kind: str,
    network_dir: Path | None,
    *,
    principal: str,
    deadline_ms: int,
    out_file: Path | None,
    as_json: bool,
    fmt: str = "table",
    **question: object,
) -> Bundle | None:
    from coordinator.joint import bundle as bundle_mod
    from coordinator.joint.client import joint_query

    check_format(fmt)
    netdir = _netdir(network_dir)
    bundle, envelope = joint_query(
        netdir,
        member_asker=member_asker,
        kind=kind,
        principal=principal,
        node_deadline_ms=deadline_ms,
        **question,  # type: ignore[arg-type]
    )
    if out_file is not None:
        bundle_mod.save(out_file, envelope, network_dir=netdir)
        err.print(f"signed bundle saved to {out_file} (check it with `cagnet verify {out_file}`)")
    if print_bundle(bundle, "json" if as_json else fmt):
        return None
    return bundle


_JOINERS = frozenset({"and", "upon", "on", "of", "the", "with", "in"})


def _abbrev(code: str) -> str:
    """A column head short enough for seven columns in 80 characters, from the register's name:
    "Medway" -> "Med", "West Sussex" -> "WSx", "Brighton & Hove" -> "B&H", "Kent" -> "Kent"."""

    from shared import places

    try:
        name = places.place_name(code)
    except KeyError:
        return code
    if " & " in name:
        return "&".join(part[0] for part in name.split(" & "))
    words = [w for w in name.replace("-", " ").split() if w.lower() not in _JOINERS]
    if len(words) == 1:
        return name if len(name) <= 4 else name[:3]
    last = words[-1]
    return "".join(w[0] for w in words[:-1]) + last[0] + last[-1]


def _n(value: int | None) -> str:
    return "*" if value is None else f"{value:,}"


def _tally(t: Tally) -> str:
    return f"{t.count:,}" if t.complete else f"≥{t.count:,}"


def _intake(t: Tally | None) -> str:
    """A summed intake: "-" none asked of, "*" every part suppressed, "≥n" some parts suppressed."""
    if t is None:
        return "-"
    return "*" if not t.complete and t.count == 0 else _tally(t)


def _group_label(group: int) -> str:
    from shared import vocabulary

    return "all client groups" if group == 0 else f"{group} {vocabulary.CLIENT_GROUPS[group]}"


def _table(title: str) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def _periods_table(r: JointMovement, grain: str, console: Console) -> None:
    """New clients served in the CAG by client group, one column per financial year or quarter."""
    from shared.kinds.records import Tally

    periods = [p for p in r.periods if p not in ("all", "*")]
    if not periods:
        return
    unit = "financial quarter" if grain == "quarter" else "financial year"
    table = _table(f"New clients served in the CAG by client group, per {unit}")
    table.add_column("client group", overflow="fold", max_width=label_cap(console, 26))
    for period in periods:
        table.add_column(period, justify="right", overflow="fold")
    groups = sorted({int(key.split("|")[0]) for key in r.intake})
    totals = {p: Tally() for p in periods}
    for group in groups:
        cells = [r.intake.get(f"{group}|{p}") for p in periods]
        for p, t in zip(periods, cells, strict=True):
            if t is not None:  # a sum of sums: "at least" if any part was
                totals[p] = Tally(count=totals[p].count + t.count, complete=totals[p].complete and t.complete)
        table.add_row(_group_label(group), *(_intake(t) for t in cells))
    table.add_row(_group_label(0), *(_intake(totals[p]) for p in periods))
    console.print(table)


def render_movement(bundle: Bundle, console: Console) -> None:
    from shared.kinds.records import JointMovement

    r = bundle.result
    assert isinstance(r, JointMovement)
    span = span_label(bundle)
    if _filtered(bundle):
        grid = [(g, p) for g in sorted({f.client_group for f in r.flows if f.client_group}) for p in r.periods]
    else:
        grid = [(0, "*")]
    for group, period in grid:
        flows = {(f.origin, f.host): f.clients for f in r.flows if f.client_group == group and f.period == period}
        if flows:
            grain = "quarter" if " Q" in period else "year"
            when = f"{span}, every period together" if period in ("*", "all") else f"financial {grain} {period}"
            table = _table(f"New clients by previous authority → host: {_group_label(group)}, {when}")
            table.add_column("came from", overflow="fold", max_width=label_cap(console, 24))
            for host in r.hosts:
                table.add_column(_abbrev(host), justify="right", overflow="fold")
            for origin in r.origins:
                if any((origin, host) in flows for host in r.hosts):
                    table.add_row(place_label(origin), *(_n(flows.get((origin, h), 0)) for h in r.hosts))
            console.print(table)
    _periods_table(r, query_of(bundle).period, console)
    console.print(
        "[dim]Counts are rounded to 5 under the network policy; * is suppressed (a small number, or one that"
        " would let a small number be worked out). Origins outside the CAG are grouped by region.[/]"
    )
    _render_coverage(bundle, console)


def _filtered(bundle: Bundle) -> bool:
    return bool(query_of(bundle).client_groups)


def render_net_flow(bundle: Bundle, console: Console) -> None:
    from shared.kinds.records import JointNetFlow

    r = bundle.result
    assert isinstance(r, JointNetFlow)
    groups = sorted({row.client_group for row in r.rows})
    for group in [g for g in groups if g] + [0] if _filtered(bundle) else [0]:
        table = _table(f"Net import and export: {_group_label(group)}, {span_label(bundle)}")
        for col in ("authority", "imported", "exported", "net", ""):
            table.add_column(col, justify="left" if col in ("authority", "") else "right", overflow="fold")
        for row in r.rows:
            if row.client_group != group:
                continue
            # A net flow built from a suppressed part is a bound or withheld, and never classified.
            net, verdict = row.shown()
            whole = row.imported.complete and row.exported.complete
            table.add_row(
                place_label(row.authority),
                _tally(row.imported),
                _tally(row.exported),
                net if whole else f"[yellow]{net}[/]",
                verdict if whole else f"[yellow]{verdict}[/]",
            )
        console.print(table)
        share_row = next(s for s in r.shares if s.client_group == group)
        share, why = share_row.shown()
        if share is not None:
            console.print(
                f"  {share:.0%} of clients who moved into a CAG authority came from another"
                f" CAG authority ({_tally(share_row.within_cag)} of {_tally(share_row.movers)})"
            )
        elif share_row.movers.count or not share_row.movers.complete:
            console.print(f"  Share of movers from another CAG authority: [yellow]withheld ({why})[/]")
    console.print(
        "[dim]Imported: new clients whose previous authority was elsewhere in England. Exported: clients from"
        " this authority served by another CAG authority that answered. ≥ means a suppressed figure was left"
        " out of the sum; a net flow or share with a suppressed part is shown only as a bound (at least, at"
        " most) or withheld, and never called importer, exporter or balanced.[/]"
    )
    _render_coverage(bundle, console)


def render_kpi(bundle: Bundle, console: Console) -> None:
    from shared.kinds.records import JointKpi

    r = bundle.result
    assert isinstance(r, JointKpi)
    heads = [*r.authorities, "CAG"]
    table = _table(f"KPI 2: planned moves from short-term services, % of departures, {span_label(bundle)}")
    table.add_column("client group", overflow="fold", max_width=label_cap(console, 26))
    for head in heads:
        table.add_column(_abbrev(head), justify="right", overflow="fold")
    cells = {(row.authority, row.client_group): row for row in r.rows}
    reasons = []
    for group in sorted({row.client_group for row in r.rows}, key=lambda g: (g == 0, g)):
        values = []
        for head in heads:
            row = cells.get((head, group))
            if row is None:
                values.append("")
            elif row.percent_planned is not None:
                values.append(f"{row.percent_planned:.0f}%")
            elif row.planned.complete and row.departures.complete:
                values.append("-")  # no departures
            else:
                values.append("[yellow]withheld[/]")
                if head == "CAG" and row.reason:
                    reasons.append(f"{_group_label(group)}: {row.reason}")
        table.add_row(_group_label(group), *values)
    console.print(table)
    console.print(
        "[dim]- : no departures. withheld: a planned-move or departure count is suppressed, so no percentage"
        " is worked out from it. Percentages come from the released (rounded) counts.[/]"
    )
    for reason in reasons:
        console.print(f"  CAG withheld, {reason}")
    _render_coverage(bundle, console)


def render_non_local(bundle: Bundle, console: Console) -> None:
    from shared.disclosure import SHARE_GRID
    from shared.kinds.records import JointNonLocalServices

    r = bundle.result
    assert isinstance(r, JointNonLocalServices)
    table = _table(
        f"Services taking at least {r.min_share_percent}% of their intake from outside their authority,"
        f" {span_label(bundle)}"
    )
    for col, width in (("at", 4), ("provider", 0), ("service", 0), ("group", 5), ("new", 5), ("non-local", 9)):
        if width:
            table.add_column(col, min_width=width, overflow="fold")
        else:
            table.add_column(col, overflow="fold", max_width=label_cap(console, 16))
    table.add_column("desig.", min_width=6, overflow="fold")
    for hosted in r.services:
        s = hosted.service
        table.add_row(
            _abbrev(hosted.authority),
            s.provider,
            s.name,
            str(s.client_group),
            s.intake_band,
            s.share_band,
            "yes" if s.designated else "",
        )
    console.print(table)
    console.print(
        f"[dim]{r.too_small} services taking at least {SHARE_GRID[0]}% from elsewhere had too few new or non-local"
        " clients to describe. Intake and share are shown in bands; domestic violence services at authority"
        " level only, with no name or provider.[/]"
    )
    _render_coverage(bundle, console)


def render_repeat_movers(bundle: Bundle, console: Console) -> None:
    from shared.kinds.records import RepeatMovers

    r = bundle.result
    assert isinstance(r, RepeatMovers)
    console.print(
        f"People in the records of two or more of {len(r.authorities)} authorities, {span_label(bundle)}:"
        f" [bold]{_n(r.people)}[/]"
    )
    table = _table("By client group (a person counts in each group any of their records carries)")
    table.add_column("client group", overflow="fold")
    table.add_column("people", justify="right", overflow="fold")
    for group, count in sorted(r.by_client_group.items()):
        if count != 0:
            table.add_row(_group_label(group), _n(count))
    console.print(table)
    console.print(
        "[dim]Counted by the coordinator from per-analysis tokens it cannot reverse; rounded under the policy."
        " The bundle holds each node's signed receipt for its tokens, not the tokens.[/]"
    )
    _render_coverage(bundle, console)


def query_movement(
    network_dir: AskerOpt = None,
    from_date: FromOpt = "",
    to_date: ToOpt = "",
    period: Annotated[str, typer.Option(help="Break down by financial 'year', 'quarter', or 'all'.")] = "year",
    client_group: GroupOpt = None,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """Where new clients came from: previous authority x host authority x client group x period."""
    bundle = _ask(
        "movement",
        network_dir,
        principal=principal,
        deadline_ms=deadline_ms,
        out_file=out_file,
        as_json=as_json,
        fmt=fmt,
        from_date=from_date,
        to_date=to_date,
        period=period,
        client_groups=client_group or (),
    )
    if bundle is not None:
        render_movement(bundle, out)


def _whole_period_command(kind: str, render: Callable[[Bundle, Console], None], help_text: str) -> Callable[..., None]:
    """`cagnet query KIND`: a question over the whole period asked, with the common options."""

    def command(
        network_dir: AskerOpt = None,
        from_date: FromOpt = "",
        to_date: ToOpt = "",
        client_group: GroupOpt = None,
        deadline_ms: DeadlineOpt = 0,
        as_json: JsonOpt = False,
        fmt: FormatOpt = "table",
        out_file: OutOpt = None,
        principal: PrincipalOpt = "",
    ) -> None:
        bundle = _ask(
            kind,
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
            render(bundle, out)

    command.__doc__ = help_text
    return command


query_net_flow = _whole_period_command(
    "net-flow",
    render_net_flow,
    "Net importers and exporters of vulnerable people, and how much movement stays in the CAG.",
)
query_kpi = _whole_period_command(
    "kpi", render_kpi, "KPI 2: planned moves on from short-term services, by client group, per authority and CAG."
)
query_repeat_movers = _whole_period_command(
    "repeat-movers",
    render_repeat_movers,
    "How many people appear in two or more authorities' records, without anyone learning who.",
)


def query_non_local(
    network_dir: AskerOpt = None,
    from_date: FromOpt = "",
    to_date: ToOpt = "",
    min_share: Annotated[
        int,
        typer.Option(help="Smallest share of intake from outside the authority: 25, 50 or 75 (%)."),
    ] = 50,
    client_group: GroupOpt = None,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """Services that routinely serve people from other authorities."""

    from shared.disclosure import check_share_threshold

    check_share_threshold(min_share, field="--min-share")
    bundle = _ask(
        "non-local-services",
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
        min_share_percent=min_share,
    )
    if bundle is not None:
        render_non_local(bundle, out)


def _period_label(row: PlanRow) -> str:
    year = int(row.from_date[:4]) if int(row.from_date[5:7]) >= 4 else int(row.from_date[:4]) - 1
    label = f"{year}-{(year + 1) % 100:02d}"
    if row.period == "year":
        return label
    month = int(row.from_date[5:7])
    return f"{label} Q{((month - 4) % 12) // 3 + 1}"


def render_plan(bundle: Bundle, console: Console) -> None:
    from shared.kinds.records import JointPlan

    r = bundle.result
    assert isinstance(r, JointPlan)
    table = _table("Would the standard questions be answered now? (nothing was released or recorded)")
    for col in ("question", "period", "groups", "answered", "why not"):
        table.add_column(col, overflow="fold")
    for row in r.rows:
        groups = ", ".join(str(g) for g in row.client_groups) or "all"
        if row.answered and not row.refused_at:
            verdict, why = "[green]yes[/]", ""
        elif row.answered:
            verdict = f"[yellow]yes, {len(row.answerable_at)} of {len(r.authorities)}[/]"
            why = "; ".join(f"{_abbrev(a)}: {rule}" for a, rule in sorted(row.refused_at.items()))
        else:
            verdict = "[red]no[/]"
            rules = sorted(set(row.refused_at.values()))
            why = "; ".join(rules) or "too few authorities answered"
            if len(row.answerable_at) < row.min_authorities:
                needs = f"{row.min_authorities} {'authority' if row.min_authorities == 1 else 'authorities'}"
                why += f" (needs {needs}, {len(row.answerable_at)} would answer)"
        table.add_row(row.kind, _period_label(row), groups, verdict, why)
    console.print(table)
    console.print(
        "[dim]Each node checked the question as it would if asked now: the policy's roles, the"
        " query-set restriction and its release ledger. A question on the policy's standard table set"
        " (its years and quarters) is answered every time; asking one off it can change the"
        " answer for others (each answer is compared with every later question).[/]"
    )
    _render_coverage(bundle, console)


def query_plan(
    from_date: Annotated[str, typer.Option("--from", help="First day of the span, YYYY-MM-DD.")],
    to_date: Annotated[str, typer.Option("--to", help="Last day of the span, YYYY-MM-DD.")],
    network_dir: AskerOpt = None,
    client_group: Annotated[
        list[int] | None,
        typer.Option("--client-group", "-g", help="Also plan the questions for this client group alone; repeatable."),
    ] = None,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    principal: PrincipalOpt = "",
) -> None:
    """Before asking: which standard questions (movement, net flow, KPI 2, non-local services,
    repeat movers, fair shares, spend, outcomes, the equality profile; each financial year and
    quarter in the span; every client group, and each `-g` group alone) the nodes would answer now,
    and why not the others. Releases no figure."""

    from shared.kinds.registry import PLAN

    bundle = _ask(
        PLAN,
        network_dir,
        principal=principal,
        deadline_ms=deadline_ms,
        out_file=None,
        as_json=as_json,
        fmt=fmt,
        from_date=from_date,
        to_date=to_date,
        client_groups=client_group or (),
    )
    if bundle is not None:
        render_plan(bundle, out)


# `cagnet query ...` commands on client records, in the order `cagnet query --help` lists them.
QUERY_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("movement", query_movement),
    ("net-flow", query_net_flow),
    ("kpi", query_kpi),
    ("repeat-movers", query_repeat_movers),
    ("non-local-services", query_non_local),
    ("plan", query_plan),
)

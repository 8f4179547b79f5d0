"""`cagnet query outcomes | equality`: the CAG's short-term outcomes (planned departures and needs
met in each of the five outcome domains) and its equality profile (who the services reach, and a
cross-tab of two equality fields), as a CAG chair asks them. Each prints tables, or with `--json`
the verified bundle; `--out FILE` keeps the signed bundle for `cagnet verify`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cagnet.cli.common import AskerOpt, FormatOpt, PrincipalOpt, _netdir, label_cap, out
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
    _group_label,
    _table,
    _whole_period_command,
    span_label,
)

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle
    from shared.kinds.records import Tally
    from shared.reference import ReferenceData

ByGroupOpt = Annotated[bool, typer.Option("--by-group", help="A table for each client group as well.")]


def _percent(value: float | None, whole: Tally, reason: str) -> str:
    if value is not None:
        return f"{value:.0f}%"
    if whole.complete and whole.count == 0:
        return "-"
    return "[yellow]withheld[/]" if reason else "-"


def render_outcomes(bundle: Bundle, console: Console) -> None:
    from shared.kinds.outcomes import DOMAIN_NAMES, MEASURES, JointOutcomes

    r = bundle.result
    assert isinstance(r, JointOutcomes)
    heads = [*r.authorities, "CAG"]
    table = _table(
        f"Short-term outcomes: planned departures, % of departures; needs met, % of needs identified, "
        f"{span_label(bundle)}"
    )
    table.add_column("client group", overflow="fold", max_width=label_cap(console, 24))
    table.add_column("measure", overflow="fold", max_width=label_cap(console, 22))
    for head in heads:
        table.add_column(_abbrev(head), justify="right", no_wrap=True)
    rows = {(row.authority, row.client_group, row.measure): row for row in r.rows}
    reasons = []
    for group in sorted({row.client_group for row in r.rows}, key=lambda g: (g == 0, g)):
        for i, measure in enumerate(MEASURES):
            values = []
            for head in heads:
                row = rows.get((head, group, measure))
                if row is None:
                    values.append("")
                    continue
                values.append(_percent(row.percent, row.whole, row.reason))
                if head == "CAG" and row.percent is None and row.reason and "suppressed" in row.reason:
                    reasons.append(f"{_group_label(group)}, {DOMAIN_NAMES[measure]}: {row.reason}")
            table.add_row(_group_label(group) if i == 0 else "", DOMAIN_NAMES[measure], *values)
        table.add_section()
    console.print(table)
    console.print(
        "[dim]Departures from short-term services in the period. An outcome domain's share is of the needs"
        ' identified (met or not); "not applicable" is left out. - : nothing to divide by. withheld: a part is'
        " suppressed, so no share is worked out from it. Shares come from the released (rounded) counts.[/]"
    )
    for reason in reasons:
        console.print(f"  CAG withheld, {reason}")
    _render_coverage(bundle, console)


def _category_label(dimension: str, category: str) -> str:
    from node.client_records import ETHNICITIES

    if dimension == "ethnicity":
        return f"{category} {ETHNICITIES.get(category, '')}".strip()
    return category.replace("-", " ")


def render_equality(
    bundle: Bundle, console: Console, *, by_group: bool = False, reference: ReferenceData | None = None
) -> None:
    """The profile's tables; the population column from the network's signed reference data
    (`population:<field>:<category>` rows) where it holds them for every authority that answered."""
    from shared.kinds.equality import DIMENSION_NAMES, DIMENSIONS, NO_REFERENCE, JointEquality
    from shared.reference import population_share

    r = bundle.result
    assert isinstance(r, JointEquality)
    if r.cross_tab:
        _render_cross_tab(bundle, r, console)
        return
    heads = [*r.authorities, "CAG"]
    rows = {(row.authority, row.client_group, row.dimension, row.category): row for row in r.profile}
    groups = sorted({row.client_group for row in r.profile}, key=lambda g: (g == 0, g))
    years: set[int] = set()  # the reference years the population column read
    for group in groups if by_group else [0]:
        for dimension in DIMENSIONS:
            categories = sorted({k[3] for k in rows if k[1] == group and k[2] == dimension})
            if not categories:
                continue
            table = _table(
                f"Equality: {DIMENSION_NAMES[dimension]}, % of new client records, {_group_label(group)}, "
                f"{span_label(bundle)}"
            )
            table.add_column(DIMENSION_NAMES[dimension], overflow="fold", max_width=label_cap(console, 34))
            for head in heads:
                table.add_column(_abbrev(head), justify="right", no_wrap=True)
            table.add_column("population", justify="right", no_wrap=True)
            for category in categories:
                values = []
                shown = ""
                for head in heads:
                    row = rows.get((head, group, dimension, category))
                    if row is None:
                        values.append("-")
                        continue
                    values.append(_percent(row.percent, row.of, row.reason))
                    if head == "CAG":
                        pop = row.population_percent
                        if pop is None and reference is not None:
                            found = population_share(reference, r.authorities, dimension, category)
                            if found is not None:
                                pop, year = found
                                years.add(year)
                        shown = f"{pop:.0f}%" if pop is not None else "[dim]none[/]"
                table.add_row(_category_label(dimension, category), *values, shown)
            console.print(table)
    console.print(
        "[dim]Shares of each authority's new client records in the period. population: the CAG's residents"
        " in the category, as a share of its residents, from the network's signed reference data"
        + (
            f" ({', '.join(str(y) for y in sorted(years))})"
            if years
            else f"; none held for these fields ({NO_REFERENCE})"
        )
        + ". withheld: a part is suppressed, so no share is worked out from it."
        + ("" if by_group else " --by-group shows each client group; --json has them all.")
        + "[/]"
    )
    _render_coverage(bundle, console)


def _render_cross_tab(bundle: Bundle, r: object, console: Console) -> None:
    from shared.disclosure import TOTAL
    from shared.kinds.equality import DIMENSION_NAMES, JointEquality

    assert isinstance(r, JointEquality)
    rows_dim, cols_dim = r.cross_tab
    for authority in ["CAG", *r.authorities]:
        cells = {(c.row, c.column): c.clients for c in r.cells if c.authority == authority}
        if not cells:
            continue
        columns = [*sorted({k[1] for k in cells if k[1] != TOTAL}), TOTAL]
        title = "the CAG" if authority == "CAG" else _abbrev(authority)
        table = _table(
            f"{DIMENSION_NAMES[rows_dim]} x {DIMENSION_NAMES[cols_dim]}, new client records, {title},"
            f" {span_label(bundle)}"
        )
        table.add_column(DIMENSION_NAMES[rows_dim], overflow="fold", max_width=label_cap(console, 34))
        for column in columns:
            table.add_column("all" if column == TOTAL else _category_label(cols_dim, column), justify="right")
        for row in [*sorted({k[0] for k in cells if k[0] != TOTAL}), TOTAL]:
            values = []
            for column in columns:
                t = cells.get((row, column))
                values.append("" if t is None else "*" if not t.complete and t.count == 0 else _tally(t))
            table.add_row("all" if row == TOTAL else _category_label(rows_dim, row), *values)
        console.print(table)
    console.print(
        "[dim]Counts rounded under the network policy; * suppressed (small, or hidden so that a small one"
        " cannot be worked out); ≥ a CAG sum with a suppressed part. The margins are the equality profile's own"
        " figures. A cross-tab most of whose cells would be small is refused: it would isolate people.[/]"
    )
    _render_coverage(bundle, console)


def _tally(t: Tally) -> str:
    return f"{t.count:,}" if t.complete else f"≥{t.count:,}"


query_outcomes = _whole_period_command(
    "outcomes",
    render_outcomes,
    "Short-term outcomes: planned departures and needs met in each of the five outcome domains, by client group,"
    " for each authority beside the CAG.",
)


def query_equality(
    network_dir: AskerOpt = None,
    from_date: FromOpt = "",
    to_date: ToOpt = "",
    client_group: GroupOpt = None,
    cross_tab: Annotated[
        list[str] | None,
        typer.Option(
            "--cross-tab",
            "-x",
            help="Cross-tab two equality fields instead (give it twice): ethnicity, age_band, sex, "
            "economic_status, referral_source, accommodation_before.",
        ),
    ] = None,
    by_group: ByGroupOpt = False,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """The equality profile: new client records by ethnicity, age band, sex, economic status,
    referral source and accommodation before, as shares, for each authority beside the CAG; or a
    cross-tab of two of those fields (`-x ethnicity -x age_band`)."""
    from shared.errors import InvalidRequest
    from shared.kinds.equality import check_cross_tab

    try:
        dims = check_cross_tab(cross_tab or ())
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.public_message.removeprefix("cross_tab: "), param_hint="--cross-tab") from None
    bundle = _ask(
        "equality",
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
        cross_tab=dims,
    )
    if bundle is not None:
        from coordinator import network
        from shared.reference import reference_of

        render_equality(bundle, out, by_group=by_group, reference=reference_of(network.read(_netdir(network_dir))))


# `cagnet query ...` commands for the analyses, in the order `cagnet query --help` lists them.
QUERY_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("outcomes", query_outcomes),
    ("equality", query_equality),
)

"""`cagnet query supply-map` and `cagnet verify`: ask the joint supply map as a CAG chair (or a
member's officer), show it, and re-check a saved bundle offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cagnet.actions.asking import member_asker
from cagnet.actions.labels import currency_lines, short_name, supply_map_day
from cagnet.cli.common import (
    AskerOpt,
    FormatOpt,
    NetworkOpt,
    PrincipalOpt,
    _default_network,
    _netdir,
    check_format,
    err,
    label_cap,
    out,
    print_bundle,
)

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle
    from shared.kinds.supply import JointSupplyMap
    from shared.need import NeedComparison

app = typer.Typer(help="Joint queries across the member nodes (as the CAG chair).", no_args_is_help=True)


def render_supply_map(bundle: Bundle, console: Console) -> None:
    from shared.kinds.supply import JointSupplyMap

    r = bundle.result
    assert isinstance(r, JointSupplyMap)
    codes = [a.authority for a in r.authorities]
    names = {a.authority: a.name for a in r.authorities}
    day = supply_map_day(bundle)
    title = f"{bundle.network}: joint supply map{f' as at {day}' if day else ''} (manifest v{bundle.manifest_version})"
    if r.selected_groups:
        title += f", client groups {', '.join(str(g) for g in r.selected_groups)}"
    totals = Table(title=title)
    for col in ("authority", "population", "services", "units", "designated", "contracts £/yr"):
        totals.add_column(col, justify="right" if col != "authority" else "left", overflow="fold")
    for a in r.authorities:
        totals.add_row(
            a.name,
            f"{a.population:,}",
            _figure(a.services),
            f"{a.units:,}",
            _figure(a.designated_services),
            _figure(a.annual_value),
        )
    totals.add_row(
        "[bold]CAG[/]",
        f"{r.population:,}",
        _total(r.services),
        f"{r.units:,}",
        _total(r.designated_services),
        _total(r.annual_value),
    )
    console.print(totals)
    console.print(
        "[dim]Service counts are rounded under the network policy (small counts suppressed, shown as *);"
        " contract values are withheld (*) where a few providers dominate. A CAG total with a suppressed part"
        " is withheld rather than understated. Units are capacity and exact, and so are the rates and gaps.[/]"
    )
    labels = {"services": "services", "designated_services": "designated services", "annual_value": "contract value"}
    for name, reason in _withheld_totals(r).items():
        console.print(f"  CAG {labels[name]} withheld: {reason}")

    # Two narrow tables rather than one wide one: six authorities must fit an 80-column terminal.
    heads = {code: short_name(names[code]) for code in codes}
    day = bundle.created_at[:10]
    rates = Table(
        title=f"Units per 1,000 population by client group, on {day}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    gaps = Table(
        title=f"Gap against the CAG rate, in units, on {day}", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    # Rich never shrinks a no-wrap column, so size the label column to what the numbers leave.
    numbers = sum(max(len(h), 5) + 3 for h in [*heads.values(), "CAG"])  # padding and a rule each
    label_width = max(14, min(40, console.width - numbers - 1))
    for table in (rates, gaps):
        table.add_column("client group", overflow="fold", max_width=label_cap(console, label_width))
        for code in codes:
            table.add_column(heads[code], justify="right", min_width=max(5, len(heads[code])), overflow="fold")
    rates.add_column("CAG", justify="right", min_width=5, overflow="fold")
    for g in r.client_groups:
        label = f"{g.client_group:>2} {g.name}"
        rates.add_row(label, *(f"{g.rates[code]:.2f}" for code in codes), f"{g.cag_rate:.2f}")
        gaps.add_row(label, *(f"{g.shortfall[code]:,}" if g.shortfall[code] > 0 else "-" for code in codes))
    console.print(rates)
    console.print(gaps)
    _render_coverage(bundle, console)


def _figure(value: int | None) -> str:
    return "*" if value is None else f"{value:,}"


def _total(value: int | None) -> str:
    return "[yellow]withheld[/]" if value is None else f"{value:,}"


def _withheld_totals(r: JointSupplyMap) -> dict[str, str]:
    """Why each CAG total is withheld; worked out from the authorities for a version 1 result."""
    if r.withheld or r.result_version > 1:
        return dict(r.withheld)
    short = {
        name: [a.authority for a in r.authorities if getattr(a, name) is None]
        for name in ("services", "designated_services", "annual_value")
    }
    return {name: f"suppressed at {', '.join(codes)}" for name, codes in short.items() if codes}


def _render_coverage(bundle: Bundle, console: Console) -> None:
    for line in currency_lines(bundle.currency):
        console.print(f"[dim]{line}[/]")
    console.print(f"answered: {', '.join(bundle.answered) or 'none'}  (policy {bundle.policy_digest[:19]}…)")
    if bundle.missing:
        for m in bundle.missing:
            console.print(f"[yellow]missing[/]: {m.authority} — {m.reason}")
        console.print("[yellow]CAG figures above cover only the authorities that answered.[/]")


@app.command("supply-map")
def query_supply_map(
    network_dir: AskerOpt = None,
    by_district: Annotated[bool, typer.Option(help="Break down by district as well.")] = False,
    client_group: Annotated[
        list[int] | None,
        typer.Option("--client-group", "-g", help="Only this SP client group (1-21); repeat for several."),
    ] = None,
    as_at: Annotated[
        str | None, typer.Option("--as-at", help="The services running on this day, as they stood (default: today).")
    ] = None,
    year: Annotated[
        list[int] | None,
        typer.Option(
            "--year",
            help="A financial year by its first calendar year: the map as at its 1 April (2005: 1 April 2005). "
            "Repeat for one map per year.",
        ),
    ] = None,
    need: Annotated[
        str | None,
        typer.Option(
            "--need",
            help="A need indicator from the network's reference data (e.g. dv_incidents): units per 1,000 of "
            "it beside units per 1,000 population, and the gap against the CAG rate on both.",
        ),
    ] = None,
    need_year: Annotated[
        int | None, typer.Option(help="The need indicator's year (default: the latest every authority has).")
    ] = None,
    deadline_ms: Annotated[int, typer.Option(help="Per-node deadline (0: the coordinator's default).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verified bundle as JSON.")] = False,
    fmt: FormatOpt = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Save the signed bundle for `cagnet verify`.")] = None,
    principal: PrincipalOpt = "",
) -> None:
    """The joint supply map: per-authority and CAG supply, rates per 1,000 and gaps; as at a day
    (`--as-at`, default today) or at the start of each financial year asked (`--year`). With
    `--need`, the same supply read against a need indicator from the network's reference data."""
    from datetime import date

    from coordinator import network
    from coordinator.joint import bundle as bundle_mod
    from coordinator.joint.client import joint_query
    from shared.kinds.supply import JointSupplyMap
    from shared.need import need_beside_supply
    from shared.reference import reference_of

    if as_at is not None and year:
        raise typer.BadParameter("give --as-at or --year, not both", param_hint="--year")
    if as_at is not None:
        try:
            days = [date.fromisoformat(as_at)]
        except ValueError:
            raise typer.BadParameter(f"not a day in the form YYYY-MM-DD: {as_at!r}", param_hint="--as-at") from None
    elif year:
        days = [date(y, 4, 1) for y in sorted(set(year))]
    else:
        days = [date.today()]
    check_format(fmt)
    if as_json:
        fmt = "json"
    if out_file is not None and len(days) > 1:
        raise typer.BadParameter("--out saves one bundle: give one --year", param_hint="--out")
    netdir = _netdir(network_dir)
    # Checked before any node is asked: a mistyped indicator should cost nobody a release.
    reference = reference_of(network.read(netdir)) if need is not None else None
    if need is not None:
        from shared.reference import INDICATORS

        if need not in INDICATORS or not INDICATORS[need].need:
            names = ", ".join(n for n, i in INDICATORS.items() if i.need)
            raise typer.BadParameter(f"{need!r} is not a need indicator: {names}", param_hint="--need")
    bundles = []
    comparisons = []
    for day in days:
        bundle, envelope = joint_query(
            netdir,
            member_asker=member_asker,
            kind="supply-map",
            principal=principal,
            by_district=by_district,
            client_groups=client_group or (),
            node_deadline_ms=deadline_ms,
            as_at=day.isoformat(),
        )
        bundles.append(bundle)
        if out_file is not None:
            bundle_mod.save(out_file, envelope, network_dir=netdir)
            err.print(f"signed bundle saved to {out_file} (check it with `cagnet verify {out_file}`)")
        comparison = None
        if need is not None and reference is not None:
            assert isinstance(bundle.result, JointSupplyMap)
            comparison = need_beside_supply(
                bundle.result, reference, need, year=need_year, client_groups=client_group or ()
            )
            comparisons.append(comparison)
        if fmt == "table":
            render_supply_map(bundle, out)
            if comparison is not None:
                render_need(comparison, out)
        elif fmt == "csv":
            print_bundle(bundle, fmt)
    if fmt == "json":
        documents = [b.model_dump(mode="json") for b in bundles]
        if comparisons:
            # The bundle as verified, with the need comparison worked out from it beside it.
            pairs = zip(documents, comparisons, strict=True)
            documents = [{"bundle": d, "need": c.model_dump(mode="json")} for d, c in pairs]
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))


def render_need(comparison: NeedComparison, console: Console) -> None:
    """Supply beside need: units per 1,000 of the indicator and per 1,000 population, and the gaps."""
    c = comparison
    groups = ", ".join(str(g) for g in c.client_groups)
    table = Table(title=f"Units in client groups {groups} against {c.label} ({c.year}, {c.unit})")
    for col in ("authority", "units", c.unit, "per 1,000 need", "gap (need)", "per 1,000 pop", "gap (pop)"):
        table.add_column(col, justify="left" if col == "authority" else "right")
    for r in c.rows:
        table.add_row(
            r.name,
            f"{r.units:,}",
            "no figure" if r.need is None else f"{r.need:,}",
            "-" if r.per_1000_need is None else f"{r.per_1000_need:.2f}",
            "-" if r.gap_need is None else f"{r.gap_need:+,}",
            f"{r.per_1000_population:.2f}",
            f"{r.gap_population:+,}",
        )
    need_rate = "-" if c.cag_per_1000_need is None else f"{c.cag_per_1000_need:.2f}"
    table.add_row(
        "[bold]CAG[/]", f"{c.cag_units:,}", f"{c.cag_need:,}", need_rate, "", f"{c.cag_per_1000_population:.2f}", ""
    )
    console.print(table)
    console.print(
        "[dim]Gap: units an authority would add (+) or has above (-) the CAG rate, on need and on population."
        " Need figures are the network's signed reference data; units are capacity, released exactly.[/]"
    )
    if c.no_figure:
        missing = ", ".join(c.no_figure)
        console.print(f"[yellow]no {c.indicator} figure for {c.year}[/]: {missing} (left out of the CAG need rate)")


def verify(
    file: Annotated[Path, typer.Argument(help="A bundle saved with `cagnet query ... --out FILE`.")],
    network_dir: NetworkOpt = None,
) -> None:
    """Re-check a saved bundle offline: every signature, every binding, and the combined result."""

    from coordinator import network
    from coordinator.joint import bundle as bundle_mod

    envelope, hint = bundle_mod.load(file)
    netdir = network_dir or _default_network() or hint
    if netdir is None:
        raise typer.BadParameter("the file names no network folder; give --network", param_hint="--network")
    chain = [m for m, _ in network.history(netdir)]
    from cagnet.actions.verify import verification

    _, lines = verification(envelope, chain, network.read_policy(netdir).digest)
    first, _, rest = lines[0].partition(": ")
    out.print(f"[green]{first}[/]: {escape(rest)}")
    for line in lines[1:]:
        out.print(escape(line))

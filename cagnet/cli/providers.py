"""`cagnet query common-providers | vfm`: providers that work for two or more authorities, and the
CAG's unit-cost benchmarks, as a CAG chair asks for them. Each prints a table, or with `--json` the
verified bundle; `--out FILE` keeps the signed bundle for `cagnet verify` (and, for VFM, for
`cagnet node vfm-position`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cagnet.cli.common import AskerOpt, FormatOpt, PrincipalOpt, label_cap, out
from cagnet.cli.query import _render_coverage
from cagnet.cli.records import (
    DeadlineOpt,
    GroupOpt,
    JsonOpt,
    OutOpt,
    _abbrev,
    _ask,
    _group_label,
    _n,
    _table,
)

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle


def render_common_providers(bundle: Bundle, console: Console) -> None:
    from shared.kinds.providers import CommonProviders

    r = bundle.result
    assert isinstance(r, CommonProviders)
    # One line per provider, so the list fits a screen; each authority's spelling and figures are
    # in the --json output.
    table = _table(f"Providers working for two or more authorities, on {bundle.created_at[:10]}")
    table.add_column("provider", overflow="fold", max_width=label_cap(console, 22))
    table.add_column("works for", min_width=20, overflow="fold")
    table.add_column("services", justify="right", min_width=8, overflow="fold")
    table.add_column("units", justify="right", min_width=6, overflow="fold")
    table.add_column("", min_width=3, overflow="fold")
    for p in r.providers:
        flags = ("D" if p.designated else " ") + ("R" if p.joint_review_candidate else " ")
        table.add_row(
            p.name,
            " ".join(_abbrev(a.authority) for a in p.authorities),
            f"{sum(a.services for a in p.authorities):,}",
            f"{sum(a.units for a in p.authorities):,}",
            flags.rstrip(),
        )
    console.print(table)
    candidates = sum(p.joint_review_candidate for p in r.providers)
    console.print(
        f"{len(r.providers)} common providers; {candidates} joint review candidates (R) "
        "(common to three or more authorities, or running a designated service: D). "
        "Providers working for fewer authorities are not shown to anyone."
    )
    _render_coverage(bundle, console)


# Service types as a narrow table can show them.
_SERVICE_TYPE_SHORT = {
    "accommodation-based": "accommodation",
    "floating-support": "floating",
    "community-alarm": "alarm",
    "home-improvement-agency": "HIA",
    "accommodation-with-floating-support": "acc + floating",
}


def render_vfm(bundle: Bundle, console: Console) -> None:
    from shared.kinds.providers import VfmBenchmarks

    r = bundle.result
    assert isinstance(r, VfmBenchmarks)
    table = _table(f"Unit cost benchmarks: CAG quartiles, to the pound, latest contracts, on {bundle.created_at[:10]}")
    table.add_column("client group", overflow="fold", max_width=label_cap(console, 20))
    table.add_column("service type", overflow="fold", max_width=label_cap(console, 13))
    table.add_column("AAs", justify="right", min_width=3, overflow="fold")
    table.add_column("svcs", justify="right", min_width=4, overflow="fold")
    for column in ("Q1", "median", "Q3"):
        table.add_column(column, justify="right", min_width=7, overflow="fold")
    table.add_column("", overflow="fold", max_width=label_cap(console, 9))
    for c in r.cells:
        per = "/h" if "hour" in c.measure else "/wk"

        def pounds(value: int | None, per: str = per) -> str:
            return "" if value is None else f"£{value:,}{per}"

        table.add_row(
            _group_label(c.client_group),
            _SERVICE_TYPE_SHORT.get(c.service_type, c.service_type),
            _n(c.authorities),
            _n(c.services),
            pounds(c.lower_quartile),
            pounds(c.median),
            pounds(c.upper_quartile),
            f"[yellow]{c.suppressed}[/]" if c.suppressed else "",
        )
    console.print(table)
    console.print(
        "Lower unit cost alone is not better value: read it with utilisation, outcomes and quality. "
        "Quartiles are read from histograms 10% wide, so are accurate to about 5%. /wk: per unit per week;"
        " /h: per hour. AAs: authorities contributing; blank: withheld by the policy (--json names the rule)."
    )
    _render_coverage(bundle, console)


def query_common_providers(
    network_dir: AskerOpt = None,
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """Providers that work for two or more authorities (never those that work for fewer)."""
    bundle = _ask(
        "common-providers",
        network_dir,
        principal=principal,
        deadline_ms=deadline_ms,
        out_file=out_file,
        as_json=as_json,
        fmt=fmt,
    )
    if bundle is not None:
        render_common_providers(bundle, out)


def query_vfm(
    network_dir: AskerOpt = None,
    client_group: GroupOpt = None,
    service_type: Annotated[str, typer.Option(help="Only this service type, e.g. floating-support.")] = "",
    deadline_ms: DeadlineOpt = 0,
    as_json: JsonOpt = False,
    fmt: FormatOpt = "table",
    out_file: OutOpt = None,
    principal: PrincipalOpt = "",
) -> None:
    """Unit-cost benchmarks by client group x service type; no one's own prices are released."""

    from shared import vocabulary

    if service_type and service_type not in {t.value for t in vocabulary.ServiceType}:
        raise typer.BadParameter(
            f"use one of: {', '.join(t.value for t in vocabulary.ServiceType)}", param_hint="--service-type"
        )
    bundle = _ask(
        "vfm",
        network_dir,
        principal=principal,
        deadline_ms=deadline_ms,
        out_file=out_file,
        as_json=as_json,
        fmt=fmt,
        client_groups=client_group or (),
        service_type=service_type,
    )
    if bundle is not None:
        render_vfm(bundle, out)


# `cagnet query ...` commands on providers, in the order `cagnet query --help` lists them.
QUERY_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("common-providers", query_common_providers),
    ("vfm", query_vfm),
)

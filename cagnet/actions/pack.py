"""A meeting pack for a CAG chair's board paper: every kind the network answers asked for one
financial year (and optionally an earlier one to compare), each verified bundle turned into typed
tables (`cagnet.actions.tables`), with a one-page summary for elected members.

`ask_pack` asks the questions; `pack_html`, `pack_xlsx` and `print_pdf` (cagnet.actions.pack_files)
write what a board reads. Sections come from the kinds registry, so a kind added there gets its
section with no code here; a kind the network refuses gets a section saying why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cagnet.actions.tables import ResultTable, bundle_notes, place_name, result_tables
from coordinator.joint.bundle import Bundle
from coordinator.joint.client import CoordinatorClient, Refused, Unavailable
from shared import dsse
from shared.errors import CagnetError, InvalidRequest
from shared.kinds.records import JointKpi, JointMovement, JointNetFlow, JointNonLocalServices, RepeatMovers
from shared.kinds.registry import KINDS, PLAN, JointKind
from shared.kinds.supply import JointSupplyMap

__all__ = [
    "Fact",
    "Pack",
    "PackTable",
    "Section",
    "ask_pack",
    "build_pack",
    "financial_year",
    "summary_facts",
    "unanswered",
]

# Section titles a reader knows; a kind not named here is titled by its kind string.
TITLES = {
    "supply-map": "Supply map: services and units by authority and client group",
    "movement": "Movement: where new clients came from",
    "net-flow": "Net flow: importers and exporters",
    "kpi": "KPI 2: planned moves from short-term services",
    "non-local-services": "Non-local services",
    "repeat-movers": "Repeat movers: people supported by more than one authority",
    "common-providers": "Common providers",
    "vfm": "Value for money: unit costs",
    "fair-shares": "Designated services and fair shares",
    "spend": "Spend per unit and per new client",
    "kpi1": "KPI 1: long-term services' users maintaining independent living",
    "utilisation": "Utilisation: occupied and void units",
    "unmet-demand": "Waiting lists and refused referrals",
}
# Columns that say how or why, not what: never part of the key that matches a row across periods.
_NOT_KEYS = ("period", "reason", "status", "suppressed", "note", "at least")
_YEAR = re.compile(r"^(\d{4})-(\d{2})$")


def financial_year(label: str) -> tuple[str, str]:
    """A financial year as a chair writes it ("2009-10") as its first and last day."""
    match = _YEAR.match(label)
    if not match or (int(match[1]) + 1) % 100 != int(match[2]):
        raise InvalidRequest(f"--period {label!r}: a financial year such as 2009-10 (April to March)")
    year = int(match[1])
    return f"{year}-04-01", f"{year + 1}-03-31"


def pack_kinds() -> list[JointKind]:
    """The kinds a pack has a section for: every joint question but the plan (which holds no figures)."""
    return [spec for kind, spec in KINDS.items() if kind != PLAN]


def question(spec: JointKind, first: str, last: str) -> dict[str, Any]:
    """What a pack asks of a kind for a period, read from the fields its nodes are asked with:
    client-record kinds the period's records (one column for the whole period), the supply map
    as it stood on the period's last day, others as they stand."""
    fields = spec.request_cls.DESCRIPTOR.fields_by_name
    if "from_date" in fields:
        return {"from_date": first, "to_date": last, "period": "all"}
    if "as_at" in fields:
        return {"as_at": last}
    return {}


def dated(spec: JointKind) -> bool:
    """Whether a kind's question names a period (others answer as things stand: not compared)."""
    return bool(question(spec, "x", "y"))


@dataclass
class PackTable:
    """A result table and, when the pack compares, each figure's change since the earlier period
    (None where either figure is withheld or the row or column is new)."""

    table: ResultTable
    change: list[list[int | float | None]] | None = None


@dataclass
class Section:
    kind: str
    title: str
    period: str  # the financial year asked ("2009-10"), or "" for a kind that has no period
    bundle: Bundle | None = None
    envelope: dsse.Envelope | None = None  # the signed bundle, saved beside the pack for `cagnet verify`
    refusal: str = ""  # why the network did not answer
    compare_refusal: str = ""  # why the network did not answer the compared period's question
    tables: list[PackTable] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def suppressed(self) -> int:
        return sum(v is None for t in self.tables for r in t.table.rows for v in r)


@dataclass(frozen=True)
class Fact:
    """One line a councillor would repeat: the sentence, the figure it rests on (None: withheld),
    and where it comes from. With a comparison, each has its change or says why it has none."""

    text: str
    figure: str | None
    source: str
    change: str = ""  # the change since the earlier period, when the pack compares and both figures stand
    unchanged: str = ""  # when the pack compares and shows no change: why not, in plain words


@dataclass
class Pack:
    network: str
    period: str
    compare: str
    made_at: str
    sections: list[Section]
    facts: list[Fact]
    earlier: list[Section] = field(default_factory=list)  # the compared period's questions, as asked
    # Sections drawn from the supply map and the manifest's signed reference data (need, grant):
    # (title, HTML), present when the network holds reference data.
    reference: list[tuple[str, str]] = field(default_factory=list)


def _ask(client: CoordinatorClient, spec: JointKind, period: str) -> Section:
    title = TITLES.get(spec.kind, spec.kind)
    if not dated(spec):
        first = last = ""
        q: dict[str, Any] = {}
        period = ""
    else:
        first, last = financial_year(period)
        q = question(spec, first, last)
    section = Section(kind=spec.kind, title=title, period=period)
    try:
        bundle, envelope = client.query(kind=spec.kind, **q)
    except (Refused, Unavailable, CagnetError) as exc:
        section.refusal = getattr(exc, "public_message", "") or str(exc)
        return section
    section.bundle, section.envelope = bundle, envelope
    section.tables = [PackTable(t) for t in result_tables(bundle)]
    section.notes = bundle_notes(bundle)
    return section


def ask_pack(client: CoordinatorClient, period: str, compare: str = "") -> tuple[list[Section], list[Section]]:
    """Every pack kind asked for `period` (and for `compare`, the dated kinds only), verified."""
    financial_year(period)
    if compare:
        financial_year(compare)
    kinds = pack_kinds()
    now = [_ask(client, spec, period) for spec in kinds]
    earlier = [_ask(client, spec, compare) for spec in kinds if dated(spec)] if compare else []
    return now, earlier


def unanswered(pack: Pack) -> tuple[int, list[Section]]:
    """How many questions the pack asked, both periods counted, and those not answered."""
    asked = [*pack.sections, *pack.earlier]
    return len(asked), [s for s in asked if s.refusal]


def _key_columns(table: ResultTable) -> list[int]:
    keys = []
    for i, column in enumerate(table.columns):
        if any(column == n or column.endswith(" " + n) for n in _NOT_KEYS):
            continue
        values = [r[i] for r in table.rows if r[i] is not None]
        if values and all(isinstance(v, bool) for v in values):
            continue  # complete or not, importer or not: a property of the figures, not the row's key
        if not table.numeric(i) or "client group" in column or column in ("figure", "key"):
            keys.append(i)
    return keys


def _changes(now: ResultTable, then: ResultTable) -> list[list[int | float | None]]:
    """Each figure of `now` less the same figure of `then` (matched by its row's key columns and
    its column name); None where either is withheld or has no match."""
    keys = _key_columns(now)
    then_keys = [then.columns.index(now.columns[i]) for i in keys if now.columns[i] in then.columns]
    earlier = {tuple(r[i] for i in then_keys): r for r in then.rows} if len(then_keys) == len(keys) else {}
    out: list[list[int | float | None]] = []
    for row in now.rows:
        match = earlier.get(tuple(row[i] for i in keys))
        cells: list[int | float | None] = []
        for i, value in enumerate(row):
            column = now.columns[i]
            j = then.columns.index(column) if column in then.columns else -1
            old = match[j] if match is not None and j >= 0 else None
            if i in keys or isinstance(value, bool) or isinstance(old, bool):
                cells.append(None)
            elif isinstance(value, int | float) and isinstance(old, int | float):
                delta = value - old
                cells.append(round(delta, 4) if isinstance(delta, float) else delta)
            else:
                cells.append(None)
        out.append(cells)
    return out


def _compare(now: Sequence[Section], earlier: Sequence[Section]) -> None:
    by_kind = {s.kind: s for s in earlier}
    for section in now:
        before = by_kind.get(section.kind)
        if before is not None and before.refusal:
            section.compare_refusal = before.refusal
        if before is None or before.bundle is None:
            continue
        then = {t.table.title: t.table for t in before.tables}
        for t in section.tables:
            if t.table.title in then:
                t.change = _changes(t.table, then[t.table.title])


def _signed(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    return f"{value:+,.1f}{unit}" if isinstance(value, float) and not value.is_integer() else f"{int(value):+,}{unit}"


def _result(sections: Sequence[Section], kind: str) -> Any:
    for s in sections:
        if s.kind == kind and s.bundle is not None:
            return s.bundle.result
    return None


def _refusal(sections: Sequence[Section], kind: str) -> str:
    for s in sections:
        if s.kind == kind:
            return s.refusal or "the figure is withheld under the network policy"
    return "the network does not answer this question"


def _supply(r: JointSupplyMap | None) -> tuple[int, float] | None:
    if r is None or not r.authorities:
        return None
    units = sum(a.units for a in r.authorities)
    people = sum(a.population for a in r.authorities)
    return units, (units * 1000 / people if people else 0.0)


def _moved_in(r: JointMovement | None) -> tuple[int | None, bool]:
    """New clients whose last settled home was in another authority, all groups, whole period;
    and whether any part was suppressed (then the sum is at least)."""
    if r is None:
        return None, False
    flows = [f for f in r.flows if f.client_group == 0 and f.period in ("*", "all") and f.origin != f.host]
    if not flows:
        return None, False
    return sum(f.clients or 0 for f in flows), any(f.clients is None for f in flows)


def _importer(r: JointNetFlow | None) -> tuple[str, int, bool] | None:
    """The largest net importer, all groups: its name, its net flow and whether that is a lower
    bound (a suppressed import left out); a withheld or "at most" figure is never ranked."""
    if r is None:
        return None
    known = [row for row in r.rows if row.client_group == 0 and row.net is not None and row.status != "at most"]
    if not known:
        return None
    top = max(known, key=lambda row: row.net or 0)
    return place_name(top.authority), top.net or 0, top.status != "whole"


def _kpi(r: JointKpi | None) -> float | None:
    if r is None:
        return None
    for row in r.rows:
        if row.authority == "CAG" and row.client_group == 0:
            return row.percent_planned
    return None


def _repeat(r: RepeatMovers | None) -> int | None:
    return None if r is None else r.people


def _non_local(r: JointNonLocalServices | None) -> int | None:
    return None if r is None else len(r.services)


_CODE = re.compile(r"\b[EWSN]\d{8}\b")


def _named(reason: str) -> str:
    """A reason as a reader says it: authority codes by their names."""
    return _CODE.sub(lambda m: place_name(m[0]), reason)


def _why_unchanged(earlier: Sequence[Section], kind: str, then_reason: str = "") -> str:
    """Why a fact shows no change since the earlier period: that period's question was not
    answered, or its figure is withheld (`then_reason`, when the result says why)."""
    section = next((s for s in earlier if s.kind == kind), None)
    label = section.period if section is not None and section.period else "the earlier period"
    if section is None or section.bundle is None:
        return f"{label} was not answered: {_refusal(earlier, kind)}"
    return f"the {label} figure is withheld" + (f" ({_named(then_reason)})" if then_reason else "")


def _kpi_reason(r: JointKpi | None) -> str:
    if r is None:
        return ""
    return next((row.reason for row in r.rows if row.authority == "CAG" and row.client_group == 0), "")


def _net_of(r: JointNetFlow | None, name: str) -> tuple[int | None, str]:
    """An authority's net flow, all groups, when whole (else None and why)."""
    if r is None:
        return None, ""
    for row in r.rows:
        if row.client_group == 0 and place_name(row.authority) == name:
            if row.net is not None and row.status == "whole":
                return row.net, ""
            return None, f"{name}: {row.reason or row.status}"
    return None, f"{name} did not answer"


def summary_facts(period: str, now: Sequence[Section], earlier: Sequence[Section] = ()) -> list[Fact]:
    """The five facts a councillor would repeat, each from the released figures; a withheld one
    says so and why. With an earlier period, each says how it changed, or why it cannot."""
    facts: list[Fact] = []
    compared = bool(earlier)

    def why(kind: str, then_reason: str = "") -> str:
        return _why_unchanged(earlier, kind, then_reason) if compared else ""

    withheld = f"the {period} figure is withheld" if compared else ""
    supply, supply_then = _supply(_result(now, "supply-map")), _supply(_result(earlier, "supply-map"))
    if supply is not None:
        change = _signed(supply[0] - supply_then[0]) if supply_then else ""
        facts.append(
            Fact(
                f"The CAG's authorities fund {supply[0]:,} units of housing-related support, "
                f"{supply[1]:.1f} for every 1,000 residents (at the end of {period}).",
                f"{supply[0]:,} units",
                "supply-map",
                change,
                "" if change else why("supply-map"),
            )
        )
    else:
        facts.append(Fact("Units of support funded: withheld.", None, _refusal(now, "supply-map"), "", withheld))
    moved, partial = _moved_in(_result(now, "movement"))
    moved_then, _ = _moved_in(_result(earlier, "movement"))
    if moved is not None:
        facts.append(
            Fact(
                f"{'At least ' if partial else ''}{moved:,} new clients in {period} had last lived in another "
                "authority (small counts are suppressed and left out of this sum).",
                f"{'≥' if partial else ''}{moved:,} clients",
                "movement",
                _signed(moved - moved_then) if moved_then is not None else "",
                "" if moved_then is not None else why("movement"),
            )
        )
    else:
        facts.append(
            Fact("New clients from another authority: withheld.", None, _refusal(now, "movement"), "", withheld)
        )
    importer = _importer(_result(now, "net-flow"))
    if importer is not None and importer[1] > 0:
        name, net, bound = importer
        net_then, then_reason = _net_of(_result(earlier, "net-flow"), name)
        # The same authority's net flow then: a bound now less a whole figure then is no change.
        net_change = _signed(net - net_then) if net_then is not None and not bound else ""
        if net_change or not compared:
            unchanged = ""
        elif bound:
            unchanged = f"the {period} figure is a lower bound (a suppressed part is left out)"
        else:
            unchanged = why("net-flow", then_reason)
        facts.append(
            Fact(
                f"{name} took in {'at least ' if bound else ''}{net:,} more clients from elsewhere than it sent "
                f"to the CAG's other authorities in {period}: the largest net importer.",
                f"net {'≥' if bound else ''}{net:+,}",
                "net-flow",
                net_change,
                unchanged,
            )
        )
    else:
        flows = _result(now, "net-flow")
        reasons = sorted({row.reason for row in flows.rows if row.client_group == 0 and row.reason}) if flows else []
        because = "where a part is suppressed: " + "; ".join(reasons) if reasons else _refusal(now, "net-flow")
        facts.append(Fact("The largest net importer: withheld.", None, because, "", withheld))
    kpi, kpi_then = _kpi(_result(now, "kpi")), _kpi(_result(earlier, "kpi"))
    if kpi is not None:
        facts.append(
            Fact(
                f"{kpi:.0f}% of clients leaving short-term services across the CAG moved on in a planned way (KPI 2).",
                f"{kpi:.0f}%",
                "kpi",
                _signed(round(kpi - kpi_then, 1), " points") if kpi_then is not None else "",
                "" if kpi_then is not None else why("kpi", _kpi_reason(_result(earlier, "kpi"))),
            )
        )
    else:
        facts.append(Fact("Planned moves (KPI 2): withheld.", None, _refusal(now, "kpi"), "", withheld))
    repeat, repeat_then = _repeat(_result(now, "repeat-movers")), _repeat(_result(earlier, "repeat-movers"))
    if repeat is not None:
        facts.append(
            Fact(
                f"{repeat:,} people were supported by more than one of the CAG's authorities in {period}.",
                f"{repeat:,} people",
                "repeat-movers",
                _signed(repeat - repeat_then) if repeat_then is not None else "",
                "" if repeat_then is not None else why("repeat-movers"),
            )
        )
    else:
        non_local = _non_local(_result(now, "non-local-services"))
        non_local_then = _non_local(_result(earlier, "non-local-services"))
        if non_local is not None:
            facts.append(
                Fact(
                    f"{non_local:,} services took most of their clients from outside their own authority in {period}.",
                    f"{non_local:,} services",
                    "non-local-services",
                    _signed(non_local - non_local_then) if non_local_then is not None else "",
                    "" if non_local_then is not None else why("non-local-services"),
                )
            )
        else:
            facts.append(
                Fact(
                    "People supported by more than one authority: withheld.",
                    None,
                    _refusal(now, "repeat-movers"),
                    "",
                    withheld,
                )
            )
    return facts


def build_pack(network: str, period: str, compare: str, now: list[Section], earlier: list[Section]) -> Pack:
    """The pack from its asked sections: changes worked out, the summary's facts drawn."""
    if earlier:
        _compare(now, earlier)
    return Pack(
        network=network,
        period=period,
        compare=compare,
        made_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sections=now,
        facts=summary_facts(period, now, earlier),
        earlier=earlier,
    )

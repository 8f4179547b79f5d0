"""Joint answers from the services' quarterly returns: KPI 1 (long-term services' users maintaining
independent living), utilisation (units occupied and void) and unmet demand (people waiting and
referrals refused), per authority and across the CAG; and the cost per occupied unit, from the
spend and utilisation answers.

Each `combine_*` is a pure function of the nodes' released (already protected) count tables, so
anyone holding a bundle can recompute it exactly. A share is worked out only from parts released
whole; a CAG sum with a suppressed part is "at least" and its share withheld, naming where.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.disclosure import TOTAL
from shared.kinds.records import Tally
from shared.kinds.spend import WEEKS, JointSpend, SpendRow
from shared.models import CountTable

__all__ = [
    "CAG",
    "DemandRow",
    "JointKpi1",
    "JointUnmetDemand",
    "JointUtilisation",
    "Kpi1Row",
    "OccupiedCost",
    "OccupiedCostRow",
    "UtilisationRow",
    "combine_kpi1",
    "combine_unmet_demand",
    "combine_utilisation",
    "occupied_unit_costs",
    "returns_span",
]

CAG = "CAG"
MAINTAINED = "maintained"  # the KPI 1 table's columns: service users maintaining independent living ...
NOT_MAINTAINED = "not-maintained"  # ... and the others
OCCUPIED = "occupied"  # the utilisation table's states: units occupied at a quarter's end ...
VOID = "void"  # ... and units empty and available
WAITING = "waiting"  # the unmet-demand table's measures: people waiting at a quarter's end ...
REFUSED = "refused"  # ... and referrals refused in the quarter


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def returns_span(from_date: str, to_date: str) -> str:
    """The quarters a joint answer covers, as an ISO 8601 interval of the question's dates ("..":
    open): a return counts when its whole quarter lies inside them."""
    return f"{from_date or '..'}/{to_date or '..'}"


def _percent(part: Tally, whole: Tally) -> float | None:
    if not (part.complete and whole.complete) or whole.count == 0:
        return None
    return round(100 * part.count / whole.count, 1)


def _reason(parts: Sequence[tuple[str, Tally]], where: dict[str, list[str]], empty: str) -> str:
    named = []
    for what, tally in parts:
        if not tally.complete:
            at = where.get(what)
            named.append(f"{what} suppressed" + (f" at {', '.join(at)}" if at else ""))
    if named:
        return "; ".join(named)
    return empty if parts[-1][1].count == 0 else ""


def _sum(a: Tally, b: Tally) -> Tally:
    return Tally(count=a.count + b.count, complete=a.complete and b.complete)


# --- KPI 1 ----------------------------------------------------------------------------------------


class Kpi1Row(_Model):
    """KPI 1: of long-term services' users in the quarters asked, the share supported to establish
    and maintain independent living (counts are user-quarters: a user in two quarters counts twice)."""

    authority: str  # "CAG" for the joint figure
    client_group: int  # 0: every client group
    maintaining: Tally
    service_users: Tally
    percent_maintaining: float | None  # None: a part is suppressed, or there were no users
    reason: str = ""
    period: str = ""


class JointKpi1(_Model):
    kind: Literal["kpi1"] = "kpi1"
    authorities: tuple[str, ...]
    rows: tuple[Kpi1Row, ...]


def combine_kpi1(tables: Sequence[CountTable], *, period: str = "") -> JointKpi1:
    rows = []
    cag: dict[int, tuple[Tally, Tally]] = {}
    short: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for t in sorted(tables, key=lambda t: t.authority):
        for label in sorted({c.key[0] for c in t.cells}, key=lambda g: (g == TOTAL, g.zfill(2))):
            maintaining = Tally().add(t.value(label, MAINTAINED))
            users = Tally().add(t.value(label, TOTAL))
            group = 0 if label == TOTAL else int(label)
            parts = (("maintaining", maintaining), ("service users", users))
            rows.append(
                Kpi1Row(
                    authority=t.authority,
                    client_group=group,
                    maintaining=maintaining,
                    service_users=users,
                    percent_maintaining=_percent(maintaining, users),
                    reason=_reason(parts, {}, "no service users"),
                    period=period,
                )
            )
            before = cag.get(group, (Tally(), Tally()))
            cag[group] = (
                before[0].add(maintaining.count if maintaining.complete else None),
                before[1].add(users.count if users.complete else None),
            )
            for what, part in parts:
                if not part.complete:
                    short[group][what].append(t.authority)
    for group, (maintaining, users) in sorted(cag.items(), key=lambda item: (item[0] == 0, item[0])):
        rows.append(
            Kpi1Row(
                authority=CAG,
                client_group=group,
                maintaining=maintaining,
                service_users=users,
                percent_maintaining=_percent(maintaining, users),
                reason=_reason(
                    (("maintaining", maintaining), ("service users", users)), short[group], "no service users"
                ),
                period=period,
            )
        )
    return JointKpi1(authorities=tuple(sorted(t.authority for t in tables)), rows=tuple(rows))


# --- utilisation ----------------------------------------------------------------------------------


class UtilisationRow(_Model):
    """Occupancy: of the units in use at the quarters' ends (occupied or void), the share occupied.
    Counts are unit-quarters (a unit in two quarters counts twice)."""

    authority: str  # "CAG" for the joint figure
    client_group: int  # 0: every client group
    service_type: str  # "": every service type
    occupied: Tally
    void: Tally
    percent_occupied: float | None  # None: a part is suppressed, or no units were reported
    reason: str = ""
    period: str = ""


class JointUtilisation(_Model):
    kind: Literal["utilisation"] = "utilisation"
    authorities: tuple[str, ...]
    rows: tuple[UtilisationRow, ...]


_Key = tuple[int, str]  # (client group, service type); 0 and "" for every one


def _authority_parts(t: CountTable) -> dict[_Key, tuple[Tally, Tally]]:
    """One node's occupied and void units for each client group and service type (`_parts`)."""
    return _parts(t, OCCUPIED, VOID)


def _parts(t: CountTable, first: str, second: str) -> dict[_Key, tuple[Tally, Tally]]:
    """One node's two counts (the third dimension's `first` and `second`) for each client group
    and service type, each group over every type (summed from its cells: the node's row totals add
    the two together), each type over every group and the whole (from the node's column totals). A
    released table holds every combination of its client groups and service types; those released
    as nothing at all (no such service) are left out."""
    parts: dict[_Key, tuple[Tally, Tally]] = {}
    groups = sorted({c.key[0] for c in t.cells if c.key[0] != TOTAL}, key=int)
    types = sorted({c.key[1] for c in t.cells if c.key[1] != TOTAL})

    def pair(label: str, service_type: str) -> tuple[Tally, Tally] | None:
        one, other = (Tally().add(t.value(label, service_type, state)) for state in (first, second))
        return None if one == other == Tally() else (one, other)

    overall = (Tally(), Tally())
    for service_type in types:
        column = pair(TOTAL, service_type)
        if column is not None:
            parts[(0, service_type)] = column
            overall = (_sum(overall[0], column[0]), _sum(overall[1], column[1]))
    for label in groups:
        across = (Tally(), Tally())
        for service_type in types:
            cell = pair(label, service_type)
            if cell is not None:
                parts[(int(label), service_type)] = cell
                across = (_sum(across[0], cell[0]), _sum(across[1], cell[1]))
        parts[(int(label), "")] = across
    if types:
        parts[(0, "")] = overall
    return parts


def _order(key: _Key) -> tuple[bool, int, bool, str]:
    return (key[0] == 0, key[0], key[1] == "", key[1])


def combine_utilisation(tables: Sequence[CountTable], *, period: str = "") -> JointUtilisation:
    rows = []
    cag: dict[_Key, tuple[Tally, Tally]] = {}
    short: dict[_Key, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for t in sorted(tables, key=lambda t: t.authority):
        for key, (occupied, void) in sorted(_authority_parts(t).items(), key=lambda item: _order(item[0])):
            parts = (("units occupied", occupied), ("units in use", _sum(occupied, void)))
            rows.append(
                UtilisationRow(
                    authority=t.authority,
                    client_group=key[0],
                    service_type=key[1],
                    occupied=occupied,
                    void=void,
                    percent_occupied=_percent(occupied, _sum(occupied, void)),
                    reason=_reason(parts, {}, "no units reported"),
                    period=period,
                )
            )
            before = cag.get(key, (Tally(), Tally()))
            cag[key] = (
                before[0].add(occupied.count if occupied.complete else None),
                before[1].add(void.count if void.complete else None),
            )
            for what, part in (("units occupied", occupied), ("voids", void)):
                if not part.complete:
                    short[key][what].append(t.authority)
    for key, (occupied, void) in sorted(cag.items(), key=lambda item: _order(item[0])):
        named = (("units occupied", occupied), ("voids", void))
        rows.append(
            UtilisationRow(
                authority=CAG,
                client_group=key[0],
                service_type=key[1],
                occupied=occupied,
                void=void,
                percent_occupied=_percent(occupied, _sum(occupied, void)),
                reason=_reason(named, short[key], "")
                or ("no units reported" if not _sum(occupied, void).count else ""),
                period=period,
            )
        )
    return JointUtilisation(authorities=tuple(sorted(t.authority for t in tables)), rows=tuple(rows))


# --- unmet demand: waiting lists and refused referrals --------------------------------------------


class DemandRow(_Model):
    """People on the services' waiting lists at the quarters' ends (person-quarters: someone
    waiting at two quarters' ends counts twice) and referrals the services refused in the quarters.
    Each is a count of its own; a total over both would add a stock to a flow, so none is given."""

    authority: str  # "CAG" for the joint figure
    client_group: int  # 0: every client group
    service_type: str  # "": every service type
    waiting: Tally
    refused: Tally
    reason: str = ""  # what is suppressed, and where
    period: str = ""


class JointUnmetDemand(_Model):
    kind: Literal["unmet-demand"] = "unmet-demand"
    authorities: tuple[str, ...]
    rows: tuple[DemandRow, ...]


def combine_unmet_demand(tables: Sequence[CountTable], *, period: str = "") -> JointUnmetDemand:
    """Each authority's waiting and refused counts by client group and service type (each group over
    every type from its cells, each type over every group from the node's column totals, as for
    occupancy), and the CAG's sums: "at least" with the authorities whose part is suppressed."""
    rows = []
    cag: dict[_Key, tuple[Tally, Tally]] = {}
    short: dict[_Key, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for t in sorted(tables, key=lambda t: t.authority):
        for key, (waiting, refused) in sorted(_parts(t, WAITING, REFUSED).items(), key=lambda item: _order(item[0])):
            named = (("waiting list", waiting), ("referrals refused", refused))
            rows.append(
                DemandRow(
                    authority=t.authority,
                    client_group=key[0],
                    service_type=key[1],
                    waiting=waiting,
                    refused=refused,
                    reason=_reason(named, {}, ""),
                    period=period,
                )
            )
            before = cag.get(key, (Tally(), Tally()))
            cag[key] = (
                before[0].add(waiting.count if waiting.complete else None),
                before[1].add(refused.count if refused.complete else None),
            )
            for what, part in named:
                if not part.complete:
                    short[key][what].append(t.authority)
    for key, (waiting, refused) in sorted(cag.items(), key=lambda item: _order(item[0])):
        rows.append(
            DemandRow(
                authority=CAG,
                client_group=key[0],
                service_type=key[1],
                waiting=waiting,
                refused=refused,
                reason=_reason((("waiting list", waiting), ("referrals refused", refused)), short[key], ""),
                period=period,
            )
        )
    return JointUnmetDemand(authorities=tuple(sorted(t.authority for t in tables)), rows=tuple(rows))


# --- cost per occupied unit ----------------------------------------------------------------------


class OccupiedCostRow(_Model):
    """What a unit costs a week, and what an occupied one does: the contract value a unit a week
    (spend) over the share of units in use that were occupied (occupancy)."""

    authority: str  # "CAG" for the joint figure
    client_group: int  # 0: every client group
    service_type: str  # "": every service type
    per_unit_week: float | None  # £ a unit a week; None: withheld by the money rules
    percent_occupied: float | None  # None: a count is suppressed, or no return
    per_occupied_unit_week: float | None  # None: either part is withheld
    reason: str = ""


class OccupiedCost(_Model):
    authorities: tuple[str, ...]
    spend_period: str  # the spend answer's period and the occupancy answer's quarters
    occupancy_period: str
    rows: tuple[OccupiedCostRow, ...]


def _by_service_type(spend: JointSpend) -> list[SpendRow]:
    """Each authority's (and the CAG's) spend by service type over every client group, where the
    answer holds it only by client group: the groups' contract values and units added (withheld if
    any group's value is), a pure function of the released rows."""
    held = {(r.authority, r.client_group, r.service_type) for r in spend.rows}
    parts: dict[tuple[str, str], list[SpendRow]] = defaultdict(list)
    for r in spend.rows:
        if r.client_group and r.service_type and (r.authority, 0, r.service_type) not in held:
            parts[(r.authority, r.service_type)].append(r)
    rows = []
    for (authority, service_type), cells in sorted(parts.items()):
        values = [c.annual_value for c in cells]
        units = sum(c.units for c in cells)
        value = None if any(v is None for v in values) else sum(v for v in values if v is not None)
        withheld = sorted({c.withheld for c in cells if c.annual_value is None and c.withheld})
        rows.append(
            SpendRow(
                authority=authority,
                client_group=0,
                service_type=service_type,
                units=units,
                annual_value=value,
                clients=None,
                per_unit_week=round(value / (units * WEEKS), 2) if value is not None and units else None,
                per_client=None,
                withheld="; ".join(withheld) if value is None else "",
            )
        )
    return rows


def occupied_unit_costs(spend: JointSpend, utilisation: JointUtilisation) -> OccupiedCost:
    """Cost per occupied unit from two released answers, each already protected (money under the
    minimum-contributor, dominance and p% rules; occupied and void units suppressed and rounded):
    a pure function of them, so it discloses nothing either does not. A unit that costs little but
    stands empty a quarter of the time costs a third more for each one occupied. A cell with no
    occupancy return (e.g. floating support, which has no units to fill) is left out."""
    occupancy = {(row.authority, row.client_group, row.service_type): row for row in utilisation.rows}
    rows = []
    for s in (*spend.rows, *_by_service_type(spend)):
        authority = s.authority or CAG
        used = occupancy.get((authority, s.client_group, s.service_type))
        if used is None or (used.occupied == used.void == Tally()):
            continue  # no occupancy return for it
        percent = used.percent_occupied
        cost = None
        if s.per_unit_week is not None and percent:
            cost = round(s.per_unit_week * 100 / percent, 2)
        reasons = []
        if s.per_unit_week is None:
            reasons.append(f"spend {s.withheld or 'withheld'}")
        if percent is None:
            reasons.append(f"occupancy {used.reason or 'withheld'}")
        rows.append(
            OccupiedCostRow(
                authority=authority,
                client_group=s.client_group,
                service_type=s.service_type,
                per_unit_week=s.per_unit_week,
                percent_occupied=percent,
                per_occupied_unit_week=cost,
                reason="; ".join(reasons),
            )
        )
    return OccupiedCost(
        authorities=tuple(a for a in utilisation.authorities if a in spend.authorities),
        spend_period=spend.period,
        occupancy_period=next((r.period for r in utilisation.rows), ""),
        rows=tuple(rows),
    )

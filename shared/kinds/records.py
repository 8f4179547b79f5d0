"""Joint answers about client records: the CAG's origin-destination matrix, net imports and
exports, KPI 2, services that serve non-local people, and repeat movers.

Each `combine_*` is a pure function of the nodes' released (already protected) tables, so anyone
holding a bundle can recompute it exactly. A sum that includes a suppressed cell is marked
incomplete ("at least") rather than guessed; nothing is ever filled in for a suppressed figure.
Repeat movers are the exception: they are counted here from linkage tokens, which the bundle does
not carry, and the count goes through the same disclosure layer before it is released.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared import vocabulary
from shared.disclosure import TOTAL, Table, protect_counts
from shared.models import CountTable, NodePlan, NonLocalService, NonLocalServices
from shared.policy import AggregateRule

__all__ = [
    "RESULT_VERSION",
    "JointKpi",
    "JointMovement",
    "JointNetFlow",
    "JointNonLocalServices",
    "JointPlan",
    "RepeatMovers",
    "Tally",
    "combine_kpi",
    "combine_movement",
    "combine_net_flow",
    "combine_net_flow_version_1",
    "combine_non_local_services",
    "combine_plan",
    "count_repeat_movers",
    "net_figure",
    "records_span",
    "share_figure",
]

UNKNOWN = "unknown"
OUTSIDE = "outside"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tally(_Model):
    """A sum of released figures; `complete` is False when a suppressed figure was left out, so
    the true value is at least `count`."""

    count: int = 0
    complete: bool = True

    def add(self, value: int | None) -> Tally:
        return Tally(count=self.count + (value or 0), complete=self.complete and value is not None)


# --- movement -------------------------------------------------------------------------------------


class Flow(_Model):
    """New clients from `origin` (a CAG authority, a region code, or "unknown") served at `host`."""

    origin: str
    host: str
    client_group: int  # 0: every client group (then period is "*": the whole period asked)
    period: str
    clients: int | None  # None: suppressed at the host's node
    suppressed: str = ""


class JointMovement(_Model):
    kind: Literal["movement"] = "movement"
    hosts: tuple[str, ...]
    origins: tuple[str, ...]
    periods: tuple[str, ...]
    flows: tuple[Flow, ...]
    # New clients served in the CAG by client group and period (each host's released margin, summed).
    intake: dict[str, Tally]  # "group|period" -> tally


def combine_movement(tables: Sequence[CountTable]) -> JointMovement:
    flows = []
    intake: dict[str, Tally] = defaultdict(Tally)
    for t in sorted(tables, key=lambda t: t.authority):
        for c in t.cells:
            origin, group, period = c.key
            if not c.margin or (group == TOTAL and period == TOTAL and origin != TOTAL):
                # Interior cells, and each origin's total over client groups and periods (the
                # node's row margin: client group 0, period "*").
                flows.append(
                    Flow(
                        origin=origin,
                        host=t.authority,
                        client_group=0 if group == TOTAL else int(group),
                        period=period,
                        clients=c.count,
                        suppressed=c.suppressed,
                    )
                )
            elif origin == TOTAL and group != TOTAL and period != TOTAL:
                key = f"{group}|{period}"
                intake[key] = intake[key].add(c.count)
    return JointMovement(
        hosts=tuple(sorted(t.authority for t in tables)),
        origins=tuple(sorted({f.origin for f in flows}, key=_origin_order)),
        periods=tuple(sorted({f.period for f in flows} - {TOTAL})),
        flows=tuple(flows),
        intake=dict(sorted(intake.items())),
    )


def _origin_order(origin: str) -> tuple[int, str]:
    if vocabulary.GSS_UPPER_TIER.match(origin):  # a member; other places are shown by region
        return (0, origin)
    return (2, origin) if origin == UNKNOWN else (1, origin)


# --- net flow -------------------------------------------------------------------------------------


# Derived figures (net flows, shares, KPI 2's percentage) are computed only from parts released
# whole. Result version 1 (cagnet up to issue 26) computed net flows and shares from "at least"
# parts as if the suppressed cells were zero; its bundles still verify with `*_version_1`.
RESULT_VERSION = 2

Status = Literal["whole", "at least", "at most", "withheld"]


class NetFlowRow(_Model):
    """One authority and client group: people it took in from elsewhere, people from it served
    elsewhere in the CAG, and the difference. Imports count arrivals from anywhere in England;
    exports can only be seen where another CAG authority served them.

    `net` is whole only when both parts are; with one part "at least" it is a bound ("at least +30"
    when imports are suppressed, "at most" when exports are), and it is withheld (None) when both
    are, or when the bound would not even tell importer from exporter. `net_importer` is None unless
    the figure is whole."""

    authority: str
    client_group: int  # 0: every client group
    imported: Tally
    exported: Tally
    net: int | None
    net_importer: bool | None
    status: Status = "whole"
    reason: str = ""  # why the figure is a bound or withheld: "imports suppressed"
    period: str = ""  # the records' span (`records_span`); "" in a bundle made before rows said

    def shown(self) -> tuple[str, str]:
        """The net flow and its classification as a reader should see them: "+30" and "net
        importer", "at least +30" and "imports suppressed", or "withheld" and the reason. Worked
        out from the parts, so that a version 1 result is shown as honestly as a current one."""
        net, status, reason = net_figure(self.imported, self.exported)
        if net is None:
            return "withheld", reason
        if status != "whole":
            return f"{status} {net:+,}", reason
        return f"{net:+,}", "net importer" if net > 0 else "net exporter" if net < 0 else "balanced"


class CagShare(_Model):
    """Of new clients who moved into a CAG authority, how many came from another CAG authority.
    The share is given only when both counts are whole; otherwise it is withheld with the reason."""

    client_group: int  # 0: every client group
    within_cag: Tally
    movers: Tally
    share_within_cag: float | None  # None: withheld (see `reason`), or no movers to speak of
    status: Status = "whole"
    reason: str = ""
    period: str = ""

    def shown(self) -> tuple[float | None, str]:
        """The share as a reader should see it, from the parts (see `NetFlowRow.shown`)."""
        share, _, reason = share_figure(self.within_cag, self.movers)
        return share, reason


class JointNetFlow(_Model):
    kind: Literal["net-flow"] = "net-flow"
    authorities: tuple[str, ...]
    rows: tuple[NetFlowRow, ...]
    shares: tuple[CagShare, ...]
    # Exports from an authority can only be counted at the authorities that answered.
    exports_cover: tuple[str, ...]
    result_version: int = 1  # absent from bundles made before version 2: read as 1


def _suppressed(**parts: Tally) -> str:
    names = [name for name, t in parts.items() if not t.complete]
    return " and ".join(names) + " suppressed" if names else ""


def net_figure(imported: Tally, exported: Tally) -> tuple[int | None, Status, str]:
    """The net flow from its parts: whole, a bound, or withheld, with the reason."""
    net = imported.count - exported.count
    reason = _suppressed(imports=imported, exports=exported)
    if imported.complete and exported.complete:
        return net, "whole", ""
    if imported.complete != exported.complete:
        # Only one side is short: the true net is above (imports short) or below (exports short)
        # the released difference. A bound that leaves the sign open would read as a figure.
        status: Status = "at least" if exported.complete else "at most"
        if (status == "at least" and net > 0) or (status == "at most" and net < 0):
            return net, status, reason
    return None, "withheld", reason


def share_figure(within: Tally, movers: Tally) -> tuple[float | None, Status, str]:
    reason = _suppressed(**{"movers from CAG authorities": within, "movers": movers})
    if reason:
        return None, "withheld", reason
    if not movers.count:
        return None, "whole", "no movers"
    return round(within.count / movers.count, 3), "whole", ""


_Parts = dict[int, list[tuple[str, Tally, Tally]]]  # group -> (authority, imported, exported)


def _net_flow_parts(
    tables: Sequence[CountTable],
) -> tuple[list[str], list[int], _Parts, dict[int, tuple[Tally, Tally]]]:
    """The released parts of every net flow and share: sums of the nodes' cells, "at least" where
    a cell was suppressed."""
    answered = sorted(t.authority for t in tables)
    cells: dict[tuple[str, str, int], int | None] = {}  # (host, origin, group) -> released count
    groups: set[int] = set()
    for t in tables:
        for c in t.cells:
            origin, label = c.key
            if origin == TOTAL or (c.margin and label != TOTAL):
                continue
            # Client group 0 is the node's own total over client groups (its row margin), which
            # is released whole even where some of the groups' cells are suppressed.
            group = 0 if label == TOTAL else int(label)
            cells[(t.authority, origin, group)] = c.count
            if group:
                groups.add(group)
    order = [*sorted(groups), 0]
    rows: _Parts = {}
    shares: dict[int, tuple[Tally, Tally]] = {}
    for group in order:
        within, movers = Tally(), Tally()
        rows[group] = []
        for a in answered:
            imported, exported = Tally(), Tally()
            for (host, origin, g), n in cells.items():
                if g != group:
                    continue
                if host == a and origin not in (a, UNKNOWN):
                    imported = imported.add(n)
                    movers = movers.add(n)
                    if origin != OUTSIDE:
                        within = within.add(n)
                if host != a and origin == a:
                    exported = exported.add(n)
            rows[group].append((a, imported, exported))
        shares[group] = (within, movers)
    return answered, order, rows, shares


def records_span(from_date: str, to_date: str, records_to: Sequence[str]) -> str:
    """The span of client records a joint answer covers, as an ISO 8601 interval: the question's
    dates, an open start as "..", an open end closed at the latest month the answering authorities'
    records run to (`records_to`, from their signed answers). "" when no answer stated its
    records' currency (nodes older than that field), so that an old bundle recomputes unchanged."""
    if not records_to:
        return ""
    latest = max((d for d in records_to if d), default="..")
    return f"{from_date or '..'}/{to_date or latest}"


def combine_net_flow(tables: Sequence[CountTable], *, period: str = "") -> JointNetFlow:
    answered, order, parts, share_parts = _net_flow_parts(tables)
    rows = []
    shares = []
    for group in order:
        for a, imported, exported in parts[group]:
            net, status, reason = net_figure(imported, exported)
            rows.append(
                NetFlowRow(
                    authority=a,
                    client_group=group,
                    imported=imported,
                    exported=exported,
                    net=net,
                    net_importer=net > 0 if status == "whole" and net is not None else None,
                    status=status,
                    reason=reason,
                    period=period,
                )
            )
        within, movers = share_parts[group]
        share, status, reason = share_figure(within, movers)
        shares.append(
            CagShare(
                client_group=group,
                within_cag=within,
                movers=movers,
                share_within_cag=share,
                status=status,
                reason=reason,
                period=period,
            )
        )
    return JointNetFlow(
        authorities=tuple(answered),
        rows=tuple(rows),
        shares=tuple(shares),
        exports_cover=tuple(answered),
        result_version=RESULT_VERSION,
    )


def combine_net_flow_version_1(tables: Sequence[CountTable]) -> JointNetFlow:
    """Result version 1, kept only so that `cagnet verify` accepts bundles made with it: the net
    flow and share computed from "at least" parts as if a suppressed cell were zero."""
    answered, order, parts, share_parts = _net_flow_parts(tables)
    rows = []
    shares = []
    for group in order:
        for a, imported, exported in parts[group]:
            net = imported.count - exported.count
            rows.append(
                NetFlowRow(
                    authority=a,
                    client_group=group,
                    imported=imported,
                    exported=exported,
                    net=net,
                    net_importer=net > 0,
                )
            )
        within, movers = share_parts[group]
        share = round(within.count / movers.count, 3) if movers.count else None
        shares.append(CagShare(client_group=group, within_cag=within, movers=movers, share_within_cag=share))
    return JointNetFlow(
        authorities=tuple(answered), rows=tuple(rows), shares=tuple(shares), exports_cover=tuple(answered)
    )


# --- KPI 2 ----------------------------------------------------------------------------------------


class KpiRow(_Model):
    """KPI 2: of departures from short-term services, the share that were planned moves."""

    authority: str  # "CAG" for the joint figure
    client_group: int  # 0: every client group
    planned: Tally
    departures: Tally
    percent_planned: float | None  # None when either figure is suppressed or there were none
    reason: str = ""  # why the percentage is withheld: "planned moves suppressed at E06000035"
    period: str = ""  # the records' span (`records_span`); "" in a bundle made before rows said


class JointKpi(_Model):
    kind: Literal["kpi"] = "kpi"
    authorities: tuple[str, ...]
    rows: tuple[KpiRow, ...]
    result_version: int = 1  # absent from bundles made before version 2: read as 1


def _percent(planned: Tally, departures: Tally) -> float | None:
    if not (planned.complete and departures.complete) or departures.count == 0:
        return None
    return round(100 * planned.count / departures.count, 1)


def _kpi_reason(planned: Tally, departures: Tally, short_at: dict[str, list[str]]) -> str:
    """Why KPI 2 is withheld; at the CAG, naming the authorities whose part is short."""
    named = []
    for what, t in (("planned moves", planned), ("departures", departures)):
        if not t.complete:
            where = short_at.get(what)
            named.append(f"{what} suppressed" + (f" at {', '.join(where)}" if where else ""))
    if named:
        return "; ".join(named)
    return "no departures" if departures.count == 0 else ""


def combine_kpi(tables: Sequence[CountTable], *, version: int = RESULT_VERSION, period: str = "") -> JointKpi:
    """KPI 2 at each authority and across the CAG. `version` 1 (bundles made before issue 26)
    gave no reasons; the figures are the same."""
    rows = []
    cag: dict[int, tuple[Tally, Tally]] = {}
    short: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for t in sorted(tables, key=lambda t: t.authority):
        for group_label in sorted({c.key[0] for c in t.cells}, key=lambda g: (g == TOTAL, g.zfill(2))):
            planned = Tally().add(t.value(group_label, "planned"))
            departures = Tally().add(t.value(group_label, TOTAL))
            group = 0 if group_label == TOTAL else int(group_label)
            rows.append(
                KpiRow(
                    authority=t.authority,
                    client_group=group,
                    planned=planned,
                    departures=departures,
                    percent_planned=_percent(planned, departures),
                    reason=_kpi_reason(planned, departures, {}) if version > 1 else "",
                    period=period,
                )
            )
            before = cag.get(group, (Tally(), Tally()))
            cag[group] = (
                before[0].add(planned.count if planned.complete else None),
                before[1].add(departures.count if departures.complete else None),
            )
            for what, part in (("planned moves", planned), ("departures", departures)):
                if not part.complete:
                    short[group][what].append(t.authority)
    for group, (planned, departures) in sorted(cag.items(), key=lambda item: (item[0] == 0, item[0])):
        rows.append(
            KpiRow(
                authority="CAG",
                client_group=group,
                planned=planned,
                departures=departures,
                percent_planned=_percent(planned, departures),
                reason=_kpi_reason(planned, departures, short[group]) if version > 1 else "",
                period=period,
            )
        )
    return JointKpi(
        authorities=tuple(sorted(t.authority for t in tables)),
        rows=tuple(rows),
        result_version=version,
    )


# --- services that serve non-local people ----------------------------------------------------------


class HostedService(_Model):
    authority: str
    service: NonLocalService
    period: str = ""  # the records' span (`records_span`); "" in a bundle made before rows said


class JointNonLocalServices(_Model):
    kind: Literal["non-local-services"] = "non-local-services"
    authorities: tuple[str, ...]
    min_share_percent: int
    services: tuple[HostedService, ...]
    too_small: int  # services at the answering authorities too small to describe


def combine_non_local_services(
    answers: Sequence[NonLocalServices], *, min_share_percent: int, period: str = ""
) -> JointNonLocalServices:
    services = [
        HostedService(authority=a.authority, service=s, period=period)
        for a in sorted(answers, key=lambda a: a.authority)
        for s in a.services
    ]
    services.sort(key=lambda h: (h.service.client_group, h.authority, h.service.provider, h.service.name))
    return JointNonLocalServices(
        authorities=tuple(sorted(a.authority for a in answers)),
        min_share_percent=min_share_percent,
        services=tuple(services),
        too_small=sum(a.too_small for a in answers),
    )


# --- repeat movers --------------------------------------------------------------------------------


class RepeatMovers(_Model):
    """People who appear in the records of two or more of the answering authorities."""

    kind: Literal["repeat-movers"] = "repeat-movers"
    authorities: tuple[str, ...]
    people: int | None  # suppressed: None
    by_client_group: dict[int, int | None]
    suppressed: tuple[str, ...] = ()
    period: str = ""  # the records' span (`records_span`); "" in a bundle made before rows said


def count_repeat_movers(
    contributions: Iterable[tuple[str, Sequence[bytes], Sequence[int]]], rule: AggregateRule, *, secret: bytes
) -> RepeatMovers:
    """Count tokens held by two or more authorities, in memory, and release only protected counts.

    A person counts once in the total, and once in each client group that any of their records
    (at any authority) carries as primary."""
    holders: dict[bytes, tuple[set[str], int]] = {}
    authorities = []
    for authority, tokens, masks in contributions:
        authorities.append(authority)
        for token, mask in zip(tokens, masks, strict=True):
            seen = holders.setdefault(token, (set(), 0))
            seen[0].add(authority)
            holders[token] = (seen[0], seen[1] | mask)
    people = 0
    by_group: dict[str, int] = {str(g): 0 for g in vocabulary.CLIENT_GROUPS}
    for places, mask in holders.values():
        if len(places) < 2:
            continue
        people += 1
        for g in vocabulary.CLIENT_GROUPS:
            if mask >> g & 1:
                by_group[str(g)] += 1
    holders.clear()  # the tokens live only as long as this analysis
    groups = protect_counts(
        Table.of(("client_group",), {(g,): n for g, n in by_group.items()}), rule, secret=secret, margins=False
    )
    # The total covers every client group its people are in: it takes the strictest of their
    # thresholds (with `-g 14` it is the DV count itself, and must be protected as one).
    covered = frozenset(int(g) for g, n in by_group.items() if n > 0)
    total = protect_counts(
        Table.of(("people",), {("all",): people}), rule, secret=secret, group_of=lambda _: covered, margins=False
    )
    suppressed = tuple(f"client group {c.key[0]}: {c.rule.value}" for c in groups.cells if c.value is None)
    return RepeatMovers(
        authorities=tuple(sorted(authorities)),
        people=total[("all",)].value,
        by_client_group={int(c.key[0]): c.value for c in groups.cells},
        suppressed=suppressed + (("total: " + total[("all",)].rule.value,) if total[("all",)].value is None else ()),
    )


# --- "would you answer?" ----------------------------------------------------------------------------


class PlanRow(_Model):
    """One standard question: which authorities would answer it now, which would refuse it and
    by which rule, and whether the joint figure would be made (enough authorities answer)."""

    kind: str
    from_date: str
    to_date: str
    period: str
    client_groups: tuple[int, ...] = ()
    answerable_at: tuple[str, ...]
    refused_at: dict[str, str]  # authority -> the rule's public message
    min_authorities: int
    answered: bool  # the joint figure would be made now


class JointPlan(_Model):
    """What the nodes say they would answer now; no figure."""

    kind: Literal["plan"] = "plan"
    authorities: tuple[str, ...]
    rows: tuple[PlanRow, ...]


def combine_plan(plans: Sequence[NodePlan]) -> JointPlan:
    rows: dict[tuple[str, str, str, str, tuple[int, ...]], tuple[list[str], dict[str, str], int]] = {}
    for plan in sorted(plans, key=lambda p: p.authority):
        for q in plan.questions:
            key = (q.kind, q.from_date, q.to_date, q.period, tuple(q.client_groups))
            answerable, refused, needs = rows.setdefault(key, ([], {}, q.min_authorities))
            if q.refused:
                refused[plan.authority] = q.refused
            else:
                answerable.append(plan.authority)
            rows[key] = (answerable, refused, max(needs, q.min_authorities))
    return JointPlan(
        authorities=tuple(sorted(p.authority for p in plans)),
        rows=tuple(
            PlanRow(
                kind=kind,
                from_date=start,
                to_date=end,
                period=period,
                client_groups=groups,
                answerable_at=tuple(answerable),
                refused_at=refused,
                min_authorities=needs,
                answered=len(answerable) >= needs,
            )
            for (kind, start, end, period, groups), (answerable, refused, needs) in rows.items()
        ),
    )

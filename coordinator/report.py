"""`cagnet report`: the CAG chair's joint analyses as one self-contained HTML file with charts.

The charts are plotly figures with plotly.js inlined once, so the file makes no request when it is
opened. Each figure is drawn from a bundle the chair's client has verified, and says which policy
it was made under, which cells the policy suppressed, and which authorities did not answer.
`build_report` is a pure function of those bundles; `write_report` asks the questions.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from coordinator import network, report_funding
from coordinator.joint.bundle import Bundle, currency_lines, span_label
from coordinator.joint.client import CoordinatorClient, Refused
from shared import places, vocabulary
from shared.accreditation import LoggedEntry, provider_status, verify_entry
from shared.checkpoint import register_origin, verify_checkpoint
from shared.errors import CagnetError
from shared.kinds.equality import DIMENSION_NAMES, NO_REFERENCE, JointEquality
from shared.kinds.outcomes import DOMAIN_NAMES, MEASURES, JointOutcomes
from shared.kinds.providers import VfmBenchmarks
from shared.kinds.records import JointMovement, JointNetFlow, net_figure
from shared.kinds.returns import CAG, JointKpi1, JointUnmetDemand, JointUtilisation, occupied_unit_costs
from shared.kinds.spend import JointSpend
from shared.kinds.supply import JointSupplyMap
from shared.reference import ReferenceData, population_share, reference_of
from shared.register_client import RegisterClient

# The page may fetch nothing: everything it needs is inline.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)
CHART_IDS = (
    "supply-heatmap",
    "flows",
    "net-flow",
    "vfm",
    "accreditation",
    "outcomes",
    "equality",
    "kpi1",
    "utilisation",
    "unmet-demand",
)


@dataclass(frozen=True)
class Accreditation:
    """Providers by overall status in the register, at a verified tree size."""

    tree_size: int
    by_status: dict[str, int]
    by_authority: dict[str, dict[str, int]]  # authority -> its own status -> providers


def _name(code: str) -> str:
    if code in ("outside", "unknown"):
        return {"outside": "outside the CAG", "unknown": "unknown"}[code]
    try:
        return places.place_name(code)
    except KeyError:
        return code


def _coverage(bundle: Bundle, suppressed: Sequence[str], *, period: str = "") -> str:
    """What a chart was made from: its period, each authority's records currency (client records),
    the policy, the suppressed cells and who did not answer."""
    missing = "; ".join(f"{_name(m.authority)} ({m.reason})" for m in bundle.missing) or "none"
    cells = f"{len(suppressed)}: " + ", ".join(suppressed[:12]) if suppressed else "none"
    if len(suppressed) > 12:
        cells += f" and {len(suppressed) - 12} more"
    currency = "; ".join(currency_lines(bundle.currency))
    return (
        f"<p class='coverage'>Period: {html.escape(period or span_label(bundle))}."
        + (f" Records: {html.escape(currency)}." if currency else "")
        + f" Policy applied: <code>{html.escape(bundle.policy_digest)}</code>. "
        f"Cells suppressed: {html.escape(cells)}. Authorities missing: {html.escape(missing)}. "
        f"Answered: {html.escape(', '.join(_name(a) for a in bundle.answered))}.</p>"
    )


def _day(bundle: Bundle) -> str:
    """The day a bundle was made: a supply map or benchmark is of what was in force then."""
    return bundle.created_at[:10]


def _div(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(margin={"l": 60, "r": 20, "t": 50, "b": 60}, height=460, template="plotly_white")
    return str(pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id))


def relative_to_cag(rate: float, cag_rate: float) -> float | None:
    """log2 of an authority's rate over the CAG rate for the group, held to ±2 (a quarter to four
    times): 0 is at the CAG rate. None where the CAG has no supply for the group."""
    if cag_rate <= 0:
        return None
    if rate <= 0:
        return -2.0
    return max(-2.0, min(2.0, math.log2(rate / cag_rate)))


def supply_heatmap(bundle: Bundle) -> str:
    r = bundle.result
    assert isinstance(r, JointSupplyMap)
    codes = [a.authority for a in r.authorities]
    groups = r.client_groups
    # Colour by each authority's rate against the CAG rate for that group, not by the rate itself:
    # older people's sheltered units run to tens per 1,000 and would wash out every other group.
    # The cells still show the rate per 1,000.
    z = [[relative_to_cag(g.rates[c], g.cag_rate) for c in codes] + [0.0] for g in groups]
    text = [[f"{g.rates[c]:.2f}" for c in codes] + [f"{g.cag_rate:.2f}"] for g in groups]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            text=text,
            texttemplate="%{text}",
            x=[_name(c) for c in codes] + ["CAG"],
            y=[f"{g.client_group} {g.name}" for g in groups],
            colorscale="RdBu",
            zmid=0,
            zmin=-2,
            zmax=2,
            colorbar={
                "title": "against the CAG rate",
                "tickvals": [-2, -1, 0, 1, 2],
                "ticktext": ["¼ or less", "½", "at the CAG rate", "2×", "4× or more"],
            },
            hovertemplate="%{y}<br>%{x}: %{text} units per 1,000<extra></extra>",
        )
    )
    fig.update_layout(
        title="Supply per 1,000 population: authority × client group (colour: against the CAG rate)", height=680
    )
    fig.update_yaxes(autorange="reversed")
    # Units are capacity and released exactly; only service counts and money are ever suppressed.
    suppressed = [f"{_name(a.authority)}: services" for a in r.authorities if a.services is None]
    suppressed += [f"{_name(a.authority)}: contract value" for a in r.authorities if a.annual_value is None]
    return _div(fig, "supply-heatmap") + _coverage(bundle, suppressed, period=f"services in force on {_day(bundle)}")


def flows_chart(bundle: Bundle) -> str:
    r = bundle.result
    assert isinstance(r, JointMovement)
    flows = [f for f in r.flows if f.client_group == 0 and f.period == "*"]
    origins = [o for o in r.origins if any(f.origin == o for f in flows)]
    labels = [f"from {_name(o)}" for o in origins] + [f"at {_name(h)}" for h in r.hosts]
    at = {o: i for i, o in enumerate(origins)}
    host_at = {h: len(origins) + i for i, h in enumerate(r.hosts)}
    released = [f for f in flows if f.clients]
    fig = go.Figure(
        go.Sankey(
            node={"label": labels, "pad": 12, "thickness": 14},
            link={
                "source": [at[f.origin] for f in released],
                "target": [host_at[f.host] for f in released],
                "value": [f.clients for f in released],
            },
        )
    )
    fig.update_layout(
        title=f"Origin → destination: new clients by previous authority and host authority, {span_label(bundle)}"
    )
    suppressed = [f"{_name(f.origin)} → {_name(f.host)}" for f in flows if f.clients is None]
    return _div(fig, "flows") + _coverage(bundle, suppressed)


def net_flow_chart(bundle: Bundle) -> str:
    r = bundle.result
    assert isinstance(r, JointNetFlow)
    rows = [row for row in r.rows if row.client_group == 0]
    names = [_name(row.authority) for row in rows]
    fig = go.Figure()
    fig.add_bar(name="imported", x=names, y=[row.imported.count for row in rows])
    fig.add_bar(name="exported (to CAG authorities)", x=names, y=[-row.exported.count for row in rows])
    # Only a whole net flow is plotted as a figure; a bound is drawn as an open marker labelled
    # "at least" or "at most", and a withheld one not at all (each is listed under the chart).
    figures = [net_figure(row.imported, row.exported) for row in rows]  # (net, status, reason)
    fig.add_scatter(
        name="net",
        x=names,
        y=[net if status == "whole" else None for net, status, _ in figures],
        mode="markers",
        marker={"size": 12},
    )
    bounded = [(name, net, status) for name, (net, status, _) in zip(names, figures, strict=True) if net is not None]
    bounded = [b for b in bounded if b[2] != "whole"]
    if bounded:
        fig.add_scatter(
            name="net, a bound (a part suppressed)",
            x=[name for name, _, _ in bounded],
            y=[net for _, net, _ in bounded],
            text=[f"{status} {net:+,}" for _, net, status in bounded],
            mode="markers+text",
            textposition="top center",
            marker={"size": 12, "symbol": "circle-open"},
        )
    fig.update_layout(
        title=f"Net import (+) and export (−) by authority, all client groups, {span_label(bundle)}", barmode="relative"
    )
    suppressed = [
        f"{_name(row.authority)}: {what} (sum is at least)"
        for row in rows
        for what, t in (("imported", row.imported), ("exported", row.exported))
        if not t.complete
    ]
    suppressed += [
        f"{_name(row.authority)}: net flow {'withheld' if net is None else f'{status} {net:+,}'} ({reason})"
        for row, (net, status, reason) in zip(rows, figures, strict=True)
        if status != "whole"
    ]
    return _div(fig, "net-flow") + _coverage(bundle, suppressed)


def vfm_chart(bundle: Bundle) -> str:
    r = bundle.result
    assert isinstance(r, VfmBenchmarks)
    fig = go.Figure()
    shown = [c for c in r.cells if c.median is not None and "hour" not in c.measure]
    for c in shown:
        label = f"{c.client_group} {vocabulary.CLIENT_GROUPS[c.client_group][:28]} · {c.service_type}"
        fig.add_trace(
            go.Box(
                name=label,
                x=[label],
                q1=[c.lower_quartile],
                median=[c.median],
                q3=[c.upper_quartile],
                lowerfence=[c.lower_quartile],
                upperfence=[c.upper_quartile],
                showlegend=False,
            )
        )
    fig.update_layout(title="Unit cost quartiles by client group and service type (£ per unit per week)", height=620)
    fig.update_xaxes(tickangle=45)
    suppressed = [
        f"{c.client_group}/{c.service_type} ({c.suppressed})" for c in r.cells if c.suppressed or c.median is None
    ]
    note = "<p class='note'>Lower unit cost alone is not better value: read it with outcomes and quality.</p>"
    return _div(fig, "vfm") + note + _coverage(bundle, suppressed, period=f"contracts in force on {_day(bundle)}")


def outcomes_chart(bundle: Bundle) -> str:
    """Planned departures and needs met in each outcome domain, every client group: each authority
    beside the CAG. A withheld share is not drawn; it is listed under the chart with its reason."""
    r = bundle.result
    assert isinstance(r, JointOutcomes)
    heads = [*r.authorities, "CAG"]
    rows = {(row.authority, row.measure): row for row in r.rows if row.client_group == 0}
    fig = go.Figure()
    for head in heads:
        shares = [rows[(head, m)].percent if (head, m) in rows else None for m in MEASURES]
        fig.add_bar(name="CAG" if head == "CAG" else _name(head), x=[DOMAIN_NAMES[m] for m in MEASURES], y=shares)
    fig.update_layout(
        title="Short-term outcomes, all client groups: planned departures (% of departures) and needs met "
        "(% of needs identified)",
        barmode="group",
        yaxis={"title": "%", "range": [0, 100]},
    )
    withheld = [
        f"{'CAG' if row.authority == 'CAG' else _name(row.authority)}, {DOMAIN_NAMES[row.measure]}: {row.reason}"
        for row in r.rows
        if row.client_group == 0 and row.percent is None and row.reason
    ]
    return _div(fig, "outcomes") + _coverage(bundle, withheld)


def equality_chart(bundle: Bundle, reference: ReferenceData | None = None) -> str:
    """Who the services reach: each authority's share of new client records by ethnicity and by age
    band, beside the CAG's, and the CAG's residents' shares where the network's signed reference
    data holds them (`population:<field>:<category>` rows) for every authority that answered."""
    r = bundle.result
    assert isinstance(r, JointEquality)
    heads = [*r.authorities, "CAG"]
    rows = {(p.authority, p.dimension, p.category): p for p in r.profile if p.client_group == 0}
    categories = sorted({(d, c) for _a, d, c in rows if d in ("ethnicity", "age_band")})
    z = [[rows[(h, d, c)].percent if (h, d, c) in rows else None for h in heads] for d, c in categories]
    found = [population_share(reference, r.authorities, d, c) if reference else None for d, c in categories]
    years = sorted({f[1] for f in found if f is not None})
    if years:
        z = [[*line, f[0] if f is not None else None] for line, f in zip(z, found, strict=True)]
    x = [_name(h) if h != "CAG" else "CAG" for h in heads] + (["population"] if years else [])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            text=[["" if v is None else f"{v:.0f}%" for v in line] for line in z],
            texttemplate="%{text}",
            x=x,
            y=[f"{DIMENSION_NAMES[d]}: {c}" for d, c in categories],
            colorscale="Blues",
            colorbar={"title": "% of records"},
            hovertemplate="%{y}<br>%{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(title="Equality profile: % of new client records by ethnicity and age band", height=760)
    fig.update_yaxes(autorange="reversed")
    withheld = [
        f"{'CAG' if p.authority == 'CAG' else _name(p.authority)}, {DIMENSION_NAMES[p.dimension]} {p.category}"
        for p in r.profile
        if p.client_group == 0 and p.percent is None and p.reason and "suppressed" in p.reason
    ]
    if years:
        source = (
            "Population: the CAG's residents in each category as a share of its residents, from the network's "
            f"signed reference data ({', '.join(str(y) for y in years)})."
        )
    else:
        source = (
            f"Population share beside each: {NO_REFERENCE} (the network's reference data holds no "
            "<code>population:</code> rows for ethnicity or age; a member proposes them, docs/equality.md)."
        )
    note = (
        f"<p class='coverage'>{source} Sex, economic status, referral source and accommodation before are in "
        "<code>cagnet query equality</code>.</p>"
    )
    return _div(fig, "equality") + note + _coverage(bundle, withheld)


def _returns_period(bundle: Bundle) -> str:
    """The quarters a returns chart covers: its question's dates (a return counts when its whole
    quarter is inside them), or every quarterly return the nodes hold."""
    result = bundle.result
    assert isinstance(result, JointKpi1 | JointUtilisation | JointUnmetDemand)
    asked = next((row.period for row in result.rows), "")
    if asked in ("", "../.."):
        return "every quarterly return the nodes hold"
    return f"the quarterly returns of {asked.replace('/', ' to ').replace('..', 'any day')}"


def kpi1_chart(bundle: Bundle) -> str:
    """KPI 1 by client group, each authority beside the CAG; only shares worked out from whole parts."""
    r = bundle.result
    assert isinstance(r, JointKpi1)
    groups = sorted({row.client_group for row in r.rows}, key=lambda g: (g == 0, g))
    labels = [("all client groups" if g == 0 else f"{g} {vocabulary.CLIENT_GROUPS[g][:28]}") for g in groups]
    shares = {(row.authority, row.client_group): row.percent_maintaining for row in r.rows}
    fig = go.Figure()
    for authority in [*r.authorities, CAG]:
        fig.add_bar(
            name="CAG" if authority == CAG else _name(authority),
            x=labels,
            y=[shares.get((authority, g)) for g in groups],
        )
    fig.update_layout(title="KPI 1: % of long-term services' users maintaining independent living", barmode="group")
    fig.update_yaxes(range=[80, 100], title="% of service users (user-quarters)")
    withheld = [
        f"{_name(row.authority) if row.authority != CAG else 'CAG'} group {row.client_group}: {row.reason}"
        for row in r.rows
        if row.percent_maintaining is None and row.reason
    ]
    note = (
        "<p class='note'>From each long-term service's quarterly KPI 1 return. A share is drawn only where both"
        " counts were released whole; the withheld ones are listed below.</p>"
    )
    return _div(fig, "kpi1") + note + _coverage(bundle, withheld, period=_returns_period(bundle))


def utilisation_chart(bundle: Bundle, supply: Bundle, spend: Bundle | None = None) -> str:
    """Occupancy by service type, each authority beside the CAG, with the CAG's units (capacity);
    with the spend answer, the cost per unit and per occupied unit a week beside it."""
    r = bundle.result
    assert isinstance(r, JointUtilisation)
    units = (
        {t.service_type: t.units for t in supply.result.service_types}
        if isinstance(supply.result, JointSupplyMap)
        else {}
    )
    types = sorted({row.service_type for row in r.rows if row.client_group == 0 and row.service_type})
    rates = {(row.authority, row.service_type): row.percent_occupied for row in r.rows if row.client_group == 0}
    labels = [f"{t} ({units.get(t, 0):,} units)" for t in types]
    fig = go.Figure()
    for authority in [*r.authorities, CAG]:
        fig.add_bar(
            name="CAG" if authority == CAG else _name(authority),
            x=labels,
            y=[rates.get((authority, t)) for t in types],
        )
    fig.update_layout(title="Occupancy: % of units in use occupied at the quarters' ends", barmode="group")
    fig.update_yaxes(range=[70, 100], title="% occupied (unit-quarters)")
    withheld = [
        f"{_name(row.authority) if row.authority != CAG else 'CAG'} group {row.client_group}"
        f" {row.service_type or 'all types'}: {row.reason}"
        for row in r.rows
        if row.percent_occupied is None and row.reason and row.reason != "no units reported"
    ]
    note = (
        "<p class='note'>From each service's quarterly occupancy return; units (capacity) from the supply map."
        " A low unit cost with low occupancy is not good value: read beside the VFM benchmarks.</p>"
    )
    costs = _occupied_costs(bundle, spend) if spend is not None and isinstance(spend.result, JointSpend) else ""
    return _div(fig, "utilisation") + note + costs + _coverage(bundle, withheld, period=_returns_period(bundle))


def _occupied_costs(bundle: Bundle, spend: Bundle) -> str:
    """The cost per unit and per occupied unit a week by service type: a table from the spend and
    occupancy answers (each already protected), '*' where either part is withheld."""
    assert isinstance(bundle.result, JointUtilisation) and isinstance(spend.result, JointSpend)
    costs = occupied_unit_costs(spend.result, bundle.result)
    heads = [*costs.authorities, CAG]
    cells = {(row.authority, row.service_type): row for row in costs.rows if row.client_group == 0}
    types = sorted({t for _a, t in cells}, key=lambda t: (t == "", t))

    def money(value: float | None) -> str:
        return "*" if value is None else f"£{value:,.0f}"

    def cell(head: str, service_type: str) -> str:
        row = cells.get((head, service_type))
        if row is None:
            return "<td>-</td>"
        occupied = "*" if row.percent_occupied is None else f"{row.percent_occupied:.0f}%"
        return (
            f"<td title='{html.escape(row.reason)}'>{money(row.per_unit_week)} / {occupied} / "
            f"<b>{money(row.per_occupied_unit_week)}</b></td>"
        )

    head_cells = "".join(f"<th>{html.escape(_name(h) if h != CAG else 'CAG')}</th>" for h in heads)
    body = "".join(
        f"<tr><th>{html.escape(t or 'every service type')}</th>{''.join(cell(h, t) for h in heads)}</tr>" for t in types
    )
    return (
        f"<h3>Cost per occupied unit a week (spend {html.escape(costs.spend_period)}; occupancy from"
        f" {html.escape(_returns_period(bundle))})</h3>"
        f"<table><tr><th>service type</th>{head_cells}</tr>{body}</table>"
        "<p class='note'>£ a unit a week (contract value a year over units, released under the money rules:"
        " minimum contributors, dominance, p%) / % of units in use occupied / <b>£ an occupied unit a week</b>"
        " (the first over the second). A low unit cost with low occupancy reads differently: each occupied unit"
        " costs more. * : withheld because a part is.</p>"
    )


def unmet_demand_chart(bundle: Bundle) -> str:
    """People waiting at the quarters' ends by service type, each authority beside the CAG, with the
    referrals refused in the table below: two counts of people, never added together."""
    r = bundle.result
    assert isinstance(r, JointUnmetDemand)
    types = sorted({row.service_type for row in r.rows if row.client_group == 0 and row.service_type})
    by_key = {(row.authority, row.service_type): row for row in r.rows if row.client_group == 0}
    fig = go.Figure()
    for authority in [*r.authorities, CAG]:
        rows = [by_key.get((authority, t)) for t in types]
        fig.add_bar(
            name="CAG" if authority == CAG else _name(authority),
            x=types,
            y=[row.waiting.count if row is not None and row.waiting.complete else None for row in rows],
        )
    fig.update_layout(title="Waiting lists: people waiting at the quarters' ends", barmode="group")
    fig.update_yaxes(title="people waiting (person-quarters)")
    refused = "".join(
        f"<tr><th>{html.escape(t)}</th>"
        + "".join(
            f"<td>{'-' if row is None else (f'{row.refused.count:,}' if row.refused.complete else '*')}</td>"
            for row in (by_key.get((a, t)) for a in [*r.authorities, CAG])
        )
        + "</tr>"
        for t in types
    )
    heads = "".join(f"<th>{html.escape(_name(a) if a != CAG else 'CAG')}</th>" for a in [*r.authorities, CAG])
    withheld = [
        f"{_name(row.authority) if row.authority != CAG else 'CAG'} group {row.client_group}"
        f" {row.service_type or 'all types'}: {row.reason}"
        for row in r.rows
        if row.reason
    ]
    note = (
        f"<h3>Referrals refused</h3><table><tr><th>service type</th>{heads}</tr>{refused}</table>"
        "<p class='note'>From each service's quarterly occupancy return: people on the waiting list at each"
        " quarter's end, and referrals the service refused in the quarter. Counts of people, protected like any"
        " (small ones suppressed, refuges and refugees at their stricter threshold; the rest rounded). * :"
        " suppressed. A full service with a long list is short of units; a list beside voids points at the"
        " referral route.</p>"
    )
    return _div(fig, "unmet-demand") + note + _coverage(bundle, withheld, period=_returns_period(bundle))


def _refused(div_id: str, why: str) -> str:
    return f"<div id='{div_id}'></div><p class='coverage'>Not answered: {html.escape(why)}.</p>"


def accreditation_chart(acc: Accreditation, policy_digest: str) -> str:
    statuses = ("accredited", "passported", "applied", "suspended", "withdrawn", "expired")
    authorities = sorted(acc.by_authority)
    fig = go.Figure()
    for status in statuses:
        fig.add_bar(
            name=status, x=[_name(a) for a in authorities], y=[acc.by_authority[a].get(status, 0) for a in authorities]
        )
    fig.update_layout(title="Accreditation: providers by each authority's own status", barmode="stack")
    if not authorities:
        # An empty register: say so on the chart rather than draw bare axes.
        fig.add_annotation(text="No accreditation decisions in the register yet", showarrow=False, font={"size": 16})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    overall = ", ".join(f"{s}: {n}" for s, n in sorted(acc.by_status.items())) or "no entries"
    return _div(fig, "accreditation") + (
        f"<p class='coverage'>From the shared register at tree size {acc.tree_size}, every entry signed by the "
        f"member that made the decision. Overall status (a suspension by any member counts): {html.escape(overall)}. "
        f"Policy applied: <code>{html.escape(policy_digest)}</code> (the register is not subject to suppression: "
        "accreditation decisions are shared in full among members). Cells suppressed: none. "
        "Authorities missing: those with no entries are not shown.</p>"
    )


def build_report(
    *,
    network: str,
    supply: Bundle,
    movement: Bundle,
    net_flow: Bundle,
    vfm: Bundle,
    accreditation: Accreditation,
    outcomes: Bundle,
    equality: Bundle,
    reference: ReferenceData | None = None,
    fair_shares: Bundle | None = None,
    fair_shares_refused: str = "",
    spend: Bundle | None = None,
    spend_refused: str = "",
    kpi1: Bundle | str = "not asked",
    utilisation: Bundle | str = "not asked",
    unmet_demand: Bundle | str = "not asked",
) -> str:
    """The whole HTML document (plotly.js inlined), from verified bundles (and the manifest's
    reference data, for need and grant; for KPI 1 and utilisation, the bundle or why there is none)."""
    sections = [
        ("Supply", supply_heatmap(supply)),
        ("Where new clients came from", flows_chart(movement)),
        ("Net importers and exporters", net_flow_chart(net_flow)),
        ("Value for money", vfm_chart(vfm)),
        ("Provider accreditation", accreditation_chart(accreditation, supply.policy_digest)),
        ("Short-term outcomes", outcomes_chart(outcomes)),
        ("Equality: who the services reach", equality_chart(equality, reference)),
        ("KPI 1: independent living", kpi1_chart(kpi1) if not isinstance(kpi1, str) else _refused("kpi1", kpi1)),
        (
            "Utilisation",
            utilisation_chart(utilisation, supply, spend)
            if not isinstance(utilisation, str)
            else _refused("utilisation", utilisation),
        ),
        (
            "Waiting lists and refused referrals",
            unmet_demand_chart(unmet_demand)
            if not isinstance(unmet_demand, str)
            else _refused("unmet-demand", unmet_demand),
        ),
    ]
    if reference is not None:
        sections.append(("Supply beside need", report_funding.need_section(supply, reference)))
        sections.append(("Grant and spend", report_funding.grant_section(supply, reference)))
    if spend is not None or spend_refused:
        sections.append(("Spend per unit and per new client", report_funding.spend_section(spend, spend_refused)))
    if fair_shares is not None or fair_shares_refused:
        shares = report_funding.fair_shares_section(fair_shares, fair_shares_refused)
        sections.append(("Designated services and fair shares", shares))
    plotly_js = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    body = "\n".join(f"<section><h2>{html.escape(t)}</h2>{content}</section>" for t, content in sections)
    made = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>{html.escape(network)}: joint analyses</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
.coverage{{font-size:.85em;color:#555}} code{{font-size:.9em}} section{{margin-bottom:2.5em}}
table.figures{{border-collapse:collapse;font-size:.85em}} table.figures td,table.figures th{{padding:.2em .6em;
text-align:right;border-bottom:1px solid #ddd}}</style>
{plotly_js}
</head><body>
<h1>{html.escape(network)}: joint analyses for the Core Strategy Group</h1>
<p>Made {made} by the CAG chair from signed bundles verified back to each node. Figures are as the
network policy released them: small counts suppressed, others rounded; units are capacity and exact.</p>
{body}
</body></html>
"""


def accreditation_from_register(netdir: Path, principal: str) -> Accreditation:
    """Read every entry of the shared register (verified checkpoint) as `principal`, and count."""
    identity = network.principal_identity(netdir, principal)
    with RegisterClient(identity, lambda: network.read(netdir)) as client:
        manifest = client.manifest
        chain = [m for m, _ in network.history(netdir)]
        checkpoint = verify_checkpoint(client.checkpoint(), manifest)
        size = checkpoint.checkpoint.size
        data = client.entries(0, size) if size else []
    by_provider: dict[str, list[LoggedEntry]] = {}
    for index, entry_data in enumerate(data):
        entry, _ = verify_entry(entry_data, manifest, register=register_origin(manifest), earlier=chain)
        by_provider.setdefault(entry.provider.keys[0], []).append(LoggedEntry(leaf_index=index, entry=entry))
    overall: Counter[str] = Counter()
    per: dict[str, Counter[str]] = {}
    for key, entries in by_provider.items():
        status = provider_status(key, entries, on=date.today())
        overall[status.overall] += 1
        for a in status.authorities:
            per.setdefault(a.authority, Counter())[a.status] += 1
    return Accreditation(
        tree_size=size, by_status=dict(overall), by_authority={a: dict(c) for a, c in sorted(per.items())}
    )


def write_report(netdir: Path, out: Path, *, principal: str = "cag-chair") -> Path:
    """Ask the report's questions as `principal`, verify every answer, and write one HTML file."""
    with CoordinatorClient(netdir, principal=principal) as client:
        supply, _ = client.query(kind="supply-map")
        movement, _ = client.query(kind="movement", period="all")
        net_flow, _ = client.query(kind="net-flow", period="all")
        vfm, _ = client.query(kind="vfm")
        fair_shares, refused = None, ""
        try:
            fair_shares, _ = client.query(kind="fair-shares", period="all")
        except CagnetError as exc:  # a refusal is a rule, never data: the section says which
            refused = exc.public_message
        reference = reference_of(network.read(netdir))
        spend, spend_refused = None, ""
        year = report_funding.spend_year(reference, supply.answered)
        if year is not None:
            try:
                spend, _ = client.query(kind="spend", from_date=f"{year}-04-01", to_date=f"{year + 1}-03-31")
            except CagnetError as exc:
                spend_refused = exc.public_message
        # Each node protects a stack of tables for these the first time: more than the default 5 s.
        outcomes, _ = client.query(kind="outcomes", period="all", node_deadline_ms=20_000)
        equality, _ = client.query(kind="equality", period="all", node_deadline_ms=20_000)
        # From the quarterly returns: a network whose nodes hold none, or too few, says so in place.
        returns: dict[str, Bundle | str] = {}
        for kind in ("kpi1", "utilisation", "unmet-demand"):
            try:
                returns[kind] = client.query(kind=kind, period="all")[0]
            except Refused as exc:
                returns[kind] = str(exc)
    document = build_report(
        network=supply.network,
        supply=supply,
        movement=movement,
        net_flow=net_flow,
        vfm=vfm,
        accreditation=accreditation_from_register(netdir, principal),
        reference=reference,
        fair_shares=fair_shares,
        fair_shares_refused=refused,
        spend=spend,
        spend_refused=spend_refused,
        outcomes=outcomes,
        equality=equality,
        kpi1=returns["kpi1"],
        utilisation=returns["utilisation"],
        unmet_demand=returns["unmet-demand"],
    )
    out.write_text(document, encoding="utf-8")
    return out

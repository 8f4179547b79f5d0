"""The report's sections on need, money and shared services (issue 21): supply beside each need
indicator the network holds, SP grant beside contracted spend with each client group's spend per
1,000 against the CAG's lower quartile, and the designated services with each member's share of
their intake. Plain HTML tables drawn from verified bundles and the manifest's reference data.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from coordinator.joint.bundle import Bundle
from shared import dsse, places
from shared.errors import CagnetError
from shared.grant import grant_and_spend
from shared.kinds.fair_shares import OUTSIDE, JointFairShares
from shared.kinds.spend import JointSpend
from shared.kinds.supply import JointSupplyMap
from shared.need import need_beside_supply
from shared.pb.cagnet.v1 import node_pb2
from shared.reference import GRANT, ReferenceData, indicator_of
from shared.serde import supply_map_from_proto

__all__ = ["fair_shares_section", "grant_section", "need_section", "spend_section", "spend_year"]


def _name(code: str) -> str:
    if code == OUTSIDE:
        return "outside the CAG"
    try:
        return places.place_name(code)
    except KeyError:
        return code


def _table(heads: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='figures'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _f(value: float | int | None, money: bool = False) -> str:
    if value is None:
        return "*"
    if money:
        return f"£{value:,.0f}" if isinstance(value, int) else f"£{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def need_section(supply: Bundle, reference: ReferenceData) -> str:
    """Supply beside every need indicator the reference data holds."""
    joint = supply.result
    assert isinstance(joint, JointSupplyMap)
    parts = []
    for indicator in (i for i in reference.indicators() if (meta := indicator_of(i)) is not None and meta.need):
        try:
            c = need_beside_supply(joint, reference, indicator)
        except CagnetError as exc:
            parts.append(f"<p class='note'>{html.escape(indicator)}: {html.escape(exc.public_message)}</p>")
            continue
        rows = [
            (
                r.name,
                _f(r.units),
                _f(r.need),
                _f(r.per_1000_need),
                _f(r.gap_need),
                _f(r.per_1000_population),
                _f(r.gap_population),
            )
            for r in c.rows
        ]
        rows.append(
            ("CAG", _f(c.cag_units), _f(c.cag_need), _f(c.cag_per_1000_need), "", _f(c.cag_per_1000_population), "")
        )
        groups = ", ".join(str(g) for g in c.client_groups)
        parts.append(
            f"<h3>{html.escape(c.label)} ({c.year}) against units in client groups {groups}</h3>"
            + _table(("authority", "units", c.unit, "per 1,000 need", "gap (need)", "per 1,000 pop", "gap (pop)"), rows)
        )
    if not parts:
        return "<p class='note'>The network holds no need indicators yet (docs/need.md).</p>"
    return "".join(parts) + (
        "<p class='coverage'>Gap: units an authority would add (+) or has above (-) the CAG rate. Need figures are"
        " the network's signed reference data; units are capacity from the verified supply map.</p>"
    )


def grant_section(supply: Bundle, reference: ReferenceData) -> str:
    """SP grant beside contracted spend, and spend per 1,000 by client group against the CAG's lower quartile."""
    joint = supply.result
    assert isinstance(joint, JointSupplyMap)
    maps = [
        supply_map_from_proto(node_pb2.SupplyMapResponse.FromString(dsse.Envelope.from_json(c.response).payload))
        for c in supply.contributions
    ]
    try:
        a = grant_and_spend(joint, maps, reference)
    except CagnetError as exc:
        return f"<p class='note'>{html.escape(exc.public_message)}</p>"
    money = [
        (
            x.name,
            _f(x.grant, True),
            _f(x.spend, True),
            "-" if x.spend_share_of_grant is None else f"{x.spend_share_of_grant}%",
        )
        for x in a.authorities
    ]
    below = [
        (f"{g.client_group} {g.name}", _name(g.authority), _f(g.per_1000, True), _f(g.cag_lower_quartile, True))
        for g in a.groups
        if g.below_now
    ]
    return (
        f"<h3>SP grant {a.year} beside contracted spend a year</h3>"
        + _table(("authority", "grant", "spend", "spend / grant"), money)
        + "<h3>Client groups whose spend per 1,000 population is below the CAG's lower quartile</h3>"
        + (
            _table(("client group", "authority", "£ per 1,000", "CAG lower quartile"), below)
            if below
            else "<p>None.</p>"
        )
        + "<p class='coverage'>Spend is contract value a year as each node released it under the money rules"
        " (* withheld where a few providers dominate). `cagnet query grant --grant-change` projects a grant change.</p>"
    )


def fair_shares_section(bundle: Bundle | None, refused: str = "") -> str:
    """The designated services and each member's share of their intake, in bands."""
    if bundle is None:
        return f"<p class='note'>Not answered: {html.escape(refused)}</p>"
    r = bundle.result
    assert isinstance(r, JointFairShares)
    origins = [*r.authorities, OUTSIDE]
    rows = []
    for h in r.services:
        s = h.service
        shares = [s.shares.get(o, "") for o in origins] if s.shares else ["withheld"] + [""] * (len(origins) - 1)
        rows.append(
            (h.host_name, s.client_group, s.service_type, s.name, s.units, s.intake_band or "too small", *shares)
        )
    heads = ("host", "group", "type", "service", "units", "intake", *(_name(o) for o in origins))
    return _table(heads, rows) + (
        f"<p class='coverage'>{len(r.services)} designated services, {r.units:,} units; shares of known intake in"
        f" fixed bands for {r.described}, withheld for {r.withheld} with too small an intake. 'few' is a count"
        f" within the small-count threshold, none included. Made under policy <code>{html.escape(bundle.policy_digest)}"
        "</code>.</p>"
    )


def spend_year(reference: ReferenceData, authorities: Sequence[str]) -> int | None:
    """The financial year the report asks spend for: the latest the grant figures cover."""
    return reference.latest_year(GRANT, authorities)


def spend_section(bundle: Bundle | None, refused: str = "") -> str:
    """Spend per unit a week and per new client by client group and service type, across the CAG."""
    if bundle is None:
        return f"<p class='note'>Not answered: {html.escape(refused)}</p>"
    r = bundle.result
    assert isinstance(r, JointSpend)
    rows = [
        (f"{x.client_group}", x.service_type, _f(x.units), _f(x.annual_value, True), _f(x.clients),
         _f(x.per_unit_week, True), _f(x.per_client, True))
        for x in r.rows
        if not x.authority and x.service_type
    ]  # fmt: skip
    return _table(
        ("client group", "service type", "units", "spend", "new clients", "£/unit/week", "£/new client"), rows
    ) + (
        f"<p class='coverage'>Across the CAG, {html.escape(r.period)}: contract value a year under the money rules,"
        " new clients rounded with small counts suppressed; a figure whose part is withheld at any authority is *.</p>"
    )

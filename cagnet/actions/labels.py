"""How the command line and the console name things in results: authorities and places by their
register names, a result's period from the signed question, each member's records currency.
(shared is imported inside the functions: `cagnet --help` must not pay for protobuf.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.feeds.snapshot import FeedSnapshot
    from coordinator.joint.bundle import AuthorityCurrency, Bundle

__all__ = [
    "currency_lines",
    "place_label",
    "query_of",
    "short_name",
    "snapshot_periods",
    "span_label",
    "supply_map_day",
]


def short_name(name: str) -> str:
    """Column headings for narrow tables: "North Yorkshire" -> "N Yorkshire", "Bath & Wells" -> "B&W"."""
    if " & " in name:
        return "&".join(part[0] for part in name.split(" & "))
    first, _, rest = name.partition(" ")
    return f"{first[0]} {rest}" if rest and first in {"North", "South", "East", "West"} else name


def place_label(code: str) -> str:
    """An origin as a CAG chair reads it: an authority's short name, a region's name, or unknown."""

    from shared import places, vocabulary

    if code == "outside":
        return "outside the CAG"
    if code in places.REGIONS:
        return places.REGIONS[code] + " (region)"
    try:
        name = places.place_name(code)
    except KeyError:
        return code
    return short_name(name) if vocabulary.GSS_UPPER_TIER.match(code) else name


def query_of(bundle: Bundle) -> Any:
    """The principal's signed question a bundle answers."""
    from shared import dsse
    from shared.pb.cagnet.v1 import coordinator_pb2

    return coordinator_pb2.JointQueryRequest.FromString(dsse.Envelope.from_json(bundle.query).payload)


def span_label(bundle: Bundle) -> str:
    """The span of client records a joint answer covers (`coordinator.joint.bundle.span_label`,
    which the report uses too)."""
    from coordinator.joint.bundle import span_label as label

    return label(bundle)


def supply_map_day(bundle: Bundle) -> str:
    """The day a supply-map bundle describes, from the principal's signed query ("" for a query
    made before maps had a day, or without one: the nodes' today)."""
    return str(query_of(bundle).as_at)


def currency_lines(currency: Sequence[AuthorityCurrency]) -> list[str]:
    """Each answering authority's records currency, "Kent: records to 2010-03-31, last import
    2026-12-05 09:14 UTC" (`coordinator.joint.bundle.currency_lines`, which the report uses too)."""
    from coordinator.joint.bundle import currency_lines as lines

    return lines(currency)


def snapshot_periods(snapshot: FeedSnapshot) -> str:
    """What each column's figures cover: the day of the supply, the span of the client records."""
    supply = snapshot.supply[0].period if snapshot.supply else ""
    flows = snapshot.flows[0].period if snapshot.flows else ""
    kpi = snapshot.kpi2[0].period if snapshot.kpi2 else ""
    parts = [f"supply as at {supply}" if supply else "", f"flows {_span(flows)}" if flows else ""]
    parts.append(f"KPI 2 {_span(kpi)}" if kpi else "")
    return "periods: " + ("; ".join(p for p in parts if p) or "not stated (a snapshot made before rows said)")


def _span(interval: str) -> str:
    start, _, end = interval.partition("/")
    if start == "..":
        return "all records" if end == ".." else f"all records to {end}"
    return f"{start} to {end}"

"""Value for money at the node: each service's unit cost from its latest contract, the masked
vector the node sends for a benchmark, the participant-set check against its release ledger, and
where its own services sit against released CAG figures (`position`, computed here and never sent).
docs/vfm.md has the method and its threat model.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from node.store import Contract, DistrictRow, Service
from shared import vfm
from shared.disclosure import ReleaseStore
from shared.errors import DisclosureRefused
from shared.policy import AggregateRule
from shared.vocabulary import ServiceType

__all__ = ["UnitCost", "check_participants", "masked_vector", "position", "unit_costs"]

_MASK_CONTEXT = b"cagnet/vfm-mask/v1\x00"
PARTICIPANTS = "vfm/participants"  # the ledger's kind for the participant sets a node answered
WEEKS_PER_YEAR = 52


@dataclass(frozen=True)
class UnitCost:
    service_ref: str
    name: str
    client_group: int
    service_type: str
    cost: float  # £ per unit per week, or £ per hour for floating support

    @property
    def cell(self) -> vfm.Cell:
        return (self.client_group, self.service_type)


def unit_costs(engine: Engine, *, authority_code: str) -> list[UnitCost]:
    """Every service with a contract and something to divide by: its latest contract's annual
    value over 52 weeks and its units (floating support: its contracted hours a week)."""
    s, c, d = Service.__table__, Contract.__table__, DistrictRow.__table__  # type: ignore[attr-defined]
    query = (
        select(
            s.c.id,
            s.c.service_ref,
            s.c.name,
            s.c.client_group,
            s.c.service_type,
            s.c.units,
            s.c.contracted_hours,
            c.c.start_date,
            c.c.contract_ref,
            c.c.annual_value,
        )
        .join(d, d.c.code == s.c.district_code)
        .join(c, c.c.service_id == s.c.id)
        .where(d.c.authority_code == authority_code)
    )
    latest: dict[int, Any] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            sid, *_, start, ref, _value = row
            if sid not in latest or (start, ref) > latest[sid][7:9]:
                latest[sid] = tuple(row)
    costs = []
    for _, ref, name, group, service_type, units, hours, _, _, value in latest.values():
        per_week = hours if service_type == ServiceType.FLOATING_SUPPORT else units
        if not per_week:
            continue  # nothing to divide by: the importer refuses such contracts, older rows may hold them
        costs.append(UnitCost(ref, name, group, service_type, float(value) / WEEKS_PER_YEAR / float(per_week)))
    costs.sort(key=lambda u: u.service_ref)
    return costs


def _mask(key: bytes, analysis: bytes, a: str, b: str, length: int) -> list[int]:
    seed = hmac.new(
        key, _MASK_CONTEXT + len(analysis).to_bytes(2, "big") + analysis + f"{a}\x00{b}".encode(), hashlib.sha256
    ).digest()
    stream = hashlib.shake_256(seed).digest(8 * length)
    return [int.from_bytes(stream[8 * i : 8 * i + 8], "big") for i in range(length)]


def masked_vector(
    plain: Sequence[int], *, me: str, participants: Sequence[str], key: bytes, analysis: bytes
) -> list[int]:
    """`plain` plus, for every other participant p, the pair's mask (added when me < p, taken away
    when me > p), modulo 2^64: the masks cancel only in the sum over every participant."""
    vector = [v % vfm.MODULUS for v in plain]
    for other in participants:
        if other == me:
            continue
        low, high = sorted((me, other))
        sign = 1 if me == low else -1
        for i, m in enumerate(_mask(key, analysis, low, high, len(vector))):
            vector[i] = (vector[i] + sign * m) % vfm.MODULUS
    return vector


def _cell_signature(cell: vfm.Cell) -> str:
    return f"vfm:{cell[0]}:{cell[1]}"


def check_participants(
    ledger: ReleaseStore, selected: Sequence[vfm.Cell], participants: Sequence[str], rule: AggregateRule
) -> None:
    """Refuse a participant set that differs from one this node answered before, for any cell
    asked, by fewer than the policy's minimum of authorities: the two sums' difference would be
    those few authorities' histograms. Then record this set for every cell (append-only)."""
    mine = frozenset(participants)
    signatures = {_cell_signature(c) for c in selected}
    for release in ledger.previous(PARTICIPANTS):
        if release.query_signature not in signatures:
            continue
        earlier = frozenset(k[0] for k in release.cells)
        if 0 < len(mine ^ earlier) < rule.min_authorities:
            raise DisclosureRefused(
                "differencing: the benchmark's authorities differ from an earlier one's by too few authorities"
            )
    now = datetime.now(UTC)
    known = {
        r.query_signature
        for r in ledger.previous(PARTICIPANTS)
        if frozenset(k[0] for k in r.cells) == mine and r.query_signature in signatures
    }
    for signature in sorted(signatures - known):
        ledger.record(PARTICIPANTS, signature, ("authority",), {(a,): 1 for a in sorted(mine)}, now)


@dataclass(frozen=True)
class Position:
    service: UnitCost
    benchmark: vfm.Benchmark
    quartile: str  # "lowest quarter" ... "highest quarter"
    from_median: int  # pounds, this service's cost less the CAG median


def position(costs: Sequence[UnitCost], released: Sequence[vfm.Benchmark]) -> list[Position]:
    """Where each of this authority's services sits against the released CAG figures."""
    by_cell = {(b.client_group, b.service_type): b for b in released if b.median is not None}
    out = []
    for u in costs:
        b = by_cell.get(u.cell)
        if b is None:
            continue
        assert b.lower_quartile is not None and b.median is not None and b.upper_quartile is not None
        cost = round(u.cost)
        if cost < b.lower_quartile:
            quarter = "lowest quarter"
        elif cost < b.median:
            quarter = "second quarter"
        elif cost <= b.upper_quartile:
            quarter = "third quarter"
        else:
            quarter = "highest quarter"
        out.append(Position(u, b, quarter, cost - b.median))
    return out

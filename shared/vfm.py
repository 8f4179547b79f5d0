"""Value-for-money benchmarks: what node and coordinator agree on. The cells a question selects, the
fixed histogram edges unit costs fall into, the layout of the vector a node masks, and how the
coordinator reads quartiles and the disclosure rules off the CAG-wide sum. Why this method, and
what each party can and cannot learn, is in docs/vfm.md.

Per cell (client group x service type) the vector holds COST_BINS counts of services by unit cost
(£ per unit per week; £ per hour for floating support), then AUTHORITY_BINS counts of authorities by
how many services they put in the cell (SIZE_EDGES): the CAG-wide sum of the
second part is the multiset of per-authority contributions, without saying whose is whose.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from shared import vocabulary
from shared.policy import AggregateRule
from shared.vocabulary import ServiceType

__all__ = [
    "AUTHORITY_BINS",
    "COST_BINS",
    "COST_EDGES",
    "MIN_SERVICES",
    "MODULUS",
    "Benchmark",
    "Cell",
    "benchmark",
    "cell_vector",
    "cells",
    "cost_bin",
    "masks_digest",
    "quartile_of",
    "vector_length",
]

MODULUS = 1 << 64
# Geometric edges 10% apart from £1 to about £2,048 (1.1^80); a bin below £1 and one above the top.
_RATIO = 1.1
COST_EDGES: tuple[float, ...] = (0.0, *(round(_RATIO**k, 2) for k in range(81)))
COST_BINS = len(COST_EDGES)  # the last bin is open above
# How many services one authority puts in a cell: 1..32 exactly, then ranges [lo, next lo) about
# 12% wide up to 1,024, the last open. The dominance and p% checks take each range at its top (more
# suppression, never less).
SIZE_EDGES: tuple[int, ...] = (*range(1, 33), *sorted({round(32 * 1.125**k) for k in range(1, 30)}))
AUTHORITY_BINS = len(SIZE_EDGES)
MIN_SERVICES = 5  # the rule: at least 5 services (and the policy's min_authorities, 3)

Cell = tuple[int, str]  # (client group, service type)


def cells(client_groups: Sequence[int], service_type: str) -> tuple[Cell, ...]:
    """The cells a question selects, in the order the vector lays them out. Filters only select
    whole cells: a cell's figures are the same whatever else is asked, so two benchmarks with and
    without a group or a type differ only by whole cells, each protected on its own."""
    groups = sorted(set(client_groups)) or sorted(vocabulary.CLIENT_GROUPS)
    types = [service_type] if service_type else sorted(t.value for t in ServiceType)
    return tuple((g, t) for g in groups for t in types)


def masks_digest(masked: Iterable[int]) -> bytes:
    """SHA-256 over a masked vector exactly as sent (what a node's receipt attests)."""
    return hashlib.sha256(b"".join(int(v).to_bytes(8, "big") for v in masked)).digest()


def vector_length(selected: Sequence[Cell]) -> int:
    return len(selected) * (COST_BINS + AUTHORITY_BINS)


def cost_bin(cost: float) -> int:
    """The bin a unit cost falls in: i such that COST_EDGES[i] <= cost < COST_EDGES[i + 1]."""
    lo, hi = 0, COST_BINS - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if COST_EDGES[mid] <= cost:
            lo = mid
        else:
            hi = mid - 1
    return lo


def cell_vector(selected: Sequence[Cell], costs: Iterable[tuple[Cell, float]]) -> list[int]:
    """One authority's plain vector: its services' unit costs binned per cell, and a 1 in the
    authority part at its own number of services in each cell it contributes to."""
    position = {c: i for i, c in enumerate(selected)}
    width = COST_BINS + AUTHORITY_BINS
    vector = [0] * vector_length(selected)
    per_cell = [0] * len(selected)
    for cell, cost in costs:
        i = position.get(cell)
        if i is None:
            continue
        vector[i * width + cost_bin(cost)] += 1
        per_cell[i] += 1
    for i, n in enumerate(per_cell):
        if n:
            vector[i * width + COST_BINS + _size_bin(n)] = 1
    return vector


def _size_bin(n: int) -> int:
    return max(i for i, lo in enumerate(SIZE_EDGES) if lo <= n)


def _size_at_most(index: int) -> int:
    return SIZE_EDGES[index + 1] - 1 if index + 1 < AUTHORITY_BINS else SIZE_EDGES[index]


def quartile_of(histogram: Sequence[int], q: float) -> float:
    """The q-quantile read off a cost histogram, linear inside the bin it falls in."""
    total = sum(histogram)
    target = q * total
    before = 0
    for i, n in enumerate(histogram):
        if n and before + n >= target:
            lo = COST_EDGES[i]
            if i + 1 >= COST_BINS:
                return lo  # the open top bin: no upper edge to interpolate to
            hi = COST_EDGES[i + 1]
            return lo + (target - before) / n * (hi - lo)
        before += n
    return 0.0


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Benchmark(_Model):
    """One cell of the VFM table as released: counts, and quartiles to the pound, or a rule."""

    client_group: int
    service_type: str
    measure: str  # "£ per unit per week" or "£ per hour"
    authorities: int | None
    services: int | None
    lower_quartile: int | None = None
    median: int | None = None
    upper_quartile: int | None = None
    suppressed: str = ""


def measure_of(service_type: str) -> str:
    return "£ per hour" if service_type == ServiceType.FLOATING_SUPPORT else "£ per unit per week"


def benchmark(selected: Sequence[Cell], total: Sequence[int], rule: AggregateRule) -> tuple[Benchmark, ...]:
    """The released table from the CAG-wide sum: a cell no service falls in is left out; a cell
    with too few authorities or services, or dominated by one or two authorities, shows counts
    only (none at all below the authority minimum) and names the rule."""
    width = COST_BINS + AUTHORITY_BINS
    if len(total) != vector_length(selected):
        raise ValueError("the summed vector does not fit the question's cells")
    out = []
    for i, (group, service_type) in enumerate(selected):
        histogram = list(total[i * width : i * width + COST_BINS])
        by_size = total[i * width + COST_BINS : (i + 1) * width]
        services = sum(histogram)
        if services == 0:
            continue
        contributions = sorted((_size_at_most(i) for i, n in enumerate(by_size) for _ in range(n)), reverse=True)
        authorities = len(contributions)
        measure = measure_of(service_type)
        rule_broken = _rule_broken(contributions, services, by_size, rule)
        if rule_broken:
            few = rule_broken.startswith("minimum authorities")
            out.append(
                Benchmark(
                    client_group=group,
                    service_type=service_type,
                    measure=measure,
                    authorities=None if few else authorities,
                    services=None if few else services,
                    suppressed=rule_broken,
                )
            )
            continue
        lower, median, upper = (round(quartile_of(histogram, q)) for q in (0.25, 0.5, 0.75))
        out.append(
            Benchmark(
                client_group=group,
                service_type=service_type,
                measure=measure,
                authorities=authorities,
                services=services,
                lower_quartile=lower,
                median=median,
                upper_quartile=upper,
            )
        )
    return tuple(out)


def _rule_broken(contributions: list[int], services: int, by_size: Sequence[int], rule: AggregateRule) -> str:
    if len(contributions) < rule.min_authorities:
        return f"minimum authorities: fewer than {rule.min_authorities} authorities contribute"
    if services < MIN_SERVICES:
        return f"minimum services: fewer than {MIN_SERVICES} services contribute"
    if by_size[-1]:
        # An authority in the open top range: its share is unknown, so dominance cannot be ruled out.
        return "dominance: one authority holds too many of the cell's services to check"
    if math.fsum(contributions[: rule.dominance_n]) > rule.dominance_k * services:
        return f"dominance: {rule.dominance_n} authorities hold over {rule.dominance_k:.0%} of the services"
    largest, second = contributions[0], contributions[1] if len(contributions) > 1 else 0
    if services - largest - second < rule.p_percent * largest:
        return "p% rule: the others could estimate the largest contribution too closely"
    return ""

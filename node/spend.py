"""The release rules for spend (called from `node.release` only): new clients by client group and
service type protected like every count (suppression, secondary suppression, keyed rounding, the
stricter thresholds of domestic violence and refugees), contract values a year by the money rules
(minimum contributors, dominance, p%), and capacity released exactly, as the supply map releases it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from node.answers.supply import CellKey, RawSupply
from shared.disclosure import (
    TOTAL,
    MagnitudeCell,
    MagnitudeTable,
    ReleasedTable,
    Table,
    protect_counts,
    protect_magnitudes,
)
from shared.kinds.spend import Spend, SpendCell
from shared.models import RecordsQuestion
from shared.policy import AggregateRule

__all__ = ["DIMENSIONS", "describe_spend"]

DIMENSIONS = ("client_group", "service_type")


def describe_spend(
    rule: AggregateRule,
    *,
    authority: str,
    secret: bytes,
    supply: RawSupply,
    money: Mapping[CellKey, Mapping[str, float]],
    clients: Mapping[tuple[str, ...], int],
    groups: Sequence[int],
    question: RecordsQuestion,
) -> Spend:
    """The released answer from the true figures: capacity (`supply`), contract values by provider
    (`money`) and new clients at the ledger's grain ((client group, service type, month) -> count)."""
    counts: dict[tuple[str, ...], int] = {}
    for (group, stype, _month), n in clients.items():
        counts[(group, stype)] = counts.get((group, stype), 0) + n
    units: dict[tuple[str, ...], int] = {}
    for c in supply.cells:
        key = (str(c.client_group), c.service_type)
        units[key] = units.get(key, 0) + c.units
    values = {(str(k[0]), k[1]): v for k, v in money.items()}
    margin_group = max(groups, key=rule.threshold_for) if groups else None

    def group_of(key: tuple[str, ...]) -> int | None:
        return int(key[0]) if key[0] != TOTAL else margin_group

    released_clients = protect_counts(Table.of(DIMENSIONS, counts), rule, secret=secret, group_of=group_of)
    released_money = protect_magnitudes(
        MagnitudeTable(DIMENSIONS, tuple(MagnitudeCell(k, v) for k, v in sorted(values.items()))), rule
    )
    interior = sorted({*counts, *units, *values}, key=lambda k: (int(k[0]), k[1]))
    by_group = sorted({int(k[0]) for k in interior})

    def cell(key: tuple[str, ...], group: int, stype: str) -> SpendCell:
        suppressed: list[str] = []

        def take(name: str, table: ReleasedTable) -> int | None:
            try:
                released = table[key]
            except KeyError:
                return 0  # no such cell (no contracts, no new clients): a true zero
            if released.suppressed:
                suppressed.append(f"{name}: {released.rule.value}")
            return released.value

        within = [k for k in interior if (group == 0 or k[0] == str(group)) and (not stype or k[1] == stype)]
        return SpendCell(
            client_group=group,
            service_type=stype,
            units=sum(units.get(k, 0) for k in within),  # capacity, not people: exact
            annual_value=take("annual_value", released_money),
            clients=take("clients", released_clients),
            suppressed=tuple(suppressed),
        )

    cells = [cell(k, int(k[0]), k[1]) for k in interior]
    cells += [cell((str(g), TOTAL), g, "") for g in by_group]
    cells.append(cell((TOTAL, TOTAL), 0, ""))
    return Spend(
        authority=authority,
        population=supply.population,
        cells=tuple(cells),
        client_groups=tuple(groups),
        question=question,
    )

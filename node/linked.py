"""Linked protection of a stack of tables over the same people: outcomes (departures by planned or
unplanned, and by each outcome domain's need) and the equality profile (records by each equality
field) count every person once in each table, so each table's total for a client group is the
same figure. Protecting the tables one by one would let one table show a total another hid to
protect a small cell; here they are one relation set.

The cells are (first, second) pairs: a client group or its total, and a leaf ("stay_safe:achieved")
or a table's total ("stay_safe"). Primary suppression (1 to the strictest threshold of the client
groups a cell counts), then the standard table set's linked secondary suppression over every
relation (a total is the sum of its parts; each table's total is also the sum of every other
table's parts), with the cells known to be equal suppressed together, to a fixed point. Figures
already public elsewhere (`given`) are kept as they are and never chosen to hide another.
Released figures are rounded as everywhere else, keyed on the cell's dimension values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from node.grid import Dimension, _link, _relations
from shared.disclosure import TOTAL, consistent_round
from shared.errors import DisclosureRefused
from shared.policy import AggregateRule

__all__ = ["LINKED", "Cell", "Protected", "leaves_dimension", "protect_linked", "total_dimension"]

LINKED = "linked-suppression"  # small, or hidden so that a small one cannot be worked out: not said which
Cell = tuple[str, str]
_PERIOD = "all"  # the grid's relations are per period; these tables have one


@dataclass(frozen=True)
class Protected:
    """Each cell's released figure (None: suppressed) and why ("" when released)."""

    figures: Mapping[Cell, int | None]

    def figure(self, cell: Cell) -> tuple[int | None, str]:
        if cell not in self.figures:
            return 0, ""  # nobody there
        value = self.figures[cell]
        return value, "" if value is not None else LINKED


def protect_linked(
    atoms: Mapping[tuple[str, str, int], int],
    first: Dimension,
    second: Dimension,
    *,
    rule: AggregateRule,
    secret: bytes,
    identity: Callable[[Cell], list[list[str]]],
    equal: Sequence[Sequence[Cell]] = (),
    given: Mapping[Cell, int | None] | None = None,
) -> Protected:
    """Protect every cell summed from `atoms` ((first leaf, second leaf, client group) -> true
    count) over the two dimensions' leaves and totals.

    `equal`: sets of cells that count the same people (each table's total for one client group):
    suppressed together, shown as one figure, and each related to every other's parts. `given`:
    cells already released elsewhere (a figure) or suppressed there (None): kept so."""
    given = dict(given or {})
    values: dict[tuple[str, str, str], int] = {}
    groups: dict[tuple[str, str, str], set[int]] = {}
    for (a, b, group), n in atoms.items():
        if n <= 0:
            continue
        for x in first.nodes_of(a):
            for y in second.nodes_of(b):
                cell = (_PERIOD, x, y)
                values[cell] = values.get(cell, 0) + n
                groups.setdefault(cell, set()).add(group)
    threshold = {cell: rule.threshold_over(groups[cell]) for cell in values}
    suppressed = {cell for cell, n in values.items() if n <= threshold[cell]}
    suppressed |= {(_PERIOD, *c) for c, shown in given.items() if shown is None and (_PERIOD, *c) in values}
    fixed = frozenset((_PERIOD, *c) for c, shown in given.items() if shown is not None)
    relations = _relations(_PERIOD, [], first, second, values)
    parts_of: dict[tuple[str, str, str], list[tuple[tuple[str, str, str], ...]]] = {}
    for parent, parts in relations:
        parts_of.setdefault(parent, []).append(parts)
    linked = [[(_PERIOD, *c) for c in cells if (_PERIOD, *c) in values] for cells in equal]
    # A cell equal to a public one is public too: never chosen to hide another.
    fixed |= {c for cells in linked if any(x in fixed for x in cells) for c in cells}
    for cells in linked:
        # A table's total is also the sum of every other table's parts.
        for cell in cells:
            for other in cells:
                if other != cell:
                    relations.extend((cell, parts) for parts in parts_of.get(other, []))
    while True:
        before = len(suppressed)
        _link(relations, values, threshold, suppressed, fixed, slack=rule.rounding_base - 1)
        for cells in linked:
            if any(c in suppressed for c in cells):
                suppressed.update(cells)
        if len(suppressed) == before:
            break
    for parent, parts in relations:
        # A relation with one hidden cell gives it away: refuse rather than release that.
        if sum(1 for c in (parent, *parts) if c in suppressed) == 1:
            raise DisclosureRefused("secondary suppression: this table cannot be protected")
    figures: dict[Cell, int | None] = {}
    for cell, n in values.items():
        key = (cell[1], cell[2])
        if cell in suppressed:
            figures[key] = None
        elif key in given:
            figures[key] = given[key]
        else:
            figures[key] = consistent_round(n, rule, threshold[cell], secret, identity(key))
    for same in equal:
        # One figure for the same people: a given one if any, else the first cell's.
        present = [c for c in same if c in figures]
        if present:
            chosen = next((given[c] for c in present if c in given), figures[present[0]])
            for c in present:
                figures[c] = chosen
    return Protected(figures)


def leaves_dimension(name: str, leaves: Iterable[str], totals: Mapping[str, Iterable[str]]) -> Dimension:
    """A dimension of `leaves` with named totals over some of them."""
    return Dimension(name, tuple(leaves), {t: frozenset(members) for t, members in totals.items()})


def total_dimension(name: str, leaves: Iterable[str]) -> Dimension:
    """A dimension of `leaves` with one total over all of them."""
    leaves = tuple(leaves)
    return Dimension(name, leaves, {TOTAL: frozenset(leaves)})

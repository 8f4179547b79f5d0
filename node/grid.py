"""The standard table set at a node: each financial year of the policy's `[grid]` and its quarters,
protected once as a whole, so that a grid question is answered every time, with the same figures.

A block is one financial year of one family of tables (movement and net flow share new clients by
origin and client group; KPI 2 has departures by client group and planned/unplanned): every cell
of the year and of its four quarters, with every margin (all origins, the origins outside the CAG,
all client groups, all departures). Primary suppression, then linked secondary suppression over
every relation of the block (a year is the sum of its quarters, a total the sum of its parts),
then keyed rounding keyed on the people a cell counts, so two cells that count the same people
show the same figure. Blocks share no cell, so one year's protection never depends on another's.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from node.answers.movement import OUTSIDE, Question, period_of
from shared.disclosure import TOTAL, Protection, consistent_round
from shared.policy import AggregateRule, StandardGrid

__all__ = [
    "SPAN",
    "Block",
    "BlockCell",
    "Dimension",
    "FinancialYear",
    "block_from_state",
    "block_state",
    "grid_span",
    "protect_block",
    "protect_span",
]

# A block cell: (period label, value of the first dimension, value of the second), where a
# dimension's value is a leaf ("E06000035", "14") or one of its totals (TOTAL, "outside").
BlockCell = tuple[str, str, str]


@dataclass(frozen=True)
class FinancialYear:
    """April `year` to March `year + 1`, labelled as `period_of` labels it ("2009-10")."""

    year: int

    @property
    def start(self) -> date:
        return date(self.year, 4, 1)

    @property
    def end(self) -> date:
        return date(self.year + 1, 3, 31)

    @property
    def label(self) -> str:
        return period_of(f"{self.year:04d}-04", "year")

    def quarters(self) -> list[tuple[date, date, str]]:
        """Each quarter's first day, last day and label."""
        firsts = [date(self.year, 4, 1), date(self.year, 7, 1), date(self.year, 10, 1), date(self.year + 1, 1, 1)]
        lasts = [date(self.year, 6, 30), date(self.year, 9, 30), date(self.year, 12, 31), date(self.year + 1, 3, 31)]
        return [(a, b, period_of(f"{a.year:04d}-{a.month:02d}", "quarter")) for a, b in zip(firsts, lasts, strict=True)]


def grid_span(grid: StandardGrid, question: Question) -> tuple[FinancialYear, str] | None:
    """The grid year and period label ("2009-10" or "2009-10 Q2") a question's dates are exactly,
    or None when the question is off the grid (free dates, or more than one client group)."""
    if question.from_date is None or question.to_date is None or len(question.client_groups) > 1:
        return None
    start = question.from_date
    year = FinancialYear(start.year if start.month >= 4 else start.year - 1)
    if not grid.first_year <= year.year <= grid.last_year:
        return None
    if (start, question.to_date) == (year.start, year.end):
        return year, year.label
    for first, last, label in year.quarters():
        if (start, question.to_date) == (first, last):
            return year, label
    return None


@dataclass(frozen=True)
class Dimension:
    """One dimension of a block: its leaves and its totals (each a set of leaves)."""

    name: str
    leaves: tuple[str, ...]
    totals: Mapping[str, frozenset[str]]

    def nodes_of(self, leaf: str) -> list[str]:
        return [leaf, *(name for name, members in self.totals.items() if leaf in members)]


@dataclass(frozen=True)
class Block:
    """A protected block: each cell's released figure (None: suppressed) and its true count."""

    year: FinancialYear | None  # None: the span of every grid year
    periods: frozenset[str]  # the quarters published, and the year once all four are
    released: Mapping[BlockCell, int | None]
    true: Mapping[BlockCell, int]
    dimensions: tuple[Dimension, Dimension]

    def figure(self, cell: BlockCell) -> tuple[int | None, str]:
        """The released figure and why ("" when released); an absent cell is a true zero."""
        if cell not in self.true or self.true[cell] == 0:
            return 0, ""
        value = self.released[cell]
        return value, "" if value is not None else Protection.GRID.value


def block_state(block: Block) -> dict[str, object]:
    """A block as plain JSON values, for the node's store (`node.editions`); `block_from_state`
    reads it back exactly."""
    return {
        "year": block.year.year if block.year is not None else None,
        "periods": sorted(block.periods),
        "released": [[*cell, value] for cell, value in sorted(block.released.items())],
        "true": [[*cell, n] for cell, n in sorted(block.true.items())],
        "dimensions": [
            [d.name, list(d.leaves), {name: sorted(members) for name, members in sorted(d.totals.items())}]
            for d in block.dimensions
        ],
    }


def block_from_state(state: Mapping[str, Any]) -> Block:
    first, second = (
        Dimension(name, tuple(leaves), {k: frozenset(v) for k, v in totals.items()})
        for name, leaves, totals in state["dimensions"]
    )
    return Block(
        FinancialYear(state["year"]) if state["year"] is not None else None,
        frozenset(state["periods"]),
        {(p, x, y): value for p, x, y, value in state["released"]},
        {(p, x, y): n for p, x, y, n in state["true"]},
        (first, second),
    )


def protect_block(
    year: FinancialYear,
    atoms: Mapping[BlockCell, int],
    dimensions: tuple[Dimension, Dimension],
    *,
    group_position: int,
    rule: AggregateRule,
    secret: bytes,
    published: Iterable[str],
    earlier: Block | None = None,
    equal: Sequence[Sequence[tuple[str, str]]] = (),
    people: Callable[[BlockCell], BlockCell] = lambda atom: atom,
) -> Block:
    """Protect one year's block from its true counts by (quarter label, first, second) leaf.

    Every cell of each `published` quarter and, once the year is closed (all four quarters
    published), of the year, margins included, is summed from the leaves; a cell of 1 to its
    threshold (the strictest of the client groups it counts) is suppressed. Then linked secondary
    suppression: in every relation (a parent and the parts it sums), each suppressed cell must
    have a suppressed partner that can take up its whole threshold band, else the smallest
    released part (the parent as a last resort) is suppressed too, until nothing changes. Each
    quarter is protected on its own first, and the year's cells after, with the quarters' figures
    fixed: a quarter published before its year closed is never changed by the year's closing.
    Released figures are rounded as everywhere else, keyed on the people the cell counts (its
    non-zero leaves), so two cells that count the same people show the same figure.

    `earlier`: the year's previous edition. Every cell it suppressed stays suppressed (if it still
    counts anyone), so that a new edition never shows a figure the earlier one hid to protect
    another, and the two editions' patterns cannot be combined.

    `equal`: sets of (first, second) cells that count the same people in every period (each table's
    total for one client group, in a stack of tables over the same people): suppressed together
    and shown as the first cell's figure. `people(atom)`: the
    atom as the rounding key names it (so that a table keeps the figures it had in a block of its
    own)."""
    first, second = dimensions
    quarters = sorted(published)
    closed = len(quarters) == 4
    values: dict[BlockCell, int] = {}
    support: dict[BlockCell, list[BlockCell]] = {}
    groups: dict[BlockCell, set[int]] = {}
    for atom, n in sorted(atoms.items()):
        if n == 0:
            continue
        quarter, a, b = atom
        group = int((a, b)[group_position])
        for period in (quarter, year.label) if closed else (quarter,):
            for x in first.nodes_of(a):
                for y in second.nodes_of(b):
                    cell = (period, x, y)
                    values[cell] = values.get(cell, 0) + n
                    support.setdefault(cell, []).append(atom)
                    groups.setdefault(cell, set()).add(group)
    threshold = {cell: rule.threshold_over(groups[cell]) for cell in values}
    suppressed = {cell for cell, n in values.items() if n <= threshold[cell]}
    if earlier is not None:
        suppressed |= {cell for cell, shown in earlier.released.items() if shown is None and cell in values}
    for quarter in quarters:
        relations = _relations(quarter, [], first, second, values)
        _link_equal(relations, values, threshold, suppressed, frozenset(), equal, quarter, slack=rule.rounding_base - 1)
    if closed:
        label = year.label
        fixed = frozenset(cell for cell in values if cell[0] != label)
        relations = _relations(label, quarters, first, second, values)
        parts_of = {parent: parts for parent, parts in relations if parts and parts[0][0] != label}

        def room(cell: BlockCell) -> int:
            # A year's cell whose quarters are all released is pinned by them to their rounding.
            parts = parts_of.get(cell, ())
            if cell[0] != label or any(p in suppressed for p in parts):
                return values[cell] - 1
            return min(values[cell] - 1, (rule.rounding_base - 1) * len(parts))

        _link_equal(
            relations, values, threshold, suppressed, fixed, equal, year.label, room, slack=rule.rounding_base - 1
        )
    released: dict[BlockCell, int | None] = {}
    for cell, n in values.items():
        if cell in suppressed:
            released[cell] = None
            continue
        named = sorted(people(atom) for atom in support[cell])
        key = hashlib.sha256(json.dumps(named, separators=(",", ":")).encode()).hexdigest()
        released[cell] = consistent_round(n, rule, threshold[cell], secret, [["people", key]])
    _same_figure(released, equal)
    periods = frozenset(quarters) | ({year.label} if closed else frozenset())
    return Block(year, periods, released, values, dimensions)


# The period label of the span of every grid year (the whole records, when they lie inside it).
SPAN = "all"


def protect_span(
    blocks: Sequence[Block],
    *,
    group_position: int,
    rule: AggregateRule,
    secret: bytes,
    equal: Sequence[Sequence[tuple[str, str]]] = (),
) -> Block:
    """The cells over every grid year, once all are closed: each the sum of its years' cells,
    protected like a year over its quarters, with the years' figures fixed. A span cell that
    counts the people of one year only shows that year's figure. `equal`: as for `protect_block`."""
    firsts = sorted({x for b in blocks for x in b.dimensions[0].leaves})
    seconds = sorted({y for b in blocks for y in b.dimensions[1].leaves})

    def union(index: int, leaves: list[str]) -> Dimension:
        totals: dict[str, frozenset[str]] = {}
        for b in blocks:
            for name, members in b.dimensions[index].totals.items():
                totals[name] = totals.get(name, frozenset()) | members
        return Dimension(blocks[0].dimensions[index].name, tuple(leaves), totals)

    first, second = union(0, firsts), union(1, seconds)
    labels = [b.year.label for b in blocks if b.year is not None]
    values: dict[BlockCell, int] = {}
    suppressed: set[BlockCell] = set()
    for b in blocks:
        for cell, n in b.true.items():
            if b.year is not None and cell[0] == b.year.label and n:
                values[cell] = n
                values[(SPAN, cell[1], cell[2])] = values.get((SPAN, cell[1], cell[2]), 0) + n
                if b.released[cell] is None:
                    suppressed.add(cell)
    spans = [c for c in values if c[0] == SPAN]
    threshold: dict[BlockCell, int] = {}
    for cell in values:
        period, group = cell[0], cell[1 + group_position]
        if group != TOTAL:
            threshold[cell] = rule.threshold_for(int(group))
            continue
        inner = [
            int(g)
            for g in (seconds if group_position == 1 else firsts)
            if values.get((period, cell[1], g) if group_position == 1 else (period, g, cell[2]), 0)
        ]
        threshold[cell] = rule.threshold_over(inner)
    years_of = {c: [(y, c[1], c[2]) for y in labels if values.get((y, c[1], c[2]), 0)] for c in spans}
    for cell in spans:
        parts = years_of[cell]
        if values[cell] <= threshold[cell] or (len(parts) == 1 and parts[0] in suppressed):
            suppressed.add(cell)
    fixed = frozenset(c for c in values if c[0] != SPAN)

    def room(cell: BlockCell) -> int:
        parts = years_of.get(cell, ())
        if cell[0] != SPAN or any(p in suppressed for p in parts):
            return values[cell] - 1
        return min(values[cell] - 1, (rule.rounding_base - 1) * len(parts))

    relations = _relations(SPAN, labels, first, second, values)
    _link_equal(relations, values, threshold, suppressed, fixed, equal, SPAN, room, slack=rule.rounding_base - 1)
    released: dict[BlockCell, int | None] = {}
    shown = {cell: b.released[cell] for b in blocks for cell in b.released}
    for cell in spans:
        parts = years_of[cell]
        if cell in suppressed:
            released[cell] = None
        elif len(parts) == 1:
            released[cell] = shown[parts[0]]  # the same people as the year's cell: its figure
        else:
            identity = [["span", cell[1]], ["by", cell[2]], ["years", ",".join(p[0] for p in parts)]]
            released[cell] = consistent_round(values[cell], rule, threshold[cell], secret, identity)
    _same_figure(released, equal)
    true = {c: values[c] for c in spans}
    return Block(None, frozenset({SPAN}), released, true, (first, second))


def _relations(
    period: str, quarters: list[str], first: Dimension, second: Dimension, values: Mapping[BlockCell, int]
) -> list[tuple[BlockCell, tuple[BlockCell, ...]]]:
    """Every (parent, parts) among the non-zero cells of one period: each total of either
    dimension = its leaves (all origins also = outside + the other origins), and, for a year,
    each of its cells = the same cell in its `quarters`."""
    xs = [*first.leaves, *first.totals]
    ys = [*second.leaves, *second.totals]
    relations: list[tuple[BlockCell, tuple[BlockCell, ...]]] = []

    def add(parent: BlockCell, parts: Iterable[BlockCell]) -> None:
        if values.get(parent, 0):
            relations.append((parent, tuple(p for p in parts if values.get(p, 0))))

    if quarters:
        for x in xs:
            for y in ys:
                add((period, x, y), ((q, x, y) for q in quarters))
    whole = first.totals.get(TOTAL, frozenset())
    for y in ys:
        for name, members in first.totals.items():
            add((period, name, y), ((period, x, y) for x in first.leaves if x in members))
            if name == TOTAL:
                for other, inner in first.totals.items():
                    # Only a total inside TOTAL's leaves (outside the CAG, of the origins) is a part
                    # of it; another stack's total (an equality field's) is equal to it instead.
                    if other != TOTAL and inner <= whole:
                        rest = [x for x in first.leaves if x in whole and x not in inner]
                        add((period, TOTAL, y), [(period, other, y), *((period, x, y) for x in rest)])
    for x in xs:
        for name, members in second.totals.items():
            add((period, x, name), ((period, x, y) for y in second.leaves if y in members))
    return relations


def _link_equal(
    relations: list[tuple[BlockCell, tuple[BlockCell, ...]]],
    values: Mapping[BlockCell, int],
    threshold: Mapping[BlockCell, int],
    suppressed: set[BlockCell],
    fixed: frozenset[BlockCell],
    equal: Sequence[Sequence[tuple[str, str]]],
    period: str,
    room: Callable[[BlockCell], int] | None = None,
    slack: int = 0,
) -> None:
    """`_link`, with the cells of each `equal` set (in `period`) suppressed together, to a fixed
    point: hiding one of them and showing another would show both. Hidden together and shown as
    one figure, a cell of the set and the sum of another's parts is the same relation as that
    other's own, so no relation is added for it."""
    if not equal:
        _link(relations, values, threshold, suppressed, fixed, room, slack=slack)
        return
    linked = [[(period, *c) for c in same if (period, *c) in values] for same in equal]
    member_of = _members(relations)
    touched: set[BlockCell] | None = None  # None: every relation, the first time
    while True:
        _link(relations, values, threshold, suppressed, fixed, room, slack=slack, touched=touched, member_of=member_of)
        touched = set()
        for cells in linked:
            if any(c in suppressed for c in cells):
                touched.update(c for c in cells if c not in suppressed)
        if not touched:
            return
        suppressed.update(touched)


def _same_figure(released: dict[BlockCell, int | None], equal: Sequence[Sequence[tuple[str, str]]]) -> None:
    """One figure for the cells of each `equal` set in every period: the first present cell's."""
    if not equal:
        return
    periods = {cell[0] for cell in released}
    for period in periods:
        for same in equal:
            present = [(period, *c) for c in same if (period, *c) in released]
            for cell in present[1:]:
                released[cell] = released[present[0]]


def _link(
    relations: list[tuple[BlockCell, tuple[BlockCell, ...]]],
    values: Mapping[BlockCell, int],
    threshold: Mapping[BlockCell, int],
    suppressed: set[BlockCell],
    fixed: frozenset[BlockCell],
    room: Callable[[BlockCell], int] | None = None,
    slack: int = 0,
    touched: set[BlockCell] | None = None,
    member_of: Mapping[BlockCell, list[int]] | None = None,
) -> None:
    """Secondary suppression across every relation at once, until each suppressed cell has, in
    each relation it is in, a suppressed partner able to absorb its threshold band: the parent
    (which moves with a part), or other parts holding at least the band between them. Cells in
    `fixed` (already published) are never chosen. `room(cell)`: how far a suppressed cell could
    move down (its count less one, unless its published parts pin it closer). `touched`: the
    cells hidden since the relations were last brought to a fixed point (None: look at every
    relation); `member_of`: `_members(relations)`, when the caller has it."""
    room = room or (lambda cell: values[cell] - 1)
    member_of = member_of if member_of is not None else _members(relations)

    def cascades(candidate: BlockCell, here: int) -> int:
        # The other relations the candidate would be the only suppressed cell of: each would need
        # one more suppression in turn. A candidate whose row and column already hide a cell costs
        # nothing more (the classic choice that keeps secondary suppression from cascading).
        count = 0
        for i in member_of.get(candidate, ()):
            if i != here:
                parent, parts = relations[i]
                if not any(c in suppressed for c in (parent, *parts) if c != candidate):
                    count += 1
        return count

    # A relation's outcome depends only on which of its own cells are hidden (`room` is fixed while
    # this runs: it reads earlier periods' cells, which are fixed), so a sweep looks again only at
    # the relations a new suppression touched: the same result as sweeping every relation, in the
    # same order, until nothing changes.
    dirty = [touched is None] * len(relations)
    for cell in touched or ():
        for i in member_of.get(cell, ()):
            dirty[i] = True
    changed = True
    while changed:
        changed = False
        for here, (parent, parts) in enumerate(relations):
            if not dirty[here]:
                continue
            dirty[here] = False
            hidden = [c for c in (parent, *parts) if c in suppressed]
            if not hidden:
                continue
            # Released figures are known only to within their rounding: one of the relation's
            # released cells leaves the suppressed ones `slack` more play.
            shown = sum(1 for c in (parent, *parts) if c not in suppressed)
            play = slack * min(1, shown)
            for cell in hidden:
                if _covered(cell, parent, parts, values, room, threshold, suppressed, play):
                    continue
                have = play + sum(room(p) for p in parts if p != cell and p in suppressed)
                candidate = _partner(
                    cell,
                    parent,
                    parts,
                    values,
                    room,
                    suppressed | fixed,
                    threshold[cell] - have,
                    functools.partial(cascades, here=here),
                )
                if candidate is None:
                    break
                suppressed.add(candidate)
                for i in member_of.get(candidate, ()):
                    dirty[i] = True
                changed = True


def _members(relations: Sequence[tuple[BlockCell, tuple[BlockCell, ...]]]) -> dict[BlockCell, list[int]]:
    """Each cell's relations, by index."""
    member_of: dict[BlockCell, list[int]] = {}
    for i, (parent, parts) in enumerate(relations):
        for c in (parent, *parts):
            member_of.setdefault(c, []).append(i)
    return member_of


def _covered(
    cell: BlockCell,
    parent: BlockCell,
    parts: tuple[BlockCell, ...],
    values: Mapping[BlockCell, int],
    room: Callable[[BlockCell], int],
    threshold: Mapping[BlockCell, int],
    suppressed: set[BlockCell],
    play: int,
) -> bool:
    if cell != parent and parent in suppressed:
        return True
    if room(cell) < values[cell] - 1:
        return True  # pinned to its released parts' rounding: nothing more can hide it
    partners = [p for p in parts if p != cell and p in suppressed]
    return bool(partners) and play + sum(room(p) for p in partners) >= threshold[cell]


def _partner(
    cell: BlockCell,
    parent: BlockCell,
    parts: tuple[BlockCell, ...],
    values: Mapping[BlockCell, int],
    room: Callable[[BlockCell], int],
    suppressed: set[BlockCell],
    short: int,
    cascades: Callable[[BlockCell], int],
) -> BlockCell | None:
    """The cheapest cell to suppress with `cell`: the released part that could move freely, makes
    up the `short` room alone and leaves the fewest other relations needing one more suppression
    (`cascades`), then the smallest, totals last; else the parent."""
    # A cell pinned by released parts hides nothing: never chosen.
    open_parts = [p for p in parts if p != cell and p not in suppressed and room(p) >= values[p] - 1]
    if open_parts:
        # Enough on its own (one more cell, not a run of small ones), and no new work elsewhere.
        return min(
            open_parts,
            key=lambda p: (cascades(p) + (room(p) < short), TOTAL in p or OUTSIDE in p, values[p], p),
        )
    if cell != parent and parent not in suppressed and room(parent) >= values[parent] - 1:
        return parent
    return None

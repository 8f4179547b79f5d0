"""The outcomes and equality tables as a node releases them, from true counts the release ledger
has admitted: each a stack of tables over the same people, protected as one (`node.linked`).

Outcomes: departures from short-term services by client group x measure x value, where the
measure is "departure" (planned / unplanned) or an outcome domain (achieved / not-achieved /
not-applicable). Its departure cells are KPI 2's own figures for the same question, taken as the
KPI answer releases them, so that the two answers never show one count two ways.

Equality: new client records by client group x dimension x category (the profile), or a cross-tab
of two dimensions whose margins are the profile's own released figures for the same question. A
cross-tab most of whose cells would be small is refused: it would isolate people.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from node.answers.movement import Question
from node.linked import Cell, Protected, leaves_dimension, protect_linked, total_dimension
from shared.disclosure import TOTAL
from shared.errors import DisclosureRefused
from shared.kinds.equality import DIMENSIONS
from shared.kinds.outcomes import DEPARTURE, MEASURES, VALUES
from shared.models import CountCell, CountTable
from shared.policy import AggregateRule

__all__ = [
    "OUTCOME_DIMENSIONS",
    "PROFILE_DIMENSIONS",
    "MonthlyCounts",
    "cross_tab_table",
    "departures_of",
    "outcomes_table",
    "profile_table",
]

# The grain the release ledger keeps each kind at (a month, so that periods compare).
OUTCOME_DIMENSIONS = ("client_group", "measure", "value", "month")
PROFILE_DIMENSIONS = ("client_group", "dimension", "category", "month")
# A cross-tab with more than this share of its non-zero cells small is refused.
MAX_SMALL_SHARE = 0.5


def _month_aligned(question: Question) -> bool:
    """Whether the question's span is whole calendar months (open ends count as aligned)."""
    starts = question.from_date is None or question.from_date.day == 1
    ends = question.to_date is None or (question.to_date + timedelta(days=1)).day == 1
    return starts and ends


def _month(day: date | None) -> str:
    return "" if day is None else f"{day.year:04d}-{day.month:02d}"


@dataclass
class MonthlyCounts:
    """A kind's true counts by (client group, ..., month) over all the records, kept for one
    records edition: a plan asks the same kind for every year and quarter of its span, and each
    whole-month question is then a filter of these rather than another read of the store.
    `count(question)` reads the store; keys start with the client group and end with the month."""

    count: Callable[[Question], dict[tuple[int, str, str, str], int]]
    _edition: tuple[object, ...] | None = None
    _all: dict[tuple[int, str, str, str], int] = field(default_factory=dict)

    def __call__(self, question: Question, edition: tuple[object, ...]) -> dict[tuple[int, str, str, str], int]:
        if not _month_aligned(question):
            return self.count(question)
        if self._edition != edition:
            self._all = self.count(Question(None, None, "all", (), question.min_share_percent))
            self._edition = edition
        first, last = _month(question.from_date), _month(question.to_date)
        groups = set(question.client_groups)
        return {
            key: n
            for key, n in self._all.items()
            if (not first or key[-1] >= first) and (not last or key[-1] <= last) and (not groups or key[0] in groups)
        }


def _leaf(measure: str, value: str) -> str:
    return f"{measure}:{value}"


def _identity(key: Cell) -> list[list[str]]:
    """What makes two cells the same cell, as `shared.disclosure` keys rounding: the client group
    and the measure's value (the departure cells thus round as KPI 2's do)."""
    group, leaf = key
    named = [["client_group", group]] if group != TOTAL else []
    if ":" in leaf:
        measure, value = leaf.split(":", 1)
        named.append([measure, value])
    return sorted(named)


def _stack(raw: Mapping[tuple[str, ...], int]) -> tuple[dict[tuple[str, str, int], int], list[str]]:
    atoms: dict[tuple[str, str, int], int] = {}
    for (group, measure, value, _month), n in raw.items():
        key = (group, _leaf(measure, value), int(group))
        atoms[key] = atoms.get(key, 0) + n
    groups = sorted({k[0] for k, n in atoms.items() if n}, key=int)
    return atoms, groups


def _protect_stack(
    raw: Mapping[tuple[str, ...], int],
    tables: Mapping[str, tuple[str, ...]],
    *,
    rule: AggregateRule,
    secret: bytes,
    given: Mapping[Cell, int | None] | None = None,
) -> tuple[Protected, list[str], dict[str, list[str]]]:
    atoms, groups = _stack(raw)
    present: dict[str, list[str]] = {
        name: sorted({k[1].split(":", 1)[1] for k, n in atoms.items() if n and k[1].startswith(name + ":")})
        for name in tables
    }
    first = total_dimension("client_group", groups)
    second = leaves_dimension(
        "table",
        [_leaf(t, v) for t, values in present.items() for v in values],
        {t: [_leaf(t, v) for v in values] for t, values in present.items() if values},
    )
    equal = [[(x, t) for t in tables] for x in [*groups, TOTAL]]
    protected = protect_linked(
        atoms, first, second, rule=rule, secret=secret, identity=_identity, equal=equal, given=given
    )
    return protected, groups, present


def _cells(
    protected: Protected, groups: list[str], values: Mapping[str, tuple[str, ...] | list[str]]
) -> tuple[CountCell, ...]:
    cells = []
    for x in [*groups, TOTAL]:
        for table, shown in values.items():
            for v in [*shown, TOTAL]:
                count, why = protected.figure((x, table if v == TOTAL else _leaf(table, v)))
                cells.append(CountCell(key=(x, table, v), count=count, suppressed=why, margin=TOTAL in (x, v)))
    return tuple(cells)


def departures_of(raw: Mapping[tuple[str, ...], int]) -> dict[tuple[str, ...], int]:
    """KPI 2's true counts (client group, planned/unplanned, month) inside the outcomes counts."""
    return {(g, v, month): n for (g, measure, v, month), n in raw.items() if measure == DEPARTURE}


def outcomes_table(
    authority: str,
    raw: Mapping[tuple[str, ...], int],
    question: Question,
    *,
    rule: AggregateRule,
    secret: bytes,
    kpi: CountTable | None,
) -> CountTable:
    """The outcomes table; `kpi`: KPI 2's released table for the same question, whose figures
    (and suppressions) the departure cells keep."""
    given: dict[Cell, int | None] = {}
    if kpi is not None:
        for c in kpi.cells:
            group, departure = c.key
            given[(group, DEPARTURE if departure == TOTAL else _leaf(DEPARTURE, departure))] = c.count
    tables = {m: VALUES[m] for m in MEASURES}
    protected, groups, _present = _protect_stack(raw, tables, rule=rule, secret=secret, given=given)
    return CountTable(
        authority=authority,
        kind="outcomes",
        dimensions=("client_group", "measure", "value"),
        cells=_cells(protected, groups, tables) if groups else (),
        question=question.as_asked(),
    )


def _profile(
    raw: Mapping[tuple[str, ...], int], *, rule: AggregateRule, secret: bytes
) -> tuple[Protected, list[str], dict[str, list[str]]]:
    return _protect_stack(raw, {d: () for d in DIMENSIONS}, rule=rule, secret=secret)


def profile_table(
    authority: str, raw: Mapping[tuple[str, ...], int], question: Question, *, rule: AggregateRule, secret: bytes
) -> CountTable:
    protected, groups, present = _profile(raw, rule=rule, secret=secret)
    return CountTable(
        authority=authority,
        kind="equality",
        dimensions=("client_group", "dimension", "category"),
        cells=_cells(protected, groups, present) if groups else (),
        question=question.as_asked(),
    )


def cross_tab_table(
    authority: str,
    raw: Mapping[tuple[str, ...], int],
    atoms: Mapping[tuple[int, str, str], int],
    question: Question,
    *,
    rows: str,
    columns: str,
    rule: AggregateRule,
    secret: bytes,
    margins: CountTable | None = None,
) -> CountTable:
    """`rows` x `columns` from `atoms` ((client group, row category, column category) -> true
    count), margins as the profile releases them: `margins`, the profile's released table for
    the same question when it has one (the standard table set's), else protected from `raw` as
    the profile is. Refused (DisclosureRefused) when more than half its non-zero cells would be
    small: such a table shows little but who is alone."""
    interior: dict[tuple[str, str], tuple[int, set[int]]] = {}
    for (group, a, b), n in atoms.items():
        count, groups = interior.get((a, b), (0, set()))
        interior[(a, b)] = (count + n, groups | {group})
    non_zero = [(n, groups) for n, groups in interior.values() if n]
    small = sum(1 for n, groups in non_zero if n <= rule.threshold_over(groups))
    if non_zero and small > MAX_SMALL_SHARE * len(non_zero):
        raise DisclosureRefused(
            "cross-tab: most of its cells would be small, so it would isolate people; "
            "ask for a wider span, fewer client groups or other dimensions"
        )
    if margins is not None:
        shown = {(c.key[1], c.key[2]): c.count for c in margins.cells if c.key[0] == TOTAL}

        def margin_of(cell: Cell) -> int | None:
            table, value = cell[1].split(":", 1) if ":" in cell[1] else (cell[1], TOTAL)
            return shown.get((table, value), 0)
    else:
        profile, _groups, _present = _profile(raw, rule=rule, secret=secret)

        def margin_of(cell: Cell) -> int | None:
            return profile.figure(cell)[0]

    given: dict[Cell, int | None] = {}
    firsts = sorted({a for (a, _b), (n, _g) in interior.items() if n})
    seconds = sorted({b for (_a, b), (n, _g) in interior.items() if n})
    for a in firsts:
        given[(a, TOTAL)] = margin_of((TOTAL, _leaf(rows, a)))
    for b in seconds:
        given[(TOTAL, b)] = margin_of((TOTAL, _leaf(columns, b)))
    given[(TOTAL, TOTAL)] = margin_of((TOTAL, rows))

    def identity(key: Cell) -> list[list[str]]:
        return sorted([d, v] for d, v in zip((rows, columns), key, strict=True) if v != TOTAL)

    protected = protect_linked(
        {(a, b, g): n for (g, a, b), n in atoms.items()},
        total_dimension(rows, firsts),
        total_dimension(columns, seconds),
        rule=rule,
        secret=secret,
        identity=identity,
        given=given,
    )
    cells = []
    for a in [*firsts, TOTAL]:
        for b in [*seconds, TOTAL]:
            figure, why = protected.figure((a, b))
            cells.append(CountCell(key=(a, b), count=figure, suppressed=why, margin=TOTAL in (a, b)))
    return CountTable(
        authority=authority,
        kind="equality",
        dimensions=(rows, columns),
        cells=tuple(cells) if firsts else (),
        question=question.as_asked(),
    )

"""The one disclosure-control layer every aggregate passes through before a node releases it.

Pure functions over small typed tables (suppression, consistent rounding, secondary suppression,
dominance and p% rules, query-set restriction) and a release ledger over a small storage protocol
that refuses queries whose difference from an earlier release would isolate a few people.
Refusals are DisclosureRefused; their messages name the rule and never carry figures or keys.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from itertools import combinations
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, Protocol

from shared.canonical import canonical_json
from shared.errors import DisclosureRefused, InvalidRequest
from shared.policy import AggregateRule

__all__ = [
    "GROUP_DIMENSION",
    "SHARE_GRID",
    "TOTAL",
    "Cell",
    "CellKey",
    "InMemoryReleaseStore",
    "MagnitudeCell",
    "MagnitudeTable",
    "Protection",
    "Release",
    "ReleaseLedger",
    "ReleaseStore",
    "ReleasedCell",
    "ReleasedTable",
    "Table",
    "check_differencing",
    "check_share_threshold",
    "consistent_round",
    "intake_band",
    "isolates_few",
    "load_secret",
    "protect_counts",
    "protect_magnitudes",
    "require_dimensions",
    "require_min_authorities",
    "require_min_records",
    "share_band",
]

CellKey = tuple[str, ...]
# The client group of a cell (None: not one group), or the client groups a total covers.
GroupOf = Callable[[CellKey], int | Collection[int] | None]

# The label a margin carries in place of the dimension it sums over: ("14", "*") is the total
# for client group 14 over every district; ("*", "*") is the grand total.
TOTAL = "*"

# The dimension whose values are SP client group codes; stricter thresholds key off it.
GROUP_DIMENSION = "client_group"

_MIN_SECRET_BYTES = 16
_ROUNDING_CONTEXT = b"cagnet/consistent-rounding/v1\x00"


class Protection(StrEnum):
    """Why a released cell shows what it shows."""

    RELEASED = "released"
    PRIMARY = "primary-suppression"  # a count of 1..threshold
    GROUP = "group-threshold"  # a count above the threshold but within its client group's
    SECONDARY = "secondary-suppression"  # suppressed so that another cannot be worked out
    # Standard tables: small, or suppressed so that a small one cannot be worked out; which of the
    # two is not said, so that a reader cannot bound the cell by the threshold.
    GRID = "grid-suppression"
    MIN_CONTRIBUTORS = "min-contributors"  # money: too few contributors
    DOMINANCE = "dominance"  # money: (n, k) rule
    P_PERCENT = "p-percent"  # money: p% rule


# --- tables ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One count: `key` holds one value per dimension of its table."""

    key: CellKey
    value: int


@dataclass(frozen=True)
class Table:
    """A table of counts. Combinations absent from `cells` are zeros, and are released as such."""

    dimensions: tuple[str, ...]
    cells: tuple[Cell, ...]

    def __post_init__(self) -> None:
        _check_shape(self.dimensions, [c.key for c in self.cells])
        for cell in self.cells:
            if isinstance(cell.value, bool) or not isinstance(cell.value, int) or cell.value < 0:
                raise InvalidRequest("a count must be a whole number, zero or more")

    @classmethod
    def of(cls, dimensions: Sequence[str], values: Mapping[CellKey, int]) -> Table:
        return cls(tuple(dimensions), tuple(Cell(tuple(k), v) for k, v in values.items()))


@dataclass(frozen=True)
class MagnitudeCell:
    """One money cell: `contributions` maps each contributor to its amount in pounds.

    A contributor is whatever must not be recoverable: a provider, a contract, or one
    authority's spend with one provider. Sum a contributor's amounts before building the cell.
    """

    key: CellKey
    contributions: Mapping[str, float]


@dataclass(frozen=True)
class MagnitudeTable:
    dimensions: tuple[str, ...]
    cells: tuple[MagnitudeCell, ...]

    def __post_init__(self) -> None:
        _check_shape(self.dimensions, [c.key for c in self.cells])
        for cell in self.cells:
            for amount in cell.contributions.values():
                if isinstance(amount, bool) or not math.isfinite(amount) or amount < 0:
                    raise InvalidRequest("a contribution must be a finite amount, zero or more")


def _check_shape(dimensions: tuple[str, ...], keys: Sequence[CellKey]) -> None:
    if not dimensions or len(set(dimensions)) != len(dimensions):
        raise InvalidRequest("a table needs one or more dimensions, each named once")
    if len(set(keys)) != len(keys):
        raise InvalidRequest("a table may hold each cell key once")
    for key in keys:
        if len(key) != len(dimensions):
            raise InvalidRequest("every cell key needs one value per dimension")
        if TOTAL in key:
            raise InvalidRequest("a cell key may not use the margin label")


@dataclass(frozen=True)
class ReleasedCell:
    key: CellKey
    value: int | None  # None: suppressed
    rule: Protection
    margin: bool = False

    @property
    def suppressed(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class ReleasedTable:
    """What may leave the node: interior cells, then row margins, column margins, grand total."""

    dimensions: tuple[str, ...]
    cells: tuple[ReleasedCell, ...]
    _index: Mapping[CellKey, ReleasedCell] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", MappingProxyType({c.key: c for c in self.cells}))

    def __getitem__(self, key: CellKey) -> ReleasedCell:
        return self._index[key]

    def values(self) -> dict[CellKey, int | None]:
        return {c.key: c.value for c in self.cells}


# --- checks that refuse ---------------------------------------------------------------------------


def require_dimensions(n_dimensions: int, rule: AggregateRule) -> None:
    if n_dimensions > rule.max_dimensions:
        raise DisclosureRefused("maximum dimensions: the policy allows fewer dimensions for this aggregate")


def require_min_records(n_selected: int, rule: AggregateRule, *, client_group: int | None = None) -> None:
    """Query-set restriction: a filter selecting 1..threshold records is refused (none is fine)."""
    if 1 <= n_selected <= rule.threshold_for(client_group):
        raise DisclosureRefused("query-set restriction: the filter selects too few records")


def require_min_authorities(n_authorities: int, rule: AggregateRule) -> None:
    if n_authorities < rule.min_authorities:
        raise DisclosureRefused("minimum authorities: a joint figure needs more authorities")


ROUNDING_SECRET_BYTES = 32


def load_secret(path: Path) -> bytes:
    """A rounding key, made on first use (32 random bytes, readable by the owner only)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(ROUNDING_SECRET_BYTES))
        path.chmod(0o600)
    secret = path.read_bytes()
    if len(secret) < ROUNDING_SECRET_BYTES:
        raise InvalidRequest(f"{path} is not a rounding key ({ROUNDING_SECRET_BYTES} random bytes expected)")
    return secret


# The only share thresholds a non-local services question may name, in percent. A free threshold
# (1 to 100) could be bisected to give each service's exact share, which with its intake band
# pinned small counts; on this grid a share is never known more finely than a quarter.
SHARE_GRID = (25, 50, 75)


def check_share_threshold(percent: int, *, field: str = "min_share_percent") -> int:
    """A share threshold on the grid, or InvalidRequest naming the field."""
    if percent not in SHARE_GRID:
        shown = ", ".join(str(p) for p in SHARE_GRID)
        raise InvalidRequest(f"{field}: one of {shown} (percent); a free threshold is not allowed")
    return percent


def intake_band(count: int, rule: AggregateRule, *, client_group: int | None = None) -> str | None:
    """A count shown only as a band whose lowest value is above the client group's small-count
    threshold ("8-49", "50-99", "100+"; "11-49" for domestic violence and refugees); None when the
    count is too small to describe at all.

    The lowest band reaches 49: set against a share band on the grid, a band as narrow as "8-19"
    would narrow a service's local count to a few small values (0 to 4 for "75-100%"); from "8-49"
    or "11-49" it leaves at least thirteen."""
    threshold = rule.threshold_for(client_group)
    if count <= threshold:
        return None
    low = threshold + 1
    for high in (49, 99):
        if high < low:
            continue
        if count <= high:
            return f"{low}-{high}"
        low = high + 1
    return f"{low}+"


def share_band(part: int, whole: int) -> str:
    """A share as the band of the share grid it falls in ("0-24%", "25-49%", "50-74%", "75-100%")."""
    if whole <= 0 or not 0 <= part <= whole:
        raise InvalidRequest("a share needs 0 <= part <= whole and whole > 0")
    edges = (0, *SHARE_GRID, 101)
    for low, high in itertools.pairwise(edges):
        if 100 * part < high * whole:
            return f"{low}-{min(high - 1, 100)}%"
    return f"{SHARE_GRID[-1]}-100%"


# --- the layout of a table with its margins -------------------------------------------------------


@dataclass
class _Entry:
    key: CellKey
    true: float
    margin: bool
    lines: tuple[int, ...]  # the lines (row or column sums) this entry takes part in
    threshold: int = 0
    rule: Protection | None = None  # None while released


@dataclass
class _Layout:
    entries: list[_Entry]
    lines: list[list[int]]
    # Two-way tables: each entry joins its row line to its column line; None for one-way tables.
    grid: bool


def _layout(
    dimensions: tuple[str, ...], keys: Sequence[CellKey], value_of: Callable[[CellKey], float], margins: bool
) -> _Layout:
    """The interior cells (absent combinations filled in) and, with `margins`, the totals.

    A table of three or more dimensions is laid out two-way: the first dimension gives the
    rows and the combination of the others the columns, with margins for each.
    """
    n = len(dimensions)
    rows = list(dict.fromkeys(k[0] for k in keys))
    entries: list[_Entry] = []
    if n == 1:
        in_total: tuple[int, ...] = (0,) if margins else ()
        for r in rows:
            entries.append(_Entry((r,), value_of((r,)), False, in_total))
        if margins:
            total = sum(e.true for e in entries)
            entries.append(_Entry((TOTAL,), total, True, (0,)))
        return _Layout(entries, [list(range(len(entries)))] if margins else [], grid=False)

    cols = list(dict.fromkeys(k[1:] for k in keys))
    n_rows, n_cols = len(rows), len(cols)

    # Line ids: rows 0..n_rows (the last is the margin row), then columns.
    def row_line(i: int) -> int:
        return i

    def col_line(j: int) -> int:
        return n_rows + 1 + j

    grid: dict[tuple[int, int], _Entry] = {}
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            key = (r, *c)
            grid[i, j] = _Entry(key, value_of(key), False, (row_line(i), col_line(j)) if margins else ())
    if margins:
        blank = (TOTAL,) * (n - 1)
        for i, r in enumerate(rows):
            total = sum(grid[i, j].true for j in range(n_cols))
            grid[i, n_cols] = _Entry((r, *blank), total, True, (row_line(i), col_line(n_cols)))
        for j, c in enumerate(cols):
            total = sum(grid[i, j].true for i in range(n_rows))
            grid[n_rows, j] = _Entry((TOTAL, *c), total, True, (row_line(n_rows), col_line(j)))
        grand = sum(grid[i, j].true for i in range(n_rows) for j in range(n_cols))
        grid[n_rows, n_cols] = _Entry((TOTAL, *blank), grand, True, (row_line(n_rows), col_line(n_cols)))
    # Interior row by row, then row margins, column margins, grand total.
    order = sorted(grid, key=lambda ij: (ij[0] == n_rows, ij[1] == n_cols, ij))
    entries = [grid[ij] for ij in order]
    lines: list[list[int]] = [[] for _ in range((n_rows + 1) + (n_cols + 1))] if margins else []
    for index, entry in enumerate(entries):
        for line in entry.lines:
            lines[line].append(index)
    return _Layout(entries, lines, grid=margins)


# --- secondary suppression ------------------------------------------------------------------------


def _secondary_suppression(layout: _Layout) -> None:
    """Suppress more entries until no suppressed entry can be worked out from the sums.

    Each line (a row or column with its margin) is an equation. A line with exactly one suppressed
    entry gives it away, so a second is suppressed in it; this runs to a fixed point. For two-way
    tables that is not enough: the suppressed entries form a graph whose nodes are the lines
    and whose edges are the entries, and an entry is determined by the equations exactly when its
    edge is a bridge (lies on no cycle). Each bridge is closed into a cycle by suppressing one
    entry that joins the two sides; when no bridge is left, no suppressed entry is determined.
    """
    while True:
        _close_lines(layout)
        if not layout.grid:
            return
        bridge = _find_bridge(layout)
        if bridge is None:
            return
        _close_bridge(layout, bridge)


def _cost(layout: _Layout, index: int) -> tuple[bool, bool, int, float, CellKey]:
    """Which entry to give up first: interior before margins, non-zero before zero (a suppressed
    zero can pin its neighbours at their bounds), then the fewest newly exposed lines, then the
    smallest value; the key last, so the choice never depends on the order of the input."""
    entry = layout.entries[index]
    exposed = sum(1 for line in entry.lines if not any(layout.entries[i].rule is not None for i in layout.lines[line]))
    return (entry.margin, entry.true == 0, exposed, entry.true, entry.key)


def _close_lines(layout: _Layout) -> None:
    changed = True
    while changed:
        changed = False
        for line in layout.lines:
            suppressed = [i for i in line if layout.entries[i].rule is not None]
            if len(suppressed) != 1:
                continue
            candidates = [i for i in line if layout.entries[i].rule is None]
            if not candidates:
                raise DisclosureRefused("secondary suppression: this table cannot be protected")
            chosen = min(candidates, key=lambda i: _cost(layout, i))
            layout.entries[chosen].rule = Protection.SECONDARY
            changed = True


def _suppressed_edges(layout: _Layout) -> dict[int, tuple[int, int]]:
    return {
        index: (entry.lines[0], entry.lines[1]) for index, entry in enumerate(layout.entries) if entry.rule is not None
    }


def _find_bridge(layout: _Layout) -> int | None:
    """A suppressed entry whose edge is a bridge (Tarjan's low-link, iteratively), or None."""
    edges = _suppressed_edges(layout)
    adjacent: dict[int, list[tuple[int, int]]] = {}
    for index, (a, b) in edges.items():
        adjacent.setdefault(a, []).append((b, index))
        adjacent.setdefault(b, []).append((a, index))
    order: dict[int, int] = {}
    low: dict[int, int] = {}
    bridges: list[int] = []
    for root in sorted(adjacent):
        if root in order:
            continue
        order[root] = low[root] = len(order)
        stack: list[tuple[int, int, int]] = [(root, -1, 0)]  # node, edge used to reach it, next neighbour
        while stack:
            node, via, position = stack[-1]
            if position < len(adjacent[node]):
                stack[-1] = (node, via, position + 1)
                neighbour, edge = adjacent[node][position]
                if edge == via:
                    continue
                if neighbour in order:
                    low[node] = min(low[node], order[neighbour])
                else:
                    order[neighbour] = low[neighbour] = len(order)
                    stack.append((neighbour, edge, 0))
                continue
            stack.pop()
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[node])
                if low[node] > order[parent]:
                    bridges.append(via)
    if not bridges:
        return None
    return min(bridges, key=lambda i: layout.entries[i].key)


def _close_bridge(layout: _Layout, bridge: int) -> None:
    edges = _suppressed_edges(layout)
    del edges[bridge]
    a, b = layout.entries[bridge].lines
    side_a = _component(a, edges)
    candidates = [
        index
        for index, entry in enumerate(layout.entries)
        if entry.rule is None and (entry.lines[0] in side_a) != (entry.lines[1] in side_a)
    ]
    # After `_close_lines` both ends of a bridge have another suppressed entry, so there is always
    # an entry joining the two sides; refusing is the safe answer if that ever fails.
    if not candidates or b in side_a:
        raise DisclosureRefused("secondary suppression: this table cannot be protected")
    chosen = min(candidates, key=lambda i: _cost(layout, i))
    layout.entries[chosen].rule = Protection.SECONDARY


def _component(start: int, edges: Mapping[int, tuple[int, int]]) -> set[int]:
    adjacent: dict[int, list[int]] = {}
    for a, b in edges.values():
        adjacent.setdefault(a, []).append(b)
        adjacent.setdefault(b, []).append(a)
    seen = {start}
    frontier = [start]
    while frontier:
        node = frontier.pop()
        for neighbour in adjacent.get(node, []):
            if neighbour not in seen:
                seen.add(neighbour)
                frontier.append(neighbour)
    return seen


# --- counts ---------------------------------------------------------------------------------------


def protect_counts(
    table: Table,
    rule: AggregateRule,
    *,
    secret: bytes,
    group_of: GroupOf | None = None,
    margins: bool = True,
) -> ReleasedTable:
    """Suppress, secondary-suppress and round a table of counts for release.

    - Counts 1..`rule.threshold` are suppressed; for a cell of a client group with a stricter
      threshold (by default 10 for groups 14 and 17), 1..that threshold. `group_of(key)` gives a
      cell's client group, or the client groups a stand-alone total covers; by default the
      table's "client_group" dimension, if it has one.
    - A margin takes the strictest threshold of the groups it covers: its own (`group_of`) and
      that of every non-zero cell it sums. A total of domestic violence clients only is as
      sensitive as their own cell, so it is never released where their cell is suppressed. (A
      cell's being non-zero is public already: it is released as 0 or not.)
    - Zeros are released as 0: an empty cell says that nobody is there, which is not about
      anyone (NHS Digital and OpenSAFELY release zeros too). Where "nobody in this group here"
      would itself be sensitive, leave that dimension out or ask the node for a coarser table.
    - Margins (row, column and grand totals) are summed from the true values, then protected by
      the same rules; then secondary suppression makes sure that no suppressed entry can be worked
      out from the rows, columns and total that are released.
    - Released counts are rounded consistently: the same true value in the same cell (the same
      dimension values, whatever else the table holds) always rounds the same way, so asking
      again averages nothing out. A released count is never inside the suppressed range:
      a count just above the threshold rounds up to the first multiple of the base above it.
    """
    require_dimensions(len(table.dimensions), rule)
    if len(secret) < _MIN_SECRET_BYTES:
        raise ValueError(f"the rounding secret must be at least {_MIN_SECRET_BYTES} bytes")
    group_of = group_of if group_of is not None else _group_of_dimension(table.dimensions)
    values = {c.key: c.value for c in table.cells}
    layout = _layout(table.dimensions, [c.key for c in table.cells], lambda k: values.get(k, 0), margins)
    for entry in layout.entries:
        entry.threshold = _threshold(rule, group_of(entry.key))
    _margin_thresholds(layout)
    for entry in layout.entries:
        count = int(entry.true)
        if 1 <= count <= rule.threshold:
            entry.rule = Protection.PRIMARY
        elif 1 <= count <= entry.threshold:
            entry.rule = Protection.GROUP
    _secondary_suppression(layout)
    released = []
    for entry in layout.entries:
        if entry.rule is not None:
            released.append(ReleasedCell(entry.key, None, entry.rule, entry.margin))
            continue
        identity = _identity(table.dimensions, entry.key)
        value = _round(int(entry.true), rule, entry.threshold, secret, identity)
        released.append(ReleasedCell(entry.key, value, Protection.RELEASED, entry.margin))
    return ReleasedTable(table.dimensions, tuple(released))


def _threshold(rule: AggregateRule, groups: int | Collection[int] | None) -> int:
    if groups is None or isinstance(groups, int):
        return rule.threshold_for(groups)
    return rule.threshold_over(groups)


def _margin_thresholds(layout: _Layout) -> None:
    """Raise each margin's threshold to the strictest of the non-zero cells it sums."""
    interior = [e for e in layout.entries if not e.margin]
    for entry in layout.entries:
        if not entry.margin:
            continue
        covered = [
            layout.entries[i] for line in entry.lines for i in layout.lines[line] if not layout.entries[i].margin
        ]
        # The grand total of a two-way table shares its lines with margins only: it sums everything.
        for cell in covered or interior:
            if cell.true > 0:
                entry.threshold = max(entry.threshold, cell.threshold)


def _group_of_dimension(dimensions: tuple[str, ...]) -> GroupOf:
    if GROUP_DIMENSION not in dimensions:
        return lambda key: None
    position = dimensions.index(GROUP_DIMENSION)

    def group_of(key: CellKey) -> int | None:
        value = key[position]
        return int(value) if value.isdigit() else None

    return group_of


def _identity(dimensions: tuple[str, ...], key: CellKey) -> list[list[str]]:
    """What makes two cells "the same cell": their dimension values, by name, margins left out."""
    return sorted([d, v] for d, v in zip(dimensions, key, strict=True) if v != TOTAL)


def consistent_round(count: int, rule: AggregateRule, threshold: int, secret: bytes, identity: list[list[str]]) -> int:
    """A released count rounded by the policy's mode, keyed on `identity` (what makes two cells
    the same cell) and the true count, never inside 1..`threshold`."""
    return _round(count, rule, threshold, secret, identity)


def _round(count: int, rule: AggregateRule, threshold: int, secret: bytes, identity: list[list[str]]) -> int:
    if count == 0:
        return 0
    if rule.rounding_mode == "midpoint6":
        released = math.ceil(count / 6) * 6 - 3
        while released <= threshold:
            released += 6
        return released
    base = rule.rounding_base
    below, remainder = count - count % base, count % base
    if remainder == 0:
        released = count
    elif rule.rounding_mode == "nearest":
        released = below + base if 2 * remainder >= base else below
    else:
        # Up with probability remainder/base, so the expected release is the true count; the
        # "coin" is a keyed hash of the cell and its true value, so it lands the same every time.
        released = below + base if _uniform(secret, identity, count) < remainder / base else below
    floor = (threshold // base + 1) * base
    return max(released, floor)


def _uniform(secret: bytes, identity: list[list[str]], count: int) -> float:
    # A list of lists of strings and a number: sorting keys changes nothing, so the coins land as before.
    message = canonical_json([identity, count], ensure_ascii=False)
    mac = hmac.new(secret, _ROUNDING_CONTEXT + message, hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") / 2**64


# --- money ----------------------------------------------------------------------------------------


def protect_magnitudes(table: MagnitudeTable, rule: AggregateRule, *, margins: bool = True) -> ReleasedTable:
    """Protect a table of money (sums of contributions), released to the pound.

    A cell is suppressed if it has fewer than `rule.min_contributors` contributors; if its
    `dominance_n` largest contributions exceed `dominance_k` of its total; or if the total less
    the two largest is under `p_percent` of the largest (so the second largest could estimate the
    largest to within p%). A cell with no contributions is released as 0. Margins merge each
    contributor's amounts across the line before the same rules apply, and secondary suppression
    keeps every suppressed cell from being worked out from the margins.
    """
    require_dimensions(len(table.dimensions), rule)
    merged = _merged_contributions(table.dimensions, table.cells)
    layout = _layout(
        table.dimensions,
        [c.key for c in table.cells],
        lambda k: math.fsum(merged.get(k, {}).values()),
        margins,
    )
    for entry in layout.entries:
        entry.rule = _magnitude_rule(merged.get(entry.key, {}), rule)
    _secondary_suppression(layout)
    released = [
        ReleasedCell(e.key, None, e.rule, e.margin)
        if e.rule is not None
        else ReleasedCell(e.key, round(e.true), Protection.RELEASED, e.margin)
        for e in layout.entries
    ]
    return ReleasedTable(table.dimensions, tuple(released))


def _merged_contributions(
    dimensions: tuple[str, ...], cells: Iterable[MagnitudeCell]
) -> dict[CellKey, dict[str, float]]:
    """Each cell's contributions, and each margin's: every contributor's amounts merged across
    what the margin sums, so that one provider in two cells of a row counts once in its total."""
    merged: dict[CellKey, dict[str, float]] = {}
    rest = (TOTAL,) * (len(dimensions) - 1)
    for cell in cells:
        key = cell.key
        one_way = len(dimensions) == 1
        targets = [key, (TOTAL,)] if one_way else [key, (key[0], *rest), (TOTAL, *key[1:]), (TOTAL, *rest)]
        for target in targets:
            into = merged.setdefault(target, {})
            for contributor, amount in cell.contributions.items():
                into[contributor] = into.get(contributor, 0.0) + amount
    return merged


def _magnitude_rule(contributions: Mapping[str, float], rule: AggregateRule) -> Protection | None:
    amounts = sorted((a for a in contributions.values() if a > 0), reverse=True)
    if not amounts:
        return None
    total = math.fsum(amounts)
    if len(amounts) < rule.min_contributors:
        return Protection.MIN_CONTRIBUTORS
    if math.fsum(amounts[: rule.dominance_n]) > rule.dominance_k * total:
        return Protection.DOMINANCE
    largest, second = amounts[0], amounts[1]
    if total - largest - second < rule.p_percent * largest:
        return Protection.P_PERCENT
    return None


# --- the release ledger ---------------------------------------------------------------------------


class Release(NamedTuple):
    """One earlier release as the ledger keeps it: TRUE counts, keyed at the finest grain selected."""

    query_signature: str
    dimensions: tuple[str, ...]
    cells: Mapping[CellKey, int]
    at: datetime


class ReleaseStore(Protocol):
    """Where a node keeps what it has released, per aggregate kind. Two methods, append-only.

    `record` keeps one release: the query's signature (any stable string that is equal for
    equal queries, e.g. a digest of the canonical request), the names of the dimensions its cell
    keys follow, the TRUE counts by key, and the time (timezone-aware UTC). `previous` yields
    every release recorded for that kind, oldest first. A store never edits or drops a release.
    """

    def record(
        self,
        kind: str,
        query_signature: str,
        dimensions: tuple[str, ...],
        cells: Mapping[CellKey, int],
        at: datetime,
    ) -> None: ...

    def previous(self, kind: str) -> Iterable[Release]: ...


class InMemoryReleaseStore:
    """A ReleaseStore in a dict, for tests and for a node run without a database."""

    def __init__(self) -> None:
        self._releases: dict[str, list[Release]] = {}

    def record(
        self,
        kind: str,
        query_signature: str,
        dimensions: tuple[str, ...],
        cells: Mapping[CellKey, int],
        at: datetime,
    ) -> None:
        frozen = MappingProxyType({tuple(k): int(v) for k, v in cells.items()})
        self._releases.setdefault(kind, []).append(Release(query_signature, tuple(dimensions), frozen, at))

    def previous(self, kind: str) -> Iterable[Release]:
        return tuple(self._releases.get(kind, ()))


class ReleaseLedger:
    """A node's memory of what it has released, and the gate that refuses differencing.

    Use `admit` for every release: it returns the true counts to protect and release (the earlier
    ones if this same query was answered before and its answer has changed too little to show),
    or raises DisclosureRefused ("differencing") if the answer would differ from an earlier release
    by a handful of people. It also satisfies ReleaseStore, so it can be passed wherever one is.
    """

    def __init__(self, store: ReleaseStore) -> None:
        self.store = store

    def record(
        self,
        kind: str,
        query_signature: str,
        dimensions: tuple[str, ...],
        cells: Mapping[CellKey, int],
        at: datetime,
    ) -> None:
        self.store.record(kind, query_signature, dimensions, cells, at)

    def previous(self, kind: str) -> Iterable[Release]:
        return self.store.previous(kind)

    def admit(
        self,
        kind: str,
        query_signature: str,
        dimensions: Sequence[str],
        true_cells: Mapping[CellKey, int],
        rule: AggregateRule,
        *,
        at: datetime | None = None,
        record: bool = True,
        ignore: Collection[str] = (),
    ) -> Mapping[CellKey, int]:
        """With `record=False`, the same decision without keeping the release: "would you
        answer?" (a plan), which must leave the ledger exactly as it was. `ignore`: as for
        `check_differencing`."""
        dims = tuple(dimensions)
        cells = _checked_cells(dims, true_cells)
        earlier = None
        for release in self.store.previous(kind):
            if release.query_signature == query_signature and release.dimensions == dims:
                earlier = release
        if earlier is not None:
            if dict(earlier.cells) == cells:
                return earlier.cells
            if _isolates(earlier, dims, cells, rule):
                # Late or corrected records would show as a tiny change: repeat the earlier answer.
                return earlier.cells
        check_differencing(kind, dims, cells, self.store, rule, ignore=ignore)
        if record:
            self.store.record(kind, query_signature, dims, cells, at or datetime.now(UTC))
        return cells


def check_differencing(
    kind: str,
    dimensions: Sequence[str],
    new_cells: Mapping[CellKey, int],
    ledger: ReleaseStore,
    rule: AggregateRule,
    *,
    ignore: Collection[str] = (),
) -> None:
    """Refuse ("differencing") a release that, set against an earlier one of the same kind,
    would isolate between 1 and the threshold people. Releases whose signatures are in `ignore`
    are not compared (the standard table set, protected as a whole, against its own tables).

    How two releases are compared: both are summed onto the dimensions they share, and for every
    aggregate an attacker could form from those (each cell, each row or column margin, the grand
    total: every way of fixing some shared dimensions and summing over the rest) the change from
    the earlier release to the new one is split into people added (cells that grew or are new)
    and people removed. If one side is empty and the other holds 1..threshold people, the two
    releases differ by exactly those few people: refused. An aggregate that is zero in either
    release is skipped (the difference is then just the other release's own figure, which that
    release protects). The threshold is the strictest of the client groups involved when the
    cells carry a "client_group" dimension, and the strictest in the policy when they do not.

    Record cells at the finest grain the query selects, with its filters as dimensions (a
    month, a district, a client group), so that "one more month" shows as added cells and two
    disjoint periods do not look like a change of a few people.
    """
    dims = tuple(dimensions)
    cells = _checked_cells(dims, new_cells)
    for release in ledger.previous(kind):
        if release.query_signature not in ignore and _isolates(release, dims, cells, rule):
            raise DisclosureRefused("differencing: the answer would differ from an earlier release by too few people")


def isolates_few(
    earlier: Release, dimensions: Sequence[str], cells: Mapping[CellKey, int], rule: AggregateRule
) -> bool:
    """Whether `cells` differ from an earlier release by 1 to the threshold people somewhere."""
    dims = tuple(dimensions)
    return _isolates(earlier, dims, _checked_cells(dims, cells), rule)


def _checked_cells(dimensions: tuple[str, ...], cells: Mapping[CellKey, int]) -> dict[CellKey, int]:
    _check_shape(dimensions, [tuple(k) for k in cells])
    checked = {tuple(k): v for k, v in cells.items()}
    for value in checked.values():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest("a count must be a whole number, zero or more")
    return checked


def _project(dimensions: tuple[str, ...], cells: Mapping[CellKey, int], onto: tuple[str, ...]) -> dict[CellKey, int]:
    positions = [dimensions.index(d) for d in onto]
    projected: dict[CellKey, int] = {}
    for key, value in cells.items():
        short = tuple(key[p] for p in positions)
        projected[short] = projected.get(short, 0) + value
    return projected


def _isolates(earlier: Release, dimensions: tuple[str, ...], cells: Mapping[CellKey, int], rule: AggregateRule) -> bool:
    shared = tuple(d for d in dimensions if d in earlier.dimensions)
    old = _project(earlier.dimensions, earlier.cells, shared)
    new = _project(dimensions, cells, shared)
    group_position = shared.index(GROUP_DIMENSION) if GROUP_DIMENSION in shared else None
    keys = old.keys() | new.keys()
    for size in range(len(shared) + 1):
        for fixed in combinations(range(len(shared)), size):
            # added, removed, earlier total, new total, client groups that changed
            sums: dict[CellKey, tuple[int, int, int, int, frozenset[str]]] = {}
            for key in keys:
                before, after = old.get(key, 0), new.get(key, 0)
                change = after - before
                groups: frozenset[str] = frozenset()
                if change and group_position is not None:
                    groups = frozenset({key[group_position]})
                part = tuple(key[i] for i in fixed)
                a, r, b, n, g = sums.get(part, (0, 0, 0, 0, frozenset()))
                sums[part] = (a + max(change, 0), r + max(-change, 0), b + before, n + after, g | groups)
            for added, removed, before, after, groups in sums.values():
                if before == 0 or after == 0:
                    continue
                threshold = _difference_threshold(rule, groups, group_position is not None)
                if (removed == 0 and 1 <= added <= threshold) or (added == 0 and 1 <= removed <= threshold):
                    return True
    return False


def _difference_threshold(rule: AggregateRule, groups: frozenset[str], groups_known: bool) -> int:
    if not groups_known:
        # The few people isolated could be in any client group, the strictest included.
        return rule.strictest_threshold
    return max(
        [rule.threshold, *(rule.threshold_for(int(g)) for g in groups if g.isdigit())],
    )

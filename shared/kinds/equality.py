"""The equality profile across the CAG: who the services reach, by ethnicity, age band, sex,
economic status, referral source and accommodation before, by client group, as shares of each
authority's new client records and the CAG's; and an analyst-chosen cross-tab of two of those
dimensions.

`combine_equality` is a pure function of the nodes' released count tables. A share is worked out
only from parts released whole, else withheld with its reason. The result never carries a
population share ("no reference figure"): the network's residents by category are signed reference
data in the manifest (`population:<field>:<category>` rows, `shared.reference.population_share`),
which the CLI and the report read beside the result, so a bundle verifies the same whatever
reference data a reader holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.disclosure import TOTAL
from shared.errors import InvalidRequest
from shared.kinds.records import Tally
from shared.models import CountTable

__all__ = [
    "DIMENSIONS",
    "DIMENSION_NAMES",
    "NO_REFERENCE",
    "CrossTabCell",
    "JointEquality",
    "ProfileShare",
    "check_cross_tab",
    "combine_equality",
]

# The client record's equality fields, in the order the profile lists them.
DIMENSIONS = ("ethnicity", "age_band", "sex", "economic_status", "referral_source", "accommodation_before")
DIMENSION_NAMES = {
    "ethnicity": "ethnicity",
    "age_band": "age band",
    "sex": "sex",
    "economic_status": "economic status",
    "referral_source": "referral source",
    "accommodation_before": "accommodation before",
}
NO_REFERENCE = "no reference figure"
CAG = "CAG"


def check_cross_tab(cross_tab: Sequence[str]) -> tuple[str, ...]:
    """A cross-tab's two dimensions in the profile's order, or () for the profile; InvalidRequest
    names the field for anything else."""
    asked = set(cross_tab)
    if not asked:
        return ()
    unknown = sorted(asked - set(DIMENSIONS))
    if unknown:
        raise InvalidRequest(f"cross_tab: {unknown[0]!r} is not an equality dimension; one of {', '.join(DIMENSIONS)}")
    if len(asked) != 2:
        raise InvalidRequest("cross_tab: a cross-tab is of exactly two different equality dimensions")
    return tuple(d for d in DIMENSIONS if d in asked)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProfileShare(_Model):
    """Of one authority's (or the CAG's) new client records in one client group (0: every
    group), the share in one category of one dimension, beside the population's share."""

    authority: str
    client_group: int
    dimension: str
    category: str
    clients: Tally
    of: Tally
    percent: float | None  # None: withheld (see `reason`), or no records
    reason: str = ""
    population_percent: float | None = None
    reference: str = NO_REFERENCE
    period: str = ""


class CrossTabCell(_Model):
    """One cell of the cross-tab at one authority (or the CAG: a sum, "at least" where a part was
    suppressed). `row` or `column` "*" is a margin."""

    authority: str
    row: str
    column: str
    clients: Tally


class JointEquality(_Model):
    kind: Literal["equality"] = "equality"
    authorities: tuple[str, ...]
    cross_tab: tuple[str, ...] = ()  # the two dimensions (rows, columns); empty: the profile
    profile: tuple[ProfileShare, ...] = ()
    cells: tuple[CrossTabCell, ...] = ()
    period: str = ""


def _percent(part: Tally, whole: Tally) -> float | None:
    if not (part.complete and whole.complete) or whole.count == 0:
        return None
    return round(100 * part.count / whole.count, 1)


def _reason(part: Tally, whole: Tally, short: dict[str, list[str]] | None = None) -> str:
    said = []
    for name, tally in (("clients in the category", part), ("clients in the group", whole)):
        if not tally.complete:
            where = (short or {}).get(name)
            said.append(f"{name} suppressed" + (f" at {', '.join(where)}" if where else ""))
    if said:
        return "; ".join(said)
    return "no client records" if whole.count == 0 else ""


def _order(label: str) -> tuple[bool, str]:
    return (label == TOTAL, label.zfill(2))


def _figures(table: CountTable) -> dict[tuple[str, ...], int | None]:
    """A table's released counts by key: looked up many times, so read once."""
    return {c.key: c.count for c in table.cells}


def combine_equality(tables: Sequence[CountTable], *, period: str = "") -> JointEquality:
    tables = sorted(tables, key=lambda t: t.authority)
    authorities = tuple(t.authority for t in tables)
    dims = tables[0].dimensions if tables else ("client_group", "dimension", "category")
    if dims and dims[0] != "client_group":
        return _combine_cross_tab(tables, dims, period)
    rows = []
    cag: dict[tuple[int, str, str], Tally] = {}
    wholes: dict[tuple[int, str], Tally] = {}  # each group's records at every authority
    short: dict[tuple[int, str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    short_whole: dict[tuple[int, str], list[str]] = defaultdict(list)
    for t in tables:
        figures = _figures(t)
        categories: dict[tuple[str, str], set[str]] = defaultdict(set)
        for label, dimension, category in figures:
            if category != TOTAL:
                categories[(label, dimension)].add(category)
        for label in sorted({k[0] for k in figures}, key=_order):
            group = 0 if label == TOTAL else int(label)
            for dimension in DIMENSIONS:
                if (label, dimension, TOTAL) not in figures:
                    continue
                whole = Tally().add(figures[(label, dimension, TOTAL)])
                wholes[(group, dimension)] = wholes.get((group, dimension), Tally()).add(
                    whole.count if whole.complete else None
                )
                if not whole.complete:
                    short_whole[(group, dimension)].append(t.authority)
                for category in sorted(categories[(label, dimension)]):
                    part = Tally().add(figures.get((label, dimension, category), 0))
                    rows.append(
                        ProfileShare(
                            authority=t.authority,
                            client_group=group,
                            dimension=dimension,
                            category=category,
                            clients=part,
                            of=whole,
                            percent=_percent(part, whole),
                            reason=_reason(part, whole),
                            period=period,
                        )
                    )
                    key = (group, dimension, category)
                    cag[key] = cag.get(key, Tally()).add(part.count if part.complete else None)
                    if not part.complete:
                        short[key]["clients in the category"].append(t.authority)
    for group, dimension, category in sorted(cag, key=lambda k: (k[0] == 0, k[0], DIMENSIONS.index(k[1]), k[2])):
        key = (group, dimension, category)
        part, whole = cag[key], wholes.get((group, dimension), Tally())
        # Every authority's whole counts, whether or not it holds anyone in the category.
        short[key]["clients in the group"] = short_whole[(group, dimension)]
        rows.append(
            ProfileShare(
                authority=CAG,
                client_group=group,
                dimension=dimension,
                category=category,
                clients=part,
                of=whole,
                percent=_percent(part, whole),
                reason=_reason(part, whole, short[key]),
                period=period,
            )
        )
    return JointEquality(authorities=authorities, profile=tuple(rows), period=period)


def _combine_cross_tab(tables: Sequence[CountTable], dims: tuple[str, ...], period: str) -> JointEquality:
    cells = []
    cag: dict[tuple[str, str], Tally] = {}
    for t in tables:
        for c in t.cells:
            row, column = c.key
            cells.append(CrossTabCell(authority=t.authority, row=row, column=column, clients=Tally().add(c.count)))
    keys = sorted({(c.row, c.column) for c in cells}, key=lambda k: (_order(k[0]), _order(k[1])))
    figures = [_figures(t) for t in tables]
    for key in keys:
        for each in figures:
            cag[key] = cag.get(key, Tally()).add(each.get(key, 0))
    cells.extend(CrossTabCell(authority=CAG, row=r, column=c, clients=cag[(r, c)]) for r, c in keys)
    return JointEquality(
        authorities=tuple(t.authority for t in tables), cross_tab=dims, cells=tuple(cells), period=period
    )

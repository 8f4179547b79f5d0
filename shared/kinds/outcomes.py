"""Short-term outcomes across the CAG: of departures from short-term services, the share that
were planned moves, and in each of the five outcome domains the share of identified needs that
were met, by client group, for each authority and for the CAG.

`combine_outcomes` is a pure function of the nodes' released count tables, so anyone holding a
bundle recomputes it exactly. A share is worked out only from parts released whole; where a part
is suppressed the share is withheld and the reason says which part, and where.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.disclosure import TOTAL
from shared.kinds.records import Tally
from shared.models import CountTable

__all__ = [
    "DEPARTURE",
    "DOMAINS",
    "DOMAIN_NAMES",
    "MEASURES",
    "NEED_VALUES",
    "VALUES",
    "JointOutcomes",
    "OutcomeShare",
    "combine_outcomes",
]

DEPARTURE = "departure"
# The SP short-term outcomes framework's five domains, as the node stores them.
DOMAINS = ("economic_wellbeing", "enjoy_and_achieve", "be_healthy", "stay_safe", "positive_contribution")
DOMAIN_NAMES = {
    DEPARTURE: "planned departures",
    "economic_wellbeing": "economic wellbeing",
    "enjoy_and_achieve": "enjoy and achieve",
    "be_healthy": "be healthy",
    "stay_safe": "stay safe",
    "positive_contribution": "make a positive contribution",
}
MEASURES = (DEPARTURE, *DOMAINS)
# A stored need ("identified" means identified and not achieved) as the released table names it.
NEED_VALUES = {"achieved": "achieved", "identified": "not-achieved", "not-applicable": "not-applicable"}
VALUES: dict[str, tuple[str, ...]] = {
    DEPARTURE: ("planned", "unplanned"),
    **{d: ("achieved", "not-achieved", "not-applicable") for d in DOMAINS},
}
CAG = "CAG"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OutcomeShare(_Model):
    """One share at one authority (or the CAG) for one client group (0: every group): for the
    measure "departure", planned departures of all departures; for an outcome domain, needs
    achieved of needs identified (achieved and not achieved; "not applicable" is left out)."""

    authority: str
    client_group: int
    measure: str
    part: Tally
    whole: Tally
    percent: float | None  # None: withheld (see `reason`), or nothing to divide by
    reason: str = ""
    period: str = ""


class JointOutcomes(_Model):
    kind: Literal["outcomes"] = "outcomes"
    authorities: tuple[str, ...]
    rows: tuple[OutcomeShare, ...]


def _percent(part: Tally, whole: Tally) -> float | None:
    if not (part.complete and whole.complete) or whole.count == 0:
        return None
    return round(100 * part.count / whole.count, 1)


def _names(measure: str) -> tuple[str, str]:
    return ("planned departures", "departures") if measure == DEPARTURE else ("needs met", "needs identified")


def _reason(measure: str, part: Tally, whole: Tally, short: dict[str, list[str]] | None = None) -> str:
    said = []
    for name, tally in zip(_names(measure), (part, whole), strict=True):
        if not tally.complete:
            where = (short or {}).get(name)
            said.append(f"{name} suppressed" + (f" at {', '.join(where)}" if where else ""))
    if said:
        return "; ".join(said)
    return ("no departures" if measure == DEPARTURE else "no needs identified") if whole.count == 0 else ""


def _parts(figures: dict[tuple[str, ...], int | None], group: str, measure: str) -> tuple[Tally, Tally]:
    """The share's two parts from a table's released counts (a cell it does not hold is 0)."""
    if measure == DEPARTURE:
        planned = figures.get((group, DEPARTURE, "planned"), 0)
        return Tally().add(planned), Tally().add(figures.get((group, DEPARTURE, TOTAL), 0))
    met = Tally().add(figures.get((group, measure, "achieved"), 0))
    return met, met.add(figures.get((group, measure, "not-achieved"), 0))


def combine_outcomes(tables: Sequence[CountTable], *, period: str = "") -> JointOutcomes:
    """Each authority's shares by client group, then the CAG's from the sums of the parts: a CAG
    share is given only when every authority's parts are whole."""
    rows = []
    cag: dict[tuple[int, str], tuple[Tally, Tally]] = {}
    short: dict[tuple[int, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for t in sorted(tables, key=lambda t: t.authority):
        figures = {c.key: c.count for c in t.cells}
        labels = sorted({c.key[0] for c in t.cells}, key=lambda g: (g == TOTAL, g.zfill(2)))
        for label in labels:
            group = 0 if label == TOTAL else int(label)
            for measure in MEASURES:
                part, whole = _parts(figures, label, measure)
                rows.append(
                    OutcomeShare(
                        authority=t.authority,
                        client_group=group,
                        measure=measure,
                        part=part,
                        whole=whole,
                        percent=_percent(part, whole),
                        reason=_reason(measure, part, whole),
                        period=period,
                    )
                )
                before = cag.get((group, measure), (Tally(), Tally()))
                cag[(group, measure)] = (
                    before[0].add(part.count if part.complete else None),
                    before[1].add(whole.count if whole.complete else None),
                )
                for name, tally in zip(_names(measure), (part, whole), strict=True):
                    if not tally.complete:
                        short[(group, measure)][name].append(t.authority)
    order = sorted(cag, key=lambda k: (k[0] == 0, k[0], MEASURES.index(k[1])))
    for group, measure in order:
        part, whole = cag[(group, measure)]
        rows.append(
            OutcomeShare(
                authority=CAG,
                client_group=group,
                measure=measure,
                part=part,
                whole=whole,
                percent=_percent(part, whole),
                reason=_reason(measure, part, whole, short[(group, measure)]),
                period=period,
            )
        )
    return JointOutcomes(authorities=tuple(sorted(t.authority for t in tables)), rows=tuple(rows))

"""The equality profile on the standard table set under attack, as `test_grid_attack` attacks
movement: the profile counts movement's new clients once in each equality field, so its tables
are rows of movement's block. Ask every grid question of movement and of the profile (and the
off-grid profile questions the ledger lets through), write every released figure as a linear
function of the true counts by quarter, row (an origin, or an equality field's category) and
client group, each field's categories summing to the same people as the origins, and solve each
suppressed cell's feasible interval. No interval may be narrower than the cell's threshold band.
Two editions, with small domestic violence (14) and refugee (17) cells planted; and a control:
protected without the linking between each field's total and movement's all-origins cell, the
same attack pins a cell, so this test can fail."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

import node.release
from node.answers.movement import OUTSIDE, Question, check_question, origin_of, period_of
from node.client_records import ClientRecord, person_hash
from node.grid import FinancialYear
from node.release import Releaser
from node.store import get_service
from shared.disclosure import TOTAL
from shared.errors import DisclosureRefused
from shared.kinds.equality import DIMENSIONS
from shared.models import CountTable, RecordsQuestion
from shared.policy import default_policy_toml, parse_policy
from tests.node.test_grid_attack import (
    APRIL,
    CAG,
    JANUARY,
    KENT,
    LAMBETH,
    LEEDS,
    MEDWAY,
    MEMBER,
    SEALER,
    SECRET,
    Attack,
    _assert_no_cell_narrowed,
    _months,
    _poisson,
    _quarters_of,
    _store,
)

HOMELESS, OFFENDERS, DV, REFUGEES = 7, 10, 14, 17
GROUPS = (HOMELESS, OFFENDERS, DV, REFUGEES)
# New clients a month by service and origin (Poisson means).
MEANS = {
    "MED-S1": {MEDWAY: 4.0, KENT: 1.2, LAMBETH: 0.4},
    "MED-S2": {MEDWAY: 1.5, KENT: 0.5},
    "MED-S3": {KENT: 1.0, MEDWAY: 0.6, LAMBETH: 0.3},
    "MED-S4": {LAMBETH: 0.3, MEDWAY: 0.2},
}
# The fields that vary (the others are one category for everyone): each person's category drawn
# with these weights, so that small cells occur by field as well as by origin.
VARYING = {
    "sex": (("female", 0.55), ("male", 0.45)),
    "age_band": (("18-24", 0.3), ("25-34", 0.45), ("35-44", 0.25)),
    "ethnicity": (("A", 0.8), ("B", 0.2)),
}
FIXED = {"economic_status": "jobseeker", "referral_source": "self", "accommodation_before": "private-rented"}
YEAR = FinancialYear(2009)
POLICY = parse_policy(
    default_policy_toml()
    .replace(b"first_year = 2005", b"first_year = 2009")
    .replace(b"last_year = 2009", b"last_year = 2009")
)
_ids = itertools.count(1)


@dataclass
class Truth:
    """True new clients by (quarter, row, client group): a row is an origin as movement shows it
    or a "field:category"."""

    cells: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add(self, key: tuple[str, str, str]) -> None:
        self.cells[key] = self.cells.get(key, 0) + 1


def _add(
    engine: Engine,
    truth: Truth,
    ref: str,
    origin: str,
    start: date,
    n: int,
    rng: random.Random,
    imported: datetime,
    profile: dict[str, str] | None = None,
) -> None:
    """`n` new clients of `ref` from `origin`, each field's category drawn (or `profile`'s)."""
    group = {"MED-S1": HOMELESS, "MED-S2": OFFENDERS, "MED-S3": DV, "MED-S4": REFUGEES}[ref]
    quarter = period_of(f"{start.year:04d}-{start.month:02d}", "quarter")
    service = get_service(engine, service_ref=ref)
    assert service is not None and service.id is not None
    with Session(engine) as session:
        for _ in range(n):
            number = next(_ids)
            drawn = {
                name: rng.choices([c for c, _w in options], [w for _c, w in options])[0]
                for name, options in VARYING.items()
            }
            fields = {**FIXED, **drawn, **(profile or {})}
            session.add(
                ClientRecord(
                    record_ref=f"MED-Q{number:06d}",
                    service_id=service.id,
                    start_date=start,
                    client_group=group,
                    previous_authority=origin,
                    updated_at=imported,
                    person=SEALER.seal(
                        person_hash(
                            surname=f"Equal{number}", first_initial="C", date_of_birth=date(1985, 3, 3), sex="female"
                        )
                    ),
                    **fields,
                )
            )
            truth.add((quarter, origin_of(origin, CAG), str(group)))
            for name in DIMENSIONS:
                truth.add((quarter, f"{name}:{fields[name]}", str(group)))
        session.commit()


def _fill(engine: Engine, truth: Truth, rng: random.Random, first: date, last: date, imported: datetime) -> None:
    for month in _months(first, last):
        for ref, means in MEANS.items():
            for origin, mean in means.items():
                n = _poisson(rng, mean)
                if n:
                    _add(engine, truth, ref, origin, month.replace(day=10), n, rng, imported)


def _medway(database_url: str, imported: datetime) -> tuple[Engine, Truth, random.Random]:
    engine = _store(database_url)
    truth = Truth()
    rng = random.Random(23)
    _fill(engine, truth, rng, date(2009, 4, 1), date(2009, 12, 1), imported)
    # Planted: a lone refugee from Yorkshire of ethnicity C, two older women at the refuge.
    _add(engine, truth, "MED-S4", LEEDS, date(2009, 8, 5), 1, rng, imported, {"ethnicity": "C"})
    _add(engine, truth, "MED-S3", KENT, date(2009, 5, 6), 2, rng, imported, {"age_band": "45-54", "sex": "female"})
    return engine, truth, rng


@pytest.fixture
def medway(database_url: str) -> Iterator[tuple[Engine, Truth]]:
    """Imported just now: every quarter to March 2010 has closed."""
    engine, truth, _rng = _medway(database_url, datetime.now(UTC))
    yield engine, truth
    engine.dispose()


def _question(start: date, end: date, groups: tuple[int, ...] = (), period: str = "all") -> Question:
    return check_question(
        RecordsQuestion(from_date=start.isoformat(), to_date=end.isoformat(), period=period, client_groups=groups)
    )


def _grid_questions() -> Iterator[Question]:
    for start, end in [(YEAR.start, YEAR.end), *((a, b) for a, b, _label in YEAR.quarters())]:
        for groups in [(), *((g,) for g in GROUPS)]:
            yield _question(start, end, groups)


def _off_grid_questions() -> Iterator[Question]:
    """Quarter-aligned questions off the grid: half years, two groups at once."""
    spans = [(date(2009, 4, 1), date(2009, 9, 30)), (date(2009, 10, 1), date(2010, 3, 31))]
    spans.append((date(2009, 7, 1), date(2009, 12, 31)))
    for start, end in spans:
        for groups in [(), (DV, REFUGEES), (HOMELESS, OFFENDERS)]:
            yield _question(start, end, groups)
    yield _question(YEAR.start, YEAR.end, (DV, REFUGEES))


def _everything(releaser: Releaser) -> tuple[list[tuple[Question, CountTable]], int]:
    answers, refused = [], 0
    for question in itertools.chain(_grid_questions(), _off_grid_questions()):
        for ask in (releaser.movement, releaser.equality):
            try:
                answers.append((question, ask(POLICY, roles=MEMBER, question=question)))
            except DisclosureRefused:
                refused += 1
    return answers, refused


def _attack(
    answers: list[tuple[Question, CountTable]], truth: Truth, earlier: Iterable[tuple[Question, CountTable]] = ()
) -> dict[frozenset[int], tuple[float, float, int, int]]:
    """Every movement and profile figure in `answers`, and in an `earlier` edition made before
    2009-10 Q4 had records."""
    counts = truth.cells
    quarters = sorted(q for _a, _b, q in YEAR.quarters())
    rows = sorted({k[1] for k in counts})
    leaves = list(itertools.product(quarters, rows, [str(g) for g in GROUPS]))
    index = {leaf: i for i, leaf in enumerate(leaves)}
    attack = Attack(leaves)
    origins = [r for r in rows if ":" not in r]
    for q, g in itertools.product(quarters, [str(g) for g in GROUPS]):
        people = frozenset(index[(q, o, g)] for o in origins)
        for name in DIMENSIONS:
            attack.same.append((frozenset(index[(q, r, g)] for r in rows if r.startswith(name + ":")), people))
    rule = POLICY.rule("movement")
    tagged = [(q, t, False) for q, t in earlier] + [(q, t, True) for q, t in answers]
    for question, table, current in tagged:
        spanned = [q for q in _quarters_of(question) if current or q != "2009-10 Q4"]
        asked = {str(g) for g in question.client_groups} or None
        for cell in table.cells:
            named = dict(zip(table.dimensions, cell.key, strict=True))
            chosen = set()
            for leaf in leaves:
                q, row, group = leaf
                if q not in spanned or (asked is not None and group not in asked):
                    continue
                if named["client_group"] not in (TOTAL, group):
                    continue
                if table.kind == "equality":
                    dimension, category = named["dimension"], named["category"]
                    if not row.startswith(dimension + ":") or category not in (TOTAL, row.split(":", 1)[1]):
                        continue
                else:
                    if ":" in row or named.get("period", TOTAL) not in (TOTAL, "all", q, YEAR.label):
                        continue
                    shown = named["origin"]
                    outside = shown == OUTSIDE and row not in CAG
                    if shown not in (TOTAL, row) and not outside:
                        continue
                chosen.add(index[leaf])
            leaves_of = frozenset(chosen)
            covered = {leaves[i][2] for i in leaves_of if counts.get(leaves[i], 0)}
            threshold = rule.threshold_over(int(g) for g in covered)
            if cell.count is None:
                attack.know(leaves_of, 1, float("inf"))
                attack.hidden[leaves_of] = max(attack.hidden.get(leaves_of, 0), threshold)
            elif cell.count == 0:
                attack.know(leaves_of, 0, 0)
            else:
                attack.know(leaves_of, max(cell.count - 4, threshold + 1), cell.count + 4)
    return attack.intervals(counts)


def test_no_suppressed_cell_of_the_profile_or_movement_on_the_grid_can_be_narrowed(
    medway: tuple[Engine, Truth],
) -> None:
    engine, truth = medway
    answers, _refused = _everything(Releaser(engine, MEDWAY, SECRET, members=lambda: CAG))
    _assert_no_cell_narrowed(_attack(answers, truth))
    # Each field's total for a group is movement's all-origins figure for it, question by question.
    movement = {q: t for q, t in answers if t.kind == "movement"}
    profiles = [(q, t) for q, t in answers if t.kind == "equality" and t.cells and q in movement]
    assert profiles
    for question, table in profiles:
        everyone = {c.key[1]: c.count for c in movement[question].cells if c.key[0] == TOTAL}
        for group in {c.key[0] for c in table.cells}:
            for name in DIMENSIONS:
                assert table.value(group, name, TOTAL) == everyone[group]
    # Asked again, by a new process, the grid answers are the same figures: repeatable.
    again, _refused = _everything(Releaser(engine, MEDWAY, SECRET, members=lambda: CAG))
    grid = {(q, t.kind): t for q, t in answers if q in set(_grid_questions())}
    assert {t.kind for t in grid.values()} == {"movement", "equality"}
    assert all(grid[(q, t.kind)] == t for q, t in again if (q, t.kind) in grid)


def test_without_the_linking_between_the_profile_and_movement_a_cell_is_pinned(
    medway: tuple[Engine, Truth], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: each field's total for a group protected as if it were not movement's new
    clients. The attacker, who knows it is, narrows a suppressed cell within its band."""
    engine, truth = medway
    monkeypatch.setattr(node.release, "_equal_of", lambda _family, _groups: [])
    answers, _refused = _everything(Releaser(engine, MEDWAY, SECRET, members=lambda: CAG))
    found = _attack(answers, truth)
    assert any(high - low < threshold - 1 - 1e-6 for low, high, threshold, _true in found.values())


def test_a_new_edition_of_the_profile_hides_a_late_handful(database_url: str) -> None:
    """Edition 1 (imported in January 2010) publishes every quarter to 2009-10 Q3. Edition 2
    (April 2010) brings January to March 2010, with a lone refugee and two older women at the
    refuge planted in the new quarter, and late records in closed quarters: a refugee in 2009-10 Q2
    and three women at the refuge in 2009-10 Q1. Each closed quarter keeps its figures, and an
    attacker holding both editions narrows nothing."""
    engine, truth, rng = _medway(database_url, JANUARY)
    try:
        assert Releaser(engine, MEDWAY, SECRET, members=lambda: CAG).prepare_grid(POLICY)
        first, _refused = _everything(Releaser(engine, MEDWAY, SECRET, members=lambda: CAG))
        _fill(engine, truth, rng, date(2010, 1, 1), date(2010, 3, 1), APRIL)
        _add(engine, truth, "MED-S4", LEEDS, date(2010, 2, 3), 1, rng, APRIL, {"ethnicity": "C"})
        _add(engine, truth, "MED-S3", KENT, date(2010, 3, 9), 2, rng, APRIL, {"age_band": "45-54"})
        late = Truth()  # not in `truth`: never shown
        _add(engine, late, "MED-S4", LAMBETH, date(2009, 8, 20), 1, rng, APRIL)
        _add(engine, late, "MED-S3", MEDWAY, date(2009, 5, 14), 3, rng, APRIL)
        assert Releaser(engine, MEDWAY, SECRET, members=lambda: CAG).prepare_grid(POLICY)
        second, _refused = _everything(Releaser(engine, MEDWAY, SECRET, members=lambda: CAG))
        after = {(q, t.kind): t for q, t in second}
        closed = [q for q in _grid_questions() if q.to_date is not None and q.to_date <= date(2009, 12, 31)]
        for question in closed:
            for kind in ("movement", "equality"):
                before = [t for q, t in first if q == question and t.kind == kind]
                assert before == [after[(question, kind)]] if (question, kind) in after else not before
        year = _question(YEAR.start, YEAR.end)
        assert all((year, kind) in after for kind in ("movement", "equality"))  # the closed year is on the grid
        _assert_no_cell_narrowed(_attack(second, truth, earlier=first))
    finally:
        engine.dispose()

"""The standard table set under attack: ask every grid question (and the questions off the grid
that the ledger lets through), write every released figure as a linear function of the true
counts by quarter, origin and client group (rounding as an interval), and solve each suppressed
cell's feasible interval with a linear programme. No interval may be narrower than the cell's
threshold band. Two editions: a late handful of records, then a large import, on a synthetic
authority with small domestic violence (14) and refugee (17) cells planted."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, vstack
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from node.answers.movement import OUTSIDE, Question, check_question, origin_of, period_of
from node.client_records import ClientRecord, Outcome, PersonSealer, person_hash
from node.grid import FinancialYear
from node.release import Releaser
from node.store import add_provider, add_service, ensure_authority, get_service, open_store
from shared.disclosure import TOTAL
from shared.errors import DisclosureRefused
from shared.models import CountTable, RecordsQuestion
from shared.policy import default_policy_toml, parse_policy
from shared.vocabulary import ServiceType, Term
from tests.sixutil import SIX

MEDWAY, KENT, BRIGHTON = "E06000035", "E10000016", "E06000043"
LAMBETH, LEEDS, BRISTOL = "E09000022", "E08000035", "E06000023"
HOMELESS, OFFENDERS, DV, REFUGEES = 7, 10, 14, 17
MEMBER = ("member-authority",)
SECRET = b"medway-rounding-key-0123456789abcdef"
SEALER = PersonSealer(bytes(range(64)))
# Two grid years keep each linear programme small: 2008-09 and 2009-10.
POLICY = parse_policy(
    default_policy_toml()
    .replace(b"first_year = 2005", b"first_year = 2008")
    .replace(b"last_year = 2009", b"last_year = 2009")
)
YEARS = (FinancialYear(2008), FinancialYear(2009))
CAG = frozenset(SIX)

# (service_ref, client group, term): a hostel, an offender hostel, a refuge, a refugee project.
SERVICES = (
    ("MED-S1", HOMELESS, Term.SHORT),
    ("MED-S2", OFFENDERS, Term.SHORT),
    ("MED-S3", DV, Term.SHORT),
    ("MED-S4", REFUGEES, Term.SHORT),
)
# New clients a month by service and origin (Poisson means): the hostel mostly local, the refuge
# mostly from elsewhere, the refugee project small.
MEANS = {
    "MED-S1": {MEDWAY: 4.0, KENT: 1.2, LAMBETH: 0.4, None: 0.3},
    "MED-S2": {MEDWAY: 1.5, KENT: 0.5, LEEDS: 0.1},
    "MED-S3": {KENT: 1.0, LAMBETH: 0.3, MEDWAY: 0.6, BRISTOL: 0.1},
    "MED-S4": {LAMBETH: 0.3, MEDWAY: 0.2},
}


def _store(url: str) -> Engine:
    engine = open_store(url)
    ensure_authority(engine, authority_code=MEDWAY)
    add_provider(engine, provider_ref="MED-P1", name="Medway Housing Society")
    for ref, group, term in SERVICES:
        add_service(
            engine,
            service_ref=ref,
            provider_ref="MED-P1",
            name=f"Medway service {ref}",
            district_code=MEDWAY,
            service_type=ServiceType.ACCOMMODATION_BASED,
            client_group=group,
            units=20,
            term=term,
        )
    return engine


_ids = itertools.count(1)


@dataclass
class Truth:
    """The true new clients and departures by quarter, as the attacker's unknowns are laid out."""

    clients: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (quarter, origin, group)
    departures: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (quarter, group, departure)


def _add(
    engine: Engine,
    truth: Truth,
    ref: str,
    origin: str | None,
    start: date,
    n: int,
    rng: random.Random,
    imported: datetime | None = None,
) -> None:
    service = get_service(engine, service_ref=ref)
    assert service is not None and service.id is not None
    quarter = period_of(f"{start.year:04d}-{start.month:02d}", "quarter")
    shown = origin_of(origin, CAG)
    key = (quarter, shown, str(service.client_group))
    truth.clients[key] = truth.clients.get(key, 0) + n
    with Session(engine) as session:
        for _ in range(n):
            number = next(_ids)
            record = ClientRecord(
                record_ref=f"MED-R{number:06d}",
                service_id=service.id,
                start_date=start,
                client_group=service.client_group,
                age_band="25-34",
                sex="female",
                ethnicity="A",
                economic_status="jobseeker",
                referral_source="self",
                accommodation_before="private-rented",
                previous_authority=origin,
                updated_at=imported or datetime.now(UTC),
                person=SEALER.seal(
                    person_hash(
                        surname=f"Person{number}", first_initial="A", date_of_birth=date(1980, 1, 1), sex="female"
                    )
                ),
            )
            session.add(record)
            session.flush()
            if rng.random() < 0.6:  # most leave within the month they came: planned two times in three
                departure = "planned" if rng.random() < 0.66 else "unplanned"
                session.add(
                    Outcome(
                        client_record_id=record.id,
                        end_date=start.replace(day=28),
                        departure=departure,
                        economic_wellbeing="achieved",
                        enjoy_and_achieve="not-applicable",
                        be_healthy="identified",
                        stay_safe="achieved",
                        positive_contribution="not-applicable",
                    )
                )
                dkey = (quarter, str(service.client_group), departure)
                truth.departures[dkey] = truth.departures.get(dkey, 0) + 1
        session.commit()


def _poisson(rng: random.Random, mean: float) -> int:
    n, p, limit = 0, 1.0, np.exp(-mean)
    while True:
        p *= rng.random()
        if p < limit:
            return n
        n += 1


def _months(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _fill(engine: Engine, truth: Truth, rng: random.Random, first: date, last: date, imported: datetime) -> None:
    for month in _months(first, last):
        for ref, means in MEANS.items():
            for origin, mean in means.items():
                n = _poisson(rng, mean)
                if n:
                    _add(engine, truth, ref, origin, month.replace(day=10), n, rng, imported)


# The first import: records to December 2009, imported in January 2010 (2009-10 Q4 still open).
JANUARY = datetime(2010, 1, 15, 9, 0, tzinfo=UTC)
APRIL = datetime(2010, 4, 20, 9, 0, tzinfo=UTC)


def _medway(database_url: str, imported: datetime) -> tuple[Engine, Truth, random.Random]:
    engine = _store(database_url)
    truth = Truth()
    rng = random.Random(19)
    _fill(engine, truth, rng, date(2008, 4, 1), date(2009, 12, 1), imported)
    # Planted: a lone refugee from Yorkshire, two women from Brighton at the refuge in one quarter.
    _add(engine, truth, "MED-S4", LEEDS, date(2008, 8, 5), 1, rng, imported)
    _add(engine, truth, "MED-S3", BRIGHTON, date(2009, 5, 6), 2, rng, imported)
    return engine, truth, rng


@pytest.fixture
def medway(database_url: str) -> Iterator[tuple[Engine, Truth]]:
    """Imported just now: every quarter to March 2010 has closed."""
    engine, truth, _rng = _medway(database_url, datetime.now(UTC))
    yield engine, truth
    engine.dispose()


# --- asking everything -------------------------------------------------------------------------------


def _grid_questions() -> Iterator[Question]:
    for year in YEARS:
        spans = [(year.start, year.end), *((a, b) for a, b, _label in year.quarters())]
        for (start, end), grain in itertools.product(spans, ("year", "quarter", "all")):
            for groups in [(), *((g,) for g in (HOMELESS, OFFENDERS, DV, REFUGEES))]:
                yield check_question(
                    RecordsQuestion(
                        from_date=start.isoformat(), to_date=end.isoformat(), period=grain, client_groups=groups
                    )
                )


def _off_grid_questions() -> Iterator[Question]:
    """Quarter-aligned questions off the grid: two years, half years, two groups at once."""
    spans = [
        (date(2008, 4, 1), date(2010, 3, 31)),
        (date(2008, 4, 1), date(2008, 9, 30)),
        (date(2009, 10, 1), date(2010, 3, 31)),
        (date(2008, 10, 1), date(2009, 6, 30)),
    ]
    for start, end in spans:
        for groups in [(), (DV, REFUGEES), (HOMELESS, OFFENDERS)]:
            yield check_question(
                RecordsQuestion(
                    from_date=start.isoformat(), to_date=end.isoformat(), period="quarter", client_groups=groups
                )
            )
    yield check_question(RecordsQuestion(from_date="2009-04-01", to_date="2010-03-31", client_groups=(DV, REFUGEES)))


def _ask_everything(releaser: Releaser) -> tuple[list[tuple[Question, CountTable]], int]:
    answers = []
    refused = 0
    for question in itertools.chain(_grid_questions(), _off_grid_questions()):
        for ask in (releaser.movement, releaser.net_flow, releaser.kpi):
            try:
                answers.append((question, ask(POLICY, roles=MEMBER, question=question)))
            except DisclosureRefused:
                refused += 1
    return answers, refused


# --- the attacker's linear programme ----------------------------------------------------------------


def _quarters_of(question: Question) -> list[str]:
    assert question.from_date is not None and question.to_date is not None
    return sorted(
        {period_of(f"{m.year:04d}-{m.month:02d}", "quarter") for m in _months(question.from_date, question.to_date)}
    )


@dataclass
class Attack:
    """Unknowns (one per leaf: quarter x two dimensions), and what each released figure says."""

    leaves: list[tuple[str, str, str]]
    rows: dict[frozenset[int], list[float]] = field(default_factory=dict)  # leaves -> [lo, hi]
    hidden: dict[frozenset[int], int] = field(default_factory=dict)  # suppressed leaves -> threshold
    # Pairs of leaf sets known to count the same people (each outcomes table's total and KPI 2's).
    same: list[tuple[frozenset[int], frozenset[int]]] = field(default_factory=list)

    def know(self, leaves: frozenset[int], lo: float, hi: float) -> None:
        bounds = self.rows.setdefault(leaves, [0.0, float("inf")])
        bounds[0], bounds[1] = max(bounds[0], lo), min(bounds[1], hi)

    def intervals(self, truth: dict[tuple[str, str, str], int]) -> dict[frozenset[int], tuple[float, float, int, int]]:
        """Each suppressed figure's feasible interval (its lower end the truth itself when the upper
        end alone is a band away from it), threshold and true value."""
        rows = list(self.rows.items())
        data, cols, indptr = [], [], [0]
        for leaves, _bounds in rows:
            cols.extend(sorted(leaves))
            data.extend([1.0] * len(leaves))
            indptr.append(len(cols))
        a = csr_matrix((data, cols, indptr), shape=(len(rows), len(self.leaves)))
        lo = np.array([b[0] for _l, b in rows])
        hi = np.array([b[1] for _l, b in rows])
        finite = np.isfinite(hi)
        a_ub = vstack([a[finite], -a])
        b_ub = np.concatenate([hi[finite], -lo])
        a_eq = None
        if self.same:
            eq = np.zeros((len(self.same), len(self.leaves)))
            for i, (left, right) in enumerate(self.same):
                eq[i, sorted(left)] += 1.0
                eq[i, sorted(right)] -= 1.0
            a_eq = csr_matrix(eq)
        b_eq = np.zeros(len(self.same)) if self.same else None
        found = {}
        for leaves, threshold in self.hidden.items():
            c = np.zeros(len(self.leaves))
            c[sorted(leaves)] = 1.0
            true = sum(truth.get(self.leaves[i], 0) for i in leaves)
            high = linprog(-c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            assert high.status in (0, 3), high.message
            top = float("inf") if high.status == 3 else -high.fun
            if top - true >= threshold - 1:
                # Wide enough above the truth alone (the lowest feasible value is at most the
                # truth): the lower end cannot narrow it, so it is not solved for.
                found[leaves] = (float(true), top, threshold, true)
                continue
            low = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            assert low.status == 0, low.message
            found[leaves] = (low.fun, top, threshold, true)
        return found


def _attack(
    answers: list[tuple[Question, CountTable]],
    truth: Truth,
    family: str,
    earlier: Iterable[tuple[Question, CountTable]] = (),
) -> dict[frozenset[int], tuple[float, float, int, int]]:
    """Every figure of `answers`, and of an `earlier` edition made before 2009-10 Q4 had records."""
    counts = truth.departures if family == "kpi" else truth.clients
    quarters = sorted({q for y in YEARS for _a, _b, q in y.quarters()})
    firsts = sorted({k[1] for k in counts})
    seconds = sorted({k[2] for k in counts})
    leaves = list(itertools.product(quarters, firsts, seconds))
    index = {leaf: i for i, leaf in enumerate(leaves)}
    attack = Attack(leaves)
    rule = POLICY.rule(family)
    tagged = [(q, t, False) for q, t in earlier] + [(q, t, True) for q, t in answers]
    for question, table, current in tagged:
        if (table.kind == "kpi") != (family == "kpi"):
            continue
        spanned = [q for q in _quarters_of(question) if current or q != "2009-10 Q4"]
        groups = {str(g) for g in question.client_groups} or None
        for cell in table.cells:
            values = dict(zip(table.dimensions, cell.key, strict=True))
            period = values.get("period", TOTAL)
            in_period = [q for q in spanned if period in (TOTAL, "all", q, q[:7])]
            chosen = set()
            for leaf in leaves:
                q, x, y = leaf
                origin, group = (None, x) if family == "kpi" else (x, y)
                if q not in in_period or (groups is not None and group not in groups):
                    continue
                if family == "kpi" and values["departure"] not in (TOTAL, y):
                    continue
                if values["client_group"] not in (TOTAL, group):
                    continue
                shown = values.get("origin", TOTAL)
                outside = shown == OUTSIDE and origin not in CAG and origin != "unknown"
                if origin is not None and shown not in (TOTAL, origin) and not outside:
                    continue
                chosen.add(index[leaf])
            leaves_of = frozenset(chosen)
            covered = {leaves[i][2 if family != "kpi" else 1] for i in leaves_of if counts.get(leaves[i], 0)}
            threshold = rule.threshold_over(int(g) for g in covered)
            if cell.count is None:
                attack.know(leaves_of, 1, float("inf"))
                attack.hidden[leaves_of] = max(attack.hidden.get(leaves_of, 0), threshold)
            elif cell.count == 0:
                attack.know(leaves_of, 0, 0)
            else:
                attack.know(leaves_of, max(cell.count - 4, threshold + 1), cell.count + 4)
    return attack.intervals(counts)


def _assert_no_cell_narrowed(found: dict[frozenset[int], tuple[float, float, int, int]]) -> None:
    assert found, "the grid suppressed nothing: the attack would prove nothing"
    for low, high, threshold, true in found.values():
        assert low - 1e-6 <= true <= high + 1e-6  # the truth is always feasible
        assert high - low >= threshold - 1 - 1e-6, f"a suppressed cell narrowed to [{low:.1f}, {high:.1f}]"


def test_no_suppressed_cell_of_the_grid_can_be_narrowed_within_its_band(medway: tuple[Engine, Truth]) -> None:
    engine, truth = medway
    releaser = Releaser(engine, MEDWAY, SECRET, members=lambda: CAG)
    answers, refused = _ask_everything(releaser)
    assert refused > 0  # some off-grid questions are refused: they would difference the grid
    for family in ("movement", "kpi"):
        _assert_no_cell_narrowed(_attack(answers, truth, family))
    # Asked again, by a new process, the grid answers are the same figures.
    again, _refused = _ask_everything(Releaser(engine, MEDWAY, SECRET, members=lambda: CAG))
    grid = {(q, t.kind): t for q, t in answers if _on_grid(q)}
    assert grid and all(grid[(q, t.kind)] == t for q, t in again if _on_grid(q))


def _on_grid(question: Question) -> bool:
    return question in set(_grid_questions())


def test_a_new_edition_shows_the_new_quarter_and_hides_a_late_handful(database_url: str) -> None:
    """Edition 1 (imported in January 2010) publishes every quarter to 2009-10 Q3, and no
    2009-10 year. Edition 2 (April 2010) brings January to March 2010, with a lone refugee and two
    women at the refuge planted in the new quarter, and late records in closed quarters: two
    homeless people in 2008-09 Q3, a refugee in 2009-10 Q1, three women at the refuge in 2008-09
    Q2. Q4 and the 2009-10 year are published (the year protected with its quarters' figures
    fixed); each closed quarter keeps its figures (the late handful would show); and an attacker
    holding both editions, knowing exactly what the second import added, narrows nothing. Each
    edition is protected once, when the records change (as `cagnet node import` does), kept in
    the store, and read back by the node after a restart."""
    engine, truth, rng = _medway(database_url, JANUARY)
    try:
        assert Releaser(engine, MEDWAY, SECRET, members=lambda: CAG).prepare_grid(POLICY)  # the import's step
        first, _refused = _ask_everything(Releaser(engine, MEDWAY, SECRET, members=lambda: CAG))
        year = check_question(RecordsQuestion(from_date="2009-04-01", to_date="2010-03-31", period="quarter"))
        q3 = check_question(RecordsQuestion(from_date="2008-10-01", to_date="2008-12-31", period="quarter"))
        q2 = check_question(RecordsQuestion(from_date="2008-07-01", to_date="2008-09-30", period="quarter"))
        before = dict(first)
        assert before[q3] is not None and year not in before  # the open year is off the grid (and refused)

        _fill(engine, truth, rng, date(2010, 1, 1), date(2010, 3, 1), APRIL)
        _add(engine, truth, "MED-S4", LEEDS, date(2010, 2, 3), 1, rng, APRIL)  # planted in the new quarter
        _add(engine, truth, "MED-S3", BRIGHTON, date(2010, 3, 9), 2, rng, APRIL)
        late = Truth()  # not in `truth`: never shown
        _add(engine, late, "MED-S1", KENT, date(2008, 11, 20), 2, rng, APRIL)
        _add(engine, late, "MED-S4", LAMBETH, date(2009, 5, 14), 1, rng, APRIL)
        _add(engine, late, "MED-S3", MEDWAY, date(2008, 8, 2), 3, rng, APRIL)
        assert Releaser(engine, MEDWAY, SECRET, members=lambda: CAG).prepare_grid(POLICY)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM grid_edition")).scalar() == 2
        releaser = Releaser(engine, MEDWAY, SECRET, members=lambda: CAG)  # a restart: the kept edition
        second, _refused = _ask_everything(releaser)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM grid_edition")).scalar() == 2  # read, not made again
        after = {(q, t.kind): t for q, t in second}
        for quarter in (q3, q2):
            assert after[(quarter, "movement")] == releaser.movement(POLICY, roles=MEMBER, question=quarter)
            for kind in ("movement", "kpi"):
                assert [t for q, t in first if q == quarter and t.kind == kind] == [after[(quarter, kind)]]
        assert (year, "movement") in after  # the closed year is on the grid now
        with pytest.raises(DisclosureRefused, match="differencing"):  # off the grid, the ledger holds
            releaser.movement(
                POLICY,
                roles=MEMBER,
                question=check_question(RecordsQuestion(from_date="2008-10-01", to_date="2009-03-31")),
            )
        for family in ("movement", "kpi"):
            _assert_no_cell_narrowed(_attack(second, truth, family, earlier=first))
    finally:
        engine.dispose()

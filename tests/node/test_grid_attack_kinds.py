"""The standard table set's issue-21 count kinds under attack, as `test_grid_attack` attacks movement
and KPI 2: outcomes (departures by planned/unplanned and by each outcome domain's need, whose
departure cells are KPI 2's), KPI 1 (long-term services' users maintaining independent living,
from the quarterly returns) and unmet demand (people waiting at the quarters' ends and referrals
refused, by service type, from the occupancy returns). Ask every grid question of each and of
KPI 2 (and the off-grid questions the ledger lets through), write every released figure as a
linear function of the true counts by quarter, client group and value (each outcomes table's total
equal to the departures), and solve each suppressed cell's feasible interval. No interval may be
narrower than the cell's threshold band. Two editions, with small domestic violence (14) and
refugee (17) cells planted; and controls: protected without the linking between KPI 2 and the
outcomes tables (and between the outcomes tables themselves), or unmet demand without secondary
suppression, the same attack pins a cell, so these tests can fail."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import node.grid
import node.release
from node.answers.movement import Question, check_question, period_of
from node.client_records import ClientRecord, Outcome, person_hash
from node.grid import FinancialYear
from node.release import GRID_FAMILY, Releaser
from node.returns import Kpi1Return, OccupancyReturn, quarter_of
from node.store import add_provider, add_service, ensure_authority, get_service, open_store
from shared.disclosure import TOTAL
from shared.errors import DisclosureRefused
from shared.kinds.outcomes import DOMAINS, MEASURES, VALUES
from shared.models import CountTable, RecordsQuestion
from shared.policy import default_policy_toml, parse_policy
from shared.vocabulary import ServiceType, Term
from tests.node.test_grid_attack import (
    APRIL,
    JANUARY,
    MEDWAY,
    MEMBER,
    SEALER,
    SECRET,
    Attack,
    _assert_no_cell_narrowed,
    _months,
    _poisson,
    _quarters_of,
)

HOMELESS, OFFENDERS, OLDER, DV, REFUGEES = 7, 10, 12, 14, 17
# Short-term services (their departures are outcomes) and long-term ones (KPI 1 returns).
SHORT = (("MED-S1", HOMELESS, 4.5), ("MED-S2", OFFENDERS, 1.8), ("MED-S3", DV, 1.4), ("MED-S4", REFUGEES, 0.4))
LONG = (("MED-L1", OLDER, 40), ("MED-L2", DV, 9), ("MED-L3", REFUGEES, 3))
NEEDS = ("achieved", "identified", "not-applicable")
SHOWN = {"achieved": "achieved", "identified": "not-achieved", "not-applicable": "not-applicable"}
KINDS = ("kpi", "outcomes", "kpi1", "unmet-demand")
# The occupancy returns' people: (mean waiting at a quarter's end, mean referrals refused) a service.
DEMAND = {
    "MED-S1": (9.0, 4.0),
    "MED-S2": (5.0, 2.5),
    "MED-S3": (3.0, 2.0),
    "MED-S4": (1.0, 0.4),
    "MED-L1": (14.0, 1.5),
    "MED-L2": (3.0, 0.8),
    "MED-L3": (0.8, 0.3),
}
# Planted: a lone refugee refused in 2009-10 Q2, two women waiting for the refuge at 2009-10 Q1's
# end, and (edition 2) one refugee waiting and two women refused in 2009-10 Q4.
PLANTED = {
    ("MED-S4", date(2009, 7, 1)): (0, 1),
    ("MED-S3", date(2009, 4, 1)): (2, 0),
    ("MED-S4", date(2010, 1, 1)): (1, 0),
    ("MED-S3", date(2010, 1, 1)): (0, 2),
}
# Which tables each attacked family reads.
TABLES = {"outcomes": {"kpi", "outcomes"}, "kpi1": {"kpi1"}, "unmet-demand": {"unmet-demand"}}
# One grid year keeps each linear programme small (outcomes has 17 values a client group and quarter).
YEAR = FinancialYear(2009)
POLICY = parse_policy(
    default_policy_toml()
    .replace(b"first_year = 2005", b"first_year = 2009")
    .replace(b"last_year = 2009", b"last_year = 2009")
)
_ids = itertools.count(1)


@dataclass
class Truth:
    """True counts as the attacker's unknowns are laid out."""

    outcomes: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (quarter, group, "measure:value")
    kpi1: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (quarter, group, living)
    demand: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (quarter, group, "measure:type")


def _store(url: str) -> Engine:
    engine = open_store(url)
    ensure_authority(engine, authority_code=MEDWAY)
    add_provider(engine, provider_ref="MED-P1", name="Medway Housing Society")
    for ref, group, term in [*((r, g, Term.SHORT) for r, g, _m in SHORT), *((r, g, Term.LONG) for r, g, _n in LONG)]:
        add_service(
            engine,
            service_ref=ref,
            provider_ref="MED-P1",
            name=f"Medway service {ref}",
            district_code=MEDWAY,
            service_type=ServiceType.ACCOMMODATION_BASED if term == Term.SHORT else ServiceType.FLOATING_SUPPORT,
            client_group=group,
            units=30,
            term=term,
        )
    return engine


def _depart(
    engine: Engine, truth: Truth, ref: str, start: date, n: int, rng: random.Random, imported: datetime
) -> None:
    """`n` clients of `ref` who came and left in `start`'s month: planned two times in three, each
    domain's need met more often when planned."""
    service = get_service(engine, service_ref=ref)
    assert service is not None and service.id is not None
    quarter = period_of(f"{start.year:04d}-{start.month:02d}", "quarter")
    group = str(service.client_group)
    with Session(engine) as session:
        for _ in range(n):
            number = next(_ids)
            record = ClientRecord(
                record_ref=f"MED-K{number:06d}",
                service_id=service.id,
                start_date=start,
                client_group=service.client_group,
                age_band="25-34",
                sex="female",
                ethnicity="A",
                economic_status="jobseeker",
                referral_source="self",
                accommodation_before="private-rented",
                previous_authority=MEDWAY,
                updated_at=imported,
                person=SEALER.seal(
                    person_hash(
                        surname=f"Kinds{number}", first_initial="B", date_of_birth=date(1979, 2, 2), sex="female"
                    )
                ),
            )
            session.add(record)
            session.flush()
            planned = rng.random() < 0.66
            needs = {
                d: "not-applicable"
                if rng.random() < 0.3
                else ("achieved" if rng.random() < (0.75 if planned else 0.35) else "identified")
                for d in DOMAINS
            }
            departure = "planned" if planned else "unplanned"
            session.add(
                Outcome(
                    client_record_id=record.id,
                    end_date=start.replace(day=25),
                    departure=departure,
                    updated_at=imported,
                    **needs,
                )
            )
            for leaf in [f"departure:{departure}", *(f"{d}:{SHOWN[v]}" for d, v in needs.items())]:
                key = (quarter, group, leaf)
                truth.outcomes[key] = truth.outcomes.get(key, 0) + 1
        session.commit()


def _returns(
    engine: Engine, truth: Truth, ref: str, first: date, users: int, maintaining: int, imported: datetime
) -> None:
    service = get_service(engine, service_ref=ref)
    assert service is not None and service.id is not None
    quarter = period_of(f"{first.year:04d}-{first.month:02d}", "quarter")
    with Session(engine) as session:
        session.add(
            Kpi1Return(
                service_id=service.id,
                quarter_start=first,
                service_users=users,
                maintaining=maintaining,
                created_at=imported,
                updated_at=imported,
            )
        )
        session.commit()
    group = str(service.client_group)
    for living, n in (("maintained", maintaining), ("not-maintained", users - maintaining)):
        key = (quarter, group, living)
        truth.kpi1[key] = truth.kpi1.get(key, 0) + n


def _occupancy(engine: Engine, truth: Truth, ref: str, first: date, imported: datetime) -> None:
    """`ref`'s occupancy return for the quarter from `first`: its people waiting and refused drawn
    from a generator of their own (so the other kinds' data stay as they were), or planted."""
    service = get_service(engine, service_ref=ref)
    assert service is not None and service.id is not None
    waiting_mean, refused_mean = DEMAND[ref]
    draws = random.Random(f"{ref}/{first.isoformat()}")
    waiting, refused = PLANTED.get((ref, first), (_poisson(draws, waiting_mean), _poisson(draws, refused_mean)))
    with Session(engine) as session:
        session.add(
            OccupancyReturn(
                service_id=service.id,
                quarter_start=first,
                units_occupied=27,
                voids=3,
                waiting_list=waiting,
                referrals_refused=refused,
                created_at=imported,
                updated_at=imported,
            )
        )
        session.commit()
    quarter = period_of(f"{first.year:04d}-{first.month:02d}", "quarter")
    for measure, n in (("waiting", waiting), ("refused", refused)):
        key = (quarter, str(service.client_group), f"{measure}:{service.service_type}")
        truth.demand[key] = truth.demand.get(key, 0) + n


def _fill(engine: Engine, truth: Truth, rng: random.Random, first: date, last: date, imported: datetime) -> None:
    for month in _months(first, last):
        for ref, _group, mean in SHORT:
            n = _poisson(rng, mean)
            if n:
                _depart(engine, truth, ref, month.replace(day=8), n, rng, imported)
        if month == quarter_of(month):
            for ref, _group, size in LONG:
                users = max(1, size + rng.randint(-size // 4, size // 4))
                _returns(engine, truth, ref, month, users, round(users * rng.uniform(0.6, 0.95)), imported)
            for ref in DEMAND:
                _occupancy(engine, truth, ref, month, imported)


def _medway(database_url: str, imported: datetime) -> tuple[Engine, Truth, random.Random]:
    engine = _store(database_url)
    truth = Truth()
    rng = random.Random(21)
    _fill(engine, truth, rng, date(2009, 4, 1), date(2009, 12, 1), imported)
    # Planted: a lone refugee, two women leaving the refuge in one quarter.
    _depart(engine, truth, "MED-S4", date(2009, 8, 5), 1, rng, imported)
    _depart(engine, truth, "MED-S3", date(2009, 5, 6), 2, rng, imported)
    return engine, truth, rng


def _ask(releaser: Releaser, questions: Iterable[Question]) -> tuple[list[tuple[Question, CountTable]], int]:
    answers, refused = [], 0
    for question in questions:
        for ask in (releaser.kpi, releaser.outcomes, releaser.kpi1, releaser.unmet_demand):
            try:
                answers.append((question, ask(POLICY, roles=MEMBER, question=question)))
            except DisclosureRefused:
                refused += 1
    return answers, refused


def _question(start: date, end: date, groups: tuple[int, ...] = ()) -> Question:
    return check_question(RecordsQuestion(from_date=start.isoformat(), to_date=end.isoformat(), client_groups=groups))


def _grid_questions() -> Iterator[Question]:
    """The grid year and its quarters, for all groups and each one (these kinds have no period
    column: a grain asks nothing more)."""
    for start, end in [(YEAR.start, YEAR.end), *((a, b) for a, b, _label in YEAR.quarters())]:
        for groups in [(), *((g,) for g in (HOMELESS, OFFENDERS, OLDER, DV, REFUGEES))]:
            yield _question(start, end, groups)


def _off_grid_questions() -> Iterator[Question]:
    """Quarter-aligned questions off the grid: half years, two groups at once."""
    spans = [
        (date(2009, 4, 1), date(2009, 9, 30)),
        (date(2009, 10, 1), date(2010, 3, 31)),
        (date(2009, 7, 1), date(2009, 12, 31)),
    ]
    for start, end in spans:
        for groups in [(), (DV, REFUGEES), (HOMELESS, OFFENDERS)]:
            yield _question(start, end, groups)
    yield _question(YEAR.start, YEAR.end, (DV, REFUGEES))


def _everything(releaser: Releaser) -> tuple[list[tuple[Question, CountTable]], int]:
    return _ask(releaser, itertools.chain(_grid_questions(), _off_grid_questions()))


def _attack(
    answers: list[tuple[Question, CountTable]],
    counts: dict[tuple[str, str, str], int],
    family: str,
    earlier: Iterable[tuple[Question, CountTable]] = (),
) -> dict[frozenset[int], tuple[float, float, int, int]]:
    """Every figure of the `family`'s tables ("outcomes": KPI 2's and outcomes'; "kpi1";
    "unmet-demand") in `answers`, and in an `earlier` edition made before 2009-10 Q4 had records."""
    quarters = sorted(q for _a, _b, q in YEAR.quarters())
    groups = sorted({k[1] for k in counts}, key=int)
    if family == "outcomes":
        values = [f"{m}:{v}" for m in MEASURES for v in VALUES[m]]
    elif family == "unmet-demand":
        types = sorted({k[2].split(":", 1)[1] for k in counts})
        values = [f"{m}:{t}" for m in ("waiting", "refused") for t in types]
    else:
        values = ["maintained", "not-maintained"]
    leaves = list(itertools.product(quarters, groups, values))
    index = {leaf: i for i, leaf in enumerate(leaves)}
    attack = Attack(leaves)
    if family == "outcomes":
        for q, g in itertools.product(quarters, groups):
            departures = frozenset(index[(q, g, f"departure:{v}")] for v in VALUES["departure"])
            for domain in DOMAINS:
                attack.same.append((frozenset(index[(q, g, f"{domain}:{v}")] for v in VALUES[domain]), departures))
    rule = POLICY.rule("kpi" if family == "outcomes" else family)
    tagged = [(q, t, False) for q, t in earlier] + [(q, t, True) for q, t in answers]
    for question, table, current in tagged:
        if table.kind not in TABLES[family]:
            continue
        spanned = [q for q in _quarters_of(question) if current or q != "2009-10 Q4"]
        asked = {str(g) for g in question.client_groups} or None
        for cell in table.cells:
            named = dict(zip(table.dimensions, cell.key, strict=True))
            if table.kind == "kpi":
                measure, value = "departure", named["departure"]
            elif table.kind == "outcomes":
                measure, value = named["measure"], named["value"]
            elif table.kind == "unmet-demand":
                # No cell adds the two measures together: each is its own table.
                measure, value = named["measure"], named["service_type"]
            else:
                measure, value = "", named["living"]
            chosen = set()
            for leaf in leaves:
                q, g, v = leaf
                if q not in spanned or (asked is not None and g not in asked):
                    continue
                if named["client_group"] not in (TOTAL, g):
                    continue
                if family in ("outcomes", "unmet-demand"):
                    m, shown = v.split(":", 1)
                    if m != measure or value not in (TOTAL, shown):
                        continue
                elif value not in (TOTAL, v):
                    continue
                chosen.add(index[leaf])
            leaves_of = frozenset(chosen)
            covered = {leaves[i][1] for i in leaves_of if counts.get(leaves[i], 0)}
            threshold = rule.threshold_over(int(g) for g in covered)
            if cell.count is None:
                attack.know(leaves_of, 1, float("inf"))
                attack.hidden[leaves_of] = max(attack.hidden.get(leaves_of, 0), threshold)
            elif cell.count == 0:
                attack.know(leaves_of, 0, 0)
            else:
                attack.know(leaves_of, max(cell.count - 4, threshold + 1), cell.count + 4)
    return attack.intervals(counts)


@pytest.fixture
def medway(database_url: str) -> Iterator[tuple[Engine, Truth]]:
    """Imported just now: every quarter to March 2010 has closed."""
    engine, truth, _rng = _medway(database_url, datetime.now(UTC))
    yield engine, truth
    engine.dispose()


def test_no_suppressed_cell_of_outcomes_kpi2_kpi1_or_unmet_demand_on_the_grid_can_be_narrowed(
    medway: tuple[Engine, Truth],
) -> None:
    engine, truth = medway
    answers, refused = _everything(Releaser(engine, MEDWAY, SECRET))
    assert refused > 0  # some off-grid questions are refused: they would difference the grid
    _assert_no_cell_narrowed(_attack(answers, truth.outcomes, "outcomes"))
    _assert_no_cell_narrowed(_attack(answers, truth.kpi1, "kpi1"))
    _assert_no_cell_narrowed(_attack(answers, truth.demand, "unmet-demand"))
    # The planted cells are hidden in their quarter's table.
    quarter = _question(date(2009, 7, 1), date(2009, 9, 30))
    demand = {c.key: c for q, t in answers if q == quarter and t.kind == "unmet-demand" for c in t.cells}
    assert demand[(str(REFUGEES), "accommodation-based", "refused")].count is None
    assert all(key[2] != TOTAL for key in demand)  # never a total over waiting and refused together
    # Outcomes' departure cells are KPI 2's figures, question by question.
    kpi = {q: t for q, t in answers if t.kind == "kpi"}
    for question, table in answers:
        if table.kind == "outcomes" and table.cells and question in kpi:
            departures = {(c.key[0], c.key[2]): c.count for c in table.cells if c.key[1] == "departure"}
            assert departures == {c.key: c.count for c in kpi[question].cells}
    # Asked again, by a new process, the grid answers are the same figures: repeatable.
    again, _refused = _everything(Releaser(engine, MEDWAY, SECRET))
    grid = {(q, t.kind): t for q, t in answers if q in set(_grid_questions())}
    assert {t.kind for t in grid.values()} == set(KINDS)
    assert all(grid[(q, t.kind)] == t for q, t in again if (q, t.kind) in grid)


def test_without_secondary_suppression_a_cell_of_unmet_demand_is_pinned(
    medway: tuple[Engine, Truth], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for unmet demand: its block with the small cells hidden and nothing else (no
    linked secondary suppression). The attacker narrows a suppressed cell within its band."""
    engine, truth = medway
    monkeypatch.setattr(node.grid, "_link_equal", lambda *_args, **_kwargs: None)
    answers, _refused = _everything(Releaser(engine, MEDWAY, SECRET))
    found = _attack(answers, truth.demand, "unmet-demand")
    assert any(high - low < threshold - 1 - 1e-6 for low, high, threshold, _true in found.values())


def test_without_the_linking_between_kpi2_and_the_outcomes_tables_a_cell_is_pinned(
    medway: tuple[Engine, Truth], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: KPI 2 protected in a block of its own, and each outcomes table's total for a
    group protected as if it were not the same departures. The attacker, who knows they are,
    narrows a suppressed cell within its band."""
    engine, truth = medway
    monkeypatch.setattr(node.release, "_family_of", lambda _policy, kind: GRID_FAMILY[kind])
    monkeypatch.setattr(node.release, "_equal_of", lambda _family, _groups: [])
    answers, _refused = _everything(Releaser(engine, MEDWAY, SECRET))
    found = _attack(answers, truth.outcomes, "outcomes")
    assert any(high - low < threshold - 1 - 1e-6 for low, high, threshold, _true in found.values())


def test_a_new_edition_of_outcomes_kpi1_and_unmet_demand_hides_a_late_handful(database_url: str) -> None:
    """Edition 1 (imported in January 2010) publishes every quarter to 2009-10 Q3. Edition 2
    (April 2010) brings January to March 2010, with a lone refugee and two women leaving the
    refuge planted in the new quarter, the KPI 1 and occupancy returns of 2009-10 Q4 (a refugee
    waiting and two women refused planted), and late records in closed quarters: a refugee's
    departure in 2009-10 Q2, three women's in 2009-10 Q1, a KPI 1 return corrected by one service
    user in 2009-10 Q3 and the refugee service's occupancy return by one person waiting in 2009-10
    Q2. Each closed quarter keeps its figures, and an attacker holding both editions narrows
    nothing."""
    engine, truth, rng = _medway(database_url, JANUARY)
    try:
        assert Releaser(engine, MEDWAY, SECRET).prepare_grid(POLICY)
        first, _refused = _everything(Releaser(engine, MEDWAY, SECRET))
        _fill(engine, truth, rng, date(2010, 1, 1), date(2010, 3, 1), APRIL)
        _depart(engine, truth, "MED-S4", date(2010, 2, 3), 1, rng, APRIL)
        _depart(engine, truth, "MED-S3", date(2010, 3, 9), 2, rng, APRIL)
        late = Truth()  # not in `truth`: never shown
        _depart(engine, late, "MED-S4", date(2009, 8, 20), 1, rng, APRIL)
        _depart(engine, late, "MED-S3", date(2009, 5, 14), 3, rng, APRIL)
        with Session(engine) as session:
            service = get_service(engine, service_ref="MED-L3")
            assert service is not None
            stored = session.exec(
                select(Kpi1Return)
                .where(Kpi1Return.service_id == service.id)
                .where(Kpi1Return.quarter_start == date(2009, 10, 1))
            ).one()
            stored.service_users += 1
            stored.updated_at = APRIL
            session.add(stored)
            corrected = session.exec(
                select(OccupancyReturn)
                .where(OccupancyReturn.service_id == service.id)
                .where(OccupancyReturn.quarter_start == date(2009, 7, 1))
            ).one()
            corrected.waiting_list += 1
            corrected.updated_at = APRIL
            session.add(corrected)
            session.commit()
        assert Releaser(engine, MEDWAY, SECRET).prepare_grid(POLICY)
        releaser = Releaser(engine, MEDWAY, SECRET)
        second, _refused = _everything(releaser)
        after = {(q, t.kind): t for q, t in second}
        closed = [q for q in _grid_questions() if q.to_date is not None and q.to_date <= date(2009, 12, 31)]
        for question in closed:
            for kind in KINDS:
                before = [t for q, t in first if q == question and t.kind == kind]
                assert before == [after[(question, kind)]] if (question, kind) in after else not before
        year = _question(YEAR.start, YEAR.end)
        assert all((year, kind) in after for kind in KINDS)  # the closed year is on the grid now
        _assert_no_cell_narrowed(_attack(second, truth.outcomes, "outcomes", earlier=first))
        _assert_no_cell_narrowed(_attack(second, truth.kpi1, "kpi1", earlier=first))
        _assert_no_cell_narrowed(_attack(second, truth.demand, "unmet-demand", earlier=first))
    finally:
        engine.dispose()

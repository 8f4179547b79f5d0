"""Outcomes and the equality profile at one node, over a real store on SQLite and PostgreSQL: what
the node releases is checked against true counts worked out here with plain SQL, the outcomes'
departure cells against KPI 2's answer, a cross-tab's margins against the profile's, and the
profile and a cross-tab together under a linear programme attack: no suppressed cell may be
narrowed within its threshold band. The joint combines are checked on hand-made node tables."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import pytest
from scipy.optimize import linprog
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from node.analyses import MonthlyCounts
from node.answers.equality import profile_counts
from node.answers.movement import check_question
from node.client_records import AGE_BANDS, ClientRecord, Outcome
from node.release import Releaser
from node.store import add_provider, add_service, ensure_authority, get_service, open_store
from shared.disclosure import TOTAL
from shared.errors import DisclosureRefused, InvalidRequest, NotPermitted
from shared.kinds.equality import DIMENSIONS, NO_REFERENCE, check_cross_tab, combine_equality
from shared.kinds.outcomes import DOMAINS, combine_outcomes
from shared.models import CountCell, CountTable, RecordsQuestion
from shared.policy import default_policy
from shared.vocabulary import ServiceType, Term

MEDWAY = "E06000035"
HOMELESS, DV, OLDER, REFUGEES = 7, 14, 12, 17
MEMBER = ("member-authority",)
SECRET = b"medway-rounding-key-0123456789abcdef"
POLICY = default_policy()
RULE = POLICY.rule("equality")
# (service_ref, client group, term): a hostel, a refuge, a refugee project (short term), and a
# sheltered scheme (long term: its departures are not short-term outcomes).
SERVICES = (
    ("MED-S1", HOMELESS, Term.SHORT),
    ("MED-S2", DV, Term.SHORT),
    ("MED-S3", REFUGEES, Term.SHORT),
    ("MED-S4", OLDER, Term.LONG),
)
# Records per service over the two years: the refugee project is small.
SIZES = {"MED-S1": 260, "MED-S2": 70, "MED-S3": 18, "MED-S4": 60}
ETHNICITY = {"A": 0.8, "C": 0.06, "H": 0.03, "J": 0.02, "N": 0.05, "M": 0.02, "Z": 0.02}
SEXES = {"female": 0.45, "male": 0.55}
STATUS = {"jobseeker": 0.5, "long-term-sick-or-disabled": 0.2, "not-seeking-work": 0.2, "part-time-work": 0.1}
REFERRAL = {"self": 0.4, "housing-department": 0.3, "social-services": 0.15, "probation": 0.1, "police": 0.05}
BEFORE = {"rough-sleeping": 0.2, "living-with-family-or-friends": 0.4, "private-rented": 0.3, "hostel": 0.1}
AGES = dict(zip(AGE_BANDS, (0.04, 0.3, 0.28, 0.18, 0.1, 0.04, 0.03, 0.02, 0.008, 0.002), strict=True))
SPAN = RecordsQuestion(from_date="2008-04-01", to_date="2010-03-31")


def _draw(rng: random.Random, mix: dict[str, float]) -> str:
    return rng.choices(list(mix), weights=list(mix.values()))[0]


@pytest.fixture
def medway(database_url: str) -> Iterator[Engine]:
    engine = open_store(database_url)
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
    rng = random.Random(21)
    number = itertools.count(1)
    with Session(engine) as session:
        for ref, size in SIZES.items():
            service = get_service(engine, service_ref=ref)
            assert service is not None and service.id is not None
            for _ in range(size):
                start = date(2008, 4, 1) + timedelta(days=rng.randrange(700))
                older = service.client_group == OLDER
                record = ClientRecord(
                    record_ref=f"MED-R{next(number):05d}",
                    service_id=service.id,
                    start_date=start,
                    client_group=service.client_group,
                    age_band=_draw(rng, {"65-74": 0.5, "75-84": 0.4, "85+": 0.1} if older else AGES),
                    sex="female" if service.client_group == DV else _draw(rng, SEXES),
                    ethnicity=_draw(rng, ETHNICITY),
                    economic_status="retired" if older else _draw(rng, STATUS),
                    referral_source=_draw(rng, REFERRAL),
                    accommodation_before=_draw(rng, BEFORE),
                )
                session.add(record)
                session.flush()
                if rng.random() < 0.7:
                    planned = rng.random() < 0.65
                    needs = {
                        d: "not-applicable"
                        if rng.random() < 0.3
                        else "achieved"
                        if rng.random() < (0.75 if planned else 0.35)
                        else "identified"
                        for d in DOMAINS
                    }
                    end = min(start + timedelta(days=rng.randrange(20, 200)), date(2010, 3, 31))
                    session.add(
                        Outcome(
                            client_record_id=record.id,
                            end_date=end,
                            departure="planned" if planned else "unplanned",
                            **needs,
                        )
                    )
        session.commit()
    yield engine
    engine.dispose()


def _releaser(engine: Engine) -> Releaser:
    return Releaser(engine, MEDWAY, SECRET, members=lambda: frozenset({MEDWAY}))


def _true_outcomes(engine: Engine) -> dict[tuple[str, str, str], int]:
    """(client group, measure, value) -> departures, counted here with plain SQL."""
    counts: dict[tuple[str, str, str], int] = {}
    named = {"identified": "not-achieved"}
    with engine.connect() as conn:
        for measure in ("departure", *DOMAINS):
            rows = conn.execute(
                text(
                    f"SELECT r.client_group, o.{measure}, COUNT(*) FROM outcome o "
                    "JOIN client_record r ON o.client_record_id = r.id JOIN service s ON r.service_id = s.id "
                    "WHERE s.term = 'short' AND o.end_date BETWEEN :a AND :b "
                    f"GROUP BY r.client_group, o.{measure}"
                ),
                {"a": date(2008, 4, 1), "b": date(2010, 3, 31)},
            )
            for group, value, n in rows:
                counts[(str(group), measure, named.get(value, value))] = int(n)
    return counts


def _true_profile(engine: Engine) -> dict[tuple[str, str, str], int]:
    counts: dict[tuple[str, str, str], int] = {}
    with engine.connect() as conn:
        for dimension in DIMENSIONS:
            rows = conn.execute(
                text(
                    f"SELECT client_group, {dimension}, COUNT(*) FROM client_record GROUP BY client_group, {dimension}"
                )
            )
            for group, value, n in rows:
                counts[(str(group), dimension, str(value))] = int(n)
    return counts


def _summed(truth: dict[tuple[str, str, str], int], key: tuple[str, str, str]) -> tuple[int, set[int]]:
    """The true count a released cell (with "*" margins) stands for, and the client groups in it."""
    total, groups = 0, set()
    for k, n in truth.items():
        if all(want in (TOTAL, have) for want, have in zip(key, k, strict=True)):
            total += n
            groups.add(int(k[0]))
    return total, groups


def _check_against_truth(table: CountTable, truth: dict[tuple[str, str, str], int]) -> int:
    suppressed = 0
    for cell in table.cells:
        true, groups = _summed(truth, cell.key)
        threshold = RULE.threshold_over(groups)
        if cell.count is None:
            suppressed += 1
            # Off the grid, or (outcomes on the standard table set) the grid's span of every year.
            assert true > 0 and cell.suppressed in ("linked-suppression", "grid-suppression")
            continue
        assert abs(cell.count - true) <= 4, (cell, true)  # keyed rounding to a multiple of 5
        assert cell.count % 5 == 0 and not 1 <= cell.count <= threshold
        assert true > threshold or true == 0, (cell, true)  # a small count is never shown
    return suppressed


def test_outcomes_are_the_true_departures_protected_and_kpi_s_figures(medway: Engine) -> None:
    releaser = _releaser(medway)
    question = check_question(SPAN)
    table = releaser.outcomes(POLICY, roles=MEMBER, question=question)
    truth = _true_outcomes(medway)
    assert table.dimensions == ("client_group", "measure", "value")
    assert _check_against_truth(table, truth) > 0  # the refugees' outcomes are small: some are hidden
    assert {c.key[0] for c in table.cells} == {str(HOMELESS), str(DV), str(REFUGEES), TOTAL}  # no long-term group
    # Every measure's total for a client group is the one figure: the group's departures.
    for group in {c.key[0] for c in table.cells}:
        totals = {table.value(group, m, TOTAL) for m in ("departure", *DOMAINS)}
        assert len(totals) == 1
    # The departure cells are exactly what KPI 2 releases for the same question.
    kpi = releaser.kpi(POLICY, roles=MEMBER, question=question)
    for cell in kpi.cells:
        group, departure = cell.key
        assert table.value(group, "departure", departure) == cell.count
    # Asked again, the same answer (from the ledger's memory, and by a new process).
    assert releaser.outcomes(POLICY, roles=MEMBER, question=question) == table
    assert _releaser(medway).outcomes(POLICY, roles=MEMBER, question=question) == table


def test_the_profile_is_the_true_records_protected_and_the_cross_tab_keeps_its_margins(medway: Engine) -> None:
    releaser = _releaser(medway)
    question = check_question(RecordsQuestion())
    profile = releaser.equality(POLICY, roles=MEMBER, question=question)
    truth = _true_profile(medway)
    assert profile.dimensions == ("client_group", "dimension", "category")
    assert _check_against_truth(profile, truth) > 0
    for group in {c.key[0] for c in profile.cells}:
        assert len({profile.value(group, d, TOTAL) for d in DIMENSIONS}) == 1
    cross = releaser.equality(POLICY, roles=MEMBER, question=question, cross_tab=("age_band", "sex"))
    assert cross.dimensions == ("age_band", "sex")
    for cell in cross.cells:
        band, sex = cell.key
        if band == TOTAL and sex == TOTAL:
            assert cell.count == profile.value(TOTAL, "sex", TOTAL)
        elif sex == TOTAL:
            assert cell.count == profile.value(TOTAL, "age_band", band)
        elif band == TOTAL:
            assert cell.count == profile.value(TOTAL, "sex", sex)
    with medway.connect() as conn:
        pairs = {
            (str(a), str(s)): int(n)
            for a, s, n in conn.execute(
                text("SELECT age_band, sex, COUNT(*) FROM client_record GROUP BY age_band, sex")
            )
        }
    for cell in cross.cells:
        if TOTAL not in cell.key and cell.count is not None:
            assert abs(cell.count - pairs.get(cell.key, 0)) <= 4
        if TOTAL not in cell.key and 1 <= pairs.get(cell.key, 0) <= RULE.strictest_threshold:
            assert cell.count is None or pairs[cell.key] > RULE.threshold  # small cells are hidden


def test_a_cross_tab_that_would_isolate_people_is_refused(medway: Engine) -> None:
    releaser = _releaser(medway)
    question = check_question(RecordsQuestion(client_groups=(REFUGEES,)))
    with pytest.raises(DisclosureRefused, match="cross-tab: most of its cells would be small"):
        releaser.equality(POLICY, roles=MEMBER, question=question, cross_tab=("ethnicity", "referral_source"))


def test_an_equality_question_is_checked() -> None:
    assert check_cross_tab(["sex", "ethnicity"]) == ("ethnicity", "sex")  # the profile's order
    assert check_cross_tab([]) == ()
    with pytest.raises(InvalidRequest, match="cross_tab: 'religion'"):
        check_cross_tab(["religion", "sex"])
    with pytest.raises(InvalidRequest, match="exactly two"):
        check_cross_tab(["sex"])
    with pytest.raises(InvalidRequest, match="exactly two"):
        check_cross_tab(["sex", "ethnicity", "age_band"])


def test_the_policy_s_roles_hold(medway: Engine) -> None:
    releaser = _releaser(medway)
    with pytest.raises(NotPermitted):
        releaser.outcomes(POLICY, roles=("regional-board",), question=check_question(SPAN))
    with pytest.raises(NotPermitted):
        releaser.equality(POLICY, roles=("regional-board",), question=check_question(SPAN))


def test_a_period_moved_by_a_few_records_is_refused_as_differencing(medway: Engine) -> None:
    releaser = _releaser(medway)
    releaser.equality(POLICY, roles=MEMBER, question=check_question(SPAN))
    with medway.connect() as conn:
        last = conn.execute(text("SELECT MAX(start_date) FROM client_record")).scalar()
        last = last if isinstance(last, date) else date.fromisoformat(str(last))
        few = conn.execute(text("SELECT COUNT(*) FROM client_record WHERE start_date = :d"), {"d": last}).scalar()
    assert few is not None and 1 <= few <= RULE.threshold
    # The same span less its last day: it differs from the earlier answer by those few records.
    shorter = RecordsQuestion(from_date=SPAN.from_date, to_date=(last - timedelta(days=1)).isoformat())
    with pytest.raises(DisclosureRefused, match="differencing"):
        releaser.equality(POLICY, roles=MEMBER, question=check_question(shorter), cross_tab=("age_band", "sex"))


# --- the attacker's linear programme ----------------------------------------------------------------


def test_no_suppressed_cell_of_the_profile_and_a_cross_tab_can_be_narrowed(medway: Engine) -> None:
    """Unknowns: records by (client group, age band, sex) and, for each other dimension, by
    (client group, category), tied by each group's total. Every released figure is an interval
    (rounding), every suppressed one at least 1; each suppressed cell's feasible range must stay
    at least its threshold band wide."""
    releaser = _releaser(medway)
    question = check_question(RecordsQuestion())
    profile = releaser.equality(POLICY, roles=MEMBER, question=question)
    cross = releaser.equality(POLICY, roles=MEMBER, question=question, cross_tab=("age_band", "sex"))
    truth = _true_profile(medway)
    groups = sorted({k[0] for k in truth}, key=int)
    with medway.connect() as conn:
        triples = {
            (str(g), str(a), str(s)): int(n)
            for g, a, s, n in conn.execute(
                text("SELECT client_group, age_band, sex, COUNT(*) FROM client_record GROUP BY 1, 2, 3")
            )
        }
    ages = sorted({k[1] for k in triples})
    sexes = sorted({k[2] for k in triples})
    variables: list[tuple[str, ...]] = [("x", g, a, s) for g in groups for a in ages for s in sexes]
    others = [d for d in DIMENSIONS if d not in ("age_band", "sex")]
    for d in others:
        variables += [("y", g, d, c) for g in groups for c in sorted({k[2] for k in truth if k[1] == d})]
    index = {v: i for i, v in enumerate(variables)}
    true_value = np.array(
        [triples.get(v[1:], 0) if v[0] == "x" else truth.get((v[1], v[2], v[3]), 0) for v in variables], float
    )

    def profile_cell(key: tuple[str, ...]) -> list[int]:
        group, dimension, category = key
        chosen = []
        for v in variables:
            if group not in (TOTAL, v[1]):
                continue
            if v[0] == "x" and dimension in ("age_band", "sex"):
                value = v[2] if dimension == "age_band" else v[3]
                if category in (TOTAL, value):
                    chosen.append(index[v])
            elif v[0] == "y" and v[2] == dimension and category in (TOTAL, v[3]):
                chosen.append(index[v])
        return chosen

    def cross_cell(key: tuple[str, ...]) -> list[int]:
        band, sex = key
        return [index[v] for v in variables if v[0] == "x" and band in (TOTAL, v[2]) and sex in (TOTAL, v[3])]

    rows_ub, b_ub, hidden = [], [], []
    for table, cells_of in ((profile, profile_cell), (cross, cross_cell)):
        for cell in table.cells:
            row = np.zeros(len(variables))
            row[cells_of(cell.key)] = 1.0
            true = float(row @ true_value)
            groups_in = {int(variables[i][1]) for i in np.nonzero(row)[0] if true_value[i]}
            threshold = RULE.threshold_over(groups_in)
            if cell.count is None:
                lo, hi = 1.0, np.inf
                hidden.append((row, threshold, true))
            else:
                lo, hi = float(max(cell.count - 4, threshold + 1)) if cell.count else 0.0, float(cell.count + 4)
                if cell.count == 0:
                    hi = 0.0
            rows_ub.append(-row)
            b_ub.append(-lo)
            if np.isfinite(hi):
                rows_ub.append(row)
                b_ub.append(hi)
    # Each group's other dimensions sum to its (age band x sex) records.
    rows_eq = []
    for g in groups:
        for d in others:
            row = np.zeros(len(variables))
            for v in variables:
                if v[1] == g and (v[0] == "x" or v[2] == d):
                    row[index[v]] = 1.0 if v[0] == "y" else -1.0
            rows_eq.append(row)
    a_ub, a_eq = np.array(rows_ub), np.array(rows_eq)
    assert hidden, "nothing was suppressed: the attack would prove nothing"
    for row, threshold, true in hidden:
        low = linprog(row, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(len(rows_eq)), method="highs")
        high = linprog(-row, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(len(rows_eq)), method="highs")
        assert low.status == 0, low.message
        top = np.inf if high.status == 3 else -high.fun
        assert low.fun - 1e-6 <= true <= top + 1e-6  # the truth is feasible
        assert top - low.fun >= threshold - 1 - 1e-6, f"a suppressed cell narrowed to [{low.fun:.1f}, {top:.1f}]"


# --- the joint combines -------------------------------------------------------------------------------


def _table(authority: str, kind: str, dims: tuple[str, ...], cells: dict[tuple[str, ...], int | None]) -> CountTable:
    return CountTable(
        authority=authority,
        kind=kind,
        dimensions=dims,
        cells=tuple(
            CountCell(key=k, count=v, suppressed="" if v is not None else "linked-suppression", margin=TOTAL in k)
            for k, v in cells.items()
        ),
    )


def _outcome_cells(
    planned: int | None, departures: int, met: int | None, unmet: int
) -> dict[tuple[str, ...], int | None]:
    cells: dict[tuple[str, ...], int | None] = {
        ("7", "departure", "planned"): planned,
        ("7", "departure", TOTAL): departures,
    }
    for d in DOMAINS:
        cells[("7", d, "achieved")] = met
        cells[("7", d, "not-achieved")] = unmet
        cells[("7", d, TOTAL)] = departures
    return cells


def test_outcome_shares_come_only_from_whole_parts_and_the_cag_names_who_is_short() -> None:
    dims = ("client_group", "measure", "value")
    joint = combine_outcomes(
        [
            _table("A", "outcomes", dims, _outcome_cells(60, 100, 40, 20)),
            _table("B", "outcomes", dims, _outcome_cells(None, 50, 30, 10)),
        ]
    )
    rows = {(r.authority, r.client_group, r.measure): r for r in joint.rows}
    assert rows[("A", 7, "departure")].percent == 60.0
    assert rows[("A", 7, "stay_safe")].percent == round(100 * 40 / 60, 1)
    assert rows[("B", 7, "departure")].percent is None
    assert rows[("B", 7, "departure")].reason == "planned departures suppressed"
    assert rows[("B", 7, "stay_safe")].percent == 75.0
    cag = rows[("CAG", 7, "departure")]
    assert cag.percent is None and cag.reason == "planned departures suppressed at B"
    assert rows[("CAG", 7, "be_healthy")].percent == round(100 * 70 / 100, 1)


def test_equality_shares_come_only_from_whole_parts_beside_no_invented_reference() -> None:
    dims = ("client_group", "dimension", "category")
    a: dict[tuple[str, ...], int | None] = {
        ("7", "sex", "female"): 40,
        ("7", "sex", "male"): 60,
        ("7", "sex", TOTAL): 100,
    }
    b: dict[tuple[str, ...], int | None] = {
        ("7", "sex", "female"): None,
        ("7", "sex", "male"): None,
        ("7", "sex", TOTAL): 10,
    }
    joint = combine_equality([_table("A", "equality", dims, a), _table("B", "equality", dims, b)])
    rows = {(r.authority, r.client_group, r.category): r for r in joint.profile}
    assert rows[("A", 7, "female")].percent == 40.0
    assert rows[("A", 7, "female")].population_percent is None and rows[("A", 7, "female")].reference == NO_REFERENCE
    assert rows[("B", 7, "female")].percent is None
    assert rows[("CAG", 7, "female")].percent is None
    assert "at B" in rows[("CAG", 7, "female")].reason
    cross = combine_equality(
        [
            _table("A", "equality", ("age_band", "sex"), {("18-24", "female"): 10, ("18-24", TOTAL): 25}),
            _table("B", "equality", ("age_band", "sex"), {("18-24", "female"): None, ("18-24", TOTAL): 30}),
        ]
    )
    assert cross.cross_tab == ("age_band", "sex")
    cag = {(c.row, c.column): c.clients for c in cross.cells if c.authority == "CAG"}
    assert cag[("18-24", "female")].count == 10 and not cag[("18-24", "female")].complete
    assert cag[("18-24", TOTAL)].count == 55 and cag[("18-24", TOTAL)].complete


def test_no_suppressed_cell_of_outcomes_and_kpi_together_can_be_narrowed(medway: Engine) -> None:
    """Unknowns: departures by (client group, measure, value), each measure's values summing to the
    same departures; known: every figure of the outcomes answer and of KPI 2's for the question."""
    releaser = _releaser(medway)
    question = check_question(SPAN)
    outcomes = releaser.outcomes(POLICY, roles=MEMBER, question=question)
    kpi = releaser.kpi(POLICY, roles=MEMBER, question=question)
    truth = _true_outcomes(medway)
    variables = sorted(truth)
    index = {v: i for i, v in enumerate(variables)}
    true_value = np.array([truth[v] for v in variables], float)
    rule = POLICY.rule("outcomes")

    def chosen(group: str, measure: str, value: str) -> list[int]:
        return [index[v] for v in variables if group in (TOTAL, v[0]) and v[1] == measure and value in (TOTAL, v[2])]

    figures = [(chosen(*c.key), c.count) for c in outcomes.cells]
    figures += [(chosen(c.key[0], "departure", c.key[1]), c.count) for c in kpi.cells]
    rows_ub, b_ub, hidden = [], [], []
    for cells, count in figures:
        row = np.zeros(len(variables))
        row[cells] = 1.0
        true = float(row @ true_value)
        threshold = rule.threshold_over({int(variables[i][0]) for i in cells if true_value[i]})
        if count is None:
            hidden.append((row, threshold, true))
            lo, hi = 1.0, np.inf
        elif count == 0:
            lo, hi = 0.0, 0.0
        else:
            lo, hi = float(max(count - 4, threshold + 1)), float(count + 4)
        rows_ub.append(-row)
        b_ub.append(-lo)
        if np.isfinite(hi):
            rows_ub.append(row)
            b_ub.append(hi)
    rows_eq = []
    for group in {v[0] for v in variables}:
        for measure in DOMAINS:
            row = np.zeros(len(variables))
            row[chosen(group, measure, TOTAL)] = 1.0
            row[chosen(group, "departure", TOTAL)] = -1.0
            rows_eq.append(row)
    a_ub, a_eq, b_eq = np.array(rows_ub), np.array(rows_eq), np.zeros(len(rows_eq))
    assert hidden, "nothing was suppressed: the attack would prove nothing"
    for row, threshold, true in hidden:
        low = linprog(row, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, method="highs")
        high = linprog(-row, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, method="highs")
        assert low.status == 0, low.message
        top = np.inf if high.status == 3 else -high.fun
        assert low.fun - 1e-6 <= true <= top + 1e-6
        assert top - low.fun >= threshold - 1 - 1e-6, f"a suppressed cell narrowed to [{low.fun:.1f}, {top:.1f}]"


def test_whole_month_questions_read_the_counts_kept_for_the_edition(medway: Engine) -> None:
    """A plan's years and quarters are filters of the counts over all records, kept per records
    edition; any other span reads the store. Both give what the store says now."""
    kept = MonthlyCounts(lambda q: profile_counts(medway, question=q))
    spans = [
        RecordsQuestion(from_date="2008-04-01", to_date="2009-03-31"),
        RecordsQuestion(from_date="2009-10-01", to_date="2009-12-31", client_groups=(DV,)),
        RecordsQuestion(from_date="2008-04-15", to_date="2009-02-10"),  # not whole months
        RecordsQuestion(),
    ]
    for span in spans:
        question = check_question(span)
        assert kept(question, ("edition 1",)) == profile_counts(medway, question=question)
    with Session(medway) as session:
        service = get_service(medway, service_ref="MED-S1")
        assert service is not None and service.id is not None
        session.add(
            ClientRecord(
                record_ref="MED-LATE",
                service_id=service.id,
                start_date=date(2008, 5, 5),
                client_group=HOMELESS,
                age_band="25-34",
                sex="male",
                ethnicity="A",
                economic_status="jobseeker",
                referral_source="self",
                accommodation_before="hostel",
            )
        )
        session.commit()
    question = check_question(spans[0])
    assert kept(question, ("edition 1",)) != profile_counts(medway, question=question)  # the same edition: kept
    assert kept(question, ("edition 2",)) == profile_counts(medway, question=question)

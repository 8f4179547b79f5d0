"""Movement, net flow, KPI 2, non-local services and linkage tokens at one node, over a real store
on SQLite and PostgreSQL: what the node releases is checked against the true counts of a small
hand-made Medway, and the coordinator's combining against hand-made node tables."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from node.answers import linkage
from node.answers.movement import check_question, origin_of, period_of, standard_periods
from node.client_records import ClientRecord, Outcome, PersonSealer, person_hash
from node.ledger import SqlReleaseStore
from node.release import Releaser
from node.store import add_provider, add_service, ensure_authority, get_service, open_store
from shared.errors import DisclosureRefused, InvalidRequest, NotPermitted
from shared.kinds.records import (
    Tally,
    combine_kpi,
    combine_movement,
    combine_net_flow,
    combine_net_flow_version_1,
    count_repeat_movers,
    net_figure,
)
from shared.models import CountCell, CountTable, RecordsQuestion
from shared.policy import default_policy_toml, parse_policy
from shared.vocabulary import ServiceType, Term
from tests.sixutil import SIX

MEDWAY, KENT, BRIGHTON, EAST_SUSSEX = "E06000035", "E10000016", "E06000043", "E10000011"
LAMBETH, LEEDS = "E09000022", "E08000035"  # London; Yorkshire and The Humber
LONDON, YORKSHIRE = "E12000007", "E12000003"
HOMELESS, DV, OFFENDERS = 7, 14, 10
POLICY = parse_policy(default_policy_toml())
# The default policy without its standard table set: the release ledger alone, as before it.
NO_GRID = parse_policy(default_policy_toml(grid=False))
MEMBER = ("member-authority",)
SECRET = b"medway-rounding-key-0123456789abcdef"
SEALER = PersonSealer(bytes(range(64)))


# --- pure functions ---------------------------------------------------------------------------------


def test_origins_are_cag_authorities_or_regions() -> None:
    cag = frozenset(SIX)
    assert origin_of(KENT, cag) == KENT
    assert origin_of(LAMBETH, cag) == LONDON
    assert origin_of(LEEDS, cag) == YORKSHIRE
    assert origin_of("E06000036", cag) == "E12000008"  # Bracknell Forest: South East, outside the CAG
    assert origin_of(None, cag) == "unknown"
    assert origin_of("E07000105", cag) == KENT  # Ashford, a Kent district


def test_periods_are_financial_years_and_quarters() -> None:
    assert period_of("2009-03", "year") == "2008-09"
    assert period_of("2009-04", "year") == "2009-10"
    assert period_of("2009-04", "quarter") == "2009-10 Q1"
    assert period_of("2010-01", "quarter") == "2009-10 Q4"
    assert period_of("2009-12", "all") == "all"


@pytest.mark.parametrize(
    ("question", "field"),
    [
        (RecordsQuestion(from_date="2009-13-01"), "from_date"),
        (RecordsQuestion(from_date="2010-01-01", to_date="2009-01-01"), "to_date"),
        (RecordsQuestion(period="month"), "period"),
        (RecordsQuestion(client_groups=(22,)), "client_groups"),
        (RecordsQuestion(min_share_percent=101), "min_share_percent"),
        # Off the share grid: a free threshold could be bisected to each service's exact share.
        (RecordsQuestion(min_share_percent=20), "min_share_percent"),
        (RecordsQuestion(min_share_percent=67), "min_share_percent"),
    ],
)
def test_bad_questions_name_the_field(question: RecordsQuestion, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field):
        check_question(question)


# --- a small hand-made Medway -----------------------------------------------------------------------

# (service_ref, name, client group, term): a hostel, a refuge, an offender hostel, floating support.
SERVICES = (
    ("MED-S1", "Chatham Foyer Hostel", HOMELESS, Term.SHORT),
    ("MED-S2", "Medway Womens Refuge", DV, Term.SHORT),
    ("MED-S3", "Rochester Approved Premises", OFFENDERS, Term.SHORT),
    ("MED-S4", "Medway Floating Support", HOMELESS, Term.LONG),
)


def _store(url: str) -> Engine:
    engine = open_store(url)
    ensure_authority(engine, authority_code=MEDWAY)
    add_provider(engine, provider_ref="MED-P1", name="Medway Housing Society")
    for ref, name, group, term in SERVICES:
        add_service(
            engine,
            service_ref=ref,
            provider_ref="MED-P1",
            name=name,
            district_code=MEDWAY,
            service_type=ServiceType.FLOATING_SUPPORT if ref == "MED-S4" else ServiceType.ACCOMMODATION_BASED,
            client_group=group,
            units=20,
            term=term,
            contracted_hours=40.0 if ref == "MED-S4" else None,
        )
    return engine


_ids = itertools.count(1)


def _records(
    engine: Engine,
    service_ref: str,
    n: int,
    *,
    origin: str | None,
    start: date,
    group: int | None = None,
    planned: int = 0,
    unplanned: int = 0,
    person: str | None = None,
) -> None:
    service = get_service(engine, service_ref=service_ref)
    assert service is not None and service.id is not None
    with Session(engine) as session:
        for i in range(n):
            number = next(_ids)
            record = ClientRecord(
                record_ref=f"MED-R{number:06d}",
                service_id=service.id,
                start_date=start,
                client_group=group or service.client_group,
                age_band="25-34",
                sex="female",
                ethnicity="A",
                economic_status="jobseeker",
                referral_source="self",
                accommodation_before="private-rented",
                previous_authority=origin,
                person=SEALER.seal(
                    person_hash(
                        surname=person or f"Person{number}",
                        first_initial="A",
                        date_of_birth=date(1980, 1, 1),
                        sex="female",
                    )
                ),
            )
            session.add(record)
            session.flush()
            if i < planned + unplanned:
                session.add(
                    Outcome(
                        client_record_id=record.id,
                        end_date=start.replace(day=28),
                        departure="planned" if i < planned else "unplanned",
                        economic_wellbeing="achieved",
                        enjoy_and_achieve="not-applicable",
                        be_healthy="identified",
                        stay_safe="achieved",
                        positive_contribution="not-applicable",
                    )
                )
        session.commit()


@pytest.fixture
def medway(database_url: str) -> Engine:
    engine = _store(database_url)
    # 2009-10: a hostel that is mostly local, a refuge that is mostly not, an offender hostel.
    _records(engine, "MED-S1", 40, origin=MEDWAY, start=date(2009, 5, 3), planned=20, unplanned=10)
    _records(engine, "MED-S1", 12, origin=KENT, start=date(2009, 6, 9), planned=6, unplanned=6)
    _records(engine, "MED-S1", 3, origin=LAMBETH, start=date(2009, 6, 10))
    _records(engine, "MED-S2", 25, origin=KENT, start=date(2009, 7, 1), planned=15, unplanned=5)
    _records(engine, "MED-S2", 9, origin=LAMBETH, start=date(2009, 7, 2))
    _records(engine, "MED-S2", 6, origin=MEDWAY, start=date(2009, 7, 3))
    _records(engine, "MED-S3", 30, origin=MEDWAY, start=date(2010, 2, 1))
    _records(engine, "MED-S3", 4, origin=None, start=date(2010, 3, 5))
    _records(engine, "MED-S4", 60, origin=MEDWAY, start=date(2009, 9, 1))
    yield engine
    engine.dispose()


def _released(table: CountTable) -> dict[tuple[str, ...], int | None]:
    return {c.key: c.count for c in table.cells}


def _check_protected(released: int | None, true: int, threshold: int) -> None:
    if released is None:
        return
    assert released % 5 == 0
    assert abs(released - true) < 5
    assert not 1 <= released <= threshold
    if 1 <= true <= threshold:
        pytest.fail(f"a true count of {true} was released as {released}")


def test_movement_released_against_the_truth(medway: Engine) -> None:
    # One table protected on its own (the ledger's path); the standard table set, which protects
    # every table together and hides more, is checked by tests/node/test_grid_attack.py.
    releaser = Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX))
    table = releaser.movement(NO_GRID, roles=MEMBER, question=check_question(RecordsQuestion(period="year")))
    truth = {
        (MEDWAY, str(HOMELESS), "2009-10"): 100,
        (KENT, str(HOMELESS), "2009-10"): 12,
        (LONDON, str(HOMELESS), "2009-10"): 3,
        (KENT, str(DV), "2009-10"): 25,
        (LONDON, str(DV), "2009-10"): 9,
        (MEDWAY, str(DV), "2009-10"): 6,
        (MEDWAY, str(OFFENDERS), "2009-10"): 30,
        ("unknown", str(OFFENDERS), "2009-10"): 4,
    }
    released = _released(table)
    for key, true in truth.items():
        threshold = 10 if key[1] == str(DV) else 7
        _check_protected(released[key], true, threshold)
    # The small cells are hidden, and so is whatever would let them be worked out.
    assert released[(LONDON, str(HOMELESS), "2009-10")] is None
    assert released[(LONDON, str(DV), "2009-10")] is None  # 9 is within the refuge threshold of 10
    assert released[(MEDWAY, str(DV), "2009-10")] is None
    assert released[(KENT, str(DV), "2009-10")] is not None
    assert released[("unknown", str(OFFENDERS), "2009-10")] is None
    assert table.dimensions == ("origin", "client_group", "period")
    assert all(not 1 <= (c.count or 0) <= 7 for c in table.cells)


def test_same_question_gives_the_same_answer_and_empty_period_is_empty(medway: Engine) -> None:
    releaser = Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX))
    q = check_question(RecordsQuestion(period="quarter"))
    first = releaser.movement(POLICY, roles=MEMBER, question=q)
    again = Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX)).movement(POLICY, roles=MEMBER, question=q)
    assert first == again
    empty = releaser.movement(
        POLICY, roles=MEMBER, question=check_question(RecordsQuestion(from_date="2003-04-01", to_date="2004-03-31"))
    )
    assert all(c.count == 0 for c in empty.cells)


def test_one_month_less_that_would_single_out_four_people_is_refused(medway: Engine) -> None:
    releaser = Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX))
    whole_year = RecordsQuestion(from_date="2009-04-01", to_date="2010-03-31", period="all")
    releaser.movement(POLICY, roles=MEMBER, question=check_question(whole_year))
    # March 2010 holds only the four offenders of unknown origin: leaving it out would show them.
    without_march = RecordsQuestion(from_date="2009-04-01", to_date="2010-02-28", period="all")
    with pytest.raises(DisclosureRefused, match="differencing"):
        releaser.movement(POLICY, roles=MEMBER, question=check_question(without_march))
    with pytest.raises(DisclosureRefused, match="differencing"):
        Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX)).movement(
            POLICY, roles=MEMBER, question=check_question(without_march)
        )


def test_a_filter_on_a_handful_of_records_is_refused(medway: Engine) -> None:
    releaser = Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX))
    tiny = RecordsQuestion(from_date="2010-03-01", to_date="2010-03-31", client_groups=(OFFENDERS,))
    with pytest.raises(DisclosureRefused, match="query-set restriction"):
        releaser.movement(POLICY, roles=MEMBER, question=check_question(tiny))


def test_roles_come_from_the_policy(medway: Engine) -> None:
    with pytest.raises(NotPermitted):
        Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX)).net_flow(
            POLICY, roles=("regional-board",), question=check_question(RecordsQuestion())
        )


def test_net_flow_classes_and_kpi(medway: Engine) -> None:
    releaser = Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX))
    flows = _released(releaser.net_flow(POLICY, roles=MEMBER, question=check_question(RecordsQuestion())))
    assert set(k[0] for k in flows) <= {MEDWAY, KENT, "outside", "unknown", "*"}
    _check_protected(flows[("outside", str(DV))], 9, 10)
    kpi = releaser.kpi(POLICY, roles=MEMBER, question=check_question(RecordsQuestion()))
    released = _released(kpi)
    # Departures from short-term services only (MED-S4 is long-term and has none anyway).
    _check_protected(released[(str(HOMELESS), "planned")], 26, 7)
    _check_protected(released[(str(HOMELESS), "*")], 42, 7)
    _check_protected(released[(str(DV), "planned")], 15, 10)


def test_non_local_services_in_bands_with_refuges_unnamed(medway: Engine) -> None:
    releaser = Releaser(medway, MEDWAY, SECRET, members=lambda: frozenset(SIX))
    answer = releaser.non_local_services(POLICY, roles=MEMBER, question=check_question(RecordsQuestion()))
    assert [s.client_group for s in answer.services] == [DV]
    refuge = answer.services[0]
    assert refuge.name == "(withheld: DV service)" and refuge.district == ""
    assert refuge.provider == "(withheld)"
    assert refuge.intake_band == "11-49"  # 40 new clients: nothing finer than 11-49 below 50
    assert refuge.share_band == "75-100%"  # 34 of 40 from outside Medway, on the share grid
    lower = releaser.non_local_services(
        POLICY, roles=MEMBER, question=check_question(RecordsQuestion(min_share_percent=25))
    )
    assert {s.name for s in lower.services} == {"Chatham Foyer Hostel", "(withheld: DV service)"}
    assert lower.services[0].intake_band == "50-99" and lower.services[0].share_band == "25-49%"  # 15 of 55


def test_non_local_services_go_through_the_release_ledger(medway: Engine) -> None:
    """Each answer is kept in the ledger (each service's intake by origin and month), so that a
    period one month longer, which adds four people at one service, is refused as differencing;
    the same question again gets the same answer. (Without a standard table set: with one, the
    whole year is published first, and April to February is then refused, see below.)"""
    releaser = Releaser(medway, MEDWAY, SECRET)
    to_february = check_question(RecordsQuestion(from_date="2009-04-01", to_date="2010-02-28"))
    first = releaser.non_local_services(NO_GRID, roles=MEMBER, question=to_february)
    kept = list(SqlReleaseStore(medway).previous("non-local-services"))
    assert len(kept) == 1 and kept[0].dimensions == ("client_group", "service", "origin", "month")
    assert kept[0].cells[(str(OFFENDERS), "MED-S3", "local", "2010-02")] == 30
    to_march = check_question(RecordsQuestion(from_date="2009-04-01", to_date="2010-03-31"))
    with pytest.raises(DisclosureRefused, match="differencing"):
        Releaser(medway, MEDWAY, SECRET).non_local_services(NO_GRID, roles=MEMBER, question=to_march)
    assert Releaser(medway, MEDWAY, SECRET).non_local_services(NO_GRID, roles=MEMBER, question=to_february) == first


def test_with_a_standard_table_set_the_year_is_answered_and_a_month_less_is_refused(medway: Engine) -> None:
    """The grid year is published as a whole before anything off the grid is compared, so April
    to February (four people fewer at one service) is refused whoever asks first, and the year
    itself is answered every time."""
    to_february = check_question(RecordsQuestion(from_date="2009-04-01", to_date="2010-02-28"))
    with pytest.raises(DisclosureRefused, match="differencing"):
        Releaser(medway, MEDWAY, SECRET).non_local_services(POLICY, roles=MEMBER, question=to_february)
    year = check_question(RecordsQuestion(from_date="2009-04-01", to_date="2010-03-31"))
    first = Releaser(medway, MEDWAY, SECRET).non_local_services(POLICY, roles=MEMBER, question=year)
    assert Releaser(medway, MEDWAY, SECRET).non_local_services(POLICY, roles=MEMBER, question=year) == first
    with pytest.raises(DisclosureRefused, match="differencing"):
        Releaser(medway, MEDWAY, SECRET).movement(POLICY, roles=MEMBER, question=to_february)


def test_linkage_tokens_are_per_analysis_and_per_person(medway: Engine) -> None:
    _records(medway, "MED-S1", 2, origin=KENT, start=date(2009, 8, 1), person="Smith")  # one person, twice
    key = bytes(32)
    question = check_question(RecordsQuestion())
    tokens, masks = linkage.tokens(medway, sealer=SEALER, key=key, analysis=b"a" * 16, question=question)
    assert len(tokens) == len(set(tokens)) == 189 + 1  # 189 people before, plus Smith once
    assert tokens == sorted(tokens)
    other, _ = linkage.tokens(medway, sealer=SEALER, key=key, analysis=b"b" * 16, question=question)
    assert not set(tokens) & set(other)
    assert Counter(bin(m).count("1") for m in masks) == Counter({1: len(tokens)})


# --- combining at the coordinator ---------------------------------------------------------------------


def _table(authority: str, kind: str, dims: tuple[str, ...], cells: dict[tuple[str, ...], int | None]) -> CountTable:
    return CountTable(
        authority=authority,
        kind=kind,
        dimensions=dims,
        cells=tuple(
            CountCell(key=k, count=v, suppressed="" if v is not None else "primary-suppression")
            for k, v in cells.items()
        ),
    )


def test_net_flow_imports_exports_and_share_inside_the_cag() -> None:
    g = str(DV)
    medway = _table(
        "E06000035", "net-flow", ("origin", "client_group"), {(MEDWAY, g): 10, (KENT, g): 25, ("outside", g): None}
    )
    kent = _table(
        "E10000016", "net-flow", ("origin", "client_group"), {(KENT, g): 100, (MEDWAY, g): 40, ("outside", g): 15}
    )
    result = combine_net_flow([medway, kent])
    rows = {(r.authority, r.client_group): r for r in result.rows}
    med = rows[(MEDWAY, DV)]
    assert med.imported.count == 25 and not med.imported.complete  # the suppressed outside cell
    assert med.exported.count == 40 and med.exported.complete
    # At least -15 leaves importer or exporter open: withheld, with the reason, and no class.
    assert (med.net, med.status, med.reason, med.net_importer) == (None, "withheld", "imports suppressed", None)
    kent_row = rows[(KENT, DV)]
    assert kent_row.imported.count == 55 and kent_row.exported.count == 25
    assert (kent_row.net, kent_row.status, kent_row.net_importer) == (30, "whole", True)
    share = next(s for s in result.shares if s.client_group == DV)
    assert share.within_cag.count == 65 and share.movers.count == 80
    assert (share.share_within_cag, share.status, share.reason) == (None, "withheld", "movers suppressed")
    # Result version 1, kept for bundles saved before: the suppressed cell counted as zero.
    old = {(r.authority, r.client_group): r for r in combine_net_flow_version_1([medway, kent]).rows}
    assert old[(MEDWAY, DV)].net == -15 and old[(MEDWAY, DV)].net_importer is False
    assert combine_net_flow_version_1([medway, kent]).result_version == 1 and result.result_version == 2


@pytest.mark.parametrize(
    ("imported", "exported", "expected"),
    [
        (Tally(count=40), Tally(count=10), (30, "whole", "")),
        (Tally(count=10), Tally(count=10), (0, "whole", "")),
        # Imports short: the true net is above the released difference; a positive bound is shown.
        (Tally(count=40, complete=False), Tally(count=10), (30, "at least", "imports suppressed")),
        # Exports short: below it; a negative bound is shown.
        (Tally(count=5), Tally(count=35, complete=False), (-30, "at most", "exports suppressed")),
        # A bound that leaves importer or exporter open would read as a figure: withheld.
        (Tally(count=0, complete=False), Tally(count=2), (None, "withheld", "imports suppressed")),
        (Tally(count=20), Tally(count=5, complete=False), (None, "withheld", "exports suppressed")),
        (
            Tally(count=50, complete=False),
            Tally(count=5, complete=False),
            (None, "withheld", "imports and exports suppressed"),
        ),
    ],
)
def test_a_net_flow_is_whole_a_bound_or_withheld(
    imported: Tally, exported: Tally, expected: tuple[object, ...]
) -> None:
    assert net_figure(imported, exported) == expected


def test_net_flow_over_every_group_uses_the_nodes_released_totals() -> None:
    # Medway's outside cell for group 14 is suppressed, but its total over groups is released.
    cells = {(KENT, "14"): 25, ("outside", "14"): None, (KENT, "7"): 40, ("outside", "7"): 30}
    medway = _table(MEDWAY, "net-flow", ("origin", "client_group"), cells)
    medway = medway.model_copy(
        update={
            "cells": (
                *medway.cells,
                CountCell(key=(KENT, "*"), count=65, margin=True),
                CountCell(key=("outside", "*"), count=35, margin=True),
                CountCell(key=("*", "14"), count=30, margin=True),
            )
        }
    )
    overall = next(r for r in combine_net_flow([medway]).rows if r.client_group == 0)
    assert overall.imported.count == 100 and overall.imported.complete
    movement = combine_movement(
        [
            _table(MEDWAY, "movement", ("origin", "client_group", "period"), {(KENT, "7", "2009-10"): 40}).model_copy(
                update={"cells": (CountCell(key=(KENT, "*", "*"), count=65, margin=True),)}
            )
        ]
    )
    assert [(f.origin, f.client_group, f.period, f.clients) for f in movement.flows] == [(KENT, 0, "*", 65)]
    assert movement.periods == ()


def test_kpi_and_movement_combine_released_figures_only() -> None:
    kpi = combine_kpi(
        [
            _table(MEDWAY, "kpi", ("client_group", "departure"), {("7", "planned"): 20, ("7", "*"): 30}),
            _table(KENT, "kpi", ("client_group", "departure"), {("7", "planned"): None, ("7", "*"): 40}),
        ]
    )
    rows = {(r.authority, r.client_group): r for r in kpi.rows}
    assert rows[(MEDWAY, 7)].percent_planned == pytest.approx(66.7)
    assert rows[(KENT, 7)].percent_planned is None
    assert rows[("CAG", 7)].percent_planned is None and not rows[("CAG", 7)].planned.complete
    assert rows[(KENT, 7)].reason == "planned moves suppressed"
    assert rows[("CAG", 7)].reason == f"planned moves suppressed at {KENT}" and rows[(MEDWAY, 7)].reason == ""
    movement = combine_movement(
        [_table(MEDWAY, "movement", ("origin", "client_group", "period"), {(KENT, "14", "2009-10"): 25})]
    )
    assert movement.hosts == (MEDWAY,) and movement.flows[0].origin == KENT


def test_repeat_movers_are_counted_then_protected() -> None:
    rule = POLICY.rule("repeat-movers")
    shared = [bytes([i]) * 16 for i in range(12)]
    kent_only = [bytes([100 + i]) * 16 for i in range(30)]
    counted = count_repeat_movers(
        [
            ("E10000016", shared + kent_only, [1 << HOMELESS] * 42),
            ("E06000035", shared, [1 << HOMELESS] * 12),
        ],
        rule,
        secret=SECRET,
    )
    assert counted.people in (10, 15)  # 12 people, rounded
    assert counted.by_client_group[HOMELESS] in (10, 15)
    assert counted.by_client_group[DV] == 0
    few = count_repeat_movers(
        [("E10000016", shared[:3], [1 << DV] * 3), ("E06000035", shared[:3], [1 << DV] * 3)], rule, secret=SECRET
    )
    assert few.people is None and few.by_client_group[DV] is None


def test_a_plan_covers_whole_financial_years_and_quarters_within_limits() -> None:
    span = check_question(RecordsQuestion(from_date="2008-05-01", to_date="2010-03-31"))
    periods = standard_periods(span)
    # 2008-09 is not wholly inside the span: its last three quarters are, and all of 2009-10.
    assert [(p[0].isoformat(), p[2]) for p in periods] == [
        ("2008-07-01", "quarter"),
        ("2008-10-01", "quarter"),
        ("2009-01-01", "quarter"),
        ("2009-04-01", "year"),
        ("2009-04-01", "quarter"),
        ("2009-07-01", "quarter"),
        ("2009-10-01", "quarter"),
        ("2010-01-01", "quarter"),
    ]
    for question, field in (
        (RecordsQuestion(to_date="2010-03-31"), "from_date"),
        (RecordsQuestion(from_date="2003-04-01", to_date="2010-03-31"), "to_date"),
        (
            RecordsQuestion(from_date="2009-04-01", to_date="2010-03-31", client_groups=(1, 7, 9, 14, 17)),
            "client_groups",
        ),
    ):
        with pytest.raises(InvalidRequest, match=field):
            standard_periods(check_question(question))

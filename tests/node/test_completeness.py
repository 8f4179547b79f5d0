"""The completeness report: every service's client records and outcomes per financial quarter,
the shares with unknown origin and linkable, and the services that sent nothing; on both backends."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from node.client_records import PersonSealer
from node.completeness import completeness, csv_rows, quarter_of, quarters_between, spreadsheet_safe
from node.imports.records import COLUMNS, import_client_records, import_outcomes
from node.store import add_provider, add_service, ensure_authority, open_store
from shared.errors import InvalidRequest
from shared.vocabulary import ServiceType, Term

KENT = "E10000016"
TODAY = date(2010, 6, 30)


def _record(ref: str, service: str, start: str, previous: str) -> list[str]:
    return [ref, service, start, "14", "", "25-34", "female", "A", "not-seeking-work", "police", "private-rented",
            previous, "Smith", "J", "1971-02-13"]  # fmt: skip


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=KENT)
    add_provider(engine, provider_ref="P1", name="=Canterbury Women's Aid")
    add_provider(engine, provider_ref="P2", name="Ashford Housing Trust")
    services = (("S1", "P1", "Refuge", 14, 8, Term.SHORT), ("S2", "P1", "Hostel", 7, 24, Term.SHORT),
                ("S3", "P2", "Sheltered flats", 1, 40, Term.LONG))  # fmt: skip
    for ref, provider, name, group, units, term in services:
        add_service(
            engine,
            service_ref=ref,
            provider_ref=provider,
            name=name,
            district_code="E07000106",
            service_type=ServiceType.ACCOMMODATION_BASED,
            client_group=group,
            units=units,
            term=term,
        )
    rows = [
        _record("R1", "S1", "2009-04-02", "E06000035"),  # 2009-10 Q1
        _record("R2", "S1", "2009-05-20", ""),  # Q1, origin unknown
        _record("R3", "S1", "2009-11-01", "E10000016"),  # Q3
        _record("R4", "S3", "2010-01-15", "E10000016"),  # Q4
        _record("R5", "S3", "2008-12-01", "E10000016"),  # 2008-09 Q3: before the default period
    ]
    files = tmp_path / "files"
    files.mkdir()
    with (files / "records.csv").open("w", newline="") as f:
        csv.writer(f).writerows([COLUMNS["client-records"].all, *rows])
    with (files / "outcomes.csv").open("w", newline="") as f:
        csv.writer(f).writerows([
            COLUMNS["outcomes"].all,
            ["R1", "2009-06-01", "planned", "achieved", "achieved", "achieved", "achieved", "achieved"],
            ["R3", "2010-02-01", "unplanned", "identified", "identified", "identified", "identified", "identified"],
        ])  # fmt: skip
    sealer = PersonSealer(secrets.token_bytes(64))
    import_client_records(engine, path=files / "records.csv", sealer=sealer, today=TODAY)
    import_outcomes(engine, path=files / "outcomes.csv", today=TODAY)
    try:
        yield engine
    finally:
        engine.dispose()


def test_quarters_are_financial() -> None:
    assert quarter_of(date(2009, 4, 1)) == (2009, 1)
    assert quarter_of(date(2010, 3, 31)) == (2009, 4)
    assert quarter_of(date(2009, 12, 31)) == (2009, 3)
    assert quarters_between(date(2009, 2, 1), date(2009, 7, 1)) == [(2008, 4), (2009, 1), (2009, 2)]


def test_each_service_s_returns_by_quarter(engine: Engine) -> None:
    report = completeness(engine)
    # By default the four quarters ending with the newest record's: the financial year 2009-10.
    assert (report.first_day, report.last_day) == (date(2009, 4, 1), date(2010, 3, 31))
    assert report.quarters == ("2009-10 Q1", "2009-10 Q2", "2009-10 Q3", "2009-10 Q4")
    by_ref = {s.service_ref: s for s in report.services}
    refuge, hostel, sheltered = by_ref["S1"], by_ref["S2"], by_ref["S3"]
    assert refuge.records == {"2009-10 Q1": 2, "2009-10 Q2": 0, "2009-10 Q3": 1, "2009-10 Q4": 0}
    assert refuge.outcomes == {"2009-10 Q1": 1, "2009-10 Q2": 0, "2009-10 Q3": 0, "2009-10 Q4": 1}
    assert refuge.records_per_unit == 3 / 8
    assert refuge.unknown_origin_share == 1 / 3
    assert refuge.linkable_share == 1.0
    assert refuge.quarters_without_records == ["2009-10 Q2", "2009-10 Q4"]
    assert sheltered.records["2009-10 Q4"] == 1 and sheltered.total_records == 1  # R5 is outside the period
    assert not sheltered.expects_outcomes
    assert hostel.total_records == 0 and hostel.sent_nothing
    assert [s.service_ref for s in report.sent_nothing] == ["S2"]
    # By provider name, then service.
    assert [s.service_ref for s in report.services] == ["S1", "S2", "S3"]


def test_a_period_is_given_by_its_days(engine: Engine) -> None:
    report = completeness(engine, first_day=date(2008, 10, 1), last_day=date(2008, 12, 31))
    assert report.quarters == ("2008-09 Q3",)
    assert {s.service_ref for s in report.sent_nothing} == {"S1", "S2"}
    with pytest.raises(InvalidRequest):
        completeness(engine, first_day=date(2010, 1, 1), last_day=date(2009, 1, 1))
    with pytest.raises(InvalidRequest):
        completeness(engine, first_day=date(2000, 1, 1), last_day=date(2010, 1, 1))


def test_the_csv_opens_safely_in_a_spreadsheet(engine: Engine) -> None:
    rows = csv_rows(completeness(engine))
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    read = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    refuge = next(r for r in read if r["service_ref"] == "S1")
    assert refuge["provider"] == "'=Canterbury Women's Aid"  # would be a formula in Excel
    assert refuge["records 2009-10 Q1"] == "2" and refuge["outcomes 2009-10 Q1"] == "1"
    sheltered = next(r for r in read if r["service_ref"] == "S3")
    assert sheltered["outcomes 2009-10 Q4"] == ""  # a long-term service returns no outcome forms
    assert next(r for r in read if r["service_ref"] == "S2")["sent_nothing"] == "yes"
    assert spreadsheet_safe("-12.5") == "-12.5" and spreadsheet_safe("@SUM(A1)") == "'@SUM(A1)"


def test_services_that_make_no_client_records_are_not_chased(engine: Engine) -> None:
    add_service(
        engine,
        service_ref="S4",
        provider_ref="P2",
        name="Alarm service",
        district_code="E07000106",
        service_type=ServiceType.COMMUNITY_ALARM,
        client_group=1,
        units=900,
        term=Term.LONG,
    )
    report = completeness(engine)
    alarm = next(s for s in report.services if s.service_ref == "S4")
    assert not alarm.expects_records and not alarm.sent_nothing
    assert [s.service_ref for s in report.sent_nothing] == ["S2"]

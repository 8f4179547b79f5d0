"""Services over time, on both backends: a service's start and end dates bound when it counts in
the supply map, a re-import keeps the version it replaces (up to the day before the change took
effect), and the supply map and its contract money can be asked as at any date."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from node.answers.supply import contract_values, supply_map
from node.imports.supply import import_csv
from node.store import ServiceHistory, ensure_authority, get_service, open_store
from shared.errors import ImportError_

KENT = "E10000016"
HEADER = ["service_ref", "provider_ref", "name", "district", "service_type", "client_group", "units", "unit_type",
          "contracted_hours", "designated", "term", "start_date", "end_date", "changed_on"]  # fmt: skip


def _service(ref: str, units: str, start: str = "", end: str = "", changed: str = "") -> list[str]:
    return [ref, "P1", f"Hostel {ref}", "Canterbury", "accommodation-based", "7", units, "", "", "no", "short",
            start, end, changed]  # fmt: skip


def _write(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=KENT)
    import_csv(
        engine, kind="providers", path=_write(tmp_path / "p.csv", ["provider_ref", "name"], [["P1", "Porchlight"]])
    )
    services = [
        _service("S1", "20"),  # no dates: runs always
        _service("S2", "10", start="2006-10-01"),  # commissioned later
        _service("S3", "30", end="2008-03-31"),  # decommissioned
    ]
    import_csv(engine, kind="services", path=_write(tmp_path / "s.csv", HEADER, services))
    contracts = [
        ["C1", "S1", "100000", "2004-04-01", "2007-03-31"],
        ["C1b", "S1", "120000", "2007-04-01", "2010-03-31"],
        ["C2", "S2", "50000", "2006-10-01", "2009-09-30"],
        ["C3", "S3", "90000", "2003-04-01", "2008-03-31"],
    ]
    header = ["contract_ref", "service_ref", "annual_value", "start_date", "end_date"]
    import_csv(engine, kind="contracts", path=_write(tmp_path / "c.csv", header, contracts))
    try:
        yield engine
    finally:
        engine.dispose()


def units_on(engine: Engine, day: date) -> int:
    return sum(c.units for c in supply_map(engine, authority_code=KENT, by_district=False, as_at=day).cells)


def money_on(engine: Engine, day: date) -> float:
    values = contract_values(engine, authority_code=KENT, by_district=False, as_at=day)
    return sum(v for by_provider in values.values() for v in by_provider.values())


def test_start_and_end_dates_bound_a_service(engine: Engine) -> None:
    assert units_on(engine, date(2005, 4, 1)) == 20 + 30  # the seed's "current supply from 1 April 2005"
    assert units_on(engine, date(2007, 4, 1)) == 20 + 10 + 30
    assert units_on(engine, date(2008, 4, 1)) == 20 + 10
    assert units_on(engine, date.today()) == units_on(engine, None) == 30  # type: ignore[arg-type]
    # Money: each running service's latest contract to have started by then.
    assert money_on(engine, date(2005, 4, 1)) == 100000 + 90000
    assert money_on(engine, date(2007, 4, 1)) == 120000 + 50000 + 90000


def test_a_reimport_keeps_the_version_it_replaces(engine: Engine, tmp_path: Path) -> None:
    changed = [_service("S1", "20"), _service("S2", "16", start="2006-10-01", changed="2009-04-01"),
               _service("S3", "30", end="2008-03-31")]  # fmt: skip
    summary = import_csv(engine, kind="services", path=_write(tmp_path / "s2.csv", HEADER, changed))
    assert (summary.inserted, summary.updated) == (0, 1)
    assert units_on(engine, date(2009, 3, 31)) == 20 + 10  # the old version, up to the day before
    assert units_on(engine, date(2009, 4, 1)) == 20 + 16
    with engine.connect() as conn:
        (kept,) = conn.execute(select(ServiceHistory.__table__)).mappings().all()  # type: ignore[attr-defined]
    assert kept["units"] == 10 and kept["valid_until"] == date(2009, 3, 31)
    # The same file again changes nothing and keeps no second version.
    again = import_csv(engine, kind="services", path=_write(tmp_path / "s3.csv", HEADER, changed))
    assert (again.inserted, again.updated) == (0, 0)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ServiceHistory)).scalar_one() == 1


def test_a_change_without_a_date_takes_effect_on_the_day_of_the_import(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, kind="services", path=_write(tmp_path / "s2.csv", HEADER, [_service("S1", "25")]))
    assert units_on(engine, date.today()) == 25 + 10  # S2 runs on; S3 has ended
    yesterday = date.fromordinal(date.today().toordinal() - 1)
    assert units_on(engine, yesterday) == 20 + 10


def test_a_file_without_date_columns_leaves_the_stored_dates(engine: Engine, tmp_path: Path) -> None:
    short = HEADER[:11]
    import_csv(engine, kind="services", path=_write(tmp_path / "s2.csv", short, [_service("S2", "10")[:11]]))
    service = get_service(engine, service_ref="S2")
    assert service is not None and service.start_date == date(2006, 10, 1)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ServiceHistory)).scalar_one() == 0


def test_a_service_that_ends_before_it_starts_is_refused(engine: Engine, tmp_path: Path) -> None:
    bad = [_service("S9", "5", start="2008-01-01", end="2007-01-01")]
    with pytest.raises(ImportError_) as refused:
        import_csv(engine, kind="services", path=_write(tmp_path / "bad.csv", HEADER, bad))
    ((row, column),) = {(p.row, p.column) for p in refused.value.problems}
    assert (row, column) == (2, "end_date")

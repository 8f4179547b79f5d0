"""The store on each backend: one authority with its districts, the tables and their constraints,
timestamps in UTC, and money kept to the penny."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError

from node.store import (
    Provider,
    Service,
    add_contract,
    add_provider,
    add_service,
    districts,
    ensure_authority,
    get_contract,
    get_service,
    open_store,
    row_counts,
    store_authority,
)
from shared.authorities import shipped_register
from shared.errors import InvalidRequest, NotFound
from shared.vocabulary import ServiceType, Term
from tests.sixutil import AUTHORITIES

KENT, MEDWAY = "E10000016", "E06000035"


def _kent_with_a_hostel(engine: Engine) -> None:
    ensure_authority(engine, authority_code=KENT)
    add_provider(engine, provider_ref="KCC-P0001", name="Porchlight", charity_number="254109")
    add_service(
        engine,
        service_ref="KCC-S00001",
        provider_ref="KCC-P0001",
        name="Fairfield House hostel",
        district_code="E07000106",
        service_type=ServiceType.ACCOMMODATION_BASED,
        client_group=7,
        units=24,
        term=Term.SHORT,
    )


def test_open_store_creates_every_table_and_can_be_reopened(database_url: str) -> None:
    first = open_store(database_url)
    first.dispose()
    engine = open_store(database_url)  # creating what exists already is a no-op
    try:
        names = set(inspect(engine).get_table_names())
        assert {"authority", "district", "provider", "service", "contract", "audit_log"} <= names
    finally:
        engine.dispose()


def test_ensure_authority_writes_the_authority_and_its_districts_once(engine: Engine) -> None:
    ensure_authority(engine, authority_code=KENT)
    row = ensure_authority(engine, authority_code=KENT)

    assert (row.code, row.name, row.population) == (KENT, "Kent", AUTHORITIES[KENT].population)
    assert store_authority(engine).code == KENT
    kent = districts(engine, authority_code=KENT)
    assert [(d.code, d.name) for d in kent] == [(d.code, d.name) for d in AUTHORITIES[KENT].districts]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM authority")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM district")).scalar() == 12


def test_a_unitary_authority_is_its_own_district(engine: Engine) -> None:
    ensure_authority(engine, authority_code=MEDWAY)
    assert [(d.code, d.name) for d in districts(engine, authority_code=MEDWAY)] == [(MEDWAY, "Medway")]


def test_a_store_never_takes_a_second_authority(engine: Engine) -> None:
    ensure_authority(engine, authority_code=MEDWAY)
    with pytest.raises(InvalidRequest, match=r"holds Medway \(E06000035\); refusing to add Kent"):
        ensure_authority(engine, authority_code=KENT)
    assert store_authority(engine).code == MEDWAY


def test_an_authority_the_register_does_not_hold_is_refused(engine: Engine) -> None:
    for code in ("E09000034", "E07000110", "E12000008"):  # no such borough; a district; a region
        with pytest.raises(KeyError, match=code):
            ensure_authority(engine, authority_code=code)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM authority")).scalar() == 0


def test_any_authority_in_the_register_and_a_correction_to_it(engine: Engine) -> None:
    hampshire = "E10000014"
    ensure_authority(engine, authority_code=hampshire)
    assert len(districts(engine, authority_code=hampshire)) == 11
    corrected = shipped_register().corrected(
        hampshire, population=1_317_800, districts={"E07000094": "City of Winchester"}
    )
    row = ensure_authority(engine, authority_code=hampshire, register=corrected)
    assert row.population == 1_317_800
    names = {d.code: d.name for d in districts(engine, authority_code=hampshire)}
    assert names["E07000094"] == "City of Winchester" and len(names) == 11


def test_a_county_whose_districts_are_not_listed_is_its_own_district(engine: Engine) -> None:
    ensure_authority(engine, authority_code="E10000006")  # Cumbria
    assert [(d.code, d.name) for d in districts(engine, authority_code="E10000006")] == [("E10000006", "Cumbria")]


def test_a_store_without_an_authority_says_so(engine: Engine) -> None:
    with pytest.raises(NotFound):
        store_authority(engine)


def test_rows_round_trip_with_utc_timestamps_and_exact_pounds(engine: Engine) -> None:
    _kent_with_a_hostel(engine)
    add_contract(
        engine,
        contract_ref="KCC-C00001",
        service_ref="KCC-S00001",
        annual_value=Decimal("224640.07"),
        start_date=date(2005, 4, 1),
        end_date=date(2008, 3, 31),
    )

    service = get_service(engine, service_ref="KCC-S00001")
    contract = get_contract(engine, contract_ref="KCC-C00001")
    assert service is not None and contract is not None
    assert (service.unit_type, service.term, service.designated, service.contracted_hours) == (
        "bed-spaces",
        "short",
        False,
        None,
    )
    assert contract.annual_value == Decimal("224640.07")
    assert (contract.start_date, contract.end_date) == (date(2005, 4, 1), date(2008, 3, 31))
    for stamp in (service.created_at, service.updated_at, contract.created_at):
        assert stamp.tzinfo is not None and stamp.utcoffset() is not None
        assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 3600
    assert row_counts(engine) == {"provider": 1, "service": 1, "contract": 1}


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    ensure_authority(engine, authority_code=KENT)
    naive = datetime(2025, 4, 1, 9, 30)
    with pytest.raises(StatementError, match="timezone-aware"), engine.begin() as conn:
        conn.execute(
            insert(Provider).values(provider_ref="KCC-P0009", name="Anchor Trust", created_at=naive, updated_at=naive)
        )


def test_natural_keys_are_unique(engine: Engine) -> None:
    _kent_with_a_hostel(engine)
    with pytest.raises(IntegrityError):
        add_provider(engine, provider_ref="KCC-P0001", name="Porchlight (Kent)")


@pytest.mark.parametrize(
    ("column", "value"),
    [("client_group", 22), ("client_group", 0), ("units", -1), ("term", "never"), ("contracted_hours", 0.0)],
)
def test_the_database_refuses_what_the_importer_refuses(engine: Engine, column: str, value: object) -> None:
    _kent_with_a_hostel(engine)
    row = {
        "service_ref": "KCC-S00002",
        "provider_id": 1,
        "name": "Thanet Foyer",
        "district_code": "E07000114",
        "service_type": "accommodation-based",
        "client_group": 12,
        "units": 30,
        "unit_type": "bed-spaces",
        "designated": False,
        "term": "short",
        "created_at": datetime.now(UTC),
        "updated_at": datetime.now(UTC),
        column: value,
    }
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(Service).values(**row))
    assert row_counts(engine)["service"] == 1


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    _kent_with_a_hostel(engine)
    with pytest.raises(IntegrityError):
        add_service(
            engine,
            service_ref="KCC-S00002",
            provider_ref="KCC-P0001",
            name="Hastings hostel",
            district_code="E07000062",  # East Sussex's, not in this store
            service_type=ServiceType.ACCOMMODATION_BASED,
            client_group=7,
            units=20,
            term=Term.SHORT,
        )


def test_a_contract_cannot_end_before_it_starts(engine: Engine) -> None:
    _kent_with_a_hostel(engine)
    with pytest.raises(IntegrityError):
        add_contract(
            engine,
            contract_ref="KCC-C00001",
            service_ref="KCC-S00001",
            annual_value=Decimal("1000.00"),
            start_date=date(2006, 4, 1),
            end_date=date(2006, 3, 31),
        )


def test_crud_helpers_name_a_missing_parent(engine: Engine) -> None:
    ensure_authority(engine, authority_code=KENT)
    with pytest.raises(NotFound, match="KCC-P0404"):
        add_service(
            engine,
            service_ref="KCC-S00001",
            provider_ref="KCC-P0404",
            name="Dover hostel",
            district_code="E07000108",
            service_type=ServiceType.ACCOMMODATION_BASED,
            client_group=7,
            units=20,
            term=Term.SHORT,
        )
    with pytest.raises(NotFound, match="KCC-S00404"):
        add_contract(
            engine,
            contract_ref="KCC-C00001",
            service_ref="KCC-S00404",
            annual_value=Decimal("1.00"),
            start_date=date(2006, 4, 1),
            end_date=date(2007, 3, 31),
        )


def test_sqlite_store_uses_wal_and_foreign_keys_on_every_connection(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path}/node.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        ensure_authority(engine, authority_code=KENT)
    finally:
        engine.dispose()
    # The journal mode is the file's own: a plain sqlite3 connection sees it too.
    plain = sqlite3.connect(tmp_path / "node.db")
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert plain.execute("SELECT name FROM authority").fetchall() == [("Kent",)]
    finally:
        plain.close()

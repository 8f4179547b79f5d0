"""A node's store: the authority's providers, services and contracts in SQLModel tables.

One code path for both backends: an SQLite file by default, PostgreSQL by URL. A store belongs to
exactly one administering authority (`ensure_authority` refuses a second), so every row in it is
that authority's. Every table lives on the single `SQLModel.metadata`, with the audit log's and
the release ledger's; the schema is made and changed only by the migrations in node/migrations
(docs/migrations.md).

    authority   code (GSS) PK, name, population
    district    code (GSS) PK, name, authority_code -> authority
    provider    id PK, provider_ref UNIQUE, name, national_provider_id, charity_number, company_number
    service     id PK, service_ref UNIQUE, provider_id -> provider, district_code -> district,
                name, service_type, client_group 1-21, units >= 0, unit_type, contracted_hours,
                designated, term, start_date and end_date (both optional: the service's life)
    service_history  id PK, service_id -> service, valid_until (the last day this version held),
                every supply field of service as it was (not its dates), recorded_at: the versions a re-import
                replaced, so the supply map can be asked as at any date (schema revision 0003)
    contract    id PK, contract_ref UNIQUE, service_id -> service, annual_value (pounds, 2 dp),
                start_date, end_date >= start_date
    kpi1_return, occupancy_return  quarterly returns per service (`node.returns`, schema revision 0006)

The release ledger's tables are described in `node.ledger`, the standard table set's editions in
`node.editions`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import CheckConstraint, Index, Numeric, create_engine, event, func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

# The ledger's and the client records' tables, so that the node schema below is whole whatever
# else was imported (they are part of the node database, made and migrated with it).
import node.client_records
import node.editions
import node.ledger
import node.returns  # noqa: F401
from node import stamps
from node.columns import UtcDateTime, utcnow
from shared import vocabulary
from shared.audit import SCHEMA as AUDIT
from shared.authorities import Register, shipped_register
from shared.errors import InvalidRequest, NotFound
from shared.migrate import Schema, Store, ensure_current
from shared.vocabulary import UNIT_TYPE_FOR, ServiceType

__all__ = [
    "SERVICE_VERSION_FIELDS",
    "AuthorityRow",
    "Contract",
    "DistrictRow",
    "Provider",
    "Service",
    "ServiceHistory",
    "add_contract",
    "add_provider",
    "add_service",
    "data_version",
    "districts",
    "ensure_authority",
    "get_contract",
    "get_provider",
    "get_service",
    "open_store",
    "row_counts",
    "store_authority",
    "store_engine",
    "utcnow",
]

# How long an SQLite writer waits for another writer's lock: long enough that an audit append
# waits out a large import instead of failing.
SQLITE_BUSY_TIMEOUT_S = 30.0


_Row = TypeVar("_Row", bound=SQLModel)


class AuthorityRow(SQLModel, table=True):
    """The administering authority this store belongs to (one row)."""

    __tablename__ = "authority"

    code: str = Field(primary_key=True, max_length=9)
    name: str = Field(max_length=100)
    population: int = Field(ge=0)


class DistrictRow(SQLModel, table=True):
    """A housing district inside the authority (a unitary authority is its own single district)."""

    __tablename__ = "district"

    code: str = Field(primary_key=True, max_length=9)
    name: str = Field(max_length=100)
    authority_code: str = Field(foreign_key="authority.code", index=True, max_length=9)


class Provider(SQLModel, table=True):
    """An organisation the authority commissions, under the authority's own reference for it."""

    __tablename__ = "provider"

    id: int | None = Field(default=None, primary_key=True)
    provider_ref: str = Field(unique=True, max_length=64)
    name: str = Field(max_length=200)
    national_provider_id: str | None = Field(default=None, max_length=32)
    charity_number: str | None = Field(default=None, max_length=16)
    company_number: str | None = Field(default=None, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class Service(SQLModel, table=True):
    """One commissioned service and its supply in units (see `shared.vocabulary.UnitType`)."""

    __tablename__ = "service"
    # The database refuses what the importer refuses, for rows written any other way. Service and
    # unit types are left to the application: their lists may grow, and a CHECK would need a migration.
    __table_args__ = (
        CheckConstraint("client_group BETWEEN 1 AND 21", name="ck_service_client_group"),
        CheckConstraint("units >= 0", name="ck_service_units"),
        CheckConstraint("contracted_hours IS NULL OR contracted_hours > 0", name="ck_service_hours"),
        CheckConstraint("term IN ('short', 'long')", name="ck_service_term"),
    )

    id: int | None = Field(default=None, primary_key=True)
    service_ref: str = Field(unique=True, max_length=64)
    provider_id: int = Field(foreign_key="provider.id", index=True)
    name: str = Field(max_length=200)
    district_code: str = Field(foreign_key="district.code", index=True, max_length=9)
    service_type: str = Field(max_length=40)
    client_group: int
    units: int
    unit_type: str = Field(max_length=20)
    contracted_hours: float | None = None  # floating support hours a week
    designated: bool = False  # a cross-authority designated service
    term: str = Field(max_length=5)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    # When the service began and ended, where the authority's system says; a service without dates
    # is taken to run always. Last, because schema revision 0003 added them to existing tables.
    start_date: date | None = None
    end_date: date | None = None


class ServiceHistory(SQLModel, table=True):
    """A version of a service that a re-import replaced: its supply fields as they were, up to and
    including `valid_until`. The service row holds the version in force after the newest of these."""

    __tablename__ = "service_history"
    __table_args__ = (
        CheckConstraint("client_group BETWEEN 1 AND 21", name="ck_service_history_client_group"),
        CheckConstraint("units >= 0", name="ck_service_history_units"),
        Index("ix_service_history_service", "service_id", "valid_until"),
    )

    id: int | None = Field(default=None, primary_key=True)
    service_id: int = Field(foreign_key="service.id")
    valid_until: date
    provider_id: int = Field(foreign_key="provider.id")
    name: str = Field(max_length=200)
    district_code: str = Field(foreign_key="district.code", max_length=9)
    service_type: str = Field(max_length=40)
    client_group: int
    units: int
    unit_type: str = Field(max_length=20)
    contracted_hours: float | None = None
    designated: bool = False
    term: str = Field(max_length=5)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


SERVICE_VERSION_FIELDS = (
    "provider_id",
    "name",
    "district_code",
    "service_type",
    "client_group",
    "units",
    "unit_type",
    "contracted_hours",
    "designated",
    "term",
)
"""The supply fields of a service that make a version of it (ServiceHistory keeps each replaced
one). A service's start and end dates are not versioned: they are its life, and a changed date
corrects it for every day asked."""


class Contract(SQLModel, table=True):
    """A contract for a service: its annual value in pounds and its dates (inclusive)."""

    __tablename__ = "contract"
    __table_args__ = (
        CheckConstraint("annual_value >= 0", name="ck_contract_value"),
        CheckConstraint("end_date >= start_date", name="ck_contract_dates"),
    )

    id: int | None = Field(default=None, primary_key=True)
    contract_ref: str = Field(unique=True, max_length=64)
    service_id: int = Field(foreign_key="service.id", index=True)
    annual_value: Decimal = Field(sa_type=Numeric(12, 2))
    start_date: date
    end_date: date
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # SQLite enforces foreign keys only when asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets the server read while an import or an audit append writes.
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


# The node database's migrations (node/migrations): every table a node keeps except the audit log,
# whose own history (shared/migrations/audit) runs on the same database.
SCHEMA = Schema(
    name="node",
    package="node.migrations",
    metadata=SQLModel.metadata,
    # What `open_store` always made; the client-record, ledger, mandate and nonce tables were made only
    # by the commands that imported them, so an older node may lack them (0001 adds them).
    core_tables=frozenset({"authority", "district", "provider", "service", "contract"}),
    foreign_tables=frozenset({"audit_log"}),
)

STORE = Store(title="the node database", schemas=(AUDIT, SCHEMA), upgrade_command="cagnet node upgrade NODEDIR")
"""A node's database: its audit log and its node tables, each schema with its own version table."""


def store_engine(url: str) -> Engine:
    """An engine for the store at `url` with no schema check: for `cagnet node upgrade`. Everything
    else opens the store with `open_store`."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(url, pool_pre_ping=True)


def open_store(url: str) -> Engine:
    """An engine for the store at `url` ("sqlite:///path/node.db" or "postgresql+psycopg://...").

    An empty database gets every table at the newest schema revision; one at an older revision (or
    made before migrations) is refused with SchemaMismatch naming `cagnet node upgrade NODEDIR`, and
    one newer than this code is refused too (`shared.migrate`)."""
    engine = store_engine(url)
    # The node's tables and its audit log's, each schema at its newest revision (node/migrations,
    # shared/migrations/audit).
    try:
        ensure_current(engine, STORE)
    except BaseException:
        engine.dispose()
        raise
    stamps.stamp_writes(engine)  # every write to the records stamps the store's edition (`node.stamps`)
    return engine


def ensure_authority(engine: Engine, *, authority_code: str, register: Register | None = None) -> AuthorityRow:
    """Write the authority, its population and its districts from the network's authority register
    (default: the shipped 2011 list); idempotent, and a corrected register updates them.

    Raises KeyError for a code the register does not hold, and InvalidRequest when the store already
    belongs to another authority: one store never mixes two authorities' records.
    """
    info = (register or shipped_register()).authority(authority_code)
    for attempt in (1, 2):
        try:
            with Session(engine) as session:
                other = session.exec(select(AuthorityRow).where(col(AuthorityRow.code) != info.code)).first()
                if other is not None:
                    raise InvalidRequest(
                        "this store belongs to another authority",
                        detail=f"it holds {other.name} ({other.code}); refusing to add {info.name} ({info.code})",
                    )
                row = session.get(AuthorityRow, info.code) or AuthorityRow(code=info.code, name="", population=0)
                row.name, row.population = info.name, info.population
                session.add(row)
                for d in info.districts:
                    district = session.get(DistrictRow, d.code) or DistrictRow(
                        code=d.code, name="", authority_code=info.code
                    )
                    district.name, district.authority_code = d.name, info.code
                    session.add(district)
                session.commit()
                session.refresh(row)
                return row
        except IntegrityError:
            # Another process wrote the same rows first; the second attempt finds them.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def store_authority(engine: Engine) -> AuthorityRow:
    """The authority this store belongs to; NotFound before `ensure_authority` has run."""
    with Session(engine) as session:
        row = session.exec(select(AuthorityRow)).first()
    if row is None:
        raise NotFound("this store has no authority yet", detail="run ensure_authority (cagnet node init) first")
    return row


def districts(engine: Engine, *, authority_code: str) -> list[DistrictRow]:
    with Session(engine) as session:
        query = select(DistrictRow).where(col(DistrictRow.authority_code) == authority_code)
        return list(session.exec(query.order_by(col(DistrictRow.code))).all())


def add_provider(
    engine: Engine,
    *,
    provider_ref: str,
    name: str,
    national_provider_id: str | None = None,
    charity_number: str | None = None,
    company_number: str | None = None,
) -> Provider:
    """Add one provider (no CSV validation: use `node.importer` for files)."""
    provider = Provider(
        provider_ref=provider_ref,
        name=name,
        national_provider_id=national_provider_id,
        charity_number=charity_number,
        company_number=company_number,
    )
    return _add(engine, provider)


def get_provider(engine: Engine, *, provider_ref: str) -> Provider | None:
    with Session(engine) as session:
        return session.exec(select(Provider).where(col(Provider.provider_ref) == provider_ref)).first()


def add_service(
    engine: Engine,
    *,
    service_ref: str,
    provider_ref: str,
    name: str,
    district_code: str,
    service_type: ServiceType,
    client_group: int,
    units: int,
    term: vocabulary.Term,
    designated: bool = False,
    contracted_hours: float | None = None,
) -> Service:
    """Add one service of a provider already in the store; its unit type follows its service type."""
    provider = get_provider(engine, provider_ref=provider_ref)
    if provider is None or provider.id is None:
        raise NotFound("unknown provider", detail=f"no provider with provider_ref {provider_ref!r}")
    service = Service(
        service_ref=service_ref,
        provider_id=provider.id,
        name=name,
        district_code=district_code,
        service_type=ServiceType(service_type).value,
        client_group=client_group,
        units=units,
        unit_type=UNIT_TYPE_FOR[ServiceType(service_type)].value,
        contracted_hours=contracted_hours,
        designated=designated,
        term=vocabulary.Term(term).value,
    )
    return _add(engine, service)


def get_service(engine: Engine, *, service_ref: str) -> Service | None:
    with Session(engine) as session:
        return session.exec(select(Service).where(col(Service.service_ref) == service_ref)).first()


def add_contract(
    engine: Engine,
    *,
    contract_ref: str,
    service_ref: str,
    annual_value: Decimal,
    start_date: date,
    end_date: date,
) -> Contract:
    """Add one contract for a service already in the store."""
    service = get_service(engine, service_ref=service_ref)
    if service is None or service.id is None:
        raise NotFound("unknown service", detail=f"no service with service_ref {service_ref!r}")
    contract = Contract(
        contract_ref=contract_ref,
        service_id=service.id,
        annual_value=annual_value,
        start_date=start_date,
        end_date=end_date,
    )
    return _add(engine, contract)


def get_contract(engine: Engine, *, contract_ref: str) -> Contract | None:
    with Session(engine) as session:
        return session.exec(select(Contract).where(col(Contract.contract_ref) == contract_ref)).first()


def data_version(engine: Engine) -> tuple[object, ...]:
    """The supply's edition: changes whenever a provider, service, contract or quarterly return is
    added, updated or removed (a write stamps it in its own transaction, `node.stamps`). The
    quarterly returns are read by the KPI 1 and utilisation answers: an import of them makes a new
    edition too."""
    return (stamps.stamps(engine).get(stamps.SUPPLY),)


def row_counts(engine: Engine) -> dict[str, int]:
    """How many providers, services and contracts the store holds."""
    with Session(engine) as session:
        return {
            name: session.exec(select(func.count()).select_from(table)).one()
            for name, table in (("provider", Provider), ("service", Service), ("contract", Contract))
        }


def _add(engine: Engine, row: _Row) -> _Row:
    with Session(engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
        return row

"""CSV import of an authority's providers, services and contracts, as exported by its SP system.

Every row is checked with pydantic and every problem is collected (up to MAX_PROBLEMS), each naming
the file, row, column and reason; then either everything is written in one transaction or, if
anything was wrong, nothing is (`ImportError_`). Rows are matched to the store by their natural key
(provider_ref, service_ref, contract_ref): a re-import of the same file changes nothing, a changed
row is updated, and rows the file does not mention are left alone. Import providers, then services,
then contracts: each file may refer only to rows already in the store.

Row numbers are the ones a spreadsheet shows: the header is row 1 and the first data row is row 2.
A row is a CSV record, so a quoted cell holding a line break does not shift the numbering. Blank
rows (every cell empty, as Excel leaves at the end of a sheet) are skipped but still counted.

Columns (header names are matched ignoring case and surrounding spaces; a space may stand for "_"):

    providers.csv  provider_ref, name, [national_provider_id], [charity_number], [company_number]
    services.csv   service_ref, provider_ref, name, district, service_type, client_group, units,
                   [unit_type], [contracted_hours], designated, term, [start_date], [end_date],
                   [changed_on]
    contracts.csv  contract_ref, service_ref, annual_value, start_date, end_date

[Bracketed] columns may be left out, and their cells left blank. A column the importer does not
know is refused rather than ignored, so that a misspelt optional column cannot silently lose data;
a column with no name (Excel leaves them) is ignored as long as its cells are empty.
The file must be UTF-8 ("CSV UTF-8" in Excel); a byte order mark is accepted.

Cells: refs up to 64 characters and names up to 200; district is a GSS code or a district name of
this authority; service_type, unit_type and term come from shared.vocabulary (case, spaces and
underscores forgiven); unit_type, when given, must be the one the service type counts;
client_group is 1-21; units a whole number >= 0; contracted_hours > 0, required for
floating-support; designated true/false/yes/no/y/n/1/0; annual_value pounds >= 0 with at most 2
decimals ("£" and thousands commas allowed), for a service with at least one unit; dates YYYY-MM-DD
with end_date >= start_date (a service's start_date and end_date, its life, are optional; changed_on,
the day a changed service's new figures took effect, defaults to the day of the import: the
version it replaces is kept in service_history up to the day before, so the supply map can be
asked as at any date); a provider needs a name with a letter or digit besides its legal form
("Ltd"), or a national provider id, charity or company number; charity
numbers 6-7 digits; company numbers 8 characters (leading zeros a spreadsheet dropped are restored).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from node.imports.mapping import Translator
from node.imports.reading import Columns, Encoding, Source, count_lines
from node.store import (
    SERVICE_VERSION_FIELDS,
    Contract,
    DistrictRow,
    Provider,
    Service,
    ServiceHistory,
    store_authority,
    utcnow,
)
from shared.errors import ImportError_, ImportProblem
from shared.provider_identity import normalise_name
from shared.vocabulary import CLIENT_GROUPS, UNIT_TYPE_FOR, ServiceType, Term, UnitType

__all__ = ["COLUMNS", "MAX_PROBLEMS", "ImportSummary", "Kind", "import_csv"]

Kind = Literal["providers", "services", "contracts"]

MAX_PROBLEMS = 10_000
"""Reading stops after this many problems: every problem of a file with a few bad rows, and a bounded
list (and memory) for a file that is wrong throughout."""

BATCH = 2000
"""Rows written per statement, and how often `progress` is called."""


COLUMNS: dict[str, Columns] = {
    "providers": Columns(
        ("provider_ref", "name", "national_provider_id", "charity_number", "company_number"),
        frozenset({"national_provider_id", "charity_number", "company_number"}),
    ),
    "services": Columns(
        (
            "service_ref",
            "provider_ref",
            "name",
            "district",
            "service_type",
            "client_group",
            "units",
            "unit_type",
            "contracted_hours",
            "designated",
            "term",
            "start_date",
            "end_date",
            "changed_on",
        ),
        frozenset({"unit_type", "contracted_hours", "start_date", "end_date", "changed_on"}),
    ),
    "contracts": Columns(("contract_ref", "service_ref", "annual_value", "start_date", "end_date")),
}
"""The columns of each kind of file, and which of them may be left out."""


@dataclass(frozen=True)
class ImportSummary:
    kind: str
    rows: int  # data rows read (blank rows not counted)
    inserted: int
    updated: int
    written: str = ""  # how the rows reached the store, when that is worth saying (`staging.Staging.written`)

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated

    def __str__(self) -> str:
        return (
            f"{self.kind}: {self.rows} rows, {self.inserted} inserted, {self.updated} updated, "
            f"{self.unchanged} unchanged" + (f" ({self.written})" if self.written else "")
        )


# ---------------------------------------------------------------------------------------------
# Cell parsers: each raises ValueError with the reason a person needs to fix the cell.

_WHOLE = re.compile(r"[+-]?(\d+|\d{1,3}(,\d{3})+)")
_DECIMAL = re.compile(r"\d+(\.\d+)?")
_POUNDS = re.compile(r"£?(\d+|\d{1,3}(,\d{3})+)(\.\d{1,2})?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CHARITY = re.compile(r"\d{6,7}(-\d{1,2})?")  # England and Wales register, with a linked-charity suffix
_COMPANY = re.compile(r"(\d{8}|[A-Z]{2}\d{6})")  # Companies House: 8 digits, or 2 letters and 6 digits
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_POUNDS = Decimal("9999999999.99")  # Numeric(12, 2)


def _text(max_length: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"longer than {max_length} characters ({len(value)})")
        if _CONTROL.search(value):
            raise ValueError(f"contains a control character: {value!r}")
        return value

    return check


def _optional_text(max_length: int) -> Callable[[str | None], str | None]:
    check = _text(max_length)
    return lambda value: None if value is None else check(value)


Ref = Annotated[str, AfterValidator(_text(64))]
Name = Annotated[str, AfterValidator(_text(200))]


MAX_UNITS = 100_000
"""More units than any one SP service had (the largest, county-wide community alarm services, counted
tens of thousands of dwellings); a larger figure is a typing or export error, refused by name."""
MAX_HOURS = 20_000.0
"""Contracted hours a week: the largest floating-support contracts were a few thousand."""
MAX_ANNUAL_VALUE = Decimal("100000000")
"""£100 million a year: more than any one authority's whole SP grant; a larger value is an error."""


def _whole_number(value: object) -> int:
    text = str(value)
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a whole number: {text[:40]!r}")
    if len(text) > 15:  # with its commas, far past any count: refused before it meets a column
        raise ValueError(f"a number of {len(text)} digits is far too large: {text[:40]!r}")
    return int(text.replace(",", ""))


def _client_group(value: object) -> int:
    code = _whole_number(value)
    if code not in CLIENT_GROUPS:
        raise ValueError(f"{code} is not an SP client group code: codes are 1 to 21")
    return code


def _units(value: object) -> int:
    units = _whole_number(value)
    if units < 0:
        raise ValueError(f"units must be 0 or more, not {units}")
    if units > MAX_UNITS:
        raise ValueError(f"{units:,} units is more than any service has (at most {MAX_UNITS:,})")
    return units


def _hours(value: object) -> float | None:
    if value is None:
        return None
    text = str(value)
    if text.startswith("-"):
        raise ValueError(f"contracted hours must be more than 0, not {text}")
    if len(text) > 20 or not _DECIMAL.fullmatch(text):
        raise ValueError(f"not a number of hours a week: {text[:40]!r}")
    hours = float(text)
    if hours <= 0:
        raise ValueError(f"contracted hours must be more than 0, not {text}")
    if hours > MAX_HOURS:
        raise ValueError(f"{text} contracted hours a week is more than any service has (at most {MAX_HOURS:,.0f})")
    return hours


def _vocabulary_key(value: object) -> str:
    return re.sub(r"[\s_]+", "-", str(value).strip().lower())


def _service_type(value: object) -> ServiceType:
    try:
        return ServiceType(_vocabulary_key(value))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a service type; use one of: {', '.join(t.value for t in ServiceType)}"
        ) from None


def _unit_type(value: object) -> UnitType | None:
    if value is None:
        return None
    try:
        return UnitType(_vocabulary_key(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a unit type; use one of: {', '.join(u.value for u in UnitType)}") from None


def _yes_no(value: object) -> bool:
    text = str(value).lower()
    if text in ("true", "yes", "y", "1"):
        return True
    if text in ("false", "no", "n", "0"):
        return False
    raise ValueError(f"{value!r} is not yes or no; use true/false, yes/no or 1/0")


def _term(value: object) -> Term:
    try:
        # "Long term", "long-term" and "Short Term" are how SP systems write it.
        return Term(re.sub(r"[\s_-]*term$", "", str(value).strip().lower()))
    except ValueError:
        raise ValueError(f"{value!r} is not a term; use short (28 days to 2 years) or long (over 2 years)") from None


def _iso_date(value: object) -> date:
    text = str(value)
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"not a date in the form YYYY-MM-DD (e.g. 2006-04-01): {text!r}")
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a real date: {text!r}") from None
    if not 1990 <= parsed.year <= 2100:
        raise ValueError(f"year {parsed.year} is out of range (1990 to 2100): {text!r}")
    return parsed


def _optional_date(value: object) -> date | None:
    return None if value is None or str(value) == "" else _iso_date(value)


def _pounds(value: object) -> Decimal:
    text = str(value)
    if text.lstrip("£").startswith("-"):
        raise ValueError(f"annual value must not be negative: {text}")
    if len(text) > 30 or not _POUNDS.fullmatch(text):
        raise ValueError(f"not an amount in pounds with at most 2 decimal places: {text[:40]!r}")
    amount = Decimal(text.lstrip("£").replace(",", ""))
    if amount > _MAX_POUNDS:
        raise ValueError(f"annual value is more than the store holds (£{_MAX_POUNDS:,}): {text}")
    if amount > MAX_ANNUAL_VALUE:
        raise ValueError(f"an annual value of £{amount:,} is more than any SP contract (at most £{MAX_ANNUAL_VALUE:,})")
    return amount


def _charity_number(value: object) -> str | None:
    if value is None:
        return None
    text = re.sub(r"\s+", "", str(value))
    if not _CHARITY.fullmatch(text):
        raise ValueError(f"not a registered charity number (6 or 7 digits, e.g. 1083475): {value!r}")
    return text


def _company_number(value: object) -> str | None:
    if value is None:
        return None
    text = re.sub(r"\s+", "", str(value)).upper()
    if text.isdigit() and len(text) < 8:
        text = text.zfill(8)  # spreadsheets drop the leading zeros
    if not _COMPANY.fullmatch(text):
        raise ValueError(f"not a Companies House number (8 digits, or 2 letters and 6 digits): {value!r}")
    return text


def _normalised_place(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("&", " and ")).strip().lower()


# ---------------------------------------------------------------------------------------------
# Row models. Cells arrive as stripped strings; a blank cell arrives as a missing key.


@dataclass
class _Context:
    """What rows are checked against: this authority's districts and the rows already stored."""

    authority_name: str
    districts: dict[str, str]  # GSS code or normalised name -> GSS code
    district_names: list[str]
    provider_ids: dict[str, int] = field(default_factory=dict)
    service_ids: dict[str, int] = field(default_factory=dict)
    service_units: dict[str, int] = field(default_factory=dict)  # contracts: what a unit cost divides by


def _context(info: ValidationInfo) -> _Context:
    context = info.context
    if not isinstance(context, _Context):
        raise TypeError("rows are validated with an import context")
    return context


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def columns(self, context: _Context) -> dict[str, Any]:
        raise TypeError("every row model says how it is stored")


class ProviderRow(_Row):
    provider_ref: Ref
    national_provider_id: Annotated[str | None, AfterValidator(_optional_text(32))] = None
    charity_number: Annotated[str | None, BeforeValidator(_charity_number)] = None
    company_number: Annotated[str | None, BeforeValidator(_company_number)] = None
    name: Name  # after the identifiers, which its identity check reads

    @field_validator("name")
    @classmethod
    def _has_an_identity(cls, name: str, info: ValidationInfo) -> str:
        # Common providers and the accreditation register key providers by identity; a provider
        # with none could be matched with nothing and reported under no name.
        ids = (info.data.get(k) for k in ("national_provider_id", "charity_number", "company_number"))
        if not any(ids):
            try:
                normalise_name(name)
            except ValueError:
                raise ValueError(
                    f"the provider has no identity: {name!r} has no letters or digits besides a legal form, "
                    "and there is no national provider id, charity number or company number"
                ) from None
        return name

    def columns(self, context: _Context) -> dict[str, Any]:
        return self.model_dump()


class ServiceRow(_Row):
    service_ref: Ref
    provider_ref: Ref
    name: Name
    district: str
    service_type: Annotated[ServiceType, BeforeValidator(_service_type)]
    client_group: Annotated[int, BeforeValidator(_client_group)]
    units: Annotated[int, BeforeValidator(_units)]
    # Both after service_type, which their checks read; validate_default so a blank cell is checked too.
    unit_type: Annotated[UnitType | None, BeforeValidator(_unit_type)] = Field(default=None, validate_default=True)
    contracted_hours: Annotated[float | None, BeforeValidator(_hours)] = Field(default=None, validate_default=True)
    designated: Annotated[bool, BeforeValidator(_yes_no)]
    term: Annotated[Term, BeforeValidator(_term)]
    start_date: Annotated[date | None, BeforeValidator(_optional_date)] = None
    end_date: Annotated[date | None, BeforeValidator(_optional_date)] = None
    changed_on: Annotated[date | None, BeforeValidator(_optional_date)] = None

    @field_validator("end_date")
    @classmethod
    def _service_ends_after_it_starts(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")
        if start is not None and end is not None and end < start:
            raise ValueError(f"end_date {end} is before start_date {start}")
        return end

    @field_validator("provider_ref")
    @classmethod
    def _known_provider(cls, ref: str, info: ValidationInfo) -> str:
        if ref not in _context(info).provider_ids:
            raise ValueError(f"unknown provider_ref {ref!r}: no such provider in the store; import providers first")
        return ref

    @field_validator("district")
    @classmethod
    def _district_of_this_authority(cls, district: str, info: ValidationInfo) -> str:
        context = _context(info)
        code = context.districts.get(district.upper()) or context.districts.get(_normalised_place(district))
        if code is None:
            raise ValueError(
                f"{district!r} is not a district of {context.authority_name}; "
                f"use one of: {', '.join(context.district_names)} (or its GSS code)"
            )
        return code

    @field_validator("unit_type")
    @classmethod
    def _unit_type_of_service_type(cls, unit_type: UnitType | None, info: ValidationInfo) -> UnitType | None:
        service_type = info.data.get("service_type")
        if service_type is None:
            return unit_type  # the service type is already reported
        expected = UNIT_TYPE_FOR[service_type]
        if unit_type is not None and unit_type != expected:
            raise ValueError(f"a {service_type.value} service counts {expected.value}, not {unit_type.value}")
        return expected

    @field_validator("contracted_hours")
    @classmethod
    def _hours_for_floating_support(cls, hours: float | None, info: ValidationInfo) -> float | None:
        if hours is None and info.data.get("service_type") == ServiceType.FLOATING_SUPPORT:
            raise ValueError("a floating-support service needs its contracted hours a week (more than 0)")
        return hours

    def columns(self, context: _Context) -> dict[str, Any]:
        return {
            "service_ref": self.service_ref,
            "provider_id": context.provider_ids[self.provider_ref],
            "name": self.name,
            "district_code": self.district,
            "service_type": self.service_type.value,
            "client_group": self.client_group,
            "units": self.units,
            "unit_type": UNIT_TYPE_FOR[self.service_type].value,
            "contracted_hours": self.contracted_hours,
            "designated": self.designated,
            "term": self.term.value,
            "start_date": self.start_date,
            "end_date": self.end_date,
        }


class ContractRow(_Row):
    contract_ref: Ref
    service_ref: Ref
    annual_value: Annotated[Decimal, BeforeValidator(_pounds)]
    start_date: Annotated[date, BeforeValidator(_iso_date)]
    end_date: Annotated[date, BeforeValidator(_iso_date)]

    @field_validator("service_ref")
    @classmethod
    def _known_service(cls, ref: str, info: ValidationInfo) -> str:
        context = _context(info)
        if ref not in context.service_ids:
            raise ValueError(f"unknown service_ref {ref!r}: no such service in the store; import services first")
        if context.service_units.get(ref) == 0:
            # A price for nothing: it has no unit cost, and would poison the VFM benchmarks.
            raise ValueError(f"service {ref!r} has 0 units: a contract needs a service with at least one unit")
        return ref

    @field_validator("end_date")
    @classmethod
    def _not_before_start(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start_date")
        if start is not None and end < start:
            raise ValueError(f"end_date {end} is before start_date {start}")
        return end

    def columns(self, context: _Context) -> dict[str, Any]:
        return {
            "contract_ref": self.contract_ref,
            "service_id": context.service_ids[self.service_ref],
            "annual_value": self.annual_value,
            "start_date": self.start_date,
            "end_date": self.end_date,
        }


@dataclass(frozen=True)
class _Kind:
    table: type[SQLModel]
    key: str  # the natural key
    model: type[_Row]
    compared: tuple[str, ...]  # the stored columns a re-import compares, to tell an update from no change


_KINDS: dict[str, _Kind] = {
    "providers": _Kind(
        Provider, "provider_ref", ProviderRow, ("name", "national_provider_id", "charity_number", "company_number")
    ),
    "services": _Kind(Service, "service_ref", ServiceRow, (*SERVICE_VERSION_FIELDS, "start_date", "end_date")),
    "contracts": _Kind(Contract, "contract_ref", ContractRow, ("service_id", "annual_value", "start_date", "end_date")),
}


def _problems_from(error: ValidationError, reader: Source, row: int, values: dict[str, str]) -> list[ImportProblem]:
    problems = []
    for e in error.errors(include_url=False):
        column = str(e["loc"][0]) if e["loc"] else None
        if reader.told(row, column):
            continue  # the cell's own problem is told (formula-like, untranslatable): it was read as empty
        value = values.get(column or "")
        if e["type"] == "value_error":
            reason = str(e["ctx"]["error"])
        elif e["type"] == "missing":
            reason = "empty; a value is required"
        else:
            reason = f"{e['msg']} (got {value!r})"
        problems.append(ImportProblem(reader.label, row, column, reason, sheet=reader.sheet_read, value=value))
    return problems


# ---------------------------------------------------------------------------------------------
# Writing: one transaction, rows compared with what is stored and written in batches.


@dataclass
class _Writer:
    conn: Connection
    table: Table
    now: datetime
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0

    def insert(self, values: dict[str, Any]) -> None:
        self.inserts.append({**values, "created_at": self.now, "updated_at": self.now})
        if len(self.inserts) >= BATCH:
            self.flush()

    def update(self, row_id: int, values: dict[str, Any]) -> None:
        self.updates.append({**values, "updated_at": self.now, "row_id": row_id})
        if len(self.updates) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.inserts:
            self.conn.execute(insert(self.table), self.inserts)
            self.inserted += len(self.inserts)
            self.inserts = []
        if self.updates:
            # No .values(): the SET clause is every column named in the parameters, row_id aside.
            self.conn.execute(update(self.table).where(self.table.c.id == bindparam("row_id")), self.updates)
            self.updated += len(self.updates)
            self.updates = []


def _lock_for_import(conn: Connection, table: Table) -> None:
    """Take the write lock before reading what is stored, so that the comparison holds until commit
    and two imports queue rather than collide."""
    if conn.dialect.name == "sqlite":
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is not None and not dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        # Blocks other writers of this table, and other imports of it; readers carry on.
        conn.exec_driver_sql(f'LOCK TABLE "{table.name}" IN SHARE ROW EXCLUSIVE MODE')


def _load_context(conn: Connection, kind: str, authority_code: str, authority_name: str) -> _Context:
    district = _table(DistrictRow)
    query = select(district.c.code, district.c.name).where(district.c.authority_code == authority_code)
    rows = conn.execute(query.order_by(district.c.name)).all()
    lookup = {code.upper(): code for code, _ in rows} | {_normalised_place(name): code for code, name in rows}
    context = _Context(authority_name, lookup, [name for _, name in rows])
    if kind == "services":
        provider = _table(Provider)
        context.provider_ids = dict(conn.execute(select(provider.c.provider_ref, provider.c.id)).all())
    if kind == "contracts":
        service = _table(Service)
        services = conn.execute(select(service.c.service_ref, service.c.id, service.c.units)).all()
        context.service_ids = {ref: sid for ref, sid, _ in services}
        context.service_units = {ref: units for ref, _, units in services}
    return context


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def _stored(
    conn: Connection, table: Table, key: str, columns: tuple[str, ...]
) -> dict[str, tuple[int, tuple[Any, ...]]]:
    """natural key -> (id, the stored values of `columns`)."""
    query = select(table.c[key], table.c.id, *(table.c[c] for c in columns))
    return {row[0]: (row[1], tuple(row[2:])) for row in conn.execute(query)}


Observer = Callable[[int, dict[str, str], dict[str, Any]], None]
"""Called with each good row during a check: (row number, the file's cells by column, the values
as they will be stored by column)."""
_LIFE = ("start_date", "end_date")


def _keep_undated(columns: dict[str, Any], stored: tuple[Any, ...], header: list[str]) -> None:
    """A file without the start_date or end_date column leaves those of a stored service as they
    are (an older export that never had them does not wipe them)."""
    for at, name in enumerate(_LIFE, start=len(SERVICE_VERSION_FIELDS)):
        if name not in header:
            columns[name] = stored[at]


def _replaced_version(before: tuple[int, tuple[Any, ...]], changed_on: date | None, today: date) -> dict[str, Any]:
    """The stored version a re-import replaces, as a service_history row: it held up to the day
    before the change took effect (`changed_on`, else the day of the import)."""
    service_id, values = before
    return {
        "service_id": service_id,
        "valid_until": date.fromordinal((changed_on or today).toordinal() - 1),
        "recorded_at": utcnow(),
        **dict(zip(SERVICE_VERSION_FIELDS, values[: len(SERVICE_VERSION_FIELDS)], strict=True)),
    }


def import_csv(
    engine: Engine,
    *,
    kind: Kind,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    sheet: str | None = None,
    encoding: Encoding = "auto",
    translator: Translator | None = None,
    dry_run: bool = False,
    observe: Observer | None = None,
    source: list[Source] | None = None,
) -> ImportSummary:
    """Import one file of `kind` (CSV, or the first sheet or `sheet` of an .xlsx workbook) into
    the store; all or nothing. `translator` applies a mapping profile (default: the built-in
    readings of `node.imports.mapping`). With `dry_run` everything is read, checked and compared
    with the store exactly as for an import, and then nothing is written.

    Raises `ImportError_` listing every problem found (file, sheet, row, column, reason) and writes
    nothing. `progress(done, total)` is called every BATCH rows and at the end: `done` counts data
    rows read; `total` is the file's line count less the header (an estimate when cells hold line
    breaks, and unknown for a workbook) until the last call, which is exact. `source`, when given,
    receives the `Source` read (what encoding or sheet it was read as).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}: {kind!r}")
    spec = _KINDS[kind]
    table = _table(spec.table)
    translator = translator or Translator()
    problems: list[ImportProblem] = []
    reader = Source(
        path,
        COLUMNS[kind],
        problems,
        sheet=sheet,
        encoding=encoding,
        renames=translator.renames,
        ignored=translator.ignored,
        kind=kind,
    )
    if source is not None:
        source.append(reader)
    label = reader.label
    try:
        total = max(count_lines(path) - 1, 0) if path.suffix.lower() == ".csv" else 0
    except OSError as exc:
        raise ImportError_([ImportProblem(label, None, None, f"cannot read the file: {exc.strerror}")]) from None

    authority = store_authority(engine)
    first_row_of: dict[str, int] = {}
    rows = 0

    def report(done: int) -> None:
        if progress is not None:
            progress(done, max(total, done))

    report(0)
    with engine.connect() as conn, conn.begin() as transaction:
        _lock_for_import(conn, table)
        context = _load_context(conn, kind, authority.code, authority.name)
        stored = _stored(conn, table, spec.key, spec.compared)
        writer = _Writer(conn, table, utcnow())
        history: list[dict[str, Any]] = []  # services: the versions this import replaces
        today = date.today()
        for row, values in reader.records():
            rows += 1
            if rows % BATCH == 0:
                report(rows)
            if len(problems) >= MAX_PROBLEMS:
                reader.problem(row, None, f"stopped reading after {MAX_PROBLEMS} problems; fix these and import again")
                break
            found = len(problems)
            key = values.get(spec.key)
            if key is not None:
                first = first_row_of.setdefault(key, row)
                if first != row:  # told, and the row's other cells still checked
                    reader.problem(row, spec.key, f"duplicate {spec.key} {key!r}: already on row {first}", key)
            cells = translator.row(values, partial(reader.unreadable, row))
            try:
                item = spec.model.model_validate(cells, context=context)
            except ValidationError as exc:
                problems.extend(_problems_from(exc, reader, row, values))
                continue
            columns = item.columns(context)
            if len(problems) > found or reader.flawed(row):
                continue  # a row with a problem is neither previewed nor written
            if observe is not None:
                observe(row, values, columns)
            if problems:
                continue  # the file will be refused: keep checking, stop writing
            before = stored.get(columns[spec.key])
            if before is not None and kind == "services":
                _keep_undated(columns, before[1], reader.header)
            if before is None:
                writer.insert(columns)
            elif before[1] != tuple(columns[c] for c in spec.compared):
                writer.update(before[0], columns)
                supply_changed = before[1][: len(SERVICE_VERSION_FIELDS)] != tuple(
                    columns[c] for c in SERVICE_VERSION_FIELDS
                )
                if kind == "services" and supply_changed:  # new dates alone correct the service's life
                    history.append(_replaced_version(before, getattr(item, "changed_on", None), today))
        if rows == 0 and not problems:
            reader.problem(None, None, "no data rows: the file has a header and nothing else")
        if problems:
            raise ImportError_(problems)  # leaving the block rolls back whatever was written
        writer.flush()
        if history:
            conn.execute(insert(_table(ServiceHistory)), history)
        if dry_run:
            transaction.rollback()  # counted as an import would count them; nothing kept
    if progress is not None:
        progress(rows, rows)
    return ImportSummary(kind=kind, rows=rows, inserted=writer.inserted, updated=writer.updated)

"""CSV import of client records and short-term outcomes, fast enough for a million rows a file.

The rules are `node.importer`'s: every problem is collected (up to MAX_PROBLEMS), each naming the
file, row (a spreadsheet's numbering: the header is row 1), column and reason; nothing is written
unless every row is good; rows are matched to the store by record_ref, so a
re-import of the same file changes nothing and a changed row is updated; an unknown column is
refused; the file is UTF-8, with or without a byte order mark. Import services first, then client
records, then outcomes. The columns and the values each accepts are in docs/client-records.md.

The person fields (surname, first_initial, date_of_birth, with sex) are never stored: each row's
`person_hash` is sealed under the node's person key at once and only the sealed value is written.

Unlike `node.importer`, rows are not validated with pydantic: a client record file is a thousand
times longer than a services file, so each column has a plain check over precomputed lookups, and
rows are staged in large batches (executemany; COPY on PostgreSQL) in a temporary table on the
import's own connection, then written to the store in one transaction (`node.imports.staging`; a
large file on SQLite, while a node serves the store, builds the table's next version beside it and
swaps it in, `node.imports.swap`):
the store is not locked while the file is read, and a killed import changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Dialect, Engine

from node.client_records import (
    ACCOMMODATION_BEFORE,
    AGE_BANDS,
    DEPARTURES,
    ECONOMIC_STATUSES,
    ETHNICITIES,
    OUTCOME_DOMAINS,
    OUTCOME_NEEDS,
    REFERRAL_SOURCES,
    SEXES,
    ClientRecord,
    Outcome,
    PersonSealer,
    person_hash_text,
)
from node.imports.mapping import Translator
from node.imports.reading import Columns, Encoding, Source, count_lines
from node.imports.staging import ALONE, IMPORT_CACHE_KIB, SWAPPED, Phase, Staging, staging
from node.imports.supply import MAX_PROBLEMS, ImportSummary, Observer, _table, _vocabulary_key
from node.store import Service
from shared import places
from shared.authorities import Register
from shared.errors import ImportError_, ImportProblem
from shared.vocabulary import CLIENT_GROUPS

__all__ = [
    "BATCH",
    "COLUMNS",
    "IMPORT_CACHE_KIB",
    "MAX_PROBLEMS",
    "RecordKind",
    "import_client_records",
    "import_outcomes",
    "import_records",
]

RecordKind = Literal["client-records", "outcomes"]

BATCH = 10_000
"""Rows written per statement, and how often `progress` is called."""

COLUMNS: dict[str, Columns] = {
    "client-records": Columns(
        (
            "record_ref",
            "service_ref",
            "start_date",
            "client_group",
            "secondary_groups",
            "age_band",
            "sex",
            "ethnicity",
            "economic_status",
            "referral_source",
            "accommodation_before",
            "previous_authority",
            "surname",
            "first_initial",
            "date_of_birth",
        ),
        # Many returns lack one of the linkage fields: a record without them is kept, never linked.
        frozenset({"secondary_groups", "surname", "first_initial", "date_of_birth"}),
    ),
    "outcomes": Columns(("record_ref", "end_date", "departure", *OUTCOME_DOMAINS)),
}
"""The columns of each kind of file, in the order synthetic files are written, and which may be left out."""

# The stored columns, in the order rows are written; the first is the natural key, and the rest
# (bar the timestamps) are what a re-import compares to tell an update from no change.
_RECORD_COLUMNS = (
    "record_ref",
    "service_id",
    "start_date",
    "client_group",
    "secondary_groups",
    "age_band",
    "sex",
    "ethnicity",
    "economic_status",
    "referral_source",
    "accommodation_before",
    "previous_authority",
    "person",
)
_OUTCOME_COLUMNS = ("client_record_id", "end_date", "departure", *OUTCOME_DOMAINS)


# ---------------------------------------------------------------------------------------------
# Cell checks: each takes a non-blank stripped cell and returns the value to store, or raises
# ValueError with the reason a person needs to fix it. Hot paths are one dict lookup.

_Check = Callable[[str], Any]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GROUP_SEPARATOR = re.compile(r"[;,]")
_MISS = object()
# Good cells remembered per column: every date of birth from 1880 (47,000 days), and a bound on memory.
_MEMO_LIMIT = 1 << 16


@dataclass
class _Column:
    """One checked column: where it is in the file, its check, and the good cells seen so far
    (most columns hold a few hundred distinct values over a million rows, so a row is checked
    by one dict lookup a cell)."""

    name: str
    index: int  # in the row's cells; a column left out reads the empty cell appended to each row
    check: _Check
    required: bool = True
    blank: Any = None  # the value of a blank cell in an optional column
    known: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.required:
            self.known[""] = self.blank


def _columns(
    reader: Source, checks: Sequence[tuple[str, _Check] | tuple[str, _Check, Any]], translator: Translator
) -> list[_Column]:
    """Columns in `checks` order; a check with a third item is optional, that item its blank value.
    Each check reads the cell as the mapping profile translates it (memoised with the check)."""
    header = reader.header
    columns = []
    for name, check, *blank in checks:
        index = header.index(name) if name in header else len(header)
        wrapped = translator.wrap(name, check)
        columns.append(_Column(name, index, wrapped, required=not blank, blank=blank[0] if blank else None))
    return columns


def _text(max_length: int) -> _Check:
    def check(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"longer than {max_length} characters ({len(value)})")
        if _CONTROL.search(value):
            raise ValueError(f"contains a control character: {value!r}")
        return value

    return check


def _vocabulary(what: str, values: Sequence[str], extra: dict[str, str] | None = None) -> _Check:
    """Case, spaces and underscores forgiven, as `node.importer` forgives them."""
    lookup = {v: v for v in values} | {_vocabulary_key(v): v for v in values} | (extra or {})

    def check(value: str) -> str:
        found = lookup.get(value) or lookup.get(_vocabulary_key(value))
        if found is None:
            raise ValueError(f"{value!r} is not {what}; use one of: {', '.join(values)}")
        return found

    return check


def _ethnicity() -> _Check:
    # The 2001 census letter code, or its description; case and runs of spaces forgiven.
    lookup = {code: code for code in ETHNICITIES} | {code.lower(): code for code in ETHNICITIES}
    lookup |= {_folded(text): code for code, text in ETHNICITIES.items()}

    def check(value: str) -> str:
        found = lookup.get(value) or lookup.get(_folded(value))
        if found is None:
            raise ValueError(
                f"{value!r} is not a 2001 census ethnic category; use its letter code "
                f"({', '.join(ETHNICITIES)}) or its description, e.g. A or 'White: British'"
            )
        return found

    return check


_SEX_NAMES = {"f": "female", "m": "male", "F": "female", "M": "male", "woman": "female", "man": "male"}
_AGE_BANDS = {band.replace(" ", ""): band for band in AGE_BANDS} | {"85andover": "85+", "85plus": "85+", "85-": "85+"}


def _numbered(values: Sequence[str]) -> dict[str, str]:
    """A category by its position in cagnet's list (1 for the first): docs/import-fields.md lists
    the numbers. They are not known to be the national SP client record form's codes (no copy of
    the form was at hand to check them against: docs/client-records.md says so), so a system that
    exports the form's codes needs a mapping profile's value map."""
    return {str(i): value for i, value in enumerate(values, start=1)}


def _age_band(value: str) -> str:
    """An age band as listed ("25-34", "25 - 34", "85 and over"), or an age in years."""
    compact = re.sub(r"\s+", "", value.lower())
    band = _AGE_BANDS.get(compact)
    if band is not None:
        return band
    if compact.isdigit() and len(compact) <= 3:
        age = int(compact)
        for candidate in AGE_BANDS:
            low, _, high = candidate.rstrip("+").partition("-")
            if int(low) <= age <= (int(high) if high else 120):
                return candidate
        raise ValueError(f"an age of {age} is outside the SP age bands (16 to 120)")
    raise ValueError(f"{value!r} is not an SP age band or an age in years; use one of: {', '.join(AGE_BANDS)}")


def _folded(value: str) -> str:
    return " ".join(value.split()).casefold()


_GROUPS = {str(code): code for code in CLIENT_GROUPS} | {f"0{code}": code for code in CLIENT_GROUPS if code < 10}


def _client_group(value: str) -> int:
    code = _GROUPS.get(value)
    if code is None:
        if value.lstrip("+-").isdigit() and len(value) <= 6:  # bounded before int(): a cell may hold any digits
            raise ValueError(f"{int(value)} is not an SP client group code: codes are 1 to 21")
        raise ValueError(f"not an SP client group code (a whole number, 1 to 21): {value!r}")
    return code


def _secondary_groups(value: str) -> str:
    codes = set()
    for part in _GROUP_SEPARATOR.split(value):
        part = part.strip()
        if part:
            try:
                codes.add(_client_group(part))
            except ValueError as exc:
                raise ValueError(f"secondary group {exc}") from None
    return ",".join(str(code) for code in sorted(codes))


def _previous_authority(register: Register | None) -> _Check:
    """A place the authority register knows (the network's; default the shipped list)."""

    def check(value: str) -> str | None:
        code = value.upper()
        if places.is_known(code, register):
            return code
        if code == "UNKNOWN":
            return None
        raise ValueError(
            f"{value!r} is not the GSS code of an English upper-tier authority or of a county district in the"
            " authority register; leave it blank or write unknown when the previous authority is not known"
        )

    return check


def _person_name(what: str, max_length: int) -> _Check:
    text = _text(max_length)

    def check(value: str) -> str:
        if not any(ch.isalnum() for ch in value):
            raise ValueError(f"{what} has no letters: {value!r}")
        return text(value)

    return check


def _dates(today: str, earliest_year: int) -> _Check:
    """A check for YYYY-MM-DD dates from `earliest_year` to `today`; returns the date as that text
    (dates compare correctly as text)."""

    def check(value: str) -> str:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError(f"not a date in the form YYYY-MM-DD (e.g. 2009-04-01): {value!r}")
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not a real date: {value!r}") from None
        if parsed.year < earliest_year:
            raise ValueError(f"year {parsed.year} is out of range (from {earliest_year}): {value!r}")
        if value > today:
            raise ValueError(f"{value} is in the future (today is {today})")
        return value

    return check


# ---------------------------------------------------------------------------------------------
# Values in the form the DBAPI driver takes for each column, so that nothing is converted per row
# on the way in (rows are staged and written by `node.imports.staging`).


def _processor(table: Table, column: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    kind = table.c[column].type
    return kind.dialect_impl(dialect).bind_processor(dialect)


def _date_values(table: Table, column: str, dialect: Dialect) -> Callable[[str], Any]:
    """YYYY-MM-DD text -> what the driver stores for a date column (cached: few distinct dates)."""
    processor = _processor(table, column, dialect)
    cache: dict[str, Any] = {}

    def value(text: str) -> Any:
        stored = cache.get(text)
        if stored is None:
            parsed = date.fromisoformat(text)
            stored = cache[text] = processor(parsed) if processor else parsed
        return stored

    return value


def _iso(value: Any) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _in_batches(keys: list[Any], size: int = 1000) -> Iterator[list[Any]]:
    # Well under SQLite's and PostgreSQL's limits on bound parameters.
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


# ---------------------------------------------------------------------------------------------
# The import itself.

_STOPPED = f"stopped reading after {MAX_PROBLEMS} problems; fix these and import again"


@dataclass
class _Run:
    """What one import shares between reading, checking and writing."""

    progress: Callable[[int, int], None] | None
    problems: list[ImportProblem]
    reader: Source
    total: int
    rows: int = 0
    stopped_at: int | None = None

    def report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, max(self.total, done))

    def problem(self, row: int | None, column: str | None, reason: str, value: str | None = None) -> None:
        self.reader.problem(row, column, reason, value)

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """Each data row whose cells line up with the header, until MAX_PROBLEMS have been found."""
        for row, cells in self.reader.rows():
            self.rows += 1
            if self.rows % BATCH == 0:
                self.report(self.rows)
            if len(self.problems) >= MAX_PROBLEMS:
                self.stopped_at = row
                return
            yield row, cells

    def values(self, row: int, cells: list[str], columns: list[_Column], pick: Callable[[list[str]], Any]) -> list[Any]:
        """Each column's value (None for a bad cell, whose problem is recorded). `pick` is
        `operator.itemgetter` of the columns' indexes: the fast path is C loops and dict lookups."""
        cells.append("")  # the cell of every column the file leaves out
        picked = pick(cells)
        values = [column.known.get(cell, _MISS) for column, cell in zip(columns, picked, strict=True)]
        if _MISS in values:  # a cell not seen before, or a bad one
            for i, value in enumerate(values):
                if value is _MISS:
                    values[i] = self._check(row, columns[i], picked[i])
        return values

    def _check(self, row: int, column: _Column, cell: str) -> Any:
        if not cell:
            self.problem(row, column.name, "empty; a value is required")
            return None
        try:
            value = column.check(cell)
        except ValueError as exc:
            self.problem(row, column.name, str(exc), cell)
            return None
        if len(column.known) < _MEMO_LIMIT:
            column.known[cell] = value
        return value

    def ref(self, row: int, cells: list[str], index: int) -> str | None:
        """The row's record_ref, if good (duplicates are found among the staged rows, by
        `duplicates`, so that no list of every reference is held in memory)."""
        ref = cells[index]
        if not ref:
            self.problem(row, "record_ref", "empty; a value is required")
            return None
        if len(ref) > 64 or not ref.isprintable():
            try:
                _text(64)(ref)
            except ValueError as exc:
                self.problem(row, "record_ref", str(exc), ref)
                return None
        return ref

    def duplicates(self, stage: Staging, duplicate: str, supersedes: frozenset[str] = frozenset()) -> None:
        """A problem for each staged row whose record_ref an earlier row has (`duplicate` says why,
        with {ref} and {first} for the ref and the row it is first on). Problems of a duplicate row
        in the `supersedes` columns are dropped: they were found against the record the earlier
        row names, and follow from the duplicate."""
        found = stage.duplicates(MAX_PROBLEMS)
        rows = {row for row, _ref, _first in found}
        if supersedes and rows:
            self.problems[:] = [p for p in self.problems if not (p.row in rows and p.column in supersedes)]
        for row, ref, first in found:
            self.problem(row, "record_ref", duplicate.format(ref=repr(ref), first=first))

    def finish(self) -> None:
        """Raise ImportError_ with the problems, in row order, if there are any."""
        if self.rows == 0 and not self.problems:
            self.problem(None, None, "no data rows: the file has a header and nothing else")
        if not self.problems:
            return
        # Outcomes are checked against the store a batch at a time, so rows' problems can arrive
        # late and past the limit: put them in order and cut them at the limit.
        ordered = sorted(self.problems, key=lambda p: p.row or 0)
        if len(ordered) > MAX_PROBLEMS:
            self.stopped_at = ordered[MAX_PROBLEMS].row
            ordered = ordered[:MAX_PROBLEMS]
        if self.stopped_at is not None:
            sheet = self.reader.sheet_read
            ordered.append(ImportProblem(self.reader.label, self.stopped_at, None, _STOPPED, sheet=sheet))
        raise ImportError_(ordered)


def _start(
    path: Path,
    kind: str,
    progress: Callable[[int, int], None] | None,
    translator: Translator,
    sheet: str | None,
    encoding: Encoding,
    source: list[Source] | None,
) -> _Run:
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
    try:
        total = max(count_lines(path) - 1, 0) if path.suffix.lower() == ".csv" else 0
    except OSError as exc:
        raise ImportError_([ImportProblem(reader.label, None, None, f"cannot read the file: {exc.strerror}")]) from None
    run = _Run(progress, problems, reader, total)
    run.report(0)
    return run


def _index(reader: Source, column: str) -> int | None:
    return reader.header.index(column) if column in reader.header else None


def _today(today: date | None) -> str:
    return (today or date.today()).isoformat()


def import_client_records(
    engine: Engine,
    *,
    path: Path,
    sealer: PersonSealer,
    progress: Callable[[int, int], None] | None = None,
    today: date | None = None,
    register: Register | None = None,
    sheet: str | None = None,
    encoding: Encoding = "auto",
    translator: Translator | None = None,
    dry_run: bool = False,
    observe: Observer | None = None,
    source: list[Source] | None = None,
    on_phase: Phase | None = None,
) -> ImportSummary:
    """Import a client-records file (CSV or .xlsx); all or nothing. A previous authority must be
    a place the network's authority `register` knows (default: the shipped list), by code or name.

    `sealer` holds the node's person key (`PersonSealer(load_person_key(config.person_key_path))`):
    the person fields become `sealer.seal(person_hash(...))` and are kept nowhere else. A record
    without all three linkage fields (surname, first initial, date of birth) is imported with no
    person: it is counted in every figure and never linked.
    Raises `ImportError_` listing every problem found and writes nothing. `progress(done, total)`
    is called every BATCH rows and at the end, as `node.imports.supply.import_csv` calls it. `today`
    (default: the local date) is the latest date a start date or date of birth may be. `sheet`,
    `encoding`, `translator`, `dry_run` and `observe` as for `import_csv`.

    Rows are checked and staged without locking the store, then written in one transaction
    (`node.imports.staging`; on SQLite, from SWAP_ROWS rows while a node serves the store, built
    beside the table and swapped in: `node.imports.swap`): the node answers throughout, and a killed
    import changes nothing. The summary's `written` says which way a large import took.
    `on_phase` is told each step (`staging.Phase`).
    """
    translator = translator or Translator(register=register, today=today)
    run = _start(path, "client-records", progress, translator, sheet, encoding, source)
    table = _table(ClientRecord)
    seal = sealer.seal
    with engine.connect() as conn, staging(conn, table, _RECORD_COLUMNS, "record_ref") as stage:
        # Staging reads the store and writes only the import's own temporary table: the node goes
        # on answering (and writing its audit log) however long the file.
        with conn.begin():
            service = _table(Service)
            service_ids = {ref: id_ for ref, id_ in conn.execute(select(service.c.service_ref, service.c.id))}
            service_refs = {id_: ref for ref, id_ in service_ids.items()}
            start_value = _date_values(table, "start_date", conn.dialect)
            columns: list[_Column] = []
            for row, cells in run.records():
                if not columns:  # the header has just been read
                    columns = _record_columns(run.reader, service_ids, _today(today), register, translator)
                    pick = itemgetter(*(c.index for c in columns))
                    ref_index = run.reader.header.index("record_ref")
                found = len(run.problems)
                ref = run.ref(row, cells, ref_index)
                (service_id, start, group, secondary, age, sex, ethnicity, economic, referral, before, previous,
                 surname, initial, birth) = run.values(row, cells, columns, pick)  # fmt: skip
                if secondary and group is not None and str(group) in secondary.split(","):
                    run.problem(row, "secondary_groups", f"client group {group} is the primary group; list it once")
                if birth is not None and start is not None and birth > start:
                    run.problem(row, "date_of_birth", f"date of birth {birth} is after start_date {start}", birth)
                # Without all three linkage fields a record cannot be recognised elsewhere: no person.
                linkable = surname is not None and initial is not None and birth is not None
                good = len(run.problems) == found and not run.reader.flawed(row)
                if observe is not None and good:  # a good row, as it would be stored
                    stored = dict(zip(_RECORD_COLUMNS, (ref, service_refs[service_id], start, group, secondary, age,
                                  sex, ethnicity, economic, referral, before, previous), strict=False))  # fmt: skip
                    stored["person"] = "sealed (linkable)" if linkable else "none (not linkable)"
                    observe(row, dict(zip(run.reader.header, cells, strict=False)), stored)
                if run.problems:
                    stage.add(row, ref, None)  # the file will be refused: keep checking, stage only the ref
                    continue
                person = seal(person_hash_text(surname, initial, birth, sex)) if linkable else None
                stage.add(
                    row,
                    ref,
                    (ref, service_id, start_value(start), group, secondary, age, sex, ethnicity, economic, referral,
                     before, previous, person),
                )  # fmt: skip
            run.duplicates(stage, "duplicate record_ref {ref}: already on row {first}")
        run.finish()
        _phase(on_phase, "staged")
        inserted, updated = stage.apply(on_phase, dry_run=dry_run)
    run.report(run.rows)
    return ImportSummary(
        kind="client-records", rows=run.rows, inserted=inserted, updated=updated, written=_large(stage)
    )


def _large(stage: Staging) -> str:
    """How a large import wrote its rows (which way, and why), for its summary; nothing for a small one."""
    return stage.written if stage.written in (ALONE, SWAPPED) else ""


def _phase(on_phase: Phase | None, phase: str) -> None:
    if on_phase is not None:
        on_phase(phase)


def _record_columns(
    reader: Source, service_ids: dict[str, int], today: str, register: Register | None, translator: Translator
) -> list[_Column]:
    """The checked columns of client-records.csv (record_ref aside), in the order
    `import_client_records` unpacks them."""

    def known_service(value: str) -> int:
        found = service_ids.get(value)
        if found is None:
            raise ValueError(f"unknown service_ref {value!r}: no such service in the store; import services first")
        return found

    return _columns(
        reader,
        [
            ("service_ref", known_service),
            ("start_date", _dates(today, 1990)),
            ("client_group", _client_group),
            ("secondary_groups", _secondary_groups, ""),
            ("age_band", _age_band),
            ("sex", _vocabulary("a sex", SEXES, _SEX_NAMES)),
            ("ethnicity", _ethnicity()),
            ("economic_status", _vocabulary("an economic status", ECONOMIC_STATUSES, _numbered(ECONOMIC_STATUSES))),
            ("referral_source", _vocabulary("a referral source", REFERRAL_SOURCES, _numbered(REFERRAL_SOURCES))),
            (
                "accommodation_before",
                _vocabulary("an accommodation type", ACCOMMODATION_BEFORE, _numbered(ACCOMMODATION_BEFORE)),
            ),
            ("previous_authority", _previous_authority(register), None),
            ("surname", _person_name("surname", 100), None),
            ("first_initial", _person_name("first_initial", 100), None),
            ("date_of_birth", _dates(today, 1880), None),
        ],
        translator,
    )


def import_outcomes(
    engine: Engine,
    *,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    today: date | None = None,
    sheet: str | None = None,
    encoding: Encoding = "auto",
    translator: Translator | None = None,
    dry_run: bool = False,
    observe: Observer | None = None,
    source: list[Source] | None = None,
    on_phase: Phase | None = None,
) -> ImportSummary:
    """Import an outcomes file (one row per departure from a short-term service); all or nothing.

    Each record_ref must name a client record already in the store, at most once in the file.
    Raises `ImportError_` listing every problem found and writes nothing. The other arguments as
    for `import_client_records`.
    """
    translator = translator or Translator(today=today)
    run = _start(path, "outcomes", progress, translator, sheet, encoding, source)
    table = _table(Outcome)
    with engine.connect() as conn, staging(conn, table, _OUTCOME_COLUMNS, "client_record_id") as stage:
        with conn.begin():  # reads the store, writes only the staged rows (see import_client_records)
            end_value = _date_values(table, "end_date", conn.dialect)
            columns: list[_Column] = []
            pending: list[tuple[int, str | None, list[Any]]] = []
            for row, cells in run.records():
                if not columns:  # the header has just been read
                    needs = _vocabulary("an outcome need", OUTCOME_NEEDS)
                    columns = _columns(
                        run.reader,
                        [
                            ("end_date", _dates(_today(today), 1990)),
                            ("departure", _vocabulary("a departure", DEPARTURES)),
                            *((domain, needs) for domain in OUTCOME_DOMAINS),
                        ],
                        translator,
                    )
                    pick = itemgetter(*(c.index for c in columns))
                    ref_index = run.reader.header.index("record_ref")
                ref = run.ref(row, cells, ref_index)
                pending.append((row, ref, run.values(row, cells, columns, pick)))  # checked a batch at a time
                if len(pending) >= BATCH:
                    _stage_outcomes(conn, run, stage, pending, end_value, observe)
                    pending.clear()
            _stage_outcomes(conn, run, stage, pending, end_value, observe)
            duplicate = "duplicate record_ref {ref}: a client record has one outcome, and row {first} gives it"
            run.duplicates(stage, duplicate, supersedes=frozenset({"end_date"}))
        run.finish()
        _phase(on_phase, "staged")
        inserted, updated = stage.apply(on_phase, dry_run=dry_run)
    run.report(run.rows)
    return ImportSummary(kind="outcomes", rows=run.rows, inserted=inserted, updated=updated, written=_large(stage))


def _stage_outcomes(
    conn: Connection,
    run: _Run,
    stage: Staging,
    pending: list[tuple[int, str | None, list[Any]]],
    end_value: Callable[[str], Any],
    observe: Observer | None = None,
) -> None:
    """Check a batch of outcome rows against their client records, then stage them."""
    if not pending:
        return
    record = _table(ClientRecord)
    starts: dict[str, tuple[int, str]] = {}  # record_ref -> (client record id, start date)
    for refs in _in_batches([ref for _row, ref, _values in pending if ref is not None]):
        query = select(record.c.record_ref, record.c.id, record.c.start_date).where(record.c.record_ref.in_(refs))
        for ref, record_id, start in conn.execute(query):
            starts[ref] = (record_id, _iso(start))
    for row, ref, (end, *rest) in pending:
        known = starts.get(ref) if ref is not None else None
        if ref is not None and known is None:
            run.problem(row, "record_ref", f"unknown record_ref {ref!r}: no such client record in the store; "
                        "import client records first")  # fmt: skip
        if known is not None and end is not None and end < known[1]:
            run.problem(row, "end_date", f"end_date {end} is before the record's start_date {known[1]}")
        if run.problems or known is None:
            stage.add(row, ref, None)  # the file will be refused: keep checking, stage only the ref
            continue
        if observe is not None and end is not None and None not in rest:
            observe(row, {}, {"record_ref": ref, "end_date": end, **dict(zip(_OUTCOME_COLUMNS[2:], rest, strict=True))})
        stage.add(row, ref, (known[0], end_value(end), *rest))


def import_records(
    engine: Engine,
    *,
    kind: RecordKind,
    path: Path,
    sealer: PersonSealer | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> ImportSummary:
    """`import_client_records` or `import_outcomes` by kind (client records need the sealer);
    `options` are their keyword arguments (sheet, encoding, translator, dry_run, observe...)."""
    if kind == "client-records":
        if sealer is None:
            raise ValueError("client records are imported with the node's person sealer")
        return import_client_records(engine, path=path, sealer=sealer, progress=progress, **options)
    if kind == "outcomes":
        return import_outcomes(engine, path=path, progress=progress, **options)
    raise ValueError(f"kind must be client-records or outcomes: {kind!r}")

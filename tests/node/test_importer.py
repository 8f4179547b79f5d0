"""The CSV importer on each backend: good files land exactly, every bad file is refused with the file,
row and column named and nothing written, and a re-import changes nothing unless a row changed.

Row numbers are spreadsheet rows: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from node.imports.reading import Source
from node.imports.supply import BATCH, MAX_PROBLEMS, Kind, import_csv
from node.store import (
    ensure_authority,
    get_contract,
    get_provider,
    get_service,
    open_store,
    row_counts,
)
from shared.errors import ImportError_, NotFound

KENT = "E10000016"

PROVIDER_HEADER = ["provider_ref", "name", "national_provider_id", "charity_number", "company_number"]
PROVIDERS = [
    ["KCC-P0001", "Porchlight", "100109", "254109", ""],
    ["KCC-P0002", "Home Group Ltd", "100105", "", "02105105"],
    ["KCC-P0003", "Canterbury Women's Aid", "", "1012345", ""],
    ["KCC-P0004", "Thanet Council", "201234", "", ""],
]

SERVICE_HEADER = [
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
]
SERVICES = [
    ["KCC-S00001", "KCC-P0001", "Fairfield House hostel", "Canterbury", "accommodation-based", "7", "24", "", "", "no",
     "short"],
    ["KCC-S00002", "KCC-P0002", "Maidstone Mental Health Floating Support", "E07000110", "floating-support", "4", "60",
     "households", "138.5", "no", "short"],
    ["KCC-S00003", "KCC-P0003", "Women's Refuge A", "Canterbury", "accommodation-based", "14", "8", "bed-spaces", "",
     "yes", "short"],
    ["KCC-S00004", "KCC-P0004", "Thanet Community Alarm Service", "Thanet", "community-alarm", "1", "1850", "", "",
     "no", "long"],
]  # fmt: skip

CONTRACT_HEADER = ["contract_ref", "service_ref", "annual_value", "start_date", "end_date"]
CONTRACTS = [
    ["KCC-C00001", "KCC-S00001", "224640.00", "2005-04-01", "2008-03-31"],
    ["KCC-C00002", "KCC-S00002", "129636.00", "2006-04-01", "2009-03-31"],
    ["KCC-C00003", "KCC-S00003", "104000.00", "2004-04-01", "2007-03-31"],
    ["KCC-C00004", "KCC-S00004", "288600.00", "2007-04-01", "2011-03-31"],
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=KENT)
    try:
        yield engine
    finally:
        engine.dispose()


def write(
    path: Path,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    encoding: str = "utf-8",
    bom: bool = False,
    lineterminator: str = "\r\n",
) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=lineterminator)
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode(encoding)
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + data)
    return path


def load_all(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    import_csv(engine, kind="services", path=write(tmp_path / "services.csv", SERVICE_HEADER, SERVICES))
    import_csv(engine, kind="contracts", path=write(tmp_path / "contracts.csv", CONTRACT_HEADER, CONTRACTS))


def refused(engine: Engine, kind: Kind, path: Path) -> list[tuple[str, int | None, str | None, str]]:
    """Import a bad file; return its problems as (file, row, column, reason) and check nothing changed."""
    before = row_counts(engine)
    with pytest.raises(ImportError_) as caught:
        import_csv(engine, kind=kind, path=path)
    assert row_counts(engine) == before
    assert "nothing was written" in str(caught.value)
    return [(p.file, p.row, p.column, p.reason) for p in caught.value.problems]


def with_cell(
    rows: Sequence[Sequence[str]], header: Sequence[str], row: int, column: str, value: str
) -> list[list[str]]:
    """A copy of `rows` with one cell changed; `row` counts data rows from 0."""
    copy = [list(r) for r in rows]
    copy[row][list(header).index(column)] = value
    return copy


# --- good files ----------------------------------------------------------------------------------


def test_a_good_set_of_files_lands_exactly(engine: Engine, tmp_path: Path) -> None:
    load_all(engine, tmp_path)

    assert row_counts(engine) == {"provider": 4, "service": 4, "contract": 4}
    porchlight = get_provider(engine, provider_ref="KCC-P0001")
    assert porchlight is not None
    assert (porchlight.name, porchlight.charity_number, porchlight.company_number) == ("Porchlight", "254109", None)
    refuge = get_service(engine, service_ref="KCC-S00003")
    assert refuge is not None
    assert (refuge.district_code, refuge.client_group, refuge.units, refuge.designated) == ("E07000106", 14, 8, True)
    assert (refuge.unit_type, refuge.term, refuge.contracted_hours) == ("bed-spaces", "short", None)
    floating = get_service(engine, service_ref="KCC-S00002")
    assert floating is not None and floating.contracted_hours == 138.5
    alarm = get_service(engine, service_ref="KCC-S00004")
    assert alarm is not None and alarm.unit_type == "dwellings"  # from the service type when left blank
    contract = get_contract(engine, contract_ref="KCC-C00004")
    assert contract is not None
    assert contract.annual_value == Decimal("288600.00")
    assert (contract.start_date, contract.end_date) == (date(2007, 4, 1), date(2011, 3, 31))


def test_cells_are_read_the_way_spreadsheets_write_them(engine: Engine, tmp_path: Path) -> None:
    header = ["Provider Ref ", " NAME", "charity_number", "company_number"]  # no national_provider_id column
    rows = [["KCC-P0009", "  Sanctuary Housing Association ", " 254 107 ", "2107107"]]
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", header, rows))
    import_csv(engine, kind="providers", path=write(tmp_path / "p.csv", PROVIDER_HEADER, PROVIDERS))
    services = [
        ["KCC-S00009", "KCC-P0009", "Tonbridge floating support", "tonbridge & malling", "Floating Support", "1",
         "1,200", "", "2400", "YES", "Short"],
    ]  # fmt: skip
    import_csv(engine, kind="services", path=write(tmp_path / "services.csv", SERVICE_HEADER, services))
    contracts = [["KCC-C00009", "KCC-S00009", "£1,996,800.50", "2006-04-01", "2006-04-01"]]
    import_csv(engine, kind="contracts", path=write(tmp_path / "contracts.csv", CONTRACT_HEADER, contracts))

    provider = get_provider(engine, provider_ref="KCC-P0009")
    assert provider is not None
    assert (provider.name, provider.charity_number, provider.company_number, provider.national_provider_id) == (
        "Sanctuary Housing Association",
        "254107",
        "02107107",  # the leading zero a spreadsheet dropped is put back
        None,
    )
    service = get_service(engine, service_ref="KCC-S00009")
    assert service is not None
    assert (service.district_code, service.service_type, service.units, service.designated, service.term) == (
        "E07000115",
        "floating-support",
        1200,
        True,
        "short",
    )
    contract = get_contract(engine, contract_ref="KCC-C00009")
    assert contract is not None and contract.annual_value == Decimal("1996800.50")


def test_an_excel_byte_order_mark_and_crlf_are_accepted(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS, bom=True, lineterminator="\r\n")
    summary = import_csv(engine, kind="providers", path=path)
    assert (summary.rows, summary.inserted) == (4, 4)
    assert get_provider(engine, provider_ref="KCC-P0001") is not None  # the first column is named right


def test_reimporting_the_same_files_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    load_all(engine, tmp_path)
    before = _snapshot(engine)

    for kind in ("providers", "services", "contracts"):
        summary = import_csv(engine, kind=kind, path=tmp_path / f"{kind}.csv")
        assert (summary.rows, summary.inserted, summary.updated, summary.unchanged) == (4, 0, 0, 4)
    assert _snapshot(engine) == before  # same ids, same values, same timestamps


def test_a_changed_row_is_updated_in_place(engine: Engine, tmp_path: Path) -> None:
    load_all(engine, tmp_path)
    before = get_service(engine, service_ref="KCC-S00002")
    changed = with_cell(SERVICES, SERVICE_HEADER, 1, "units", "75")
    changed = with_cell(changed, SERVICE_HEADER, 1, "contracted_hours", "170")

    summary = import_csv(engine, kind="services", path=write(tmp_path / "services.csv", SERVICE_HEADER, changed))

    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 1, 3)
    after = get_service(engine, service_ref="KCC-S00002")
    assert before is not None and after is not None
    assert (after.id, after.units, after.contracted_hours) == (before.id, 75, 170.0)
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert row_counts(engine)["service"] == 4


def test_rows_missing_from_a_file_are_left_alone(engine: Engine, tmp_path: Path) -> None:
    load_all(engine, tmp_path)
    new = [["KCC-P0005", "Kenward Trust", "", "1050505", ""]]
    summary = import_csv(engine, kind="providers", path=write(tmp_path / "more.csv", PROVIDER_HEADER, new))
    assert (summary.rows, summary.inserted) == (1, 1)
    assert row_counts(engine)["provider"] == 5


def test_a_contract_value_equal_in_pounds_is_not_a_change(engine: Engine, tmp_path: Path) -> None:
    load_all(engine, tmp_path)
    same = with_cell(CONTRACTS, CONTRACT_HEADER, 0, "annual_value", "224640")
    summary = import_csv(engine, kind="contracts", path=write(tmp_path / "c.csv", CONTRACT_HEADER, same))
    assert summary.updated == 0


def test_progress_is_reported_from_zero_to_the_exact_row_count(engine: Engine, tmp_path: Path) -> None:
    rows = [[f"KCC-P{i:05d}", f"Provider {i}", "", "", ""] for i in range(BATCH * 2 + 10)]
    calls: list[tuple[int, int]] = []
    summary = import_csv(
        engine,
        kind="providers",
        path=write(tmp_path / "providers.csv", PROVIDER_HEADER, rows),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert summary.inserted == len(rows)
    assert calls[0] == (0, len(rows))
    assert calls[-1] == (len(rows), len(rows))
    assert (BATCH, len(rows)) in calls and (BATCH * 2, len(rows)) in calls
    done = [d for d, _ in calls]
    assert done == sorted(done)


# --- refused files: the file, row and column named, and nothing written --------------------------


def test_a_missing_column_is_named(engine: Engine, tmp_path: Path) -> None:
    header = [c for c in SERVICE_HEADER if c != "term"]
    rows = [r[:-1] for r in SERVICES]
    problems = refused(engine, "services", write(tmp_path / "services.csv", header, rows))
    assert problems == [("services.csv", 1, "term", "missing column: the header must name it")]


def test_an_unknown_or_repeated_column_is_refused(engine: Engine, tmp_path: Path) -> None:
    header = ["provider_ref", "name", "charity_no", "name"]
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", header, [["P1", "A", "1", "A"]]))
    assert [(row, column) for _, row, column, _ in problems] == [(1, "charity_no"), (1, "name")]
    assert "unknown column" in problems[0][3] and "charity_number" in problems[0][3]
    assert problems[1][3] == "column appears twice in the header"


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("units", "twelve", "not a whole number: 'twelve'"),
        ("units", "12.5", "not a whole number: '12.5'"),
        ("units", "-3", "units must be 0 or more, not -3"),
        ("units", "9" * 20, "a number of 20 digits is far too large"),  # was an OverflowError at insert
        ("units", "100,001", "100,001 units is more than any service has (at most 100,000)"),
        ("contracted_hours", "20000.5", "20000.5 contracted hours a week is more than any service has"),
        ("client_group", "22", "22 is not an SP client group code: codes are 1 to 21"),
        ("client_group", "0", "0 is not an SP client group code: codes are 1 to 21"),
        ("client_group", "older people", "not a whole number: 'older people'"),
        ("service_type", "sheltered", "'sheltered' is not a service type; use one of: accommodation-based, "),
        ("district", "Hastings", "'Hastings' is not a district of Kent; use one of: Ashford, Canterbury, "),
        ("district", "E06000035", "'E06000035' is not a district of Kent"),
        ("provider_ref", "KCC-P0999", "unknown provider_ref 'KCC-P0999': no such provider in the store"),
        ("designated", "maybe", "'maybe' is not yes or no; use true/false, yes/no or 1/0"),
        ("term", "medium", "'medium' is not a term; use short (28 days to 2 years) or long (over 2 years)"),
        ("unit_type", "dwellings", "a accommodation-based service counts bed-spaces, not dwellings"),
        ("unit_type", "flats", "'flats' is not a unit type"),
        ("name", "", "empty; a value is required"),
        ("name", "x" * 201, "longer than 200 characters (201)"),
    ],
)
def test_a_bad_service_cell_is_named_by_row_and_column(
    engine: Engine, tmp_path: Path, column: str, value: str, reason: str
) -> None:
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    rows = with_cell(SERVICES, SERVICE_HEADER, 2, column, value)  # the third data row: spreadsheet row 4

    problems = refused(engine, "services", write(tmp_path / "services.csv", SERVICE_HEADER, rows))

    assert len(problems) == 1, problems
    file, row, named, text = problems[0]
    assert (file, row, named) == ("services.csv", 4, column)
    assert text.startswith(reason)


def test_floating_support_needs_its_contracted_hours(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    rows = with_cell(SERVICES, SERVICE_HEADER, 1, "contracted_hours", "")
    rows = with_cell(rows, SERVICE_HEADER, 0, "contracted_hours", "0")
    problems = refused(engine, "services", write(tmp_path / "services.csv", SERVICE_HEADER, rows))
    assert problems == [
        ("services.csv", 2, "contracted_hours", "contracted hours must be more than 0, not 0"),
        (
            "services.csv",
            3,
            "contracted_hours",
            "a floating-support service needs its contracted hours a week (more than 0)",
        ),
    ]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("start_date", "03/31/2006", "not a real date: '03/31/2006'"),  # dd/mm/yyyy, never a US date
        (
            "start_date",
            "31.03.2006",
            "not a date in a format this import reads (yyyy-mm-dd, dd/mm/yyyy, d-mmm-yy, d-mmm-yyyy, excel-serial): "
            "'31.03.2006'",
        ),
        ("start_date", "2006-02-30", "not a real date: '2006-02-30'"),
        ("end_date", "0207-03-31", "year 207 is out of range (1990 to 2100): '0207-03-31'"),
        ("end_date", "2005-03-31", "end_date 2005-03-31 is before start_date 2005-04-01"),
        ("annual_value", "-5000.00", "annual value must not be negative: -5000.00"),
        ("annual_value", "1200.505", "not an amount in pounds with at most 2 decimal places: '1200.505'"),
        ("annual_value", "1.2e5", "not an amount in pounds with at most 2 decimal places: '1.2e5'"),
        (
            "annual_value",
            "£250,000,000",
            "an annual value of £250,000,000 is more than any SP contract (at most £100,000,000)",
        ),
        (
            "service_ref",
            "KCC-S09999",
            "unknown service_ref 'KCC-S09999': no such service in the store; import services first",
        ),
    ],
)
def test_a_bad_contract_cell_is_named_by_row_and_column(
    engine: Engine, tmp_path: Path, column: str, value: str, reason: str
) -> None:
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    import_csv(engine, kind="services", path=write(tmp_path / "services.csv", SERVICE_HEADER, SERVICES))
    rows = with_cell(CONTRACTS, CONTRACT_HEADER, 0, column, value)

    problems = refused(engine, "contracts", write(tmp_path / "contracts.csv", CONTRACT_HEADER, rows))

    assert problems == [("contracts.csv", 2, column, reason)]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("charity_number", "12345", "not a registered charity number (6 or 7 digits, e.g. 1083475): '12345'"),
        ("company_number", "N/A", "not a Companies House number (8 digits, or 2 letters and 6 digits): 'N/A'"),
        ("national_provider_id", "x" * 33, "longer than 32 characters (33)"),
        ("provider_ref", "", "empty; a value is required"),
    ],
)
def test_a_bad_provider_cell_is_named_by_row_and_column(
    engine: Engine, tmp_path: Path, column: str, value: str, reason: str
) -> None:
    rows = with_cell(PROVIDERS, PROVIDER_HEADER, 3, column, value)
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", PROVIDER_HEADER, rows))
    assert problems == [("providers.csv", 5, column, reason)]


def test_a_duplicate_key_names_both_rows(engine: Engine, tmp_path: Path) -> None:
    rows = [*PROVIDERS, ["KCC-P0002", "Home Group Limited", "", "", "2105105"]]
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", PROVIDER_HEADER, rows))
    assert problems == [("providers.csv", 6, "provider_ref", "duplicate provider_ref 'KCC-P0002': already on row 3")]


def test_every_problem_in_a_file_is_reported_at_once(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    rows = with_cell(SERVICES, SERVICE_HEADER, 0, "client_group", "22")
    rows = with_cell(rows, SERVICE_HEADER, 0, "units", "-1")
    rows = with_cell(rows, SERVICE_HEADER, 3, "service_type", "lifeline")
    rows.append(list(rows[1]))  # a duplicate of row 3, on row 6

    problems = refused(engine, "services", write(tmp_path / "services.csv", SERVICE_HEADER, rows))

    assert [(row, column) for _, row, column, _ in problems] == [
        (2, "client_group"),
        (2, "units"),
        (5, "service_type"),
        (6, "service_ref"),
    ]


def test_a_bad_row_after_a_written_batch_still_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    template = SERVICES[0]
    rows = [[f"KCC-S{i:05d}", *template[1:]] for i in range(BATCH + 500)]
    rows.append([f"KCC-S{BATCH + 500:05d}", *template[1:5], "22", *template[6:]])

    problems = refused(engine, "services", write(tmp_path / "services.csv", SERVICE_HEADER, rows))

    reason = "22 is not an SP client group code: codes are 1 to 21"
    assert problems == [("services.csv", BATCH + 502, "client_group", reason)]
    assert row_counts(engine)["service"] == 0


def test_a_refused_update_leaves_the_stored_rows_as_they_were(engine: Engine, tmp_path: Path) -> None:
    load_all(engine, tmp_path)
    before = _snapshot(engine)
    rows = with_cell(SERVICES, SERVICE_HEADER, 0, "units", "30")  # a good change...
    rows = with_cell(rows, SERVICE_HEADER, 3, "term", "forever")  # ...and a bad row after it
    refused(engine, "services", write(tmp_path / "services.csv", SERVICE_HEADER, rows))
    assert _snapshot(engine) == before


def test_problems_stop_at_the_cap(engine: Engine, tmp_path: Path) -> None:
    rows = [[f"KCC-P{i:04d}", f"Provider {i}", "", "bad", ""] for i in range(MAX_PROBLEMS + 50)]
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", PROVIDER_HEADER, rows))
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == (
        "providers.csv",
        MAX_PROBLEMS + 2,
        None,
        f"stopped reading after {MAX_PROBLEMS} problems; fix these and import again",
    )


def test_an_empty_file_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "providers.csv"
    path.write_bytes(b"")
    problems = refused(engine, "providers", path)
    assert problems == [
        (
            "providers.csv",
            None,
            None,
            "the file is empty: expected a header row naming provider_ref, name, national_provider_id, "
            "charity_number, company_number",
        )
    ]


def test_a_header_without_rows_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "contracts.csv", CONTRACT_HEADER, [], bom=True)
    problems = refused(engine, "contracts", path)
    assert problems == [("contracts.csv", None, None, "no data rows: the file has a header and nothing else")]


def test_a_windows_1252_file_is_read_as_such_and_says_so(engine: Engine, tmp_path: Path) -> None:
    # Excel's plain "CSV" on an English Windows is Windows-1252: é is the single byte 0xE9, £ is 0xA3.
    rows = [*PROVIDERS[:2], ["KCC-P0003", "Café Project", "", "1012345", ""], PROVIDERS[3]]
    path = write(tmp_path / "providers.csv", PROVIDER_HEADER, rows, encoding="cp1252")
    offset = path.read_bytes().index(b"\xe9")
    read: list[Source] = []

    assert import_csv(engine, kind="providers", path=path, source=read).inserted == 4

    assert read[0].encoding_note == (
        f"read as Windows-1252: the file is not UTF-8 (byte 0xE9 at byte offset {offset}) and has no UTF-8 text"
    )
    with engine.connect() as conn:
        assert "Café Project" in conn.execute(text("SELECT name FROM provider")).scalars().all()


def test_a_file_of_two_encodings_is_refused_naming_the_byte(engine: Engine, tmp_path: Path) -> None:
    rows = [*PROVIDERS[:2], ["KCC-P0003", "Café Project", "", "1012345", ""], PROVIDERS[3]]
    path = write(tmp_path / "providers.csv", PROVIDER_HEADER, rows)  # UTF-8: é is 0xC3 0xA9
    data = path.read_bytes() + "KCC-P0009,Crèche Trust,,1012346,\r\n".encode("cp1252")
    path.write_bytes(data)
    offset = data.index(b"\xe8")

    problems = refused(engine, "providers", path)

    assert problems == [
        (
            "providers.csv",
            None,
            None,
            f"mixed encodings: the file holds UTF-8 text and also byte 0xE8 at byte offset {offset}, which is not "
            "UTF-8; save the whole file as CSV UTF-8",
        )
    ]
    with pytest.raises(ImportError_) as caught:
        import_csv(engine, kind="providers", path=path, encoding="utf-8")
    assert caught.value.problems[0].reason.startswith(f"not UTF-8: byte 0xE8 at byte offset {offset}")


def test_row_numbers_count_records_and_blank_rows(engine: Engine, tmp_path: Path) -> None:
    rows = [
        ["KCC-P0001", "Porchlight\n(Kent)", "", "", ""],  # one record on two lines; a name may not break
        ["", "", "", "", ""],  # a blank row: skipped, but it is row 3 all the same
        ["KCC-P0002", "Home Group Ltd", "", "", "not-a-number"],
    ]
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", PROVIDER_HEADER, rows))
    assert [(row, column) for _, row, column, _ in problems] == [(2, "name"), (4, "company_number")]
    assert problems[0][3] == "contains a control character: 'Porchlight\\n(Kent)'"


def test_unnamed_empty_columns_are_ignored_but_must_stay_empty(engine: Engine, tmp_path: Path) -> None:
    header = [*PROVIDER_HEADER, "", ""]
    good = [[*row, "", ""] for row in PROVIDERS]
    summary = import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", header, good))
    assert summary.inserted == 4

    bad = [*good, ["KCC-P0005", "Kenward Trust", "", "", "", "", "see notes"]]
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", header, bad))
    assert problems == [("providers.csv", 6, None, "cell 7 holds 'see notes' but its column has no name in the header")]


def test_a_row_with_the_wrong_number_of_cells_is_refused(engine: Engine, tmp_path: Path) -> None:
    rows = [PROVIDERS[0], PROVIDERS[1][:3], [*PROVIDERS[2], "extra"]]
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", PROVIDER_HEADER, rows))
    assert problems == [
        ("providers.csv", 3, None, "row has 3 cells but the header has 5"),
        ("providers.csv", 4, None, "row has 6 cells but the header has 5"),
    ]


def test_malformed_csv_is_refused_at_its_row(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "providers.csv"
    path.write_text('provider_ref,name\nKCC-P0001,Porchlight\nKCC-P0002,"Home Group" Ltd\n', encoding="utf-8")
    problems = refused(engine, "providers", path)
    assert [(row, column) for _, row, column, _ in problems] == [(3, None)]
    assert problems[0][3].startswith("not valid CSV")


def test_a_missing_file_is_refused(engine: Engine, tmp_path: Path) -> None:
    problems = refused(engine, "providers", tmp_path / "nowhere.csv")
    assert problems == [("nowhere.csv", None, None, "cannot read the file: No such file or directory")]


def test_a_store_without_its_authority_cannot_import(database_url: str, tmp_path: Path) -> None:
    engine = open_store(database_url)
    try:
        with pytest.raises(NotFound):
            import_csv(engine, kind="providers", path=write(tmp_path / "p.csv", PROVIDER_HEADER, PROVIDERS))
    finally:
        engine.dispose()


def _snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every stored row, ids and timestamps included."""
    with engine.connect() as conn:
        return {
            name: [tuple(row) for row in conn.execute(select(SQLModel.metadata.tables[name]).order_by(text("id")))]
            for name in ("provider", "service", "contract")
        }


def test_a_provider_with_no_identity_at_all_is_refused(engine: Engine, tmp_path: Path) -> None:
    rows = [*PROVIDERS, ["KCC-P0099", "* * *", "", "", ""]]
    problems = refused(engine, "providers", write(tmp_path / "providers.csv", PROVIDER_HEADER, rows))
    assert len(problems) == 1 and problems[0][:3] == ("providers.csv", 6, "name")
    assert "no identity" in problems[0][3]
    # The same name with a charity number is a provider cagnet can key.
    import_csv(
        engine,
        kind="providers",
        path=write(tmp_path / "ok.csv", PROVIDER_HEADER, [["KCC-P0099", "* * *", "", "1149085", ""]]),
    )


def test_a_contract_for_a_service_with_no_units_is_refused(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    services = with_cell(SERVICES, SERVICE_HEADER, 0, "units", "0")
    import_csv(engine, kind="services", path=write(tmp_path / "services.csv", SERVICE_HEADER, services))
    empty = services[0][0]
    path = write(tmp_path / "contracts.csv", CONTRACT_HEADER, CONTRACTS)
    problems = refused(engine, "contracts", path)
    rows_for_empty = [i + 2 for i, r in enumerate(CONTRACTS) if r[1] == empty]
    assert rows_for_empty
    assert problems == [
        (
            "contracts.csv",
            row,
            "service_ref",
            f"service {empty!r} has 0 units: a contract needs a service with at least one unit",
        )
        for row in rows_for_empty
    ]

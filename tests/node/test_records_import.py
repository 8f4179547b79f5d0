"""The client-record and outcome importer on each backend: good files land exactly, the person fields
are nowhere in the database, every bad file is refused with the row and column named and nothing
written, and a re-import changes nothing unless a row changed.

Row numbers are spreadsheet rows: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import codecs
import csv
import io
import secrets
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from node.answers.movement import origin_of
from node.client_records import ClientRecord, Outcome, PersonSealer, person_hash
from node.imports.records import COLUMNS, MAX_PROBLEMS, import_client_records, import_outcomes
from node.imports.supply import ImportSummary
from node.store import add_provider, add_service, ensure_authority, open_store
from shared.authorities import shipped_register
from shared.errors import ImportError_
from shared.vocabulary import ServiceType, Term

KENT = "E10000016"
TODAY = date(2010, 6, 30)  # the latest start, end or birth date these files may hold

RECORD_HEADER = list(COLUMNS["client-records"].all)
OUTCOME_HEADER = list(COLUMNS["outcomes"].all)
# A surname and a date of birth that appear nowhere else, so that finding them anywhere in the
# database would mean a person field was stored.
SURNAME, DOB = "Featherstonehaugh", "1971-02-13"
RECORDS = [
    ["KCC-CR1", "KCC-S1", "2009-05-04", "14", "16;4", "25-34", "female", "A", "not-seeking-work", "police",
     "private-rented", "E06000035", SURNAME, "J", DOB],
    ["KCC-CR2", "KCC-S2", "2008-11-20", "7", "", "35-44", "male", "White: Irish", "jobseeker", "housing-department",
     "rough-sleeping", "e07000110", "Smith", "P", "1968-07-01"],
    ["KCC-CR3", "KCC-S2", "2009-12-01", "7", "", "18-24", "male", "N", "jobseeker", "self", "hostel", "unknown",
     "Okafor", "D", "1989-03-30"],
    ["KCC-CR4", "KCC-S1", "2010-01-15", "14", "", "45-54", "female", "Z", "part-time-work", "self",
     "council-tenant", "", "Brown", "A", "1960-12-24"],
]  # fmt: skip
OUTCOMES = [
    ["KCC-CR1", "2009-08-01", "planned", "achieved", "not-applicable", "identified", "achieved", "not-applicable"],
    ["KCC-CR2", "2009-01-31", "unplanned", "identified", "identified", "not-applicable", "achieved", "identified"],
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=KENT)
    add_provider(engine, provider_ref="KCC-P1", name="Canterbury Women's Aid")
    for ref, name, group, units in (("KCC-S1", "Women's Refuge A", 14, 8), ("KCC-S2", "Fairfield House hostel", 7, 24)):
        add_service(
            engine,
            service_ref=ref,
            provider_ref="KCC-P1",
            name=name,
            district_code="E07000106",
            service_type=ServiceType.ACCOMMODATION_BASED,
            client_group=group,
            units=units,
            term=Term.SHORT,
        )
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sealer() -> PersonSealer:
    return PersonSealer(secrets.token_bytes(64))


def write(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], *, bom: bool = False) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + buffer.getvalue().encode())
    return path


def with_cell(
    rows: Sequence[Sequence[str]], header: Sequence[str], row: int, column: str, value: str
) -> list[list[str]]:
    """A copy of `rows` with one cell changed; `row` counts data rows from 0."""
    copy = [list(r) for r in rows]
    copy[row][list(header).index(column)] = value
    return copy


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        records, outcomes = (
            conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (ClientRecord.__table__, Outcome.__table__)  # type: ignore[attr-defined]
        )
    return records, outcomes


def import_records(
    engine: Engine, tmp_path: Path, sealer: PersonSealer, rows: Sequence[Sequence[str]] = RECORDS
) -> ImportSummary:
    return import_client_records(
        engine, path=write(tmp_path / "client-records.csv", RECORD_HEADER, rows), sealer=sealer, today=TODAY
    )


def refused_records(engine: Engine, path: Path, sealer: PersonSealer) -> list[tuple[int | None, str | None, str]]:
    before = counts(engine)
    with pytest.raises(ImportError_) as caught:
        import_client_records(engine, path=path, sealer=sealer, today=TODAY)
    assert counts(engine) == before
    assert all(p.file == path.name for p in caught.value.problems)
    return [(p.row, p.column, p.reason) for p in caught.value.problems]


def refused_outcomes(engine: Engine, path: Path) -> list[tuple[int | None, str | None, str]]:
    before = counts(engine)
    with pytest.raises(ImportError_) as caught:
        import_outcomes(engine, path=path, today=TODAY)
    assert counts(engine) == before
    return [(p.row, p.column, p.reason) for p in caught.value.problems]


def stored_records(engine: Engine) -> dict[str, ClientRecord]:
    with engine.connect() as conn:
        rows = conn.execute(select(ClientRecord.__table__)).mappings().all()  # type: ignore[attr-defined]
    return {row["record_ref"]: ClientRecord.model_validate(dict(row)) for row in rows}


# --- good files ----------------------------------------------------------------------------------


def test_good_files_land_exactly(engine: Engine, tmp_path: Path, sealer: PersonSealer) -> None:
    progress: list[tuple[int, int]] = []
    summary = import_client_records(
        engine,
        path=write(tmp_path / "client-records.csv", RECORD_HEADER, RECORDS, bom=True),
        sealer=sealer,
        today=TODAY,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert (summary.rows, summary.inserted, summary.updated) == (4, 4, 0)
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)

    records = stored_records(engine)
    first = records["KCC-CR1"]
    assert (first.start_date, first.client_group, first.secondary_groups) == (date(2009, 5, 4), 14, "4,16")
    assert (first.age_band, first.sex, first.ethnicity, first.previous_authority) == (
        "25-34",
        "female",
        "A",
        "E06000035",
    )
    assert first.person == sealer.seal(
        person_hash(surname=SURNAME, first_initial="J", date_of_birth=date.fromisoformat(DOB), sex="female")
    )
    assert records["KCC-CR2"].ethnicity == "B"  # the description, read as its letter code
    assert records["KCC-CR2"].previous_authority == "E07000110"  # a Kent district, as written
    assert records["KCC-CR3"].previous_authority is None  # "unknown"
    assert records["KCC-CR4"].previous_authority is None  # blank

    summary = import_outcomes(engine, path=write(tmp_path / "outcomes.csv", OUTCOME_HEADER, OUTCOMES), today=TODAY)
    assert (summary.rows, summary.inserted, summary.updated) == (2, 2, 0)
    with engine.connect() as conn:
        outcomes = conn.execute(select(Outcome.__table__)).mappings().all()  # type: ignore[attr-defined]
    by_record = {row["client_record_id"]: row for row in outcomes}
    refuge_exit = by_record[first.id]
    assert (refuge_exit["end_date"], refuge_exit["departure"], refuge_exit["economic_wellbeing"]) == (
        date(2009, 8, 1),
        "planned",
        "achieved",
    )
    assert by_record[records["KCC-CR2"].id]["departure"] == "unplanned"


def test_the_person_fields_are_nowhere_in_the_database(
    engine: Engine, tmp_path: Path, sealer: PersonSealer, database_url: str
) -> None:
    import_records(engine, tmp_path, sealer)
    unsealed = person_hash(surname=SURNAME, first_initial="J", date_of_birth=date.fromisoformat(DOB), sex="female")
    needles_text = (SURNAME.lower(), DOB, "13/02/1971")
    needles_bytes = tuple(n.encode() for n in needles_text)

    def holds_a_person_field(value: bytes) -> bool:
        return any(n in value.lower() for n in needles_bytes) or unsealed in value

    seen = 0
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    seen += 1
                    if isinstance(value, str):
                        assert not any(n in value.lower() for n in needles_text), (table.name, value)
                    elif isinstance(value, bytes | memoryview):
                        assert not holds_a_person_field(bytes(value)), table.name
    assert seen > 0
    if database_url.startswith("sqlite"):
        # Not even in the file's pages or its write-ahead log.
        engine.dispose()
        path = Path(database_url.removeprefix("sqlite:///"))
        files = list(path.parent.glob(path.name + "*"))
        assert files
        for file in files:
            assert not holds_a_person_field(file.read_bytes()), file.name


def test_a_reimport_changes_nothing_and_a_changed_row_is_updated(
    engine: Engine, tmp_path: Path, sealer: PersonSealer
) -> None:
    import_records(engine, tmp_path, sealer)
    outcomes = write(tmp_path / "outcomes.csv", OUTCOME_HEADER, OUTCOMES)
    import_outcomes(engine, path=outcomes, today=TODAY)
    before = stored_records(engine)

    again = import_records(engine, tmp_path, sealer)
    assert (again.rows, again.inserted, again.updated, again.unchanged) == (4, 0, 0, 4)
    again = import_outcomes(engine, path=outcomes, today=TODAY)
    assert (again.rows, again.inserted, again.updated) == (2, 0, 0)
    assert stored_records(engine) == before

    changed = with_cell(RECORDS, RECORD_HEADER, 2, "ethnicity", "C")
    summary = import_records(engine, tmp_path, sealer, changed)
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 1, 3)
    assert stored_records(engine)["KCC-CR3"].ethnicity == "C"
    assert stored_records(engine)["KCC-CR3"].id == before["KCC-CR3"].id
    changed = with_cell(OUTCOMES, OUTCOME_HEADER, 1, "stay_safe", "identified")
    summary = import_outcomes(engine, path=write(tmp_path / "outcomes.csv", OUTCOME_HEADER, changed), today=TODAY)
    assert (summary.inserted, summary.updated) == (0, 1)


def test_the_same_person_gets_the_same_sealed_value_here_and_another_under_another_key(
    engine: Engine, tmp_path: Path, sealer: PersonSealer
) -> None:
    # The same person as exported by two systems: case, spacing and punctuation differ.
    rows = [
        with_cell(RECORDS, RECORD_HEADER, 0, "surname", "O'Brien")[0],
        with_cell(with_cell(RECORDS, RECORD_HEADER, 0, "surname", " obrien")[:1], RECORD_HEADER, 0, "record_ref",
                  "KCC-CR9")[0],
        RECORDS[1],
    ]  # fmt: skip
    import_records(engine, tmp_path, sealer, rows)
    records = stored_records(engine)
    assert records["KCC-CR1"].person == records["KCC-CR9"].person
    assert records["KCC-CR1"].person != records["KCC-CR2"].person
    other_node = PersonSealer(secrets.token_bytes(64))
    expected = person_hash(surname="O'Brien", first_initial="J", date_of_birth=date.fromisoformat(DOB), sex="female")
    assert records["KCC-CR1"].person == sealer.seal(expected) != other_node.seal(expected)
    assert sealer.unseal(records["KCC-CR9"].person) == expected


def test_vocabulary_forgives_case_spaces_and_underscores(engine: Engine, tmp_path: Path, sealer: PersonSealer) -> None:
    row = list(RECORDS[0])
    for column, value in (
        ("economic_status", "Not Seeking_Work"),
        ("referral_source", "POLICE"),
        ("accommodation_before", "private rented"),
        ("sex", "F"),
        ("ethnicity", "white:   british"),
        ("secondary_groups", "4, 16"),
    ):
        row[RECORD_HEADER.index(column)] = value
    import_records(engine, tmp_path, sealer, [row])
    record = stored_records(engine)["KCC-CR1"]
    assert (record.economic_status, record.referral_source, record.accommodation_before) == (
        "not-seeking-work",
        "police",
        "private-rented",
    )
    assert (record.sex, record.ethnicity, record.secondary_groups) == ("female", "A", "4,16")
    outcome = ["KCC-CR1", "2009-08-01", " Planned ", "Not Applicable", "not_applicable", "ACHIEVED", "Identified",
               "achieved"]  # fmt: skip
    import_outcomes(engine, path=write(tmp_path / "outcomes.csv", OUTCOME_HEADER, [outcome]), today=TODAY)
    with engine.connect() as conn:
        stored = conn.execute(select(Outcome.__table__)).mappings().one()  # type: ignore[attr-defined]
    assert (stored["departure"], stored["economic_wellbeing"], stored["enjoy_and_achieve"]) == (
        "planned",
        "not-applicable",
        "not-applicable",
    )


# --- bad files: each problem named, nothing written ----------------------------------------------


BAD_RECORDS = [  # (data row from 0, column, bad value, what the reason must say)
    (1, "previous_authority", "E06000099", "'E06000099' is not the GSS code of an English upper-tier authority"),
    (0, "client_group", "0", "0 is not an SP client group code: codes are 1 to 21"),
    (3, "client_group", "22", "22 is not an SP client group code: codes are 1 to 21"),
    (2, "start_date", "2010-07-01", "2010-07-01 is in the future (today is 2010-06-30)"),
    (2, "start_date", "12/31/2009", "not a real date: '12/31/2009'"),  # dd/mm/yyyy, never a US date
    (2, "start_date", "2009/12/01", "not a date in a format this import reads (yyyy-mm-dd, dd/mm/yyyy"),
    (1, "age_band", "adult", "'adult' is not an SP age band or an age in years; use one of: 16-17, 18-24"),
    (1, "age_band", "12", "an age of 12 is outside the SP age bands (16 to 120)"),
    (1, "ethnicity", "Martian", "'Martian' is not a 2001 census ethnic category"),
    (0, "secondary_groups", "4;14", "client group 14 is the primary group; list it once"),
    (0, "secondary_groups", "4;30", "secondary group 30 is not an SP client group code"),
    (1, "service_ref", "KCC-S9", "unknown service_ref 'KCC-S9': no such service in the store"),
    (1, "date_of_birth", "2009-01-01", "date of birth 2009-01-01 is after start_date 2008-11-20"),
    (3, "surname", "..", "surname has no letters: '..'"),
    (3, "first_initial", "..", "first_initial has no letters: '..'"),
    (3, "first_initial", "=A1", "begins with '=', so a spreadsheet would run it as a formula"),
]


def test_each_bad_client_record_is_named_and_nothing_is_written(
    engine: Engine, tmp_path: Path, sealer: PersonSealer
) -> None:
    # One store for every case: each refusal must leave it as empty as it found it.
    wrong = []
    for row, column, value, reason in BAD_RECORDS:
        path = write(
            tmp_path / "client-records.csv", RECORD_HEADER, with_cell(RECORDS, RECORD_HEADER, row, column, value)
        )
        problems = refused_records(engine, path, sealer)
        if len(problems) != 1 or problems[0][:2] != (row + 2, column) or reason not in problems[0][2]:
            wrong.append((column, value, problems))
    assert not wrong


def test_duplicate_record_refs_are_refused(engine: Engine, tmp_path: Path, sealer: PersonSealer) -> None:
    rows = with_cell(RECORDS, RECORD_HEADER, 3, "record_ref", "KCC-CR2")
    path = write(tmp_path / "client-records.csv", RECORD_HEADER, rows)
    assert refused_records(engine, path, sealer) == [
        (5, "record_ref", "duplicate record_ref 'KCC-CR2': already on row 3")
    ]


def test_an_unknown_column_is_refused(engine: Engine, tmp_path: Path, sealer: PersonSealer) -> None:
    path = write(tmp_path / "client-records.csv", [*RECORD_HEADER, "national_insurance"], [[*r, ""] for r in RECORDS])
    [(row, column, reason)] = refused_records(engine, path, sealer)
    assert (row, column) == (1, "national_insurance")
    assert reason.startswith("unknown column")


def test_every_problem_is_listed_up_to_the_limit(engine: Engine, tmp_path: Path, sealer: PersonSealer) -> None:
    rows = [with_cell(RECORDS, RECORD_HEADER, 0, "record_ref", f"R{i}")[0] for i in range(MAX_PROBLEMS + 20)]
    rows = [[*r[:3], "0", *r[4:]] for r in rows]
    problems = refused_records(engine, write(tmp_path / "client-records.csv", RECORD_HEADER, rows), sealer)
    assert len(problems) == MAX_PROBLEMS + 1
    assert [p[0] for p in problems[:3]] == [2, 3, 4]
    assert problems[-1][2].startswith(f"stopped reading after {MAX_PROBLEMS} problems")


BAD_OUTCOMES = [  # (data row from 0, column, bad value, what the reason must say)
    (1, "record_ref", "KCC-CR7", "unknown record_ref 'KCC-CR7': no such client record in the store"),
    (0, "end_date", "2009-05-03", "end_date 2009-05-03 is before the record's start_date 2009-05-04"),
    (0, "end_date", "2010-07-01", "2010-07-01 is in the future"),
    (1, "departure", "evicted", "'evicted' is not a departure; use one of: planned, unplanned"),
    (1, "be_healthy", "maybe", "'maybe' is not an outcome need; use one of: identified, achieved, not-applicable"),
    (1, "record_ref", "KCC-CR1", "duplicate record_ref 'KCC-CR1': a client record has one outcome"),
]


def test_each_bad_outcome_is_named_and_nothing_is_written(engine: Engine, tmp_path: Path, sealer: PersonSealer) -> None:
    import_records(engine, tmp_path, sealer)
    wrong = []
    for row, column, value, reason in BAD_OUTCOMES:
        path = write(tmp_path / "outcomes.csv", OUTCOME_HEADER, with_cell(OUTCOMES, OUTCOME_HEADER, row, column, value))
        problems = refused_outcomes(engine, path)
        if len(problems) != 1 or problems[0][:2] != (row + 2, column) or reason not in problems[0][2]:
            wrong.append((column, value, problems))
    assert not wrong


def test_a_district_the_network_s_register_adds_is_a_known_origin(
    engine: Engine, tmp_path: Path, sealer: PersonSealer
) -> None:
    # Carlisle: Cumbria's districts are not in the shipped list, so only a corrected register knows it.
    corrected = shipped_register().corrected("E10000006", districts={"E07000028": "Carlisle"})
    path = write(
        tmp_path / "client-records.csv",
        RECORD_HEADER,
        with_cell(RECORDS, RECORD_HEADER, 0, "previous_authority", "E07000028"),
    )
    assert [reason for _, column, reason in refused_records(engine, path, sealer) if column == "previous_authority"]
    summary = import_client_records(engine, path=path, sealer=sealer, today=TODAY, register=corrected)
    assert summary.inserted == len(RECORDS)
    assert stored_records(engine)["KCC-CR1"].previous_authority == "E07000028"
    # Movement reads it as Cumbria, or as its region, with the same register.
    assert origin_of("E07000028", frozenset({"E10000006"}), corrected) == "E10000006"
    assert origin_of("E07000028", frozenset(), corrected) == "E12000002"  # North West

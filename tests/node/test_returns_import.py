"""The quarterly returns importers (KPI 1 and occupancy) on each backend: good files land exactly
(CSV and a filled-in template workbook), every bad file is refused with the file, row and column
named and nothing written, and a re-import changes nothing unless a return was revised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from node.imports.check import check_import
from node.imports.mapping import Translator, load_profile
from node.imports.returns import import_returns
from node.imports.supply import import_csv
from node.imports.template import quarter_choices, write_template
from node.returns import Kpi1Return, OccupancyReturn, parse_quarter
from node.store import Service, ensure_authority, open_store
from shared.errors import ImportError_
from tests.node.test_importer import KENT, PROVIDER_HEADER, PROVIDERS, SERVICE_HEADER, write

TODAY = date(2010, 6, 30)

SERVICES = [
    ["KCC-S00001", "KCC-P0001", "Fairfield House hostel", "Canterbury", "accommodation-based", "7", "24", "", "", "no",
     "short"],
    ["KCC-S00002", "KCC-P0002", "Ashford Court sheltered housing", "Ashford", "accommodation-based", "1", "40", "", "",
     "no", "long"],
    ["KCC-S00003", "KCC-P0003", "Women's Refuge A", "Canterbury", "accommodation-based", "14", "8", "bed-spaces", "",
     "yes", "short"],
    ["KCC-S00004", "KCC-P0004", "Thanet Community Alarm Service", "Thanet", "community-alarm", "1", "1850", "", "",
     "no", "long"],
]  # fmt: skip

KPI1_HEADER = ["service_ref", "quarter", "service_users", "maintaining"]
KPI1 = [
    ["KCC-S00002", "2009-10 Q1", "41", "40"],
    ["KCC-S00002", "2009-10 Q2", "42", "40"],
    ["KCC-S00004", "2009/10 Q1", "1,811", "1790"],
    ["KCC-S00004", "Q2 2009-10", "1820", "1801"],
]
OCCUPANCY_HEADER = ["service_ref", "quarter", "units_occupied", "voids", "waiting_list", "referrals_refused"]
OCCUPANCY = [
    ["KCC-S00001", "2009-10 Q1", "22", "2", "9", "4"],
    ["KCC-S00002", "2009-10 Q1", "38", "1", "15", "0"],
    ["KCC-S00003", "2009-10 Q1", "7", "1", "0", "12"],
]
TABLES = ("kpi1_return", "occupancy_return")


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=KENT)
    import_csv(engine, kind="providers", path=write(tmp_path / "providers.csv", PROVIDER_HEADER, PROVIDERS))
    import_csv(engine, kind="services", path=write(tmp_path / "services.csv", SERVICE_HEADER, SERVICES))
    try:
        yield engine
    finally:
        engine.dispose()


def stored(engine: Engine, table: str) -> list[tuple[object, ...]]:
    model = Kpi1Return if table == "kpi1_return" else OccupancyReturn
    returns, service = model.__table__, Service.__table__  # type: ignore[attr-defined]
    figures = [c for c in returns.c if c.name not in ("id", "service_id", "quarter_start", "created_at", "updated_at")]
    query = (
        select(service.c.service_ref, returns.c.quarter_start, *figures)
        .join(service, service.c.id == returns.c.service_id)
        .order_by(service.c.service_ref, returns.c.quarter_start)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def fingerprint(engine: Engine) -> str:
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in TABLES:
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id")):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def refused(engine: Engine, kind: str, path: Path) -> list[tuple[str, int | None, str | None, str]]:
    before = fingerprint(engine)
    with pytest.raises(ImportError_) as caught:
        import_returns(engine, kind=kind, path=path, today=TODAY)
    assert fingerprint(engine) == before
    assert "nothing was written" in str(caught.value)
    return [(p.file, p.row, p.column, p.reason) for p in caught.value.problems]


def changed(rows: Sequence[Sequence[str]], header: Sequence[str], row: int, column: str, value: str) -> list[list[str]]:
    copy = [list(r) for r in rows]
    copy[row][list(header).index(column)] = value
    return copy


def test_good_returns_land_exactly_and_a_reimport_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    kpi1 = write(tmp_path / "kpi1.csv", KPI1_HEADER, KPI1)
    summary = import_returns(engine, kind="kpi1-returns", path=kpi1, today=TODAY)
    assert (summary.rows, summary.inserted, summary.updated) == (4, 4, 0)
    assert stored(engine, "kpi1_return") == [
        ("KCC-S00002", date(2009, 4, 1), 41, 40),
        ("KCC-S00002", date(2009, 7, 1), 42, 40),
        ("KCC-S00004", date(2009, 4, 1), 1811, 1790),
        ("KCC-S00004", date(2009, 7, 1), 1820, 1801),
    ]
    occupancy = write(tmp_path / "occupancy.csv", OCCUPANCY_HEADER, OCCUPANCY)
    summary = import_returns(engine, kind="occupancy-returns", path=occupancy, today=TODAY)
    assert (summary.rows, summary.inserted, summary.updated) == (3, 3, 0)
    assert stored(engine, "occupancy_return")[0] == ("KCC-S00001", date(2009, 4, 1), 22, 2, 9, 4)

    again = import_returns(engine, kind="kpi1-returns", path=kpi1, today=TODAY)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    revised = write(tmp_path / "kpi1-revised.csv", KPI1_HEADER, changed(KPI1, KPI1_HEADER, 1, "maintaining", "39"))
    summary = import_returns(engine, kind="kpi1-returns", path=revised, today=TODAY)
    assert (summary.inserted, summary.updated) == (0, 1)
    assert stored(engine, "kpi1_return")[1] == ("KCC-S00002", date(2009, 7, 1), 42, 39)


@pytest.mark.parametrize(
    ("kind", "header", "rows", "row", "column", "value", "reason"),
    [
        ("kpi1-returns", KPI1_HEADER, KPI1, 0, "service_ref", "KCC-S09999", "unknown service_ref"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 1, "quarter", "2009 Q5", "not a quarter"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 1, "quarter", "2009-11 Q1", "April to March"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 1, "quarter", "2010-11 Q2", "has not begun"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 2, "maintaining", "1812", "more than the 1,811 service users"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 0, "service_users", "121", "more than 3 for each"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 0, "service_users", "-4", "0 or more"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 0, "service_ref", "KCC-S00001", "short-term"),
        ("kpi1-returns", KPI1_HEADER, KPI1, 3, "maintaining", "=1+1", "formula"),
        ("occupancy-returns", OCCUPANCY_HEADER, OCCUPANCY, 0, "units_occupied", "25", "more than the service's 24"),
        ("occupancy-returns", OCCUPANCY_HEADER, OCCUPANCY, 2, "voids", "2", "make more than the service's 8"),
        ("occupancy-returns", OCCUPANCY_HEADER, OCCUPANCY, 1, "waiting_list", "100001", "at most 100,000"),
        ("occupancy-returns", OCCUPANCY_HEADER, OCCUPANCY, 1, "referrals_refused", "lots", "not a whole number"),
    ],
)
def test_a_bad_cell_is_refused_by_file_row_and_column(
    engine: Engine,
    tmp_path: Path,
    kind: str,
    header: list[str],
    rows: list[list[str]],
    row: int,
    column: str,
    value: str,
    reason: str,
) -> None:
    # The good rows of the same file would land: a refusal writes none of them.
    path = write(tmp_path / f"{kind}.csv", header, changed(rows, header, row, column, value))
    problems = refused(engine, kind, path)
    assert len(problems) == 1, problems
    file, at, named, why = problems[0]
    assert (file, at, named) == (f"{kind}.csv", row + 2, column)
    assert reason in why


def test_a_second_return_for_the_same_quarter_is_refused_however_written(engine: Engine, tmp_path: Path) -> None:
    rows = [*KPI1, ["KCC-S00002", "Q1 2009/10", "41", "40"]]
    problems = refused(engine, "kpi1-returns", write(tmp_path / "kpi1.csv", KPI1_HEADER, rows))
    assert [(p[1], p[2]) for p in problems] == [(6, "quarter")]
    assert "already on row 2" in problems[0][3]


def test_a_missing_column_and_a_file_of_nothing_are_refused(engine: Engine, tmp_path: Path) -> None:
    short = write(tmp_path / "kpi1.csv", KPI1_HEADER[:3], [r[:3] for r in KPI1])
    assert [(p[1], p[2]) for p in refused(engine, "kpi1-returns", short)] == [(1, "maintaining")]
    empty = write(tmp_path / "occupancy.csv", OCCUPANCY_HEADER, [])
    assert [p[3] for p in refused(engine, "occupancy-returns", empty)] == [
        "no data rows: the file has a header and nothing else"
    ]


def test_a_dry_run_previews_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "occupancy.csv", OCCUPANCY_HEADER, OCCUPANCY)
    check = check_import(engine, kind="occupancy-returns", path=path, dry_run=True, today=TODAY)
    assert check.ok and check.summary is not None and check.summary.inserted == 3
    assert check.preview[0] == {
        "row": 2,
        "service_ref": "KCC-S00001",
        "quarter": "2009-10 Q1",
        "units_occupied": 22,
        "voids": 2,
        "waiting_list": 9,
        "referrals_refused": 4,
    }
    assert stored(engine, "occupancy_return") == []


def test_a_mapping_profile_renames_the_source_systems_columns(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "profile.toml").write_text(
        '[columns]\n"Service ID" = "service_ref"\n"Return Period" = "quarter"\n"Users" = "service_users"\n'
        '"Maintained Independence" = "maintaining"\n',
        encoding="utf-8",
    )
    translator = Translator(load_profile(tmp_path / "profile.toml"), today=TODAY)
    path = write(tmp_path / "export.csv", ["Service ID", "Return Period", "Users", "Maintained Independence"], KPI1)
    summary = import_returns(engine, kind="kpi1-returns", path=path, translator=translator, today=TODAY)
    assert summary.inserted == 4


def test_the_filled_in_template_imports_as_it_is(engine: Engine, tmp_path: Path) -> None:
    for kind, rows in (("kpi1-returns", KPI1), ("occupancy-returns", OCCUPANCY)):
        out = tmp_path / f"{kind}.xlsx"
        write_template(kind, out)
        book = load_workbook(out)
        sheet = book[kind]
        for r, values in enumerate(rows, start=3):
            for c, value in enumerate(values, start=1):
                sheet.cell(row=r, column=c, value=int(value.replace(",", "")) if c > 2 else value)
        book.save(out)
        summary = import_returns(engine, kind=kind, path=out, today=TODAY)
        assert summary.inserted == len(rows), kind
    assert len(stored(engine, "kpi1_return")) == 4 and len(stored(engine, "occupancy_return")) == 3


def test_the_template_offers_every_quarter_to_the_running_one() -> None:
    offered = quarter_choices(TODAY)
    assert offered[0] == ("2010-11 Q1", "April to June 2010") and offered[-1] == ("2003-04 Q1", "April to June 2003")
    assert len(offered) == 4 * 7 + 1
    assert all(parse_quarter(label) for label, _ in offered)  # the importer reads each as it is offered

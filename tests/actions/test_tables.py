"""A verified result as typed tables, and as CSV and Excel: read from a bundle saved by an older
cagnet (tests/data/golden, verified offline first); numbers stay numbers, a suppressed figure is
`*` and never zero, and no cell of a written file runs as a formula."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import openpyxl
import pytest

from cagnet.actions.tables import ResultTable, bundle_notes, chart_series, result_tables, tables_csv, tables_xlsx
from cagnet.console.charts import bar_chart
from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.bundle import Bundle, verify_saved_bundle

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"


@pytest.fixture
def supply(tmp_path: Path) -> Bundle:
    golden = Path(shutil.copytree(GOLDEN, tmp_path / "golden"))
    envelope, _ = bundle_mod.load(golden / "supply-map.bundle.json")
    bundle, _ = verify_saved_bundle(envelope, [m for m, _ in network.history(golden / "network")])
    return bundle


def _table(tables: list[ResultTable], title: str) -> ResultTable:
    return next(t for t in tables if t.title == title)


def test_a_supply_map_is_tables_of_typed_cells_with_their_period(supply: Bundle) -> None:
    tables = result_tables(supply)
    assert [t.title for t in tables] == [
        "supply-map: summary",
        "supply-map: authorities",
        "supply-map: client groups",
        "supply-map: service types",
    ]
    assert all(t.period.startswith("as at ") for t in tables)
    authorities = _table(tables, "supply-map: authorities")
    assert authorities.columns[:2] == ["authority", "authority name"]
    units = [row[authorities.columns.index("units")] for row in authorities.rows]
    assert sum(units) == supply.result.units and all(isinstance(u, int) for u in units)
    summary = dict(_table(tables, "supply-map: summary").rows)
    assert summary["designated services"] is None  # withheld in this bundle: None, shown as *, never 0
    groups = _table(tables, "supply-map: client groups")
    assert "units Kent" in groups.columns and "client group name" in groups.columns


def test_csv_and_excel_hold_every_table_with_numbers_as_numbers(supply: Bundle) -> None:
    tables, notes = result_tables(supply), bundle_notes(supply)
    rows = list(csv.reader(io.StringIO(tables_csv(tables, notes))))
    assert ["#", "policy digest", supply.policy_digest] in rows
    assert ["designated services", "*"] in rows
    book = openpyxl.load_workbook(io.BytesIO(tables_xlsx(tables, notes)))
    assert book.sheetnames == ["notes", "summary", "authorities", "client groups", "service types"]
    sheet = book["authorities"]
    assert sheet["A2"].value.startswith("as at ")
    header = [c.value for c in sheet[3]]
    body = list(sheet.iter_rows(min_row=4, values_only=True))
    assert sum(r[header.index("units")] for r in body) == supply.result.units


def test_no_cell_runs_as_a_formula() -> None:
    table = ResultTable("providers", "on 2026-12-05", ["name", "units"], [['=HYPERLINK("http://x","y")', 12]])
    assert "\"'=HYPERLINK(" in tables_csv([table])
    sheet = openpyxl.load_workbook(io.BytesIO(tables_xlsx([table])))["providers"]
    assert sheet["A4"].value == '\'=HYPERLINK("http://x","y")' and sheet["B4"].value == 12


def test_the_chart_draws_the_telling_figure_and_never_a_suppressed_one_as_zero(supply: Bundle) -> None:
    table, column, points = chart_series(result_tables(supply)) or (None, "", [])
    assert table is not None and table.title == "supply-map: authorities" and column == "units"
    assert sorted(v for _, v in points) == sorted(float(a.units) for a in supply.result.authorities)
    svg = bar_chart("units", [("Kent", 10.0), ("Medway", None)])
    assert svg.count("<rect") == 1 and "* withheld" in svg

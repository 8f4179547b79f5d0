"""Bad input keeps its guarantees: mutated CSV files and workbooks (truncated rows and files, NUL
bytes, bytes of no encoding, huge fields, formula cells, duplicate references, a wrong sheet) either
import or are refused with problems that name the file and the place, never a traceback, and a
refused file leaves the store exactly as it was.

Bounded (max_examples) so that the suite stays quick; each mutation is also a plain example.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from node.client_records import PersonSealer
from node.imports.check import check_import
from node.imports.mapping import Translator, load_profile
from node.imports.supply import import_csv
from node.store import ensure_authority, open_store
from shared.authorities import shipped_register
from tests.node import council_exports as exports

TODAY = date(2010, 6, 30)
TABLES = ("provider", "service", "contract", "client_record", "outcome", "kpi1_return", "occupancy_return")
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Translator, Path]]:
    """One SQLite store with Kent's supply loaded from its exports; every example checks against it."""
    folder = tmp_path_factory.mktemp("fuzz")
    engine = open_store(f"sqlite:///{folder / 'node.db'}")
    ensure_authority(engine, authority_code=exports.KENT)
    (folder / "kent-sp.toml").write_text(exports.PROFILE, encoding="utf-8")
    translator = Translator(load_profile(folder / "kent-sp.toml"), register=shipped_register(), today=TODAY)
    for kind, export in (("providers", exports.providers()), ("services", exports.services())):
        import_csv(engine, kind=kind, path=export.csv(folder / f"{kind}.csv"), translator=translator)  # type: ignore[arg-type]
    try:
        yield engine, translator, folder
    finally:
        engine.dispose()


def fingerprint(engine: Engine) -> str:
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in TABLES:
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id")):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


SEALER = PersonSealer(secrets.token_bytes(64))


def attempt(engine: Engine, translator: Translator, path: Path, kind: str, sheet: str | None = None) -> None:
    """Import the file for real; whatever it holds, the result is an import or a refusal naming places."""
    before = fingerprint(engine)
    check = check_import(
        engine,
        kind=kind,
        path=path,
        dry_run=False,
        sealer=SEALER,
        translator=translator,
        sheet=sheet,
        today=TODAY,
    )
    if check.problems:
        assert fingerprint(engine) == before, "a refused file changed the store"
        for problem in check.problems:
            assert problem.file == path.name
            assert problem.reason and "Traceback" not in problem.reason
            # A problem with a row names a column or says what is wrong with the whole row.
            assert problem.row is None or problem.row >= 1
    else:
        assert check.summary is not None and check.summary.rows >= 1


def record_file(folder: Path) -> bytes:
    return exports.client_records(n=30).csv(folder / "base.csv").read_bytes()


# The mutations of a CSV file's bytes; each takes the bytes and a position (0-1) in the file.
def _truncate(data: bytes, at: float) -> bytes:
    return data[: int(len(data) * at)]


def _nul(data: bytes, at: float) -> bytes:
    i = int(len(data) * at)
    return data[:i] + b"\x00" + data[i:]


def _bad_byte(data: bytes, at: float) -> bytes:
    i = int(len(data) * at)
    return data[:i] + b"\x81\xff" + data[i:]


def _huge_field(data: bytes, at: float) -> bytes:
    lines = data.split(b"\r\n")
    if len(lines) < 3:  # an earlier mutation left no data row to change
        return data
    i = 1 + int((len(lines) - 2) * at)
    cells = lines[i].split(b",")
    cells[len(cells) // 2] = b"x" * 40_000
    lines[i] = b",".join(cells)
    return b"\r\n".join(lines)


def _formula(data: bytes, at: float) -> bytes:
    lines = data.split(b"\r\n")
    if len(lines) < 3:  # an earlier mutation left no data row to change
        return data
    i = 1 + int((len(lines) - 2) * at)
    cells = lines[i].split(b",")
    cells[int((len(cells) - 1) * at)] = b'"=HYPERLINK(""http://example.org/?"",""x"")"'
    lines[i] = b",".join(cells)
    return b"\r\n".join(lines)


def _short_row(data: bytes, at: float) -> bytes:
    lines = data.split(b"\r\n")
    if len(lines) < 3:  # an earlier mutation left no data row to change
        return data
    i = 1 + int((len(lines) - 2) * at)
    lines[i] = lines[i].rsplit(b",", 3)[0]
    return b"\r\n".join(lines)


def _duplicate(data: bytes, at: float) -> bytes:
    lines = data.split(b"\r\n")
    if len(lines) < 3:  # an earlier mutation left no data row to change
        return data
    i = 1 + int((len(lines) - 2) * at)
    return b"\r\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])


def _quote(data: bytes, at: float) -> bytes:
    i = int(len(data) * at)
    return data[:i] + b'"' + data[i:]


MUTATIONS = {
    f.__name__[1:]: f for f in (_truncate, _nul, _bad_byte, _huge_field, _formula, _short_row, _duplicate, _quote)
}


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(sorted(MUTATIONS)), st.floats(min_value=0, max_value=1)), min_size=1, max_size=3
    )
)
@example(mutations=[("nul", 0.5)])
@example(mutations=[("bad_byte", 0.3)])
@example(mutations=[("huge_field", 0.5)])
@example(mutations=[("formula", 0.5)])
@example(mutations=[("duplicate", 0.2)])
@example(mutations=[("short_row", 0.7)])
@example(mutations=[("truncate", 0.01)])
def test_a_mutated_csv_is_imported_or_refused_by_place(
    loaded: tuple[Engine, Translator, Path], mutations: list[tuple[str, float]]
) -> None:
    engine, translator, folder = loaded
    data = record_file(folder)
    for name, at in mutations:
        data = MUTATIONS[name](data, at)
    path = folder / "client-records.csv"
    path.write_bytes(data)
    attempt(engine, translator, path, "client-records")


def workbook(folder: Path, rows: int = 20) -> bytes:
    return exports.services(n=rows).xlsx(folder / "base.xlsx").read_bytes()


def _zip_with(data: bytes, edit: object) -> bytes:
    """A workbook with its first sheet's XML edited by `edit(xml) -> xml`."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.namelist():
            content = source.read(item)
            if item == "xl/worksheets/sheet1.xml":
                content = edit(content)  # type: ignore[operator]
            target.writestr(item, content)
    return out.getvalue()


@FUZZ
@given(
    kind=st.sampled_from(["truncate", "flip", "formula_text", "nul_text", "huge_text", "sheet_xml"]),
    at=st.floats(min_value=0, max_value=1),
    sheet=st.sampled_from([None, None, "Export", "Sheet2", "export"]),
)
@example(kind="truncate", at=0.5, sheet=None)
@example(kind="formula_text", at=0.5, sheet=None)
@example(kind="sheet_xml", at=0.4, sheet=None)
@example(kind="flip", at=0.9, sheet="Sheet2")
def test_a_mutated_workbook_is_imported_or_refused_by_place(
    loaded: tuple[Engine, Translator, Path], kind: str, at: float, sheet: str | None
) -> None:
    engine, translator, folder = loaded
    data = workbook(folder)
    if kind == "truncate":
        data = data[: int(len(data) * at)]
    elif kind == "flip":
        i = int((len(data) - 1) * at)
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
    elif kind == "sheet_xml":
        data = _zip_with(data, lambda xml: xml[: int(len(xml) * at)])
    elif kind == "nul_text":  # openpyxl will not write one: put it in the sheet's XML as another program might
        data = _zip_with(data, lambda xml: xml.replace(b"Hostel", b"Hos\x00tel" if at < 0.5 else b"Hos&#1;tel", 1))
    else:
        text = {
            "formula_text": "=cmd|' /C calc'!A0",
            "huge_text": "x" * 40_000,
        }[kind]
        export = exports.services(n=20)
        export.rows[int(19 * at)][2] = text
        data = export.xlsx(folder / "edited.xlsx").read_bytes()
    path = folder / "services.xlsx"
    path.write_bytes(data)
    attempt(engine, translator, path, "services", sheet)


# --- the quarterly returns (KPI 1 and occupancy) ---------------------------------------------------


def return_file(engine: Engine, folder: Path, kind: str) -> bytes:
    """A good file of returns for the loaded services: KPI 1 for the long-term ones, occupancy for all."""
    with engine.connect() as conn:
        services = conn.execute(text("SELECT service_ref, units, term FROM service ORDER BY service_ref")).all()
    lines = []
    for ref, units, term in services[:30]:
        if kind == "kpi1-returns" and term == "long":
            lines.append(f"{ref},2009-10 Q4,{units},{units * 19 // 20}")
        elif kind == "occupancy-returns":
            lines.append(f"{ref},2009-10 Q4,{units * 9 // 10},{units // 20},{units // 4},{units // 10}")
    header = (
        "service_ref,quarter,service_users,maintaining"
        if kind == "kpi1-returns"
        else ("service_ref,quarter,units_occupied,voids,waiting_list,referrals_refused")
    )
    return "\r\n".join([header, *lines, ""]).encode()


@FUZZ
@given(
    kind=st.sampled_from(["kpi1-returns", "occupancy-returns"]),
    mutations=st.lists(
        st.tuples(st.sampled_from(sorted(MUTATIONS)), st.floats(min_value=0, max_value=1)), min_size=1, max_size=3
    ),
)
@example(kind="occupancy-returns", mutations=[("formula", 0.5)])
@example(kind="kpi1-returns", mutations=[("duplicate", 0.2)])
@example(kind="occupancy-returns", mutations=[("huge_field", 0.5)])
@example(kind="kpi1-returns", mutations=[("bad_byte", 0.3)])
def test_a_mutated_return_is_imported_or_refused_by_place(
    loaded: tuple[Engine, Translator, Path], kind: str, mutations: list[tuple[str, float]]
) -> None:
    engine, translator, folder = loaded
    data = return_file(engine, folder, kind)
    assert data.count(b"\r\n") > 2, "the loaded supply has services to make returns for"
    for name, at in mutations:
        data = MUTATIONS[name](data, at)
    path = folder / f"{kind}.csv"
    path.write_bytes(data)
    attempt(engine, translator, path, kind)

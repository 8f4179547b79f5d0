"""Any joint result as plain tables of cells, for every output that is not the terminal's own
rendering: `cagnet query ... --format csv`, the console's pages, its CSV and XLSX downloads.

The tables are read from the result model itself (each list of rows a table, each dict of figures
a column per key, the single figures a summary), so a kind added to the registry is tabulated
without code here. Cells stay typed: numbers are numbers, a figure the policy suppressed or
withheld is None (shown as `*`), and authority codes and client groups get a name column beside
them so that a spreadsheet reader need not look them up.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cagnet.actions.labels import currency_lines, place_label, span_label, supply_map_day
from shared.spreadsheet import SafeWriter, safe_cell

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle

__all__ = [
    "SUPPRESSED",
    "ResultTable",
    "bundle_notes",
    "bundle_period",
    "chart_series",
    "model_tables",
    "result_tables",
    "tables_csv",
    "tables_xlsx",
]

SUPPRESSED = "*"  # how a suppressed or withheld figure is shown in text
_SKIPPED = frozenset({"kind", "result_version"})  # what the result is, not a figure
_PLACE_COLUMNS = frozenset({"authority", "host", "origin", "authorities", "answered", "hosts", "origins"})
# The columns a chart prefers to draw, most telling first; otherwise the first figure column.
_CHART_ROWS = 30
_CHART_PREFERENCE = ("units", "clients", "people", "net", "percent planned", "median", "imported count", "count")


@dataclass
class ResultTable:
    """One table of a result: a title, the period it covers, column names and typed rows."""

    title: str
    period: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def numeric(self, index: int) -> bool:
        """Whether a column holds figures (ints or floats, bools excluded), suppressed cells aside."""
        values = [r[index] for r in self.rows if r[index] is not None]
        return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _label(name: str) -> str:
    return name.replace("_", " ")


def place_name(code: str) -> str:
    """An authority, region or "outside" as a reader names it (the code itself if unknown)."""
    return place_label(code) if isinstance(code, str) and code else code


def _group_name(group: Any) -> str:
    from shared import vocabulary

    if not isinstance(group, int):
        return ""
    return "all client groups" if group == 0 else vocabulary.CLIENT_GROUPS.get(group, "")


def _scalar(value: Any) -> Any:
    """A cell: figures and text as they are, lists of plain values joined, other things as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return str(value)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """A row's model dump as flat columns: nested models and dicts become "outer inner" columns,
    a list of nested rows becomes one text cell."""
    if isinstance(value, dict):
        for key, inner in value.items():
            name = f"{prefix} {_key_label(key)}".strip()
            _flatten(name, inner, out)
    elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
        out[prefix] = "; ".join(", ".join(f"{_label(k)} {_text(v)}" for k, v in item.items()) for item in value)
    else:
        out[prefix] = _scalar(value)


def _key_label(key: Any) -> str:
    """A dict key as a column name: authority codes by their names, client groups by number."""
    text = str(key)
    if text[:1] == "E" and text[1:].isdigit():
        return place_name(text)
    return _label(text)


def _text(value: Any) -> str:
    return SUPPRESSED if value is None else str(value)


def _with_names(columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """A name column after each authority-code and client-group column."""
    extra: list[tuple[int, str, Any]] = []
    for i, column in enumerate(columns):
        last = column.rsplit(" ", 1)[-1]
        if last in _PLACE_COLUMNS and any(isinstance(r[i], str) and r[i][:1] == "E" for r in rows):
            extra.append((i, f"{column} name", place_name))
        elif column.endswith("client_group") or column.endswith("client group"):
            extra.append((i, f"{column} name", _group_name))
    for i, name, fn in reversed(extra):
        columns.insert(i + 1, name)
        for r in rows:
            r.insert(i + 1, fn(r[i]) if isinstance(r[i], str | int) else "")
    return columns, rows


def _rows_table(title: str, period: str, items: Iterable[dict[str, Any]], key_name: str = "") -> ResultTable:
    flat: list[dict[str, Any]] = []
    for item in items:
        row: dict[str, Any] = {}
        _flatten("", item, row)
        flat.append(row)
    columns: list[str] = []
    for row in flat:
        columns.extend(c for c in row if c not in columns)
    rows = [[row.get(c) for c in columns] for row in flat]
    named = [_label(c) or key_name for c in columns]
    named, rows = _with_names(named, rows)
    return ResultTable(title=title, period=period, columns=named, rows=rows)


def result_tables(bundle: Bundle) -> list[ResultTable]:
    """Every table of a verified bundle's result, each with the period it covers."""
    result = bundle.result
    assert isinstance(result, BaseModel)
    return model_tables(bundle.kind, result, bundle_period(bundle))


def model_tables(kind: str, model: BaseModel, period: str, *, skip: Iterable[str] = ()) -> list[ResultTable]:
    """Every table of a model of figures (a joint result, a feed snapshot), titled "kind: field"."""
    dumped = model.model_dump(mode="python", exclude=set(skip) or None)
    tables: list[ResultTable] = []
    summary: list[list[Any]] = []
    for name, value in dumped.items():
        if name in _SKIPPED:
            continue
        title = f"{kind}: {_label(name)}"
        if isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
            tables.append(_rows_table(title, period, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            # keyed rows ("group|period" -> tally): the key as the first column
            tables.append(_rows_table(title, period, ({"key": k, **v} for k, v in value.items())))
        elif isinstance(value, dict) and value:
            rows = [[_key_label(k) if not str(k).isdigit() else int(k), _scalar(v)] for k, v in value.items()]
            key = "client group" if all(isinstance(r[0], int) for r in rows) else "key"
            columns, rows = _with_names([key, _label(name)], rows)
            tables.append(ResultTable(title=title, period=period, columns=columns, rows=rows))
        elif isinstance(value, dict | list | tuple) and not value:
            continue
        else:
            shown = value
            if name in _PLACE_COLUMNS and isinstance(value, list | tuple):
                shown = ", ".join(place_name(v) for v in value)
            summary.append([_label(name), _scalar(shown)])
    if summary:
        tables.insert(
            0, ResultTable(title=f"{kind}: summary", period=period, columns=["figure", "value"], rows=summary)
        )
    return tables


def bundle_period(bundle: Bundle) -> str:
    """The period a result covers, as a reader says it: the records' span, or the day a supply
    map describes, or the day the question was answered."""
    from shared.kinds.registry import KINDS

    spec = KINDS.get(bundle.kind)
    if spec is not None and spec.about_records:
        return span_label(bundle)
    if bundle.kind == "supply-map":
        return f"as at {supply_map_day(bundle) or bundle.created_at[:10]}"
    return f"on {bundle.created_at[:10]}"


def bundle_notes(bundle: Bundle) -> list[tuple[str, str]]:
    """What a reader needs beside the figures: the network, the question, the policy, who answered
    and who did not (with why), and each authority's records currency."""
    notes = [
        ("network", bundle.network),
        ("question", bundle.kind),
        ("period", bundle_period(bundle)),
        ("answered at", bundle.created_at),
        ("manifest version", str(bundle.manifest_version)),
        ("policy digest", bundle.policy_digest),
        ("answered", ", ".join(place_name(a) for a in bundle.answered) or "none"),
    ]
    notes.extend(("missing", f"{place_name(m.authority)}: {m.reason}") for m in bundle.missing)
    notes.extend(("records currency", line) for line in currency_lines(bundle.currency))
    notes.append(
        (
            SUPPRESSED,
            "a figure suppressed or withheld under the network policy (a small number, or one that would let a"
            " small number be worked out)",
        )
    )
    return notes


def _cells(row: Sequence[Any]) -> list[Any]:
    return [SUPPRESSED if v is None else v for v in row]


def tables_csv(tables: Sequence[ResultTable], notes: Sequence[tuple[str, str]] = ()) -> str:
    """The tables as one CSV text: each table's title and period on a line of their own, then its
    header and rows, a blank line between tables; every cell escaped against formulas."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer, lineterminator="\r\n")
    for key, value in notes:
        writer.writerow(["#", key, value])
    if notes:
        writer.writerow([])
    for i, table in enumerate(tables):
        if i:
            writer.writerow([])
        writer.writerow([table.title, table.period])
        writer.writerow(table.columns)
        writer.writerows(_cells(r) for r in table.rows)
    return buffer.getvalue()


def _sheet_title(title: str, used: set[str]) -> str:
    """A worksheet name Excel accepts: at most 31 characters, none of []:*?/\\, unique."""
    name = "".join(" " if c in "[]:*?/\\" else c for c in title.split(": ", 1)[-1])[:28].strip() or "table"
    base, n = name, 2
    while name.lower() in used:
        name = f"{base[:25]} {n}"
        n += 1
    used.add(name.lower())
    return name


def tables_xlsx(tables: Sequence[ResultTable], notes: Sequence[tuple[str, str]] = ()) -> bytes:
    """The tables as an Excel workbook: a notes sheet first (what the figures are, what `*` means),
    then a sheet per table with its title and period above the header; numbers stay numbers, and
    text is escaped so that nothing in a cell runs as a formula."""
    # openpyxl is imported here, not at the top: `cagnet --help` must not pay for it.
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    about = book.active
    assert about is not None
    about.title = "notes"
    about.append(["about these figures"])
    about["A1"].font = Font(bold=True)
    for key, value in notes:
        about.append([safe_cell(key), safe_cell(value)])
    about.column_dimensions["A"].width = 20
    about.column_dimensions["B"].width = 100
    used = {"notes"}
    for table in tables:
        sheet = book.create_sheet(_sheet_title(table.title, used))
        sheet.append([safe_cell(table.title)])
        sheet["A1"].font = Font(bold=True)
        sheet.append([safe_cell(table.period)])
        sheet.append([safe_cell(c) for c in table.columns])
        for cell in sheet[3]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append([safe_cell(v) for v in _cells(row)])
        for i, column in enumerate(table.columns, start=1):
            width = max([len(column), *(len(str(r[i - 1])) for r in table.rows[:200])])
            sheet.column_dimensions[sheet.cell(row=3, column=i).column_letter].width = min(60, max(8, width + 2))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _charted_rows(table: ResultTable) -> list[list[Any]]:
    """The rows a chart draws: where a table breaks figures down by client group, only the rows
    for every client group together (one bar per authority, not one per authority and group)."""
    if "client group" in table.columns:
        index = table.columns.index("client group")
        whole = [r for r in table.rows if r[index] == 0]
        if whole:
            return whole
    return table.rows


def _labels(table: ResultTable, rows: list[list[Any]]) -> list[str] | None:
    """Each charted row's label: its name columns that differ from row to row, joined ("Medway",
    "Kent → Medway"); else its first text column. None when the table has no text to label with."""
    text = [i for i in range(len(table.columns)) if not table.numeric(i)]
    named = [i for i in text if table.columns[i].endswith("name") and len({str(r[i]) for r in rows}) > 1]
    chosen = named or text[:1]
    if not chosen:
        return None
    return [" → ".join(str(r[i]) for i in chosen) for r in rows]


def chart_series(tables: Sequence[ResultTable]) -> tuple[ResultTable, str, list[tuple[str, float | None]]] | None:
    """What a simple bar chart of a result draws: a table, one of its figure columns, and
    (label, value) pairs; the preferred figure first (units, clients, people...), else the first
    figure column of the first table with labels; a table broken down by client group is drawn
    for all groups together. None when the result has no figures to draw."""
    candidates: list[tuple[int, int, ResultTable, int, list[list[Any]], list[str]]] = []
    for order, table in enumerate(tables):
        if table.columns == ["figure", "value"] or len(table.rows) < 2:
            continue
        rows = _charted_rows(table)
        labels = _labels(table, rows)
        if labels is None:
            continue
        for i, column in enumerate(table.columns):
            if not table.numeric(i) or "client group" in column or column in ("population", "row", "seq"):
                continue
            rank = next((n for n, p in enumerate(_CHART_PREFERENCE) if column == p), len(_CHART_PREFERENCE))
            if len(rows) > _CHART_ROWS:  # a long list of rows makes a poor chart: last resort
                rank += len(_CHART_PREFERENCE) + 1
            candidates.append((rank, order, table, i, rows, labels))
    if not candidates:
        return None
    _, _, table, index, rows, labels = min(candidates, key=lambda c: (c[0], c[1]))
    points = [
        (label, None if r[index] is None else float(r[index]))
        for label, r in zip(labels[:_CHART_ROWS], rows[:_CHART_ROWS], strict=True)
    ]
    return table, table.columns[index], points

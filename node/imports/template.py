"""An Excel template for one kind of import file: the columns, a notes row, and drop-down lists.

The first sheet is the one to fill in: row 1 names the columns exactly as the importer reads them,
row 2 says what each holds (the importer skips it: it is the workbook's defined name
`cagnet_notes_row`), and every column with a fixed list of values offers it as an Excel
drop-down, from a second sheet "Lists" (client groups by name with their codes, service types,
unit types, terms, this authority's districts, and the quarters of the quarterly returns). The
filled-in workbook imports as it is.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from node.imports.fields import fields_of
from node.imports.mapping import fold, place_codes
from node.imports.reading import NOTES_ROW_NAME
from node.returns import quarter_end, quarter_label, quarter_of
from shared.authorities import Authority, Register
from shared.spreadsheet import safe_cell

__all__ = ["TEMPLATE_ROWS", "quarter_choices", "write_template"]

TEMPLATE_ROWS = 5000
"""Rows the drop-downs cover below the notes row (Excel extends them as rows are inserted)."""


def _choices(name: str, authority: Authority | None, register: Register | None) -> list[tuple[str, str]]:
    """(what the drop-down offers, what it means) for a column; the importer accepts each."""
    from node.imports.fields import FIELDS

    if name == "client_group":
        return [(meaning, code) for code, meaning in FIELDS[name].values]  # names: clearer than codes
    if name == "quarter":
        return quarter_choices()
    if name == "district":
        if authority is None:
            return []
        return [(d.name, d.code) for d in authority.districts]
    if name == "previous_authority":
        if register is None:
            return []
        known = place_codes(register)  # names that say one place; the rest are written as codes
        places = {(a.name, a.code) for a in register.authorities.values()}
        places |= {(d.name, d.code) for a in register.authorities.values() for d in a.listed_districts}
        return sorted((name, code) for name, code in places if fold(name) in known)
    return list(FIELDS[name].values)


FIRST_QUARTER = date(2003, 4, 1)  # Supporting People began in April 2003


def quarter_choices(today: date | None = None) -> list[tuple[str, str]]:
    """Every financial-year quarter from Supporting People's first to the one running now, newest
    first, each with the months it covers."""
    choices = []
    start = quarter_of(today or date.today())
    while start >= FIRST_QUARTER:
        end = quarter_end(start)
        choices.append((quarter_label(start), f"{start:%B} to {end:%B %Y}"))
        start = quarter_of(date.fromordinal(start.toordinal() - 1))
    return choices


def write_template(
    kind: str, out: Path, *, authority: Authority | None = None, register: Register | None = None
) -> None:
    """Write the template workbook for `kind` to `out` (.xlsx)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter, quote_sheetname
    from openpyxl.workbook.defined_name import DefinedName
    from openpyxl.worksheet.datavalidation import DataValidation

    fields = fields_of(kind)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = kind
    lists = book.create_sheet("Lists")
    bold, notes_font = Font(bold=True), Font(italic=True, color="595959")
    fill = PatternFill("solid", fgColor="F2F2F2")
    list_column = 0
    for index, (field, required) in enumerate(fields, start=1):
        letter = get_column_letter(index)
        header = sheet.cell(row=1, column=index, value=field.name)
        header.font = bold
        note = ("required: " if required else "optional: ") + field.about
        cell = sheet.cell(row=2, column=index, value=safe_cell(note))
        cell.font, cell.fill = notes_font, fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        sheet.column_dimensions[letter].width = max(14, min(40, len(field.name) + 6))
        choices = _choices(field.name, authority, register)
        if not choices:
            continue
        list_column += 1
        list_letter = get_column_letter(list_column)
        lists.cell(row=1, column=list_column, value=field.name).font = bold
        for row, (value, meaning) in enumerate(choices, start=2):
            lists.cell(row=row, column=list_column, value=safe_cell(value))
            if meaning:
                lists.cell(row=row, column=list_column + 1, value=safe_cell(meaning))
        list_column += 1  # the meanings' column
        # The OOXML formula is written without its leading "=" (Excel adds it when it shows it).
        source = f"{quote_sheetname('Lists')}!${list_letter}$2:${list_letter}${len(choices) + 1}"
        validation = DataValidation(
            type="list",
            formula1=source,
            allow_blank=not required,
            showErrorMessage=True,
            errorTitle=field.name,
            error=f"Choose a value from the list ({field.name}); see the sheet Lists.",
        )
        validation.add(f"{letter}3:{letter}{TEMPLATE_ROWS + 2}")
        sheet.add_data_validation(validation)
    sheet.row_dimensions[2].height = 60
    sheet.freeze_panes = "A3"
    book.defined_names[NOTES_ROW_NAME] = DefinedName(NOTES_ROW_NAME, attr_text=f"{quote_sheetname(kind)}!$2:$2")
    book.save(out)

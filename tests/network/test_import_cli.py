"""An SP team's first import, as it runs the commands: a template, a suggested mapping profile for
its SP system's export, a dry run, a refused file with its error report, then the real imports."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
from sqlalchemy import text
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.demo import join_founding_member
from coordinator import network
from node.config import load_config
from node.store import open_store
from tests.node import council_exports as exports


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return " ".join(result.output.split())  # rich wraps lines at the terminal's width


def test_a_first_import_from_a_council_export(tmp_path: Path) -> None:
    netdir, nodedir = tmp_path / "network", tmp_path / "kent"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    join_founding_member(netdir, nodedir, authority=exports.KENT, endpoint="127.0.0.1:0", linkage_key=None)
    node = str(nodedir)

    _run("node", "template", "services", "--out", str(tmp_path / "template.xlsx"), "--node", node)
    template = openpyxl.load_workbook(tmp_path / "template.xlsx")
    assert template.sheetnames == ["services", "Lists"]

    services = exports.services().xlsx(tmp_path / "services.xlsx")
    suggested = _run("node", "mapping", "suggest", str(services), "--node", node, "--out", str(nodedir / "s.toml"))
    assert "read as services" in suggested
    profile = (nodedir / "s.toml").read_text(encoding="utf-8")
    assert '"Service ID" = "service_ref"' in profile and '"District" = "district"' in profile
    assert '# "Sheltered Housing" = ""  # FILL IN' in profile  # no close match: the officer decides

    (nodedir / "kent-sp.toml").write_text(exports.PROFILE, encoding="utf-8")
    export = exports.providers()
    export.rows[2][1] = "Café Project"  # Excel's plain "CSV" writes é as the one byte 0xE9
    providers = export.csv(tmp_path / "providers.csv", encoding="cp1252")
    out = _run("node", "import", node, "providers", str(providers), "--mapping", "kent-sp.toml")
    assert "read as Windows-1252" in out and "imported providers: 6 rows, 6 inserted" in out

    out = _run("node", "import", node, "services", str(services), "--mapping", "kent-sp.toml", "--dry-run")
    assert "checked services: 12 rows would be 12 new, 0 updated, 0 unchanged; nothing was written" in out
    assert "│ service_type │ Sheltered Housing │ accommodation-based │" in out
    engine = open_store(load_config(nodedir).database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM service")).scalar() == 0

    # One row with two mistakes: the dry run names both, not the first alone.
    twice = exports.services()
    twice.rows[4][2] = "@SUM(A1:A9)"  # formula-like text in the name
    twice.rows[4][6] = 10**19  # a 20-digit units
    report = tmp_path / "twice-errors.csv"
    out = _run("node", "import", node, "services", str(twice.csv(tmp_path / "twice.csv")), "--mapping", "kent-sp.toml",
               "--dry-run", "--errors", str(report), code=1)  # fmt: skip
    assert "(2 problems)" in out and "nothing was written" in out
    with report.open(encoding="utf-8-sig", newline="") as f:
        both = [(r["file"], r["row"], r["column"]) for r in csv.DictReader(f)]
    assert both == [("twice.csv", "6", "name"), ("twice.csv", "6", "units")]

    bad = exports.services()
    bad.rows[4][6] = 10**20
    bad.rows[8][3] = "Hastings"
    report = tmp_path / "errors.csv"
    out = _run("node", "import", node, "services", str(bad.xlsx(tmp_path / "bad.xlsx")), "--mapping", "kent-sp.toml",
               "--errors", str(report), code=1)  # fmt: skip
    assert "import refused; nothing was written (2 problems)" in out
    with report.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["sheet"], r["row"], r["column"], r["value"]) for r in rows] == [
        ("Export", "6", "units", str(10**20)),
        ("Export", "10", "district", "Hastings"),
    ]

    _run("node", "import", node, "services", str(services), "--mapping", "kent-sp.toml")
    records = exports.client_records(n=120).csv(tmp_path / "records.csv")
    out = _run("node", "import", node, "client-records", str(records), "--mapping", "kent-sp.toml")
    assert "imported client-records: 120 rows, 120 inserted" in out
    assert "KCC-P0001 Porchlight:" in out  # the share of each provider's records that can be linked
    with engine.connect() as conn:
        unlinked = conn.execute(text("SELECT count(*) FROM client_record WHERE person IS NULL")).scalar()
    assert unlinked == sum(1 for r in exports.client_records(n=120).rows if r[11] is None or r[13] is None) > 0
    engine.dispose()

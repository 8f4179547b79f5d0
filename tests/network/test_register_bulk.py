"""`cagnet register import` and `cagnet register list` as an accreditation lead runs them, against
a live coordinator: an authority's existing list (CSV, and Excel) becomes one signed entry per
row; a list with any bad row submits nothing and names every bad row and column; a list run
again submits nothing twice; and the list of every provider's status filters by status and expiry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import openpyxl
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator.register import store
from node.network.register_import import COLUMNS
from shared.accreditation import CRITERIA, QAF_OBJECTIVES
from shared.errors import ImportError_
from tests.registerutil import EVIDENCE, KENT, MEDWAY, SURREY, make_register_network, serving

MET = dict.fromkeys(CRITERIA, "met")
GOOD = dict.fromkeys(QAF_OBJECTIVES, "B")


def _row(name: str, charity: str, decision: str, decided: str, valid_to: str = "", **extra: str) -> dict[str, str]:
    row = {"provider_name": name, "charity_number": charity, "decision": decision, "decided_on": decided}
    row |= {"valid_to": valid_to, "evidence_sha256": EVIDENCE}
    if decision.lower() == "accredited":
        row |= MET | GOOD
    return row | extra


KENT_LIST = [
    _row("Weald & Downs Housing Association Ltd", "1149085", "accredited", "01/04/2024"),
    _row("Canterbury Women's Aid", "1012345", "Accredited", "2023-06-01", "2026-06-01"),
    _row("Thanet Hostels Trust", "1098765", "suspended", "2025-01-10"),
    _row("Dover Floating Support", "1077777", "applied", "2025-09-01"),
]


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in COLUMNS if c != "evidence"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _run(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_an_authority_s_list_in_bulk(tmp_path: Path) -> None:
    net = make_register_network(tmp_path)
    url = f"sqlite:///{tmp_path}/register.db"
    kent, surrey = str(net.nodedirs[KENT]), str(net.nodedirs[SURREY])
    with serving(net, url) as register:
        # A bad list: an accreditation with a criterion not met, a bad date, a passport from no member.
        bad = [
            *KENT_LIST,
            _row("Ashford Care", "1055555", "accredited", "2024-02-30"),
            {**_row("Folkestone YMCA", "1066666", "accredited", "2024-05-01"), "management": "not-met"},
            _row("Swale Trust", "1044444", "passported", "2024-05-01", passported_from="E09000001"),
        ]
        refused = CliRunner().invoke(app, ["register", "import", kent, str(_write_csv(tmp_path / "bad.csv", bad))])
        assert isinstance(refused.exception, ImportError_)
        problems = {(p.row, p.column) for p in refused.exception.problems}
        assert (6, "decided_on") in problems
        assert any(p.row == 7 and "management" in p.reason for p in refused.exception.problems)
        assert {p.row for p in refused.exception.problems} == {6, 7, 8}
        assert (8, "passported_from") in problems
        assert store.tree_head(register.engine)[0] == 0  # nothing submitted

        logged = _run("register", "import", kent, str(_write_csv(tmp_path / "kent.csv", KENT_LIST)))
        assert [e["row"] for e in logged["logged"]] == [2, 3, 4, 5] and logged["already_logged"] == []
        again = _run("register", "import", kent, str(tmp_path / "kent.csv"))
        assert again["logged"] == [] and again["already_logged"] == [2, 3, 4, 5]
        assert store.tree_head(register.engine)[0] == 4

        # Surrey's list as an Excel workbook, with real dates: a passport of Kent's accreditation.
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        header = ["Provider Name", "Charity Number", "Decision", "Passported From", "Decided On", "Evidence SHA256"]
        sheet.append(header)
        sheet.append(["Weald and Downs H.A.", 1149085, "passported", KENT, "2024-07-01", EVIDENCE])
        workbook.save(tmp_path / "surrey.xlsx")
        assert len(_run("register", "import", surrey, str(tmp_path / "surrey.xlsx"))["logged"]) == 1

        listed = _run("register", "list", "--node", str(net.nodedirs[MEDWAY]), "--on", "2026-01-01")
        by_key = {p["provider"]: p for p in listed["providers"]}
        assert len(by_key) == 4
        weald = by_key["charity:1149085"]
        assert weald["overall"] == "accredited" and [a["authority"] for a in weald["authorities"]] == [KENT, SURREY]
        assert by_key["charity:1098765"]["overall"] == "suspended"
        suspended = _run(
            "register", "list", "--network", str(net.netdir), "--on", "2026-01-01", "--status", "suspended"
        )
        assert [p["provider"] for p in suspended["providers"]] == ["charity:1098765"]
        # Renewals: Canterbury's accreditation ends on 2026-06-01, Weald's on 2027-04-01.
        due = _run(
            "register", "list", "--network", str(net.netdir), "--on", "2026-01-01", "--expires-before", "2026-12-31"
        )
        assert [p["provider"] for p in due["providers"]] == ["charity:1012345"]
        assert due["providers"][0]["next_expiry"] == "2026-06-01"
        later = _run("register", "list", "--network", str(net.netdir), "--on", "2026-07-01", "--status", "expired")
        assert [p["provider"] for p in later["providers"]] == ["charity:1012345"]

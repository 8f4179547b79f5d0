"""A CAG chair's meeting pack through a real network (gRPC on port 0, mTLS), made with the command
a chair runs (`cagnet report --kit KIT --period 2009-10 --compare 2008-09 --out DIR`) and read as
its readers read it: the workbook opened with openpyxl, the PDF's pages counted, the HTML opened
in headless Debian chromium (playwright, no browser download). Every figure checked is the figure
of the signed bundle saved beside the pack, verified again here with `cagnet verify`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from cagnet.actions.pack import TITLES, Section, build_pack, dated, financial_year, pack_kinds, unanswered
from cagnet.actions.pack_files import pack_html, pack_xlsx
from cagnet.cli import app
from coordinator import network
from coordinator.joint.bundle import Bundle, load, verify_saved_bundle
from shared.errors import InvalidRequest
from shared.kinds.records import JointKpi
from shared.kinds.supply import JointSupplyMap
from shared.manifest import CAG_CHAIR
from tests.netutil import THREE, LiveNetwork, make_network, running

CHROMIUM = Path("/usr/bin/chromium")
DEMO_REFERENCE = Path(__file__).parents[2] / "cagnet" / "demo-reference.csv"
CHAIR = "sam-patel"


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = make_network(tmp_path_factory.mktemp("net"), THREE)
    network.add_principal(built.netdir, party_id=CHAIR, role=CAG_CHAIR, name="Sam Patel, CAG chair")
    # The network's signed reference data (need indicators, grant): the pack sets supply beside them.
    network.set_reference(built.netdir, DEMO_REFERENCE.read_text(), source=DEMO_REFERENCE.name)
    kit = tmp_path_factory.mktemp("kit") / "kit"
    out = tmp_path_factory.mktemp("pack") / "board-paper"
    with running(LiveNetwork(built.netdir, built.nodedirs)):
        _cli("network", "principal", "export", CHAIR, "--network", str(built.netdir), "--out", str(kit))
        shown = _cli("report", "--kit", str(kit), "--period", "2009-10", "--compare", "2008-09", "--out", str(out))
    assert "pack written for 2009-10" in shown
    (out.parent / "shown.txt").write_text(shown, encoding="utf-8")  # what the chair saw, for the tests below
    return out


def _bundle(pack: Path, name: str) -> Bundle:
    envelope, netdir = load(pack / "bundles" / name)
    assert netdir is not None
    bundle, _ = verify_saved_bundle(envelope, [m for m, _ in network.history(netdir)])
    return bundle


def _sheet_rows(book: object, title: str) -> tuple[list[str], list[tuple[object, ...]]]:
    sheet = book[title]  # type: ignore[index]
    rows = list(sheet.iter_rows(values_only=True))
    return [str(c) for c in rows[2]], rows[3:]


def test_a_period_is_a_financial_year() -> None:
    assert financial_year("2009-10") == ("2009-04-01", "2010-03-31")
    assert financial_year("1999-00") == ("1999-04-01", "2000-03-31")
    for bad in ("2009", "2009-11", "2009/10", "09-10"):
        with pytest.raises(InvalidRequest, match="financial year"):
            financial_year(bad)


def test_the_command_counts_the_questions_of_both_years(pack: Path) -> None:
    """Every question asked is counted and a refused one named with its year, the compared year's
    included (the count was of the period's questions alone, so a refused 2008-09 went unsaid)."""
    asked = len(pack_kinds()) + sum(dated(k) for k in pack_kinds())
    shown = (pack.parent / "shown.txt").read_text(encoding="utf-8")
    assert f"pack written for 2009-10: {asked} of {asked} questions answered" in shown
    assert "not answered" not in shown


def test_a_refused_compared_year_is_said_in_the_section_and_the_notes() -> None:
    """A section answered for the period but not for the compared year says why it shows no change."""
    why = "the network policy does not answer this kind for a year before the standard table set"
    now = [Section(kind="kpi", title=TITLES["kpi"], period="2009-10")]
    earlier = [Section(kind="kpi", title=TITLES["kpi"], period="2008-09", refusal=why)]
    made = build_pack("Test CAG", "2009-10", "2008-09", now, earlier)
    assert unanswered(made) == (2, earlier)
    assert f"No change since 2008-09 is shown: the network did not answer this question for 2008-09: {why}" in (
        pack_html(made)
    )
    book = load_workbook(io.BytesIO(pack_xlsx(made)))
    notes = [tuple(r) for r in book["notes"].iter_rows(values_only=True)]
    assert (TITLES["kpi"], "no change shown", f"2008-09 not answered, so no change is shown: {why}") in notes
    kpi_fact = next(f for f in made.facts if "KPI 2" in f.text)
    assert kpi_fact.unchanged == "the 2009-10 figure is withheld"


def test_the_pack_is_html_excel_pdf_and_its_signed_bundles(pack: Path) -> None:
    assert {p.name for p in pack.iterdir()} == {"pack.html", "pack.xlsx", "pack.pdf", "bundles"}
    saved = {p.name for p in (pack / "bundles").iterdir()}
    assert "2009-10-kpi.json" in saved and "2008-09-kpi.json" in saved
    assert (pack / "pack.html").stat().st_size < 1_500_000


def test_the_workbook_holds_the_signed_figures_as_numbers_with_a_notes_sheet(pack: Path) -> None:
    book = load_workbook(pack / "pack.xlsx")
    assert book.sheetnames[:3] == ["summary", "notes", "charts"]
    supply_bundle = _bundle(pack, "2009-10-supply-map.json")
    supply = supply_bundle.result
    assert isinstance(supply, JointSupplyMap)
    columns, rows = _sheet_rows(book, "supply-map authorities")
    units, services, code = columns.index("units"), columns.index("services"), columns.index("authority")
    by_code = {row[code]: row for row in rows}
    for a in supply.authorities:
        row = by_code[a.authority]
        assert row[units] == a.units and type(row[units]) is int
        assert row[services] == a.services  # None (an empty cell) where suppressed, never "*"
    # A comparison: each figure column has its change since the earlier year beside it.
    assert "units: change since 2008-09" in columns
    # KPI 2 for the whole CAG, all client groups, as the signed bundle has it.
    kpi = _bundle(pack, "2009-10-kpi.json").result
    assert isinstance(kpi, JointKpi)
    cag = next(r for r in kpi.rows if r.authority == "CAG" and r.client_group == 0)
    # Suppressed cells are empty and carry a note saying why; nothing holds "*".
    every = [c for name in book.sheetnames[3:] for row in book[name].iter_rows(min_row=4) for c in row]
    # ("*" is a figure's text only as a movement row's period: every period together.)
    headers = {name: [c.value for c in book[name][3]] for name in book.sheetnames[3:]}
    starred = [c for c in every if c.value == "*" and headers[c.parent.title][c.column - 1] != "period"]
    assert not starred
    empty_with_note = [c for c in every if c.value is None and c.comment is not None]
    assert empty_with_note and all("suppressed" in c.comment.text for c in empty_with_note)
    notes = [tuple(r) for r in book["notes"].iter_rows(values_only=True)]
    assert any(r[1] == "suppressed" and str(r[2]).startswith(tuple("123456789")) for r in notes)
    assert any(r[1] == "policy digest" and r[2] == supply_bundle.policy_digest for r in notes)
    assert any(r[1] == "records currency" and "records to 2010-03-31" in str(r[2]) for r in notes)
    summary = [r for r in book["summary"].iter_rows(min_row=3, values_only=True)]
    assert len(summary) == 5
    if cag.percent_planned is not None:
        assert any(r[0] == f"{cag.percent_planned:.0f}%" for r in summary)
    assert book["charts"]._charts  # bar charts where they help


def test_every_summary_fact_shows_its_change_since_the_earlier_year_or_says_why_not(pack: Path) -> None:
    """With --compare, each of the five facts has its change where both years have the figure
    (KPI 2 and the net importer too), and otherwise says in plain words why it shows none."""
    book = load_workbook(pack / "pack.xlsx")
    header = [c.value for c in book["summary"][2]]
    assert header[2] == "change since 2008-09"
    summary = {r[3]: r for r in book["summary"].iter_rows(min_row=3, values_only=True)}
    for source, (_figure, _text, change, _source) in summary.items():
        assert change, f"{source}: no change and no reason"
        assert re.fullmatch(r"[+-][\d,.]+( points)?", str(change)) or str(change).startswith("no change shown: ")
    now = _bundle(pack, "2009-10-kpi.json").result
    then = _bundle(pack, "2008-09-kpi.json").result
    assert isinstance(now, JointKpi) and isinstance(then, JointKpi)
    cag_now, cag_then = (next(r for r in k.rows if r.authority == "CAG" and r.client_group == 0) for k in (now, then))
    kpi_change = summary["kpi"][2] if "kpi" in summary else None
    if cag_now.percent_planned is not None and cag_then.percent_planned is not None:
        assert kpi_change == f"{round(cag_now.percent_planned - cag_then.percent_planned, 1):+} points".replace(
            ".0 points", " points"
        )
    elif cag_now.percent_planned is not None:
        assert str(kpi_change).startswith("no change shown: the 2008-09 figure is withheld")


def test_the_pdf_is_a4_with_pages(pack: Path) -> None:
    data = (pack / "pack.pdf").read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages >= 1 + 1 + len(pack_kinds())  # the summary, the contents, a page or more per section
    # A4 is 595 x 842 points.
    assert re.search(rb"/MediaBox\s*\[\s*0 0 595(\.\d+)? 842(\.\d+)?\s*\]", data)


def test_the_html_opens_offline_with_every_section_and_its_tables(pack: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make browser` installs it as root with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api")
    supply_bundle = _bundle(pack, "2009-10-supply-map.json")
    supply = supply_bundle.result
    assert isinstance(supply, JointSupplyMap)
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto((pack / "pack.html").as_uri())
            facts = page.locator("ol.facts li").all_inner_texts()
            sections = page.eval_on_selector_all("section[data-kind]", "els => els.map(e => e.dataset.kind)")
            contents = page.locator("#contents li").all_inner_texts()
            supply_text = page.locator("section[data-kind='supply-map']").inner_text()
            tables = page.locator("table.result").count()
            refusals = page.locator("p.refused").all_inner_texts()
        finally:
            browser.close()
    assert not requests and not errors
    assert len(facts) == 5
    assert sections == [k.kind for k in pack_kinds()]
    assert contents[len(sections) :] == ["Supply beside need", "Grant and spend"]
    assert [c.removesuffix(" (not answered)") for c in contents[: len(sections)]] == [
        page_title for page_title in (TITLES.get(k.kind, k.kind) for k in pack_kinds())
    ]
    assert tables >= len(sections) - len(refusals)
    # Each table says its period, the authorities' records currency and the policy.
    assert "as at 2010-03-31" in supply_text and "records to 2010-03-31" in supply_text
    assert supply_bundle.policy_digest in supply_text
    total = sum(a.units for a in supply.authorities)
    assert f"{total:,} units" in facts[0]

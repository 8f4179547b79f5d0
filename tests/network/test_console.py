"""The browser console on a real network, driven in a real browser (headless Debian chromium,
through playwright; no browser download): a chair asks a question from a kit and sees its table,
downloads the Excel file (numbers are numbers), has a tampered bundle refused; a member's officer
uploads a bad import and sees every error with the store unchanged, then imports a good file;
a refusal shows its rule; a regional board holding two networks' kits rolls their feeds up as
`cagnet feed region` does. Over plain HTTP: no token, a wrong host, a cross-origin POST or a form
without its CSRF token are refused 403 and change nothing."""

from __future__ import annotations

import base64
import csv
import http.server
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.console.app import COOKIE, TOKEN_HEADER, ConsoleServer
from cagnet.console.session import Session
from coordinator import kit, network
from coordinator.feeds.client import publish
from node.config import load_config
from node.store import data_version, open_store, row_counts
from shared.accreditation import entry_bytes, sign_entry
from shared.checkpoint import register_origin
from shared.errors import InvalidRequest
from shared.manifest import CAG_CHAIR, REGIONAL_BOARD
from shared.register_client import RegisterClient
from tests.netutil import THREE, LiveNetwork, make_network, running
from tests.node.test_importer import PROVIDER_HEADER, SERVICE_HEADER, SERVICES
from tests.registerutil import make_entry

CHROMIUM = Path("/usr/bin/chromium")
KENT = THREE[0]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("console"), THREE, clients=600)
    network.add_principal(built.netdir, party_id="board", role=REGIONAL_BOARD, name="Ann Lee, Regional Housing Board")
    with running(built) as live:
        # The chair publishes a feed snapshot before anyone asks anything: the release ledgers would
        # refuse its flows as differencing against a narrower question asked first.
        publish(live.netdir)
        yield live


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    """Another CAG's network, whose feed the same regional board takes (it has published nothing yet)."""
    built = make_network(tmp_path_factory.mktemp("console-b"), THREE, seed=70, clients=600)
    network.add_principal(built.netdir, party_id="board", role=REGIONAL_BOARD, name="Ann Lee, Regional Housing Board")
    with running(built) as live:
        yield live


@pytest.fixture(scope="module")
def chair(net: LiveNetwork, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    folder = kit.export(net.netdir, CAG_CHAIR, tmp_path_factory.mktemp("kits") / "chair")
    with ConsoleServer(Session(folder)) as server:
        yield server


@pytest.fixture(scope="module")
def officer(net: LiveNetwork) -> Iterator[ConsoleServer]:
    with ConsoleServer(Session(net.nodedirs[KENT])) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make browser` installs it as root with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # chromium logs every 4xx answer ("Failed to load resource"); those the tests expect. Anything else fails.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "load resource" not in m.text else None)
    yield page
    context.close()
    assert not errors, errors


def _fingerprint(nodedir: Path) -> tuple[Any, ...]:
    engine = open_store(load_config(nodedir).database_url)
    try:
        return data_version(engine), tuple(sorted(row_counts(engine).items()))
    finally:
        engine.dispose()


def _submit(page: Any) -> None:
    """Submit the question on the page and land on its result (a refusal fails, saying why)."""
    with page.expect_navigation():
        page.click("form.question button[type=submit]")
    assert "/results/r" in page.url, page.inner_text("main")


def _ask(page: Any, server: ConsoleServer, kind: str) -> None:
    page.goto(server.url)
    page.click("nav >> text=Ask")
    page.click(f"a[href='/ask/{kind}']")
    _submit(page)


def test_a_chair_asks_the_supply_map_and_sees_its_table_period_and_chart(page: Any, chair: ConsoleServer) -> None:
    page.goto(chair.url)
    assert "token=" not in page.url  # the token went into a cookie, out of the address bar
    main = page.inner_text("main")
    for code in THREE:
        assert code in main  # every member is listed
    assert "sha256:" in main  # the policy in force, by digest
    _ask(page, chair, "supply-map")
    main = page.inner_text("main")
    assert "Verified" in main and "Period: as at" in main
    authorities = page.locator("section.result-table", has_text="supply-map: authorities")
    heads = authorities.locator("th").all_inner_texts()
    assert "units" in heads and "authority name" in heads
    names = authorities.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(names) == sorted(["Kent", "Medway", "B&H"])
    assert page.locator("svg.chart rect.bar").count() == 3


def test_a_question_with_options_asks_what_the_form_says(page: Any, chair: ConsoleServer) -> None:
    page.goto(chair.url)
    page.click("nav >> text=Ask")
    page.click("a[href='/ask/movement']")
    page.fill("input[name=from_date]", "2009-04-01")
    page.fill("input[name=to_date]", "2010-03-31")
    page.select_option("select[name=period]", "quarter")
    # One client group: a standard question, answered every time (two groups at once are off the
    # standard table set, and the nodes' ledgers refuse a year of two small groups as differencing
    # against the set's quarters).
    page.select_option("select[name=client_groups]", ["4"])
    _submit(page)
    held = chair.session.results[page.url.rsplit("/", 1)[-1]]
    assert held.question["client_groups"] == [4] and held.question["period"] == "quarter"
    assert "Period: 2009-04-01 to 2010-03-31" in page.inner_text("main")
    rows = page.locator("section.result-table", has_text="movement: flows").locator("tbody tr").all_inner_texts()
    assert rows and all(any(g in r for g in ("mental health", "all client")) for r in rows)


def test_the_excel_download_opens_with_numbers_as_numbers(page: Any, chair: ConsoleServer, tmp_path: Path) -> None:
    _ask(page, chair, "supply-map")
    with page.expect_download() as download:
        page.click("text=Excel")
    path = tmp_path / "supply.xlsx"
    download.value.save_as(path)
    book = openpyxl.load_workbook(path)
    assert book.sheetnames[0] == "notes"
    notes = {row[0]: row[1] for row in book["notes"].iter_rows(min_row=2, values_only=True)}
    assert str(notes["policy digest"]).startswith("sha256:")
    sheet = book["authorities"]
    header = [c.value for c in sheet[3]]
    units = [row[header.index("units")] for row in sheet.iter_rows(min_row=4, values_only=True)]
    assert len(units) == 3 and all(isinstance(u, int) and u > 0 for u in units)
    population = [row[header.index("population")] for row in sheet.iter_rows(min_row=4, values_only=True)]
    assert all(isinstance(p, int) for p in population)


def test_a_plan_shows_which_questions_would_be_answered(page: Any, chair: ConsoleServer) -> None:
    page.goto(chair.url)
    page.click("nav >> text=Plan")
    page.fill("input[name=from_date]", "2009-04-01")
    page.fill("input[name=to_date]", "2010-03-31")
    _submit(page)
    rows = page.locator("section.result-table", has_text="plan: rows").locator("tbody tr").all_inner_texts()
    assert any("movement" in r for r in rows) and any("kpi" in r for r in rows)


def test_a_tampered_bundle_is_refused_and_the_original_verifies(
    page: Any, chair: ConsoleServer, tmp_path: Path
) -> None:
    _ask(page, chair, "supply-map")
    with page.expect_download() as download:
        page.click("text=signed bundle")
    original = tmp_path / "supply.bundle.json"
    download.value.save_as(original)
    doc = json.loads(original.read_text())
    payload = base64.b64decode(doc["envelope"]["payload"])
    assert b'"units":' in payload
    doc["envelope"]["payload"] = base64.b64encode(payload.replace(b'"units":', b'"units":1', 1)).decode()
    tampered = tmp_path / "tampered.bundle.json"
    tampered.write_text(json.dumps(doc))

    page.click("nav >> text=Verify a bundle")
    page.set_input_files("input[name=bundle]", str(tampered))
    page.click("main form button[type=submit]")
    outcome = page.inner_text("#outcome")
    assert "Refused" in outcome and "signature" in outcome

    page.set_input_files("input[name=bundle]", str(original))
    with page.expect_navigation():  # the outcome read is this upload's, not the refused one's
        page.click("main form button[type=submit]")
    outcome = page.inner_text("#outcome")
    assert "Verified" in outcome and "result recomputed and identical" in outcome


def test_a_refusal_shows_its_rule(page: Any, net: LiveNetwork, tmp_path: Path) -> None:
    folder = kit.export(net.netdir, "board", tmp_path / "board")
    with ConsoleServer(Session(folder)) as board:
        page.goto(board.url)
        page.click("nav >> text=Ask")
        assert "the policy does not let your role ask this" in page.inner_text("main")
        page.click("a[href='/ask/supply-map']")
        page.click("form.question button[type=submit]")
        reason = page.inner_text(".refusal")
    assert "refused: permission denied" in reason and "regional-board" in reason and "feed" in reason


def test_a_regional_board_fetches_and_reads_its_feed(page: Any, net: LiveNetwork, tmp_path: Path) -> None:
    folder = kit.export(net.netdir, "board", tmp_path / "board")
    with ConsoleServer(Session(folder)) as board:
        page.goto(board.url)
        page.click("nav >> text=Feeds")
        assert "No snapshot held yet" in page.inner_text("main")
        page.click("main form button[type=submit]")
        main = page.inner_text("main")
    assert "Snapshot 1 of Test CAG" in main and "Verified" in main  # published by the chair (the fixture)
    assert "feed: supply" in main and "periods: supply as at" in main
    assert (folder / "feeds" / "snapshot-000001.dsse.json").exists()


def _region_column(page: Any, title: str) -> tuple[list[str], dict[str, str]]:
    """A roll-up table's headings, and its region column by client group, as the page shows them."""
    section = page.locator("section.result-table", has_text=title)
    rows = [r.locator("td").all_inner_texts() for r in section.locator("tbody tr").all()]
    return section.locator("th").all_inner_texts(), {r[0]: r[-1] for r in rows}


def test_a_regional_board_rolls_up_two_cags_as_the_cli_does(
    page: Any, net: LiveNetwork, second: LiveNetwork, tmp_path: Path
) -> None:
    kits = (kit.export(net.netdir, "board", tmp_path / "kit-a"), kit.export(second.netdir, "board", tmp_path / "kit-b"))
    with ConsoleServer(Session(kits[0], region_kits=kits)) as board:
        own = {TOKEN_HEADER: board.session.token, "Origin": board.origin}
        form = {**own, "Content-Type": "application/x-www-form-urlencoded"}
        assert _request(board, "/region", method="POST", headers=form, body=b"csrf=wrong") == 403
        assert not (kits[0] / "region").exists()  # a form without this session's CSRF token fetched nothing
        assert _request(board, "/region/region.xlsx", headers=own) == 404  # nothing rolled up yet

        page.goto(board.url)
        page.click("nav >> text=Region")
        assert "No roll-up made yet" in page.inner_text("main")
        page.click("main form button[type=submit]")
        cags = page.inner_text("#cags")
        assert "verified: Test CAG (kit-a), snapshot 1" in cags  # published by the chair (the fixture)
        assert "missing: Test CAG (kit-b) — no snapshot published" in cags
        heads, _ = _region_column(page, "region: units of support")
        assert heads[2:] == ["Test CAG (kit-a)", "region"]

        publish(second.netdir)
        with page.expect_navigation():  # the roll-up read is the new one, not the page it replaces
            page.click("main form button[type=submit]")
        cags = page.inner_text("#cags")
        assert "verified: Test CAG (kit-b), snapshot 1" in cags and "missing" not in cags
        heads, shown = _region_column(page, "region: units of support")
        assert heads[2:] == ["Test CAG (kit-a)", "Test CAG (kit-b)", "region"]
        _, shown_outside = _region_column(page, "region: new from outside the CAG")
        with page.expect_download() as download:
            page.click("text=Excel (region.xlsx)")
        mine = tmp_path / "page-region.xlsx"
        download.value.save_as(mine)
        with page.expect_download() as download:
            page.click("text=CSV (region.csv)")
        assert "units of support" in Path(download.value.path()).read_text()

    result = CliRunner().invoke(
        app, ["feed", "region", "--kit", str(kits[0]), "--kit", str(kits[1]), "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 0, result.output
    cli = openpyxl.load_workbook(tmp_path / "cli" / "region.xlsx")
    downloaded = openpyxl.load_workbook(mine)
    for sheet, on_page in (("units of support", shown), ("new from outside the CAG", shown_outside)):
        rows = list(cli[sheet].iter_rows(min_row=4, values_only=True))
        assert [r[:-1] for r in rows] == [r[:-1] for r in downloaded[sheet].iter_rows(min_row=4, values_only=True)]
        assert [r[-1] for r in rows] == [r[-1] for r in downloaded[sheet].iter_rows(min_row=4, values_only=True)]
        # Each CAG's figure and the region's sum, as the CLI's roll-up has them, are what the page shows.
        assert {str(r[0]): (f"{r[-1]:,}" if isinstance(r[-1], int) else "*") for r in rows} == on_page
    units = list(cli["units of support"].iter_rows(min_row=4, values_only=True))
    assert units and all(isinstance(r[-1], int) and r[-1] == r[2] + r[3] for r in units)  # summed: same day


def test_several_kits_are_taken_only_as_a_regional_boards(
    net: LiveNetwork, chair: ConsoleServer, tmp_path: Path
) -> None:
    board = kit.export(net.netdir, "board", tmp_path / "board")
    with pytest.raises(InvalidRequest, match="chair is not a regional board's kit"):
        Session(board, region_kits=(board, chair.session.folder))
    result = CliRunner().invoke(
        app,
        ["console", "--kit", str(board), "--kit", str(chair.session.folder), "--no-browser"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 2 and "not a regional board's kit" in result.output


def test_a_chair_searches_the_register_and_downloads_a_providers_receipt(
    page: Any, net: LiveNetwork, chair: ConsoleServer, tmp_path: Path
) -> None:
    identity = load_config(net.nodedirs[KENT]).identity()
    entry = make_entry(
        register_origin(network.read(net.netdir)), KENT, name="Weald & Downs Housing Association Limited"
    )
    with RegisterClient(identity, lambda: network.read(net.netdir)) as client:
        client.submit(entry_bytes(sign_entry(entry, identity.signing_key)))
    page.goto(chair.url)
    page.click("nav >> text=Register")
    page.fill("input[name=q]", "weald")
    with page.expect_navigation():  # the rows read are the search's, not the page it replaces
        page.click("main form button[type=submit]")
    rows = page.locator("main table tbody tr").all_inner_texts()
    assert len(rows) == 1 and "accredited" in rows[0] and KENT in rows[0]
    page.click("main table tbody a")
    assert "accredited" in page.inner_text("main") and "History (1 entries" in page.inner_text("main")
    with page.expect_download() as download:
        page.click("text=Download the receipt")
    receipt = tmp_path / "receipt.json"
    download.value.save_as(receipt)
    assert json.loads(receipt.read_text())["entries"]


def _services_file(path: Path) -> Path:
    """A services export with mistakes an SP team makes: an unknown client group and district, and
    a row with two (formula-like text in its name, a 20-digit units)."""
    rows = [list(r) for r in SERVICES]
    rows[0][SERVICE_HEADER.index("client_group")] = "99"
    rows[1][SERVICE_HEADER.index("district")] = "Atlantis"
    rows[2][SERVICE_HEADER.index("name")] = '=HYPERLINK("http://example.org")'
    rows[2][SERVICE_HEADER.index("units")] = str(10**19)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(SERVICE_HEADER)
        writer.writerows(rows)
    return path


def test_a_bad_import_shows_every_error_and_writes_nothing_then_a_good_one_is_written(
    page: Any, net: LiveNetwork, officer: ConsoleServer, tmp_path: Path
) -> None:
    nodedir = net.nodedirs[KENT]
    before = _fingerprint(nodedir)
    page.goto(officer.url)
    page.click("nav >> text=Imports")
    page.select_option("select[name=kind]", "services")
    page.set_input_files("input[name=file]", str(_services_file(tmp_path / "services.csv")))
    page.click("main form button[type=submit]")
    problems = page.locator("#problems")
    assert "nothing was written" in problems.inner_text()
    rows = problems.locator("tr.problem").all_inner_texts()
    assert any("client_group" in r and "99" in r for r in rows), rows
    assert any("district" in r and "Atlantis" in r for r in rows), rows
    # Every problem of a row, not its first alone: the formula-like name and the units on row 4.
    fourth = [r.split("\t") for r in rows if r.split("\t")[1].strip() == "4"]
    assert sorted(cells[2].strip() for cells in fourth) == ["name", "units"], rows
    assert page.locator("#confirm").count() == 0  # no way to write a file with problems
    assert _fingerprint(nodedir) == before

    providers = tmp_path / "providers.csv"
    with providers.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([PROVIDER_HEADER, ["KCC-P9001", "Porchlight Test", "", "254109", ""]])
    page.select_option("select[name=kind]", "providers")
    page.set_input_files("input[name=file]", str(providers))
    with page.expect_navigation():  # the check read is this file's, not the refused one's page
        page.click("main form button[type=submit]")
    assert "Nothing has been written yet" in page.inner_text("#checked")
    assert _fingerprint(nodedir) == before  # the check alone writes nothing
    page.click("#confirm")
    assert "Imported" in page.inner_text("#written")
    after = dict(_fingerprint(nodedir)[1])
    assert after["provider"] == dict(before[1])["provider"] + 1


def test_the_officer_sees_the_audit_log_and_completeness(page: Any, officer: ConsoleServer) -> None:
    officer.session.ask("supply-map", {})  # something in the node's audit log
    page.goto(officer.url)
    page.click("nav >> text=Audit log")
    assert "SupplyMap" in page.inner_text("main table")
    looked_at = re.search(r"The last (\d+) of (\d+) entries", page.inner_text("main"))
    assert looked_at and int(looked_at.group(1)) <= int(looked_at.group(2)), page.inner_text("main")  # not "200 of 4"
    page.click("nav >> text=Completeness")
    assert "Every service" in page.inner_text("main")


def _request(
    server: ConsoleServer, path: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: bytes = b""
) -> int:
    request = urllib.request.Request(server.origin + path, method=method, headers=headers or {}, data=body or None)
    try:
        with urllib.request.urlopen(request) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_requests_without_the_token_or_from_another_host_are_refused(chair: ConsoleServer) -> None:
    assert _request(chair, "/") == 403
    assert _request(chair, "/results") == 403
    assert _request(chair, "/?token=not-the-token") == 403
    assert _request(chair, "/", headers={"Cookie": f"{COOKIE}=not-the-token"}) == 403
    assert _request(chair, "/", headers={TOKEN_HEADER: chair.session.token, "Host": "evil.example"}) == 403
    assert _request(chair, "/", headers={TOKEN_HEADER: chair.session.token}) == 200


def test_a_cross_origin_post_or_one_without_its_csrf_token_is_refused(chair: ConsoleServer) -> None:
    token = {TOKEN_HEADER: chair.session.token, "Content-Type": "application/x-www-form-urlencoded"}
    form = f"csrf={chair.session.csrf}".encode()
    held = len(chair.session.results)
    assert _request(chair, "/currency", method="POST", headers=token, body=form) == 403  # no Origin, no Referer
    evil = {**token, "Origin": "http://127.0.0.1:1"}
    assert _request(chair, "/currency", method="POST", headers=evil, body=form) == 403
    own = {**token, "Origin": chair.origin}
    assert _request(chair, "/currency", method="POST", headers=own, body=b"csrf=wrong") == 403
    assert _request(chair, "/ask/supply-map", method="POST", headers=own, body=b"") == 403
    assert len(chair.session.results) == held  # nothing was asked


def test_a_page_on_another_origin_cannot_post_to_the_console(page: Any, chair: ConsoleServer) -> None:
    """The browser holds the console's cookie (same site: loopback on another port), so only the
    Origin check and the CSRF token stand between another page and the console's forms."""
    page.goto(chair.url)  # the cookie is set
    held = len(chair.session.results)
    attack = (
        f'<form id="f" method="post" action="{chair.origin}/ask/supply-map">'
        f'<input name="csrf" value="guessed"></form><script>document.getElementById("f").submit()</script>'
    ).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args: object) -> None:
            pass

    evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url.startswith(chair.origin) and r.request.method == "POST") as posted:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert posted.value.status == 403
        assert "cross-origin" in posted.value.text()
    finally:
        evil.shutdown()
        evil.server_close()
    assert len(chair.session.results) == held

"""The CAG report through a real network, opened in a real browser: headless Debian chromium,
driven by playwright (no browser download). No console errors, no request leaves the file, every
chart drew, and a screenshot is kept under test-artifacts/ (ignored by git)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from coordinator import network
from coordinator.report import CHART_IDS, write_report
from tests.netutil import LiveNetwork, make_network, running

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = make_network(tmp_path_factory.mktemp("net"))
    out = tmp_path_factory.mktemp("report") / "report.html"
    with running(LiveNetwork(built.netdir, built.nodedirs)) as net:
        write_report(net.netdir, out)
    assert network.read(built.netdir)
    return out


def test_the_report_is_one_file_that_names_its_policy_periods_and_coverage(report: Path) -> None:
    text = report.read_text()
    for chart in CHART_IDS:
        assert f'id="{chart}"' in text
    assert text.count("Policy applied: <code>sha256:") == len(CHART_IDS)
    assert text.count("Authorities missing:") == len(CHART_IDS)
    # Each chart but the register's names its period and how recent each authority's records are (each node
    # states it in its signed answer).
    assert text.count("Period: all records to 20") == 4  # movement, net flows, outcomes, equality
    assert "Period: services in force on 20" in text and "Period: contracts in force on 20" in text
    assert (
        len(re.findall(r"Records: [^<]*?: records to \d{4}-\d{2}-\d{2}, last import \d{4}-", text))
        == len(CHART_IDS) - 1
    )
    # plotly.js is inline, and the page forbids fetching anything (the browser test sees no request).
    assert "default-src 'none'" in text


def test_the_report_draws_every_chart_in_headless_chromium(report: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make browser` installs it as root with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(report.as_uri())
            for chart in CHART_IDS:
                # Plotly adds its SVG root to a div once the chart has drawn.
                page.wait_for_selector(f"#{chart} .main-svg", state="attached", timeout=30_000)
            drawn = page.evaluate(
                "ids => ids.map(id => document.querySelectorAll('#' + id + ' .main-svg *').length)", list(CHART_IDS)
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert not requests, requests
    assert all(n > 10 for n in drawn), dict(zip(CHART_IDS, drawn, strict=True))
    assert shutil.os.path.getsize(ARTIFACTS / "report.png") > 10_000  # type: ignore[attr-defined]

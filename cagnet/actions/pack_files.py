"""The meeting pack's files: one self-contained HTML page (inline SVG charts, no script, nothing
fetched), an Excel workbook (a sheet per table, numbers as numbers, suppressed cells empty with a
note, a notes sheet, bar charts) and a PDF printed from the HTML by headless Chromium (A4, page
numbers, a contents page). `write_pack` asks the questions and writes all three.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cagnet.actions.pack import Pack, PackTable, Section, ask_pack, build_pack
from cagnet.actions.tables import chart_series
from coordinator import network, report_funding
from coordinator.joint import bundle as bundle_file
from coordinator.joint.client import CoordinatorClient, MemberAsker
from shared.reference import reference_of
from shared.spreadsheet import safe_cell

__all__ = ["CHROMIUM", "pack_html", "pack_xlsx", "print_pdf", "write_pack"]

CHROMIUM = Path("/usr/bin/chromium")
SUPPRESSED_NOTE = "suppressed under the network policy (a small number, or one that would reveal one)"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body{font-family:system-ui,'DejaVu Sans',sans-serif;max-width:1100px;margin:1.5em auto;color:#222;font-size:14px}
h1{font-size:1.6em} h2{font-size:1.3em;border-bottom:2px solid #356;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.82em}
th,td{border:1px solid #ccc;padding:2px 5px;vertical-align:top} th{background:#eef2f6;text-align:left}
td.n{text-align:right;white-space:nowrap} td.s{text-align:center;color:#a33}
.chg{display:block;font-size:.85em;color:#356} .meta{font-size:.85em;color:#444}
.refused{background:#fff3f3;border-left:4px solid #c33;padding:.5em 1em}
.facts li{margin:.6em 0;font-size:1.1em} .fig{font-weight:bold}
section.page{break-before:page} caption{text-align:left;font-weight:bold;padding:.3em 0}
@page{size:A4;margin:14mm 12mm 16mm 12mm}
@media print{body{max-width:none;margin:0;font-size:11px}
 table{font-size:7.5px;width:100%;table-layout:fixed;overflow-wrap:anywhere} td.n{white-space:normal}}
"""
_MAX_HTML_ROWS = 400  # a longer table is cut in the HTML and PDF (the workbook holds it whole), and says so


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any, change: int | float | None) -> str:
    if value is None:
        return "<td class='s' title='suppressed'>*</td>"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"<td>{_esc(value)}</td>"
    shown = f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    delta = ""
    if change is not None:
        moved = f"{change:+,}" if isinstance(change, int) else f"{change:+,.2f}"
        delta = f"<span class='chg'>{moved}</span>"
    return f"<td class='n'>{shown}{delta}</td>"


def _table_html(t: PackTable, section: Section, compare: str) -> str:
    table = t.table
    rows = table.rows[:_MAX_HTML_ROWS]
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = []
    for r, row in enumerate(rows):
        changes = t.change[r] if t.change is not None else [None] * len(row)
        body.append("<tr>" + "".join(_cell(v, changes[i]) for i, v in enumerate(row)) + "</tr>")
    cut = (
        f"<p class='meta'>The first {_MAX_HTML_ROWS:,} of {len(table.rows):,} rows; the workbook holds them all.</p>"
        if len(table.rows) > _MAX_HTML_ROWS
        else ""
    )
    since = f"; beneath each figure its change since {_esc(compare)}" if t.change is not None else ""
    return (
        f"<table class='result' data-kind='{_esc(section.kind)}'><caption>{_esc(table.title)} "
        f"<span class='meta'>({_esc(table.period)}{since})</span></caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{cut}"
    )


def svg_bars(title: str, points: Sequence[tuple[str, float | None]]) -> str:
    """A horizontal bar chart as inline SVG (no script): one bar a label, negative bars to the left
    of zero, a suppressed figure written as such instead of a bar."""
    width, label_w, row_h = 760, 230, 18
    values = [v for _, v in points if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    span = (high - low) or 1.0
    plot = width - label_w - 70
    zero = label_w + plot * (-low / span)
    height = row_h * len(points) + 30
    parts = [
        # A viewBox, so that the chart shrinks to an A4 page's width rather than being cut.
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' "
        f"style='max-width:{width}px' role='img' class='chart'>",
        f"<title>{_esc(title)}</title>",
        f"<text x='0' y='14' font-size='12' font-weight='bold'>{_esc(title)}</text>",
    ]
    for i, (label, value) in enumerate(points):
        y = 24 + i * row_h
        parts.append(f"<text x='{label_w - 6}' y='{y + 12}' font-size='11' text-anchor='end'>{_esc(label[:38])}</text>")
        if value is None:
            parts.append(f"<text x='{zero + 4:.1f}' y='{y + 12}' font-size='11' fill='#a33'>suppressed</text>")
            continue
        x0 = zero if value >= 0 else zero - plot * (-value / span)
        w = plot * abs(value) / span
        parts.append(f"<rect x='{x0:.1f}' y='{y + 2}' width='{max(w, 0.5):.1f}' height='{row_h - 5}' fill='#4a7fb0'/>")
        shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
        tx = x0 + w + 4 if value >= 0 else x0 - 4
        anchor = "start" if value >= 0 else "end"
        parts.append(f"<text x='{tx:.1f}' y='{y + 12}' font-size='10' text-anchor='{anchor}'>{shown}</text>")
    parts.append(f"<line x1='{zero:.1f}' y1='20' x2='{zero:.1f}' y2='{height}' stroke='#333'/></svg>")
    return "".join(parts)


def _section_html(section: Section, compare: str) -> str:
    anchor = f"s-{section.kind}"
    parts = [f"<section class='page' id='{anchor}' data-kind='{_esc(section.kind)}'><h2>{_esc(section.title)}</h2>"]
    if section.refusal:
        period = f" for {section.period}" if section.period else ""
        parts.append(
            f"<p class='refused'>The network did not answer this question{_esc(period)}: {_esc(section.refusal)}</p>"
        )
        return "".join(parts) + "</section>"
    if compare and section.compare_refusal:
        parts.append(
            f"<p class='refused'>No change since {_esc(compare)} is shown: the network did not answer this question"
            f" for {_esc(compare)}: {_esc(section.compare_refusal)}</p>"
        )
    notes = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in section.notes if k != "*")
    parts.append(f"<ul class='meta'>{notes}</ul>")
    if section.suppressed:
        parts.append(f"<p class='meta'>{section.suppressed} figure(s) shown * were {SUPPRESSED_NOTE}.</p>")
    series = chart_series([t.table for t in section.tables])
    if series is not None:
        table, column, points = series
        parts.append(svg_bars(f"{table.title}: {column}", points))
    parts.extend(_table_html(t, section, compare) for t in section.tables)
    return "".join(parts) + "</section>"


def pack_html(pack: Pack) -> str:
    """The whole pack as one HTML document: the summary for elected members, the contents, a
    section per kind. It holds no script and may fetch nothing (its CSP says so)."""
    compare = f" compared with {pack.compare}" if pack.compare else ""
    facts = []
    for fact in pack.facts:
        figure = f"<span class='fig'>{_esc(fact.figure)}</span>" if fact.figure else "<span class='fig'>withheld</span>"
        change = ""
        if pack.compare and fact.change:
            change = f" ({_esc(fact.change)} since {_esc(pack.compare)})"
        elif pack.compare and fact.unchanged:
            change = f" <span class='meta'>(no change shown since {_esc(pack.compare)}: {_esc(fact.unchanged)})</span>"
        why = "" if fact.figure else f" <span class='meta'>({_esc(fact.source)})</span>"
        facts.append(f"<li>{figure}{change}: {_esc(fact.text)}{why}</li>")
    contents = "".join(
        f"<li><a href='#s-{_esc(s.kind)}'>{_esc(s.title)}</a>{' (not answered)' if s.refusal else ''}</li>"
        for s in pack.sections
    ) + "".join(f"<li><a href='#r-{i}'>{_esc(title)}</a></li>" for i, (title, _) in enumerate(pack.reference))
    digests = sorted({s.bundle.policy_digest for s in pack.sections if s.bundle is not None})
    sections = "".join(_section_html(s, pack.compare) for s in pack.sections) + "".join(
        f"<section class='page' id='r-{i}'><h2>{_esc(title)}</h2>{body}</section>"
        for i, (title, body) in enumerate(pack.reference)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>{_esc(pack.network)}: meeting pack {_esc(pack.period)}</title><style>{_CSS}</style></head><body>
<section id="summary"><h1>{_esc(pack.network)}: meeting pack for {_esc(pack.period)}{_esc(compare)}</h1>
<h2>Summary for elected members</h2>
<p>Five figures from the joint analyses of the Cross Authority Group's councils for the financial year
{_esc(pack.period)} (April to March). Small numbers are withheld to protect the people they describe.</p>
<ol class="facts">{"".join(facts)}</ol>
<p class="meta">Made {_esc(pack.made_at)} from signed answers verified back to each council's system.
Policy: {_esc(", ".join(digests) or "none answered")}.</p></section>
<section class="page" id="contents"><h2>Contents</h2><ol>{contents}</ol>
<p class="meta">Every table states its period, each authority's records currency and the policy it was released
under. A figure shown * was suppressed by that policy.</p></section>
{sections}
</body></html>
"""


def _sheet_name(title: str, used: set[str]) -> str:
    # "supply-map: authorities" -> "supply-map authorities": the kind stays in the name, Excel's
    # forbidden characters and its 31-character limit are kept to.
    name = "".join(" " if c in "[]:*?/\\" else c for c in title.replace(": ", " "))[:28].strip() or "table"
    base, n = name, 2
    while name.lower() in used:
        name = f"{base[:25]} {n}"
        n += 1
    used.add(name.lower())
    return name


def pack_xlsx(pack: Pack) -> bytes:
    """The pack as a workbook: the summary, a notes sheet (each table's period, policy, currency,
    coverage and what is suppressed and why), a sheet per table with figures as numbers (a
    suppressed one an empty cell with a comment), and a bar chart per section where one helps."""
    # openpyxl is imported here, not at the top: `cagnet --help` must not pay for it.
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.comments import Comment
    from openpyxl.styles import Font

    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "summary"
    summary.append([safe_cell(f"{pack.network}: meeting pack for {pack.period}")])
    summary["A1"].font = Font(bold=True)
    summary.append(["figure", "fact", f"change since {pack.compare}" if pack.compare else "", "source"])
    for fact in pack.facts:
        figure = safe_cell(fact.figure or "withheld")
        since = fact.change or (f"no change shown: {fact.unchanged}" if fact.unchanged else "")
        summary.append([figure, safe_cell(fact.text), safe_cell(since if pack.compare else ""), fact.source])
    summary.column_dimensions["B"].width = 110
    notes = book.create_sheet("notes")
    notes.append(["sheet", "about", "note"])
    for cell in notes[1]:
        cell.font = Font(bold=True)
    notes.append(["(all)", "empty figure", f"an empty cell with a comment: {SUPPRESSED_NOTE}"])
    used = {"summary", "notes", "charts"}
    charts = book.create_sheet("charts")
    chart_row = 1
    for section in pack.sections:
        if section.refusal:
            notes.append([safe_cell(section.title), "not answered", safe_cell(section.refusal)])
            continue
        if pack.compare and section.compare_refusal:
            why = f"{pack.compare} not answered, so no change is shown: {section.compare_refusal}"
            notes.append([safe_cell(section.title), "no change shown", safe_cell(why)])
        for t in section.tables:
            name = _sheet_name(t.table.title, used)
            _table_sheet(book.create_sheet(name), t, pack.compare, Comment, Font)
            notes.append([name, "table", safe_cell(t.table.title)])
            notes.append([name, "period", safe_cell(t.table.period)])
            hidden = sum(v is None for r in t.table.rows for v in r)
            notes.append([name, "suppressed", f"{hidden} figure(s): {SUPPRESSED_NOTE}" if hidden else "none"])
            for key, value in section.notes:
                if key != "*":
                    notes.append([name, safe_cell(key), safe_cell(value)])
        series = chart_series([t.table for t in section.tables])
        if series is not None:
            table, column, points = series
            charts.cell(row=chart_row, column=1, value=safe_cell(f"{table.title}: {column} ({table.period})"))
            for i, (label, figure) in enumerate(points, start=1):
                charts.cell(row=chart_row + i, column=1, value=safe_cell(label))
                charts.cell(row=chart_row + i, column=2, value=figure)
            chart = BarChart()
            chart.type = "bar"
            chart.title = f"{section.title}"[:80]
            chart.legend = None
            data = Reference(charts, min_col=2, min_row=chart_row + 1, max_row=chart_row + len(points))
            labels = Reference(charts, min_col=1, min_row=chart_row + 1, max_row=chart_row + len(points))
            chart.add_data(data)
            chart.set_categories(labels)
            tall = max(6, len(points) // 2)
            chart.height, chart.width = tall, 18
            charts.add_chart(chart, f"D{chart_row}")
            chart_row += max(len(points) + 2, tall * 2 + 2)
    notes.column_dimensions["A"].width = 30
    notes.column_dimensions["B"].width = 18
    notes.column_dimensions["C"].width = 100
    charts.column_dimensions["A"].width = 40
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _table_sheet(sheet: Any, t: PackTable, compare: str, comment: Any, font: Any) -> None:
    table = t.table
    # With a comparison, a change column follows each figure column that has any change.
    changed = {i for i in range(len(table.columns)) if any(c[i] is not None for c in t.change)} if t.change else set()
    sheet.append([safe_cell(table.title)])
    sheet["A1"].font = font(bold=True)
    sheet.append([safe_cell(table.period)])
    header: list[str] = []
    for i, column in enumerate(table.columns):
        header.append(column)
        if i in changed:
            header.append(f"{column}: change since {compare}")
    sheet.append([safe_cell(c) for c in header])
    for cell in sheet[3]:
        cell.font = font(bold=True)
    for r, row in enumerate(table.rows):
        values: list[Any] = []
        for i, value in enumerate(row):
            values.append(safe_cell(value) if value is not None else None)
            if i in changed:
                assert t.change is not None
                values.append(t.change[r][i])
        sheet.append(values)
        col = 0
        for i, value in enumerate(row):
            col += 1
            if value is None:
                sheet.cell(row=r + 4, column=col).comment = comment(SUPPRESSED_NOTE, "cagnet")
            if i in changed:
                col += 1
    for i, column in enumerate(header, start=1):
        sheet.column_dimensions[sheet.cell(row=3, column=i).column_letter].width = min(40, max(8, len(column) + 2))


def print_pdf(html_file: Path, pdf_file: Path) -> str:
    """Print the HTML pack to an A4 PDF with page numbers in headless Chromium; "" when printed,
    else why not (no browser is ever downloaded)."""
    if not CHROMIUM.exists():
        return f"no PDF: {CHROMIUM} is not installed (Debian's chromium package prints it)"
    try:
        # Lazily: playwright is needed only to print, and is not installed everywhere.
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "no PDF: the playwright package is not installed (pip install playwright; no browser download)"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            page = browser.new_page()
            page.goto(html_file.resolve().as_uri())
            page.pdf(
                path=str(pdf_file),
                format="A4",
                print_background=True,
                display_header_footer=True,
                header_template="<span></span>",
                footer_template=(
                    "<div style='font-size:8px;width:100%;text-align:center'>"
                    "page <span class='pageNumber'></span> of <span class='totalPages'></span></div>"
                ),
                margin={"top": "14mm", "bottom": "16mm", "left": "12mm", "right": "12mm"},
            )
        finally:
            browser.close()
    return ""


def reference_sections(netdir: Path, sections: Sequence[Section]) -> list[tuple[str, str]]:
    """Supply beside need and grant beside spend, from the year's supply map and the network's
    signed reference data (none where the network holds none, or the supply map was refused)."""
    supply = next((s.bundle for s in sections if s.kind == "supply-map" and s.bundle is not None), None)
    if supply is None or (netdir / "node.toml").exists():
        return []  # a member node's folder holds its manifests elsewhere: the console's node pages show them
    reference = reference_of(network.read(netdir))
    if not reference.indicators():
        return []
    return [
        ("Supply beside need", report_funding.need_section(supply, reference)),
        ("Grant and spend", report_funding.grant_section(supply, reference)),
    ]


def write_pack(
    netdir: Path,
    out: Path,
    *,
    period: str,
    compare: str = "",
    principal: str = "",
    member_asker: MemberAsker | None = None,
) -> tuple[Pack, list[Path], str]:
    """Ask every pack question as the kit's principal, verify each answer, and write pack.html,
    pack.xlsx, (where Chromium is installed) pack.pdf and the signed bundles (bundles/) into
    `out`; returns the pack, the files written and why the PDF was skipped ("" when printed)."""
    with CoordinatorClient(netdir, principal=principal, member_asker=member_asker) as client:
        now, earlier = ask_pack(client, period, compare)
    name = next((s.bundle.network for s in now if s.bundle is not None), netdir.name)
    pack = build_pack(name, period, compare, now, earlier)
    pack.reference = reference_sections(netdir, now)
    out.mkdir(parents=True, exist_ok=True)
    html_file, xlsx_file, pdf_file = out / "pack.html", out / "pack.xlsx", out / "pack.pdf"
    # Written whole or not at all: each file goes to a temporary name first.
    for path, data in ((html_file, pack_html(pack).encode("utf-8")), (xlsx_file, pack_xlsx(pack))):
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    # The signed bundles the pack was made from, for anyone to check with `cagnet verify`.
    bundles = out / "bundles"
    bundles.mkdir(exist_ok=True)
    for section in [*now, *earlier]:
        if section.envelope is not None:
            name = f"{section.period}-{section.kind}.json" if section.period else f"{section.kind}.json"
            bundle_file.save(bundles / name, section.envelope, network_dir=netdir)
    skipped = print_pdf(html_file, pdf_file)
    written = [html_file, xlsx_file] + ([] if skipped else [pdf_file])
    return pack, written, skipped

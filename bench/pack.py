"""Benchmark: a meeting pack for a seven-member network, as `cagnet report --period --compare` makes it.

Builds a real network on loopback (tests/netutil.py: seven members with synthetic records, gRPC
with mTLS on port 0), then times each step of a pack for 2009-10 compared with 2008-09: asking and
verifying every question the registry lists for both years, the summary and changes, the HTML, the
workbook, the PDF printed by headless Chromium, and the whole (`write_pack`, which also saves the
signed bundles). Prints a table of seconds and sizes, each step's share of the whole, and every
question refused with its reason (a standard question a chair asks should never be).
Run: .venv/bin/python bench/pack.py [--members 7] [--clients N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.actions.pack import ask_pack, build_pack  # noqa: E402
from cagnet.actions.pack_files import pack_html, pack_xlsx, print_pdf, write_pack  # noqa: E402
from coordinator.joint.client import CoordinatorClient  # noqa: E402
from tests.netutil import make_network, running  # noqa: E402

# Kent, Medway, Brighton & Hove, East Sussex, West Sussex, Surrey, Hampshire
MEMBERS = ("E10000016", "E06000035", "E06000043", "E10000011", "E10000032", "E10000030", "E10000014")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=7)
    parser.add_argument("--clients", type=int, default=None, help="client records per member (default realistic)")
    args = parser.parse_args()
    members = MEMBERS[: max(3, min(args.members, len(MEMBERS)))]
    console = Console()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-pack-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        built = make_network(root, members, clients=args.clients)
        console.print(f"network of {len(members)} members built in {time.perf_counter() - start:.1f} s")
        with running(built) as net:
            t = time.perf_counter()
            with CoordinatorClient(net.netdir, principal="cag-chair") as client:
                now, earlier = ask_pack(client, "2009-10", "2008-09")
            asked = time.perf_counter() - t
            asked_all = [*now, *earlier]
            answered = sum(not s.refusal for s in asked_all)
            rows.append((f"ask and verify {len(asked_all)} questions", asked, f"{answered} answered"))
            refused = [s for s in asked_all if s.refusal]
            t = time.perf_counter()
            pack = build_pack("bench", "2009-10", "2008-09", now, earlier)
            rows.append(("summary and changes", time.perf_counter() - t, ""))
            t = time.perf_counter()
            document = pack_html(pack)
            rows.append(("HTML", time.perf_counter() - t, f"{len(document.encode()) / 1e6:.2f} MB"))
            html_file = root / "pack.html"
            html_file.write_text(document, encoding="utf-8")
            t = time.perf_counter()
            workbook = pack_xlsx(pack)
            rows.append(("Excel workbook", time.perf_counter() - t, f"{len(workbook) / 1e6:.2f} MB"))
            t = time.perf_counter()
            skipped = print_pdf(html_file, root / "pack.pdf")
            pdf = root / "pack.pdf"
            rows.append(
                ("PDF (headless Chromium)", time.perf_counter() - t, skipped or f"{pdf.stat().st_size / 1e6:.2f} MB")
            )
            # The whole command once more, as a chair runs it (same questions: the ledgers allow a repeat).
            t = time.perf_counter()
            _, written, _ = write_pack(net.netdir, root / "out", period="2009-10", compare="2008-09")
            whole = time.perf_counter() - t
    table = Table(title=f"meeting pack, {len(members)}-member network, 2009-10 compared with 2008-09")
    for column in ("step", "seconds", "share of whole", "size / note"):
        table.add_column(column, justify="left" if column in ("step", "size / note") else "right")
    for name, seconds, note in rows:
        table.add_row(name, f"{seconds:.2f}", f"{seconds / whole:.0%}", note)
    table.add_row("whole: write_pack (HTML, XLSX, PDF, bundles)", f"{whole:.2f}", "100%", f"{len(written)} files")
    console.print(table)
    for section in refused:
        console.print(f"refused: {section.kind} {section.period or '(as it stands)'}: {section.refusal}")


if __name__ == "__main__":
    main()

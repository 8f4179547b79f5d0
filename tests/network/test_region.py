"""A regional board's roll-up over two real networks (each three nodes and a coordinator on port 0,
mTLS), one kit each: `cagnet feed region --kit A --kit B --out DIR` verifies each network's feed
on its own, names a network with no snapshot as missing and an old snapshot as stale (both left
out of the sums), and sums the CAGs' figures where their periods agree. The sums are checked
against the verified snapshots themselves, opened from the workbook with openpyxl.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from cagnet.actions.region import CagFeed, region_tables, write_region
from cagnet.cli import app
from coordinator import network
from coordinator.feeds.client import publish
from coordinator.feeds.snapshot import FeedSnapshot
from shared.manifest import REGIONAL_BOARD
from tests.netutil import THREE, LiveNetwork, make_network, running

BOARD = "se-board"


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNetwork, LiveNetwork]]:
    built = []
    for seed, name in ((7, "a"), (70, "b")):
        net = make_network(tmp_path_factory.mktemp(name), THREE, seed=seed)
        network.add_principal(net.netdir, party_id=BOARD, role=REGIONAL_BOARD, name="SE Regional Housing Board")
        built.append(net)
    with ExitStack() as stack:
        a, b = (stack.enter_context(running(LiveNetwork(n.netdir, n.nodedirs))) for n in built)
        yield a, b


def _units(book: object) -> tuple[list[str], list[tuple[object, ...]]]:
    sheet = book["units of support"]  # type: ignore[index]
    rows = list(sheet.iter_rows(values_only=True))
    return [str(c) for c in rows[2]], rows[3:]


def test_a_regional_roll_up_names_the_missing_and_stale_and_sums_where_periods_agree(
    nets: tuple[LiveNetwork, LiveNetwork], tmp_path: Path
) -> None:
    a, b = nets
    kits = []
    for net, folder in ((a, "kit-a"), (b, "kit-b")):
        kit = tmp_path / folder
        _cli("network", "principal", "export", BOARD, "--network", str(net.netdir), "--out", str(kit))
        kits.append(kit)
    first: FeedSnapshot = publish(a.netdir)
    out = tmp_path / "region"
    shown = _cli("feed", "region", "--kit", str(kits[0]), "--kit", str(kits[1]), "--out", str(out))
    # B has published nothing yet: named missing; A's figures are the region's.
    assert "missing: Test CAG (kit-b): no snapshot published" in shown
    assert "verified: Test CAG (kit-a): snapshot 1" in shown
    assert {p.name for p in out.iterdir()} == {"region.html", "region.xlsx", "region.csv", "feeds"}
    columns, rows = _units(load_workbook(out / "region.xlsx"))
    assert columns[-1] == "region" and "Test CAG (kit-b)" not in columns
    assert {r[0]: r[-1] for r in rows} == {s.client_group: s.units for s in first.supply}
    assert all(type(r[-1]) is int for r in rows)

    # Snapshots are stamped to the second: B's must be a later second than A's for one to be older.
    time.sleep(1.1)
    second = publish(b.netdir)
    # A's snapshot is older than the board accepts: named stale and not summed.
    published = [datetime.fromisoformat(s.published_at) for s in (first, second)]
    gap = published[1] - published[0]
    assert gap > timedelta(0)
    feeds, _ = write_region(kits, out, stale_after=gap / 2, now=published[1])
    assert [(f.stale, f.snapshot is not None) for f in feeds] == [(True, True), (False, True)]
    notes = [tuple(r) for r in load_workbook(out / "region.xlsx")["notes"].iter_rows(values_only=True)]
    assert any(r[0] == "stale" and str(r[1]).startswith("Test CAG (kit-a): stale") for r in notes)
    columns, rows = _units(load_workbook(out / "region.xlsx"))
    assert {r[0]: r[-1] for r in rows} == {s.client_group: s.units for s in second.supply}

    # Both current: the supply (the same day) and the flows (the same span) summed across the CAGs.
    write_region(kits, out, stale_after=timedelta(days=31), now=published[1])
    book = load_workbook(out / "region.xlsx")
    columns, rows = _units(book)
    a_units = {s.client_group: s.units for s in first.supply}
    b_units = {s.client_group: s.units for s in second.supply}
    assert {r[0]: r[-1] for r in rows} == {g: a_units[g] + b_units[g] for g in a_units}
    assert {r[0]: (r[2], r[3]) for r in rows} == {g: (a_units[g], b_units[g]) for g in a_units}
    flows = list(book["new from outside the CAG"].iter_rows(min_row=4, values_only=True))
    a_out = {f.client_group: f.from_outside for f in first.flows}
    b_out = {f.client_group: f.from_outside for f in second.flows}
    for row in flows:
        g = row[0]
        if a_out[g].complete and b_out[g].complete:
            assert row[-1] == a_out[g].count + b_out[g].count
        else:  # a sum with a suppressed part is not added up: shown as withheld
            assert row[-1] == "*"

    # Had B's snapshot covered another span of records than A's, its flows would not be summed (the
    # notes say why), while the supply (the same day in both) still is. (The figures are B's own,
    # only their span relabelled: the nodes' ledgers would rightly refuse a second span so soon.)
    other = second.model_copy(
        update={"flows": tuple(f.model_copy(update={"period": "2009-04-01/2010-03-31"}) for f in second.flows)}
    )
    tables, notes = region_tables([CagFeed(kits[0], "A", first), CagFeed(kits[1], "B", other)])
    by_title = {t.title: t for t in tables}
    assert all(r[-1] is None for r in by_title["region: new from outside the CAG"].rows)
    assert any(k == "flows" and v.startswith("not summed: periods differ") for k, v in notes)
    assert {r[0]: r[-1] for r in by_title["region: units of support"].rows} == {
        g: a_units[g] + b_units[g] for g in a_units
    }

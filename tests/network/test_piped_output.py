"""Query output that survives a pipe: the `cagnet` command run as a process with its standard
output a pipe (no terminal, no COLUMNS), on a real network with a long-named member. Every
column's full text is there in the table; `--format csv` gives every table whole, with its period
and the policy; `--format json` the verified bundle."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import vocabulary
from tests.netutil import LiveNetwork, make_network, running

ROOT = Path(__file__).resolve().parent.parent.parent
# Kent, West Sussex (the widest column of the demo, once cut at 80 columns), Brighton & Hove.
MEMBERS = ("E10000016", "E10000032", "E06000043")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("piped"), MEMBERS, clients=600)
    with running(built) as live:
        yield live


def _piped(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(ROOT)
    # capture_output: standard output is a pipe, as in `cagnet query ... | less`
    done = subprocess.run([sys.executable, "-m", "cagnet", *args], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode("utf-8")


def _cut(text: str) -> list[str]:
    """Lines with a cell cut short (the policy's digest is shortened on purpose, and named in full by --json)."""
    return [line for line in text.splitlines() if "…" in line and "policy sha256:" not in line]


def test_a_piped_supply_map_table_cuts_no_column(net: LiveNetwork) -> None:
    text = _piped("query", "supply-map", "--network", str(net.netdir))
    assert not _cut(text)
    for name in ("Kent", "West Sussex", "Brighton & Hove", "W Sussex"):
        assert name in text
    for group, name in vocabulary.CLIENT_GROUPS.items():
        assert f"{group:>2} {name}" in text, name  # each label whole, on one line


def test_a_piped_kpi_table_cuts_no_column(net: LiveNetwork) -> None:
    text = _piped("query", "kpi", "--network", str(net.netdir), "--from", "2009-04-01", "--to", "2010-03-31")
    assert not _cut(text)
    assert "all client groups" in text
    for line in text.splitlines():
        if line.lstrip().startswith("6 "):  # client group 6's row: its whole label
            assert vocabulary.CLIENT_GROUPS[6] in line


def test_format_csv_gives_every_table_whole_with_its_period_and_policy(net: LiveNetwork) -> None:
    text = _piped("query", "supply-map", "--network", str(net.netdir), "--format", "csv")
    rows = list(csv.reader(io.StringIO(text)))
    notes = {r[1]: r[2] for r in rows if r and r[0] == "#"}
    assert notes["policy digest"].startswith("sha256:") and notes["period"].startswith("as at ")
    start = next(i for i, r in enumerate(rows) if r and r[0] == "supply-map: authorities")
    header = rows[start + 1]
    body = rows[start + 2 : start + 2 + len(MEMBERS)]
    names = {r[header.index("authority name")] for r in body}
    assert names == {"Kent", "W Sussex", "B&H"}
    assert all(int(r[header.index("units")]) > 0 for r in body)
    groups = next(i for i, r in enumerate(rows) if r and r[0] == "supply-map: client groups")
    labels = {r[rows[groups + 1].index("client group name")] for r in rows[groups + 2 : groups + 2 + 21] if r}
    assert set(vocabulary.CLIENT_GROUPS.values()) <= labels


def test_format_json_is_the_verified_bundle(net: LiveNetwork) -> None:
    bundle = json.loads(_piped("query", "supply-map", "--network", str(net.netdir), "--format", "json"))
    assert bundle["kind"] == "supply-map" and sorted(bundle["answered"]) == sorted(MEMBERS)


@pytest.mark.parametrize("kind", ["outcomes", "equality", "kpi1", "utilisation", "unmet-demand", "fair-shares"])
def test_a_piped_table_of_every_other_kind_cuts_no_label(net: LiveNetwork, kind: str) -> None:
    """The outcomes, equality, returns and fair-shares tables printed their labels cut short even at
    full width ("make a positive contr…", "4 People with mental he…"); piped, each label is whole."""
    text = _piped("query", kind, "--network", str(net.netdir), "--from", "2009-04-01", "--to", "2010-03-31")
    assert not _cut(text), _cut(text)

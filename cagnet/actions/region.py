"""A regional board's roll-up across the CAGs whose feeds it takes (one kit each): each network's
latest snapshot fetched and verified on its own, the figures side by side by CAG, and summed
across CAGs only where the definitions agree (the same period for that figure); a CAG with no
snapshot, or whose latest is older than the board accepts, is named and left out of the sums.
`cagnet feed region --kit A --kit B ... --out DIR`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cagnet.actions.labels import currency_lines
from cagnet.actions.tables import ResultTable, tables_csv, tables_xlsx
from coordinator import network
from coordinator.feeds.client import subscribe
from coordinator.feeds.snapshot import FeedSnapshot, verify_snapshot_in_chain
from shared import dsse, vocabulary
from shared.errors import CagnetError
from shared.manifest import REGIONAL_BOARD

__all__ = ["CagFeed", "fetch_region", "region_tables", "write_region"]

_SNAPSHOT = re.compile(r"^snapshot-(\d{6,})\.dsse\.json$")


@dataclass
class CagFeed:
    """One CAG's feed as the board holds it: its latest verified snapshot (None: none held), and
    what is wrong with it, if anything."""

    kit: Path
    network: str
    snapshot: FeedSnapshot | None
    problem: str = ""  # why the snapshot is missing, or why the latest held is used
    stale: bool = False

    @property
    def summed(self) -> bool:
        return self.snapshot is not None and not self.stale


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "network"


def _latest_held(kit: Path, folder: Path) -> FeedSnapshot | None:
    """The newest snapshot written to `folder`, verified again against the kit's manifest chain."""
    if not folder.is_dir():
        return None
    held = sorted((int(m[1]), p) for p in folder.iterdir() if (m := _SNAPSHOT.match(p.name)))
    if not held:
        return None
    envelope = dsse.Envelope.from_json(json.loads(held[-1][1].read_text()))
    return verify_snapshot_in_chain(envelope, [m for m, _ in network.history(kit)])[0]


def fetch_region(
    kits: Sequence[Path], out: Path, *, stale_after: timedelta, now: datetime | None = None
) -> list[CagFeed]:
    """Each kit's new snapshots fetched, verified and kept under out/feeds/<network>; then its
    latest, stale when published more than `stale_after` before `now`."""
    now = now or datetime.now(UTC)
    feeds: list[CagFeed] = []
    names = [network.read(kit).network for kit in kits]
    for kit, name in zip(kits, names, strict=True):
        if names.count(name) > 1:  # two networks of one name: told apart by their kits' folders
            name = f"{name} ({kit.name})"
        folder = out / "feeds" / _slug(name)
        problem = ""
        try:
            subscribe(kit, folder, principal=network.kit_principal(kit) or REGIONAL_BOARD)
        except CagnetError as exc:
            problem = f"not fetched now ({exc.public_message})"
        snapshot = _latest_held(kit, folder)
        if snapshot is None:
            feeds.append(CagFeed(kit, name, None, problem or "no snapshot published"))
            continue
        published = datetime.fromisoformat(snapshot.published_at)
        if published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        stale = now - published > stale_after
        if stale:
            problem = (problem + "; " if problem else "") + f"stale: published {snapshot.published_at}"
        feeds.append(CagFeed(kit, name, snapshot, problem, stale))
    return feeds


def _agreed(periods: dict[str, str]) -> tuple[bool, str]:
    """Whether a figure is defined alike in every CAG summed: the same period (a day or a span)."""
    distinct = set(periods.values())
    if len(distinct) <= 1:
        return True, next(iter(distinct), "")
    return False, "not summed: periods differ (" + "; ".join(f"{n}: {p}" for n, p in periods.items()) + ")"


def region_tables(feeds: Sequence[CagFeed]) -> tuple[list[ResultTable], list[tuple[str, str]]]:
    """The roll-up as tables (units, new clients from outside and between authorities, KPI 2: a
    column per CAG and a region column) and the notes that say what each figure covers."""
    held = [f for f in feeds if f.snapshot is not None]
    summed = [f for f in feeds if f.summed]
    notes: list[tuple[str, str]] = [("CAGs", ", ".join(f.network for f in feeds))]
    for f in feeds:
        if f.snapshot is None:
            notes.append(("missing", f"{f.network}: {f.problem}"))
            continue
        s = f.snapshot
        notes.append(("snapshot", f"{f.network}: number {s.sequence}, published {s.published_at}, verified"))
        notes.append(("policy digest", f"{f.network}: {s.policy_digest}"))
        if f.problem:
            notes.append(("stale" if f.stale else "note", f"{f.network}: {f.problem} (not in the region's sums)"))
        notes.extend(("missing", f"{f.network}: {m.authority}: {m.reason}") for m in s.missing)
        notes.extend(("records currency", f"{f.network}: {line}") for line in currency_lines(s.currency))
    tables: list[ResultTable] = []

    def table(title: str, field: str, figures: dict[str, dict[int, int | None]], periods: dict[str, str]) -> None:
        agree, period = _agreed({f.network: periods[f.network] for f in summed if f.network in periods})
        columns = ["client group", "client group name", *(f.network for f in held), "region"]
        groups = sorted({g for by in figures.values() for g in by})
        rows: list[list[object]] = []
        for g in groups:
            cells = [figures.get(f.network, {}).get(g) for f in held]
            parts = [figures.get(f.network, {}).get(g) for f in summed]
            total = sum(p for p in parts if p is not None) if agree and summed and None not in parts else None
            name = "all client groups" if g == 0 else vocabulary.CLIENT_GROUPS.get(g, "")
            rows.append([g, name, *cells, total])
        label = period if agree else "periods differ"
        tables.append(ResultTable(title=f"region: {title}", period=label, columns=columns, rows=rows))
        if not agree:
            notes.append((field, period))

    units: dict[str, dict[int, int | None]] = {
        f.network: {r.client_group: r.units for r in f.snapshot.supply} for f in held if f.snapshot
    }
    supply_periods = {f.network: f.snapshot.supply[0].period for f in held if f.snapshot and f.snapshot.supply}
    table("units of support", "units", units, supply_periods)
    # A count with a suppressed part left out is not a figure to add up: it is shown empty.
    outside = {
        f.network: {r.client_group: r.from_outside.count if r.from_outside.complete else None for r in f.snapshot.flows}
        for f in held
        if f.snapshot
    }
    between = {
        f.network: {
            r.client_group: r.between_authorities.count if r.between_authorities.complete else None
            for r in f.snapshot.flows
        }
        for f in held
        if f.snapshot
    }
    flow_periods = {f.network: f.snapshot.flows[0].period for f in held if f.snapshot and f.snapshot.flows}
    table("new from outside the CAG", "flows", outside, flow_periods)
    table("moved between authorities", "flows", between, flow_periods)
    planned = {
        f.network: {r.client_group: r.planned.count if r.planned.complete else None for r in f.snapshot.kpi2}
        for f in held
        if f.snapshot
    }
    departures = {
        f.network: {r.client_group: r.departures.count if r.departures.complete else None for r in f.snapshot.kpi2}
        for f in held
        if f.snapshot
    }
    kpi_periods = {f.network: f.snapshot.kpi2[0].period for f in held if f.snapshot and f.snapshot.kpi2}
    table("KPI 2 planned moves", "KPI 2", planned, kpi_periods)
    table("KPI 2 departures", "KPI 2", departures, kpi_periods)
    notes.append(("empty figure", "suppressed in that CAG's feed, or a sum with a suppressed part (not added up)"))
    return tables, notes


def _html(tables: Sequence[ResultTable], notes: Sequence[tuple[str, str]], made: str) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "<td class='s'>*</td>"
        if isinstance(v, int | float) and not isinstance(v, bool):
            return f"<td class='n'>{v:,}</td>"
        return f"<td>{html.escape(str(v))}</td>"

    body = []
    for t in tables:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
        rows = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in t.rows)
        body.append(
            f"<table class='result'><caption>{html.escape(t.title)} ({html.escape(t.period)})</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )
    listed = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in notes)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        "<title>Regional roll-up</title><style>body{font-family:system-ui,sans-serif;margin:2em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
        "td.n{text-align:right}td.s{text-align:center;color:#a33}caption{text-align:left;font-weight:bold}</style>"
        f"</head><body><h1>Regional roll-up of CAG feeds</h1><p>Made {html.escape(made)} from snapshots each "
        f"verified against its own network's keys.</p><ul class='notes'>{listed}</ul>{''.join(body)}</body></html>"
    )


def write_region(
    kits: Sequence[Path], out: Path, *, stale_after: timedelta, now: datetime | None = None
) -> tuple[list[CagFeed], list[Path]]:
    """Fetch and verify each kit's feed, and write region.html, region.xlsx and region.csv in `out`."""
    feeds = fetch_region(kits, out, stale_after=stale_after, now=now)
    tables, notes = region_tables(feeds)
    made = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    files = {
        out / "region.html": _html(tables, notes, made).encode("utf-8"),
        out / "region.xlsx": tables_xlsx(tables, notes),
        out / "region.csv": tables_csv(tables, notes).encode("utf-8"),
    }
    for path, data in files.items():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return feeds, list(files)

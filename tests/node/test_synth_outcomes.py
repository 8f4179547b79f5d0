"""The synthetic records the outcomes and equality analyses read: ethnicity follows the kind of
authority (a London borough's clients more diverse than a county's), and short-term outcomes follow
the departure and the client group (planned moves meet more needs, offenders' and
rough sleepers' services fewer)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from node.synthetic.clients import write_client_csvs
from node.synthetic.supply import generate

KENT, LAMBETH = "E10000016", "E09000022"
DOMAINS = ("economic_wellbeing", "enjoy_and_achieve", "be_healthy", "stay_safe", "positive_contribution")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_a_london_borough_s_clients_are_more_diverse_than_a_county_s(tmp_path: Path) -> None:
    shares = {}
    for code in (KENT, LAMBETH):
        paths = write_client_csvs(generate(code, seed=3), tmp_path / code, count=3000)
        ethnicity = Counter(r["ethnicity"] for r in _rows(paths["client-records"]))
        shares[code] = ethnicity["A"] / sum(ethnicity.values())
    assert 0.75 < shares[KENT] < 0.92
    assert 0.4 < shares[LAMBETH] < 0.65


def test_outcomes_follow_the_departure_and_the_client_group(tmp_path: Path) -> None:
    paths = write_client_csvs(generate(KENT, seed=3), tmp_path, count=12000)
    group_of = {r["record_ref"]: int(r["client_group"]) for r in _rows(paths["client-records"])}
    met: Counter[tuple[str, str]] = Counter()
    needs: Counter[tuple[str, str]] = Counter()
    for row in _rows(paths["outcomes"]):
        group = group_of[row["record_ref"]]
        kind = "offending" if group in (8, 9, 10, 19) else ""
        for domain in DOMAINS:
            if row[domain] == "not-applicable":
                continue
            for key in ((row["departure"], ""), ("", kind)):
                needs[key] += 1
                met[key] += row[domain] == "achieved"
    rate = {key: met[key] / needs[key] for key in needs}
    assert rate[("planned", "")] > rate[("unplanned", "")] + 0.2
    # Offenders', drug and rough sleepers' services meet fewer of the needs they take on.
    assert needs[("", "offending")] > 1000
    assert rate[("", "offending")] < rate[("", "")] - 0.05

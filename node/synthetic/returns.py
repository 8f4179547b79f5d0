"""Synthetic quarterly returns for an authority's synthetic services: KPI 1 for each long-term
service and occupancy for every service, each quarter of the financial years the synthetic client
records cover, written as the importer's CSV files.

The levels are the programme's (assumed, docs: domain): long-term services keep about 95-98% of
their users living independently (alarms and sheltered housing at the top, mental health and
learning disability services a little lower); accommodation runs at about 85-97% occupancy with a
few voids, refuges and hostels full with waiting lists, sheltered housing with a few voids and
longer waits; refused referrals mostly where services are full.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

from node.imports.returns import COLUMNS, KPI1_RETURNS, OCCUPANCY_RETURNS
from node.returns import quarter_label
from node.synthetic.rows import ServiceRecord, SyntheticSupply
from shared import vocabulary
from shared.spreadsheet import SafeWriter
from shared.vocabulary import ServiceType, Term

__all__ = ["FIRST_YEAR", "LAST_YEAR", "write_return_csvs"]

FIRST_YEAR, LAST_YEAR = 2008, 2009  # the financial years 2008-09 and 2009-10, as the client records
_FULL = {7, 8, 9, 10, 11, 14, 17, 19}  # hostels, substance, offender services, refuges: in demand
# KPI 1: the share of a long-term service's users maintaining independent living, by client group.
_MAINTAINING = {1: 0.975, 2: 0.955, 3: 0.96, 4: 0.95, 5: 0.965, 6: 0.97}
_DEFAULT_MAINTAINING = 0.96


def _quarters() -> list[str]:
    starts = [date(y + (m == 1), m, 1) for y in range(FIRST_YEAR, LAST_YEAR + 1) for m in (4, 7, 10, 1)]
    return [quarter_label(s) for s in starts]


def _kpi1(rng: random.Random, service: ServiceRecord) -> tuple[int, int]:
    if service.units == 0:
        return 0, 0
    # Users in a quarter: everyone there at its start plus the few who arrived as others left.
    turnover = 0.02 if service.service_type == ServiceType.COMMUNITY_ALARM else 0.06
    users = max(0, round(service.units * rng.uniform(0.9, 1.0) * (1 + rng.uniform(0, turnover))))
    rate = _MAINTAINING.get(service.client_group, _DEFAULT_MAINTAINING) + rng.uniform(-0.015, 0.015)
    return users, min(users, round(users * min(rate, 1.0)))


def _occupancy(rng: random.Random, service: ServiceRecord) -> tuple[int, int, int, int]:
    units = service.units
    if units == 0:
        return 0, 0, 0, 0
    full = service.client_group in _FULL
    if service.service_type in (ServiceType.COMMUNITY_ALARM, ServiceType.HOME_IMPROVEMENT_AGENCY):
        rate = rng.uniform(0.9, 0.98)
    elif full:
        rate = rng.uniform(0.9, 0.99)
    else:
        rate = rng.uniform(0.85, 0.96)
    out_of_use = round(units * rng.uniform(0, 0.03))  # repairs and refurbishment: neither occupied nor void
    in_use = units - out_of_use
    occupied = min(in_use, round(in_use * rate))
    voids = in_use - occupied
    # An alarm is fitted, or a repair started, within weeks: their lists are short and few
    # referrals are refused. Now that waiting lists are released, they must read plausibly.
    quick = service.service_type in (ServiceType.COMMUNITY_ALARM, ServiceType.HOME_IMPROVEMENT_AGENCY)
    demand = 0.01 if quick else 0.5 if full else 0.15 if service.client_group in (1, 2, 3) else 0.2
    waiting = round(units * demand * rng.uniform(0.3, 1.5))
    refused = round(units * (0.002 if quick else 0.25 if full else 0.05) * rng.uniform(0, 1.2))
    return occupied, voids, waiting, refused


def write_return_csvs(supply: SyntheticSupply, directory: Path) -> dict[str, Path]:
    """The KPI 1 and occupancy returns of `supply`'s services as CSV files in `directory`."""
    rng = random.Random(f"cagnet-synth-returns:{supply.authority_code}:{supply.seed}")
    quarters = _quarters()
    paths = {kind: directory / f"{kind}.csv" for kind in (KPI1_RETURNS, OCCUPANCY_RETURNS)}
    with (
        paths[KPI1_RETURNS].open("w", encoding="utf-8", newline="") as kpi1_file,
        paths[OCCUPANCY_RETURNS].open("w", encoding="utf-8", newline="") as occupancy_file,
    ):
        kpi1, occupancy = SafeWriter(kpi1_file), SafeWriter(occupancy_file)
        kpi1.writerow(COLUMNS[KPI1_RETURNS].all)
        occupancy.writerow(COLUMNS[OCCUPANCY_RETURNS].all)
        for service in supply.services:
            assert service.client_group in vocabulary.CLIENT_GROUPS
            for quarter in quarters:
                if service.term == Term.LONG.value:
                    kpi1.writerow([service.service_ref, quarter, *_kpi1(rng, service)])
                occupancy.writerow([service.service_ref, quarter, *_occupancy(rng, service)])
    return paths

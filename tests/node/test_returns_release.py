"""KPI 1 and occupancy through a node's release gate, on each backend, from a synthetic authority's
quarterly returns: counts released as the policy says (checked against the store), the stricter
threshold of refuges, a repeated or barely revised question answered as before, the query-set
restriction and the role check.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from node.answers.movement import Question
from node.imports.returns import import_returns
from node.imports.supply import import_csv
from node.release import Releaser
from node.returns import Kpi1Return, OccupancyReturn
from node.store import Service, open_store
from node.synthetic.supply import load
from shared.disclosure import TOTAL, Protection
from shared.errors import DisclosureRefused, NotPermitted
from shared.models import CountTable
from shared.policy import AggregateRule, default_policy

MEDWAY = "E06000035"
POLICY = default_policy()
RULE = POLICY.rule("utilisation")
YEAR = Question(date(2009, 4, 1), date(2010, 3, 31), "all", (), 50)
CHAIR = ("cag-chair",)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_store(database_url)
    load(engine, authority_code=MEDWAY, seed=3, with_clients=False)
    try:
        yield engine
    finally:
        engine.dispose()


def _releaser(engine: Engine) -> Releaser:
    return Releaser(engine, MEDWAY, secrets.token_bytes(32))


def _true_occupancy(engine: Engine) -> dict[tuple[str, str, str], int]:
    returns, service = OccupancyReturn.__table__.c, Service.__table__.c  # type: ignore[attr-defined]
    query = select(service.client_group, service.service_type, returns.units_occupied, returns.voids).join_from(
        OccupancyReturn.__table__,  # type: ignore[attr-defined]
        Service.__table__,  # type: ignore[attr-defined]
        returns.service_id == service.id,
    )
    query = query.where(returns.quarter_start >= YEAR.from_date, returns.quarter_start <= date(2010, 1, 1))
    truth: dict[tuple[str, str, str], int] = defaultdict(int)
    with engine.connect() as conn:
        for group, service_type, occupied, voids in conn.execute(query):
            for key in ((str(group), service_type), (TOTAL, service_type)):
                truth[(*key, "occupied")] += occupied
                truth[(*key, "void")] += voids
    return truth


def _true_demand(engine: Engine) -> dict[tuple[str, str, str], int]:
    """Waiting list and referrals refused by (client group, service type, measure), with plain SQL."""
    rows = text(
        "SELECT s.client_group, s.service_type, SUM(r.waiting_list), SUM(r.referrals_refused) FROM occupancy_return r"
        " JOIN service s ON r.service_id = s.id WHERE r.quarter_start >= :first AND r.quarter_start <= :last"
        " GROUP BY s.client_group, s.service_type"
    )
    truth: dict[tuple[str, str, str], int] = {}
    with engine.connect() as conn:
        for group, service_type, waiting, refused in conn.execute(
            rows, {"first": YEAR.from_date, "last": date(2010, 1, 1)}
        ):
            truth[(str(group), service_type, "waiting")] = int(waiting)
            truth[(str(group), service_type, "refused")] = int(refused)
    return truth


def test_waiting_lists_and_refused_referrals_are_released_by_the_policy_against_the_store(engine: Engine) -> None:
    rule = POLICY.rule("unmet-demand")
    table = _releaser(engine).unmet_demand(POLICY, roles=CHAIR, question=YEAR)
    assert table.dimensions == ("client_group", "service_type", "measure")
    truth = _true_demand(engine)
    released = _cells(table)
    checked = 0
    for key, true in truth.items():
        count = released[key]
        if 1 <= true <= rule.threshold_for(int(key[0])):
            assert count is None, (key, true)  # refuges and refugees at 10, the rest at 7
        if count is not None:
            checked += 1
            assert count % rule.rounding_base == 0 and abs(count - true) < rule.rounding_base, (key, true, count)
    assert checked > 10
    # Units are not in it: no cell of the people's table is a count of occupied or void units. The
    # year is on the standard table set: each measure has its totals, and none adds the two together.
    assert {c.key[2] for c in table.cells} == {"waiting", "refused"}
    assert {(TOTAL, TOTAL, "waiting"), (TOTAL, TOTAL, "refused")} <= set(released)


def _cells(table: CountTable) -> dict[tuple[str, ...], int | None]:
    return {c.key: c.count for c in table.cells}


def test_occupancy_is_released_by_the_policy_against_the_store(engine: Engine) -> None:
    table = _releaser(engine).utilisation(POLICY, roles=CHAIR, question=YEAR)
    assert table.dimensions == ("client_group", "service_type", "state")
    truth = _true_occupancy(engine)
    released = _cells(table)
    checked = 0
    for key, true in truth.items():
        count = released[key]
        threshold = RULE.threshold_for(int(key[0]) if key[0] != TOTAL else None)
        if 1 <= true <= threshold:
            assert count is None, (key, true)  # refuges and refugees at 10, the rest at 7
        if count is not None:
            checked += 1
            assert count % RULE.rounding_base == 0 and abs(count - true) < RULE.rounding_base, (key, true, count)
    assert checked > 20


def test_kpi1_counts_long_term_services_only_and_repeats_itself(engine: Engine) -> None:
    releaser = _releaser(engine)
    first = releaser.kpi1(POLICY, roles=CHAIR, question=YEAR)
    returns, service = Kpi1Return.__table__.c, Service.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        terms = set(
            conn.execute(select(service.term).join_from(Kpi1Return.__table__, Service.__table__)).scalars()  # type: ignore[attr-defined]
        )
        users = sum(
            conn.execute(select(returns.service_users).where(returns.quarter_start >= YEAR.from_date)).scalars()
        )
    assert terms == {"long"}
    total = _cells(first)[(TOTAL, TOTAL)]
    assert total is not None and abs(total - users) < RULE.rounding_base
    assert releaser.kpi1(POLICY, roles=CHAIR, question=YEAR) == first


def test_a_return_revised_by_one_person_changes_no_released_figure(engine: Engine, tmp_path: Path) -> None:
    releaser = _releaser(engine)
    before = releaser.kpi1(POLICY, roles=CHAIR, question=YEAR)
    returns, service = Kpi1Return.__table__.c, Service.__table__.c  # type: ignore[attr-defined]
    with engine.connect() as conn:
        ref, users, kept = conn.execute(
            select(service.service_ref, returns.service_users, returns.maintaining)
            .join_from(Kpi1Return.__table__, Service.__table__)  # type: ignore[attr-defined]
            .where(returns.quarter_start == date(2009, 7, 1), returns.maintaining > 0)
            .limit(1)
        ).one()
    revised = tmp_path / "kpi1.csv"
    revised.write_text(f"service_ref,quarter,service_users,maintaining\r\n{ref},2009-10 Q2,{users},{kept - 1}\r\n")
    assert import_returns(engine, kind="kpi1-returns", path=revised).updated == 1
    # Differencing the two answers would show that one person: the earlier answer stands, whole.
    assert releaser.kpi1(POLICY, roles=CHAIR, question=YEAR) == before


def test_a_filter_on_a_handful_and_a_role_the_policy_does_not_allow_are_refused(engine: Engine, tmp_path: Path) -> None:
    # One travellers' site of 6 pitches with a return for a quarter before the synthetic ones: a
    # filter on its client group for that quarter selects 6 units, within the threshold.
    with engine.connect() as conn:
        provider = conn.execute(text("SELECT provider_ref FROM provider ORDER BY id")).scalars().first()
        district = conn.execute(text("SELECT code FROM district ORDER BY code")).scalars().first()
    services = tmp_path / "services.csv"
    services.write_text(
        "service_ref,provider_ref,name,district,service_type,client_group,units,designated,term\r\n"
        f"MED-SITE,{provider},Travellers' site,{district},accommodation-based,20,6,no,long\r\n"
    )
    import_csv(engine, kind="services", path=services)
    occupancy = tmp_path / "occupancy.csv"
    occupancy.write_text(
        "service_ref,quarter,units_occupied,voids,waiting_list,referrals_refused\r\nMED-SITE,2007-08 Q1,5,1,2,0\r\n"
    )
    import_returns(engine, kind="occupancy-returns", path=occupancy)
    releaser = _releaser(engine)
    small = Question(date(2007, 4, 1), date(2007, 6, 30), "all", (20,), 50)
    with pytest.raises(DisclosureRefused, match="query-set restriction"):
        releaser.utilisation(POLICY, roles=CHAIR, question=small)
    with pytest.raises(NotPermitted):
        releaser.kpi1(POLICY, roles=("regional-board",), question=YEAR)


# --- the attacker's linear programme ----------------------------------------------------------------


def _plant_small_cells(engine: Engine, tmp_path: Path) -> None:
    """Refugees' supported housing (a long-term service of 6 units) whose 2009-10 returns have 2
    users not maintaining independent living and 1 void: cells well inside the refugees' stricter
    threshold, beside the synthetic authority's ordinary ones."""
    with engine.connect() as conn:
        provider = conn.execute(text("SELECT provider_ref FROM provider ORDER BY id")).scalars().first()
        district = conn.execute(text("SELECT code FROM district ORDER BY code")).scalars().first()
    services = tmp_path / "services.csv"
    services.write_text(
        "service_ref,provider_ref,name,district,service_type,client_group,units,designated,term\r\n"
        f"MED-RSS,{provider},Refugee supported housing,{district},accommodation-based,17,6,no,long\r\n"
    )
    import_csv(engine, kind="services", path=services)
    (tmp_path / "kpi1.csv").write_text("service_ref,quarter,service_users,maintaining\r\nMED-RSS,2009-10 Q2,6,4\r\n")
    import_returns(engine, kind="kpi1-returns", path=tmp_path / "kpi1.csv")
    (tmp_path / "occupancy.csv").write_text(
        "service_ref,quarter,units_occupied,voids,waiting_list,referrals_refused\r\nMED-RSS,2009-10 Q2,5,1,3,1\r\n"
    )
    import_returns(engine, kind="occupancy-returns", path=tmp_path / "occupancy.csv")


def _true_kpi1(engine: Engine) -> dict[tuple[str, str], int]:
    truth: dict[tuple[str, str], int] = defaultdict(int)
    rows = text(
        "SELECT s.client_group, r.service_users, r.maintaining FROM kpi1_return r JOIN service s"
        " ON r.service_id = s.id WHERE s.term = 'long' AND r.quarter_start >= :first AND r.quarter_start <= :last"
    )
    with engine.connect() as conn:
        for group, users, kept in conn.execute(rows, {"first": YEAR.from_date, "last": date(2010, 1, 1)}):
            truth[(str(group), "maintained")] += kept
            truth[(str(group), "not-maintained")] += users - kept
    return truth


def _intervals(
    table: CountTable, truth: Mapping[tuple[str, ...], int], rule: AggregateRule, *, slack: int = 4
) -> list[tuple[float, float, int, int]]:
    """An attacker's bounds on each suppressed cell of `table`, from every figure it releases.
    Unknowns: the finest cells (no total in the key); a released count c says its cells sum to
    c +- `slack` (rounding to 5) and more than the threshold (else it would be suppressed), a cell
    suppressed as small that they sum to at least 1, one suppressed to protect another (which may
    be empty) that they sum to 0 or more. Returns (low, high, threshold, true) for each cell suppressed as small."""
    leaves = sorted(truth)
    position = table.dimensions.index("client_group")
    rows, lo, hi, hidden = [], [], [], []
    for cell in table.cells:
        row = np.array([all(k in (TOTAL, v) for k, v in zip(cell.key, leaf, strict=True)) for leaf in leaves], float)
        true = int(sum(truth[leaf] for leaf, on in zip(leaves, row, strict=True) if on))
        threshold = rule.threshold_over({int(leaf[position]) for leaf, on in zip(leaves, row, strict=True) if on})
        if cell.suppressed in (Protection.PRIMARY, Protection.GROUP):
            hidden.append((row, threshold, true))
            bounds = (1.0, np.inf)  # small, so not empty (the attacks of the other kinds read it so too)
        elif cell.suppressed == Protection.GRID:
            # The standard table set (KPI 1 and unmet demand are on it) does not say which of its hidden cells are the
            # small ones: the attacker bounds each by 0 only, and the small ones are the targets.
            if 1 <= true <= threshold:
                hidden.append((row, threshold, true))
            bounds = (0.0, np.inf)
        elif cell.count is None:
            bounds = (0.0, np.inf)  # suppressed so that a small one cannot be worked out: maybe 0
        elif cell.count == 0:
            bounds = (0.0, 0.0)
        else:
            bounds = (float(max(cell.count - slack, threshold + 1)), float(cell.count + slack))
        rows.append(row)
        lo.append(bounds[0])
        hi.append(bounds[1])
    a, low_b, high_b = np.array(rows), np.array(lo), np.array(hi)
    finite = np.isfinite(high_b)
    a_ub, b_ub = np.vstack([a[finite], -a]), np.concatenate([high_b[finite], -low_b])
    found = []
    for row, threshold, true in hidden:
        low = linprog(row, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        high = linprog(-row, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        assert low.status == 0, low.message
        found.append((low.fun, np.inf if high.status == 3 else -high.fun, threshold, true))
    return found


def _unprotected(table: CountTable, truth: Mapping[tuple[str, ...], int], rule: AggregateRule) -> CountTable:
    """The control: the same table with only the small cells suppressed and every other figure exact
    (no secondary suppression, no rounding), which the attack must be able to break."""
    position = table.dimensions.index("client_group")
    cells = []
    for cell in table.cells:
        chosen = [leaf for leaf in truth if all(k in (TOTAL, v) for k, v in zip(cell.key, leaf, strict=True))]
        true = sum(truth[leaf] for leaf in chosen)
        threshold = rule.threshold_over({int(leaf[position]) for leaf in chosen if truth[leaf]})
        small = 1 <= true <= threshold
        cells.append(
            cell.model_copy(
                update={"count": None if small else true, "suppressed": Protection.PRIMARY if small else ""}
            )
        )
    return table.model_copy(update={"cells": tuple(cells)})


def _narrowed(found: list[tuple[float, float, int, int]]) -> list[tuple[float, float, int, int]]:
    for low, high, _threshold, true in found:
        assert low - 1e-6 <= true <= high + 1e-6  # the truth is always feasible
    return [f for f in found if f[1] - f[0] < f[2] - 1 - 1e-6]


@pytest.mark.parametrize("kind", ["kpi1", "utilisation", "unmet-demand"])
def test_no_suppressed_cell_of_the_returns_can_be_narrowed_within_its_band(
    engine: Engine, tmp_path: Path, kind: str
) -> None:
    """KPI 1 and the waiting lists and refused referrals count people; occupancy counts units, whose
    voids at a refuge or a small scheme say something about the few people there. Every released
    cell of the answer, bounded by rounding and the thresholds, must leave each suppressed cell at
    least its threshold band wide; the same table with only the small cells hidden (the control)
    must not."""
    _plant_small_cells(engine, tmp_path)
    rule = POLICY.rule(kind)
    releaser = _releaser(engine)
    truth: dict[tuple[str, ...], int]
    if kind == "kpi1":
        table, truth = releaser.kpi1(POLICY, roles=CHAIR, question=YEAR), dict(_true_kpi1(engine))
        planted, small = ("17", "not-maintained"), 2
    elif kind == "utilisation":
        table = releaser.utilisation(POLICY, roles=CHAIR, question=YEAR)
        truth = {k: v for k, v in _true_occupancy(engine).items() if k[0] != TOTAL}
        planted, small = ("17", "accommodation-based", "void"), 1
    else:
        table, truth = releaser.unmet_demand(POLICY, roles=CHAIR, question=YEAR), dict(_true_demand(engine))
        planted, small = ("17", "accommodation-based", "refused"), 1
    # The planted cells are the truth the store holds, and the answer hides them.
    assert truth[planted] == small and _cells(table)[planted] is None
    found = _intervals(table, truth, rule)
    assert found, "nothing was suppressed: the attack would prove nothing"
    assert _narrowed(found) == []
    control = _intervals(_unprotected(table, truth, rule), truth, rule, slack=0)
    assert _narrowed(control), "the attack found nothing even without secondary suppression and rounding"

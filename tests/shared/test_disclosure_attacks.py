"""What an attacker with a legitimate role tries, and what stops it.

Each test plays one attack against the disclosure layer as a node would run it (ledger, then
protection) on synthetic client group x district counts for Kent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from statistics import mean

import pytest

from shared.disclosure import (
    TOTAL,
    CellKey,
    InMemoryReleaseStore,
    MagnitudeCell,
    MagnitudeTable,
    Protection,
    ReleasedTable,
    ReleaseLedger,
    Table,
    protect_counts,
    protect_magnitudes,
    require_min_records,
)
from shared.errors import DisclosureRefused, InvalidRequest, NotPermitted
from shared.kinds.registry import AGGREGATE_KINDS
from shared.policy import default_policy, default_policy_toml, parse_policy
from shared.vocabulary import DOMESTIC_VIOLENCE
from tests.shared.test_disclosure import _determined
from tests.sixutil import AUTHORITIES

SECRET = b"node-rounding-secret-for-tests!!"
POLICY = default_policy()
SUPPLY = POLICY.rule("supply-map")
KENT = [d.code for d in AUTHORITIES["E10000016"].districts]
GROUPS = ["1", "4", "7", "9", "12", "14", "17", "19", "21"]
MONTHS = [f"2009-{m:02d}" for m in range(1, 13)]
GROUP_BY_DISTRICT = ("client_group", "district")


def _clients(seed: int, n: int = 600) -> list[tuple[str, str, str]]:
    """(client group, district, month) of each new client record in a synthetic year at Kent."""
    rng = random.Random(seed)
    weights = [8, 5, 26, 6, 5, 12, 2, 3, 4]
    return [(rng.choices(GROUPS, weights)[0], rng.choice(KENT[:6]), rng.choice(MONTHS)) for _ in range(n)]


def _count(records: Sequence[tuple[str, ...]], positions: Sequence[int]) -> dict[CellKey, int]:
    counts: dict[CellKey, int] = {}
    for record in records:
        key = tuple(record[p] for p in positions)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _answer(ledger: ReleaseLedger, signature: str, dims: Sequence[str], cells: Mapping[CellKey, int]) -> ReleasedTable:
    """What a node does for a counts query: the ledger first, then protection."""
    admitted = ledger.admit("supply-map", signature, dims, cells, SUPPLY)
    return protect_counts(Table.of(tuple(dims), admitted), SUPPLY, secret=SECRET)


def _refusal_is_clean(refused: DisclosureRefused) -> None:
    message = refused.public_message
    assert not re.search(r"\d", message), message
    assert not any(code in message for code in KENT)


# --- differencing ------------------------------------------------------------------------------------


def test_differencing_by_one_more_district_is_refused() -> None:
    ledger = ReleaseLedger(InMemoryReleaseStore())
    records = _clients(1)
    first = [r for r in records if r[1] in KENT[:5]]
    _answer(ledger, "districts 1-5", GROUP_BY_DISTRICT, _count(first, [0, 1]))
    # The sixth district holds a handful of DV clients: the DV row total would give them away.
    added = [*first, *(("14", KENT[6], "2009-05"),) * 3]
    with pytest.raises(DisclosureRefused, match="differencing") as refused:
        _answer(ledger, "districts 1-6", GROUP_BY_DISTRICT, _count(added, [0, 1]))
    _refusal_is_clean(refused.value)


def test_one_more_district_with_no_small_differences_is_answered() -> None:
    ledger = ReleaseLedger(InMemoryReleaseStore())
    base = {(g, d): 30 for g in GROUPS[:4] for d in KENT[:4]}
    _answer(ledger, "four districts", GROUP_BY_DISTRICT, base)
    wider = {**base, **{(g, KENT[4]): 25 for g in GROUPS[:4]}}
    released = _answer(ledger, "five districts", GROUP_BY_DISTRICT, wider)
    assert released[TOTAL, TOTAL].value == 580


def test_differencing_by_one_more_month_is_refused() -> None:
    ledger = ReleaseLedger(InMemoryReleaseStore())
    records = _clients(2)
    # The ledger keeps the finest grain the query selects: months are a dimension of the record.
    finest = ("client_group", "district", "month")
    first_half = [r for r in records if r[2] <= "2009-06"]
    _answer(ledger, "Jan-Jun", finest, _count(first_half, [0, 1, 2]))
    july = [r for r in records if r[2] <= "2009-07"]
    with pytest.raises(DisclosureRefused, match="differencing"):
        ledger.admit("supply-map", "Jan-Jul", finest, _count(july, [0, 1, 2]), SUPPLY)


def test_a_different_year_is_not_a_difference() -> None:
    ledger = ReleaseLedger(InMemoryReleaseStore())
    finest = ("client_group", "district", "month")
    ledger.admit("supply-map", "2009", finest, _count(_clients(3), [0, 1, 2]), SUPPLY)
    next_year = [(g, d, m.replace("2009", "2010")) for g, d, m in _clients(4)]
    ledger.admit("supply-map", "2010", finest, _count(next_year, [0, 1, 2]), SUPPLY)


def test_differencing_by_moving_a_client_group_is_refused_at_the_dv_threshold() -> None:
    # "Homeless" as singles and rough sleepers, then with DV added: 9 DV clients per district is
    # above the general threshold of 7 but within the DV threshold of 10.
    ledger = ReleaseLedger(InMemoryReleaseStore())
    finest = ("district", "client_group")
    homeless = {(d, g): 40 for d in KENT[:4] for g in ("7", "19")}
    ledger.admit("supply-map", "homeless", finest, homeless, SUPPLY)
    with_dv = {**homeless, **{(d, "14"): 9 for d in KENT[:4]}}
    with pytest.raises(DisclosureRefused, match="differencing"):
        ledger.admit("supply-map", "homeless+DV", finest, with_dv, SUPPLY)
    # The same move with young people at risk (general threshold 7) is answered.
    with_young = {**homeless, **{(d, "12"): 9 for d in KENT[:4]}}
    ledger.admit("supply-map", "homeless+young", finest, with_young, SUPPLY)


def test_a_group_move_hidden_by_a_coarse_ledger_key_takes_the_strictest_threshold() -> None:
    # If the node kept only districts, the ledger cannot tell whose the difference is: it assumes DV.
    ledger = ReleaseLedger(InMemoryReleaseStore())
    ledger.admit("supply-map", "homeless", ("district",), {(d,): 80 for d in KENT[:4]}, SUPPLY)
    with pytest.raises(DisclosureRefused, match="differencing"):
        ledger.admit("supply-map", "homeless+?", ("district",), {(d,): 89 for d in KENT[:4]}, SUPPLY)


def test_differencing_across_table_shapes_is_refused() -> None:
    # An earlier client group x district table, then group totals over one more district.
    ledger = ReleaseLedger(InMemoryReleaseStore())
    base = {(g, d): 30 for g in GROUPS[:3] for d in KENT[:3]}
    ledger.admit("supply-map", "by district", GROUP_BY_DISTRICT, base, SUPPLY)
    totals = {(g,): 90 + (2 if g == GROUPS[0] else 30) for g in GROUPS[:3]}
    with pytest.raises(DisclosureRefused, match="differencing"):
        ledger.admit("supply-map", "groups, four districts", ("client_group",), totals, SUPPLY)


def test_late_records_do_not_leak_through_a_repeated_query() -> None:
    ledger = ReleaseLedger(InMemoryReleaseStore())
    records = _clients(5)
    before = _answer(ledger, "2009", GROUP_BY_DISTRICT, _count(records, [0, 1]))
    late = [*records, ("17", KENT[0], "2009-12"), ("17", KENT[0], "2009-12")]
    after = _answer(ledger, "2009", GROUP_BY_DISTRICT, _count(late, [0, 1]))
    assert after == before  # answered only with the earlier figures


# --- averaging -----------------------------------------------------------------------------------------


def test_repeated_and_reshaped_queries_cannot_average_out_the_rounding() -> None:
    # The attacker wants the DV count in Ashford (23). Every table they can think of that holds it
    # releases the same rounded figure, so the average of their answers is that figure, not 23.
    rng = random.Random(7)
    cell = ("14", KENT[0])
    answers = []
    for _ in range(40):
        others = {(g, d): rng.randint(0, 200) for g in rng.sample(GROUPS, 3) for d in rng.sample(KENT, 3)}
        others.pop(cell, None)
        released = protect_counts(Table.of(GROUP_BY_DISTRICT, {**others, cell: 23}), SUPPLY, secret=SECRET)
        if released[cell].value is not None:
            answers.append(released[cell].value)
    one_way = protect_counts(Table.of(("client_group",), {("14",): 23}), SUPPLY, secret=SECRET)
    # The same count reached as the DV row total of a table over one district rounds the same way.
    as_margin = protect_counts(Table.of(GROUP_BY_DISTRICT, {cell: 23}), SUPPLY, secret=SECRET)
    assert len(answers) > 20
    assert set(answers) == {answers[0]}
    assert mean(answers) in (20, 25)
    assert one_way["14",].value == as_margin["14", TOTAL].value


# --- tiny filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize("selected", [1, 2, 7])
def test_tiny_filters_are_refused(selected: int) -> None:
    with pytest.raises(DisclosureRefused, match="query-set restriction") as refused:
        require_min_records(selected, SUPPLY)
    _refusal_is_clean(refused.value)


def test_tiny_dv_filter_is_refused_at_ten() -> None:
    with pytest.raises(DisclosureRefused, match="query-set restriction"):
        require_min_records(10, SUPPLY, client_group=DOMESTIC_VIOLENCE)
    require_min_records(11, SUPPLY, client_group=DOMESTIC_VIOLENCE)


# --- money ---------------------------------------------------------------------------------------------


def _refuge_costs(kent_refuge: dict[str, float]) -> MagnitudeTable:
    cells = {
        ("refuge", "E10000016"): kent_refuge,
        ("refuge", "E10000030"): {"p4": 210_000.0, "p5": 190_000.0, "p6": 160_000.0},
        ("hostel", "E10000016"): {"p1": 120_000.0, "p7": 100_000.0, "p8": 90_000.0},
        ("hostel", "E10000030"): {"p9": 150_000.0, "p5": 140_000.0, "p10": 130_000.0},
    }
    return MagnitudeTable(("service_type", "authority"), tuple(MagnitudeCell(k, v) for k, v in cells.items()))


def test_a_cell_dominated_by_one_contract_is_suppressed_and_cannot_be_worked_out() -> None:
    table = _refuge_costs({"p1": 480_000.0, "p2": 15_000.0, "p3": 12_000.0})
    released = protect_magnitudes(table, POLICY.rule("vfm"))
    assert released["refuge", "E10000016"].rule is Protection.DOMINANCE
    assert _determined(released) == []
    assert sum(1 for c in released.cells if c.rule is Protection.SECONDARY) >= 1


def test_a_p_percent_violation_is_suppressed() -> None:
    # Two near-equal contracts and a token third: either large provider could estimate the other.
    table = _refuge_costs({"p1": 250_000.0, "p2": 240_000.0, "p3": 20_000.0})
    rule = POLICY.rule("vfm").model_copy(update={"dominance_n": 1})
    released = protect_magnitudes(table, rule)
    assert released["refuge", "E10000016"].rule is Protection.P_PERCENT
    assert _determined(released) == []


# --- the policy's gates -------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "kind"), [("regional-board", "vfm"), ("regional-board", "movement")])
def test_a_role_not_in_the_rule_is_refused(role: str, kind: str) -> None:
    with pytest.raises(NotPermitted, match=f"{role}.*{kind}"):
        POLICY.require_role(kind, role)


@pytest.mark.parametrize("kind", AGGREGATE_KINDS)
def test_the_coordinator_asks_for_nothing_on_its_own_account(kind: str) -> None:
    with pytest.raises(NotPermitted):
        POLICY.require_role(kind, "coordinator")


def test_a_table_with_too_many_dimensions_is_refused() -> None:
    four = Table.of(("client_group", "district", "month", "sex"), {("14", KENT[0], MONTHS[0], "F"): 30})
    with pytest.raises(DisclosureRefused, match="maximum dimensions") as refused:
        protect_counts(four, SUPPLY, secret=SECRET)
    _refusal_is_clean(refused.value)
    three = Table.of(("client_group", "district", "month"), {("14", KENT[0], MONTHS[0]): 30})
    with pytest.raises(DisclosureRefused, match="maximum dimensions"):
        protect_counts(three, POLICY.rule("kpi"), secret=SECRET)


def test_an_unknown_policy_version_or_kind_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="unsupported policy version"):
        parse_policy(default_policy_toml().replace(b"version = 1 ", b"version = 7 ", 1))
    with pytest.raises(DisclosureRefused, match="no rule"):
        POLICY.require_role("client-list", "cag-chair")

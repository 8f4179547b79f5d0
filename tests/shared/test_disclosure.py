"""The disclosure-control layer: suppression, consistent rounding, secondary suppression, money rules
and the release ledger, with property tests over random client group x district tables."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.disclosure import (
    TOTAL,
    CellKey,
    InMemoryReleaseStore,
    MagnitudeCell,
    MagnitudeTable,
    Protection,
    ReleasedTable,
    ReleaseLedger,
    ReleaseStore,
    Table,
    check_share_threshold,
    intake_band,
    protect_counts,
    protect_magnitudes,
    require_min_authorities,
    require_min_records,
    share_band,
)
from shared.errors import DisclosureRefused, InvalidRequest
from shared.policy import AggregateRule, default_policy
from shared.vocabulary import DOMESTIC_VIOLENCE, REFUGEES
from tests.sixutil import AUTHORITIES

SECRET = b"node-rounding-secret-for-tests!!"
POLICY = default_policy()
SUPPLY = POLICY.rule("supply-map")
VFM = POLICY.rule("vfm")
KENT_DISTRICTS = [d.code for d in AUTHORITIES["E10000016"].districts]
GROUPS = [1, 4, 7, 9, 12, 14, 17, 19, 21]
STRICT = {DOMESTIC_VIOLENCE, REFUGEES}


def _rule(**changes: object) -> AggregateRule:
    return SUPPLY.model_copy(update=changes)


def _table(values: dict[tuple[str, str], int]) -> Table:
    return Table.of(("client_group", "district"), values)


def _synthetic_supply(seed: int, n_clients: int = 400) -> dict[tuple[str, str], int]:
    """Clients by client group x Kent district, drawn like a year of client records at one node."""
    rng = random.Random(seed)
    weights = [8, 5, 26, 6, 5, 12, 2, 3, 4]  # single homeless and DV the largest groups
    counts: dict[tuple[str, str], int] = {(str(g), d): 0 for g in GROUPS for d in KENT_DISTRICTS[:6]}
    for _ in range(n_clients):
        group = rng.choices(GROUPS, weights)[0]
        counts[str(group), rng.choice(KENT_DISTRICTS[:6])] += 1
    return counts


# --- helpers the property tests use ----------------------------------------------------------------


def _lines(released: ReleasedTable) -> list[tuple[list[CellKey], CellKey]]:
    """Every equation the released table publishes: (interior keys, margin key)."""
    keys = [c.key for c in released.cells]
    n = len(released.dimensions)
    if n == 1:
        return [([k for k in keys if k != (TOTAL,)], (TOTAL,))]
    blank = (TOTAL,) * (n - 1)
    rows = list(dict.fromkeys(k[0] for k in keys))
    cols = list(dict.fromkeys(k[1:] for k in keys))
    lines = [([(r, *c) for c in cols if c != blank], (r, *blank)) for r in rows]
    lines += [([(r, *c) for r in rows if r != TOTAL], (TOTAL, *c)) for c in cols]
    return lines


def _determined(released: ReleasedTable) -> list[CellKey]:
    """Suppressed entries whose exact value follows from the published equations (linear algebra
    over the rationals: an unknown is determined iff its unit vector is in the equations' row space)."""
    unknown = [c.key for c in released.cells if c.suppressed]
    index = {k: i for i, k in enumerate(unknown)}
    basis: list[tuple[int, list[Fraction]]] = []

    def reduce(vector: list[Fraction]) -> list[Fraction]:
        for pivot, row in basis:
            if vector[pivot]:
                factor = vector[pivot]
                vector = [a - factor * b for a, b in zip(vector, row, strict=True)]
        return vector

    for interior, margin in _lines(released):
        vector = [Fraction(0)] * len(unknown)
        for key in interior:
            if key in index:
                vector[index[key]] += 1
        if margin in index:
            vector[index[margin]] -= 1
        vector = reduce(vector)
        nonzero = [i for i, a in enumerate(vector) if a]
        if nonzero:
            pivot = nonzero[0]
            vector = [a / vector[pivot] for a in vector]
            basis[:] = [(p, [a - row[pivot] * b for a, b in zip(row, vector, strict=True)]) for p, row in basis]
            basis.append((pivot, vector))
    determined = []
    for key, i in index.items():
        unit = [Fraction(0)] * len(unknown)
        unit[i] = Fraction(1)
        if not any(reduce(unit)):
            determined.append(key)
    return determined


def _true_values(table: Table) -> dict[CellKey, int]:
    """Interior and margin true values, as the layer computes them."""
    values = {c.key: c.value for c in table.cells}
    n = len(table.dimensions)
    out: dict[CellKey, int] = dict(values)
    for key, value in values.items():
        if n == 1:
            targets: Iterable[CellKey] = [(TOTAL,)]
        else:
            blank = (TOTAL,) * (n - 1)
            targets = [(key[0], *blank), (TOTAL, *key[1:]), (TOTAL, *blank)]
        for target in targets:
            out[target] = out.get(target, 0) + value
    return out


# --- primary suppression and rounding --------------------------------------------------------------


def test_small_counts_are_suppressed_zeros_released_and_the_rest_rounded() -> None:
    values = {("7", d): v for d, v in zip(KENT_DISTRICTS, [0, 1, 7, 8, 23, 140], strict=False)}
    released = protect_counts(_table(values), SUPPLY, secret=SECRET, margins=False)
    out = {c.key[1]: c for c in released.cells}
    assert out[KENT_DISTRICTS[0]].value == 0
    assert out[KENT_DISTRICTS[1]].rule is Protection.PRIMARY and out[KENT_DISTRICTS[1]].value is None
    assert out[KENT_DISTRICTS[2]].rule is Protection.PRIMARY
    assert out[KENT_DISTRICTS[3]].value == 10  # just above the threshold: never released as 5
    assert out[KENT_DISTRICTS[4]].value in (20, 25)
    assert out[KENT_DISTRICTS[5]].value == 140


@pytest.mark.parametrize("group", sorted(STRICT))
def test_domestic_violence_and_refugee_cells_take_the_stricter_threshold(group: int) -> None:
    values = {(str(group), KENT_DISTRICTS[0]): 9, (str(group), KENT_DISTRICTS[1]): 11, ("7", KENT_DISTRICTS[0]): 9}
    released = protect_counts(_table(values), SUPPLY, secret=SECRET, margins=False)
    assert released[str(group), KENT_DISTRICTS[0]].rule is Protection.GROUP
    assert released[str(group), KENT_DISTRICTS[1]].value == 15
    assert released["7", KENT_DISTRICTS[0]].value == 10


def test_group_of_overrides_the_client_group_dimension() -> None:
    table = Table.of(("origin", "destination"), {("E06000035", "E10000016"): 9})
    dv_only = protect_counts(table, SUPPLY, secret=SECRET, group_of=lambda key: DOMESTIC_VIOLENCE)
    assert dv_only["E06000035", "E10000016"].rule is Protection.GROUP
    assert protect_counts(table, SUPPLY, secret=SECRET)["E06000035", "E10000016"].value == 10


def test_margins_are_summed_from_true_values_then_rounded() -> None:
    # Twelve cells of 13: each rounds to 10 or 15, but the total (156) rounds on its own.
    values = {("1", d): 13 for d in KENT_DISTRICTS}
    released = protect_counts(_table(values), SUPPLY, secret=SECRET)
    assert released["1", TOTAL].value in (155, 160)
    assert released[TOTAL, TOTAL].value == released["1", TOTAL].value
    assert released[TOTAL, TOTAL].margin


def test_rounding_modes() -> None:
    values = {("1", d): v for d, v in zip(KENT_DISTRICTS, [8, 12, 13, 22, 17, 40], strict=False)}
    nearest = protect_counts(_table(values), _rule(rounding_mode="nearest"), secret=SECRET, margins=False)
    assert [c.value for c in nearest.cells] == [10, 10, 15, 20, 15, 40]
    midpoint = protect_counts(_table(values), _rule(rounding_mode="midpoint6"), secret=SECRET, margins=False)
    assert [c.value for c in midpoint.cells] == [9, 9, 15, 21, 15, 39]  # 12 is in the band 7-12


def test_keyed_rounding_is_unbiased_across_cells() -> None:
    # Many different cells holding 13: about 60% round up to 15, 40% down to 10.
    values = {(str(g), f"district-{i}"): 13 for g in GROUPS[:5] for i in range(400)}
    released = protect_counts(_table(values), SUPPLY, secret=SECRET, margins=False)
    up = sum(1 for c in released.cells if c.value == 15)
    assert {c.value for c in released.cells} == {10, 15}
    assert 0.55 < up / len(released.cells) < 0.65


def test_rounding_depends_on_the_secret() -> None:
    values = {(str(g), f"district-{i}"): 13 for g in GROUPS[:3] for i in range(30)}
    one = protect_counts(_table(values), SUPPLY, secret=SECRET, margins=False).values()
    two = protect_counts(_table(values), SUPPLY, secret=b"another-node-secret-0123", margins=False).values()
    assert one != two
    with pytest.raises(ValueError, match="secret"):
        protect_counts(_table(values), SUPPLY, secret=b"short")


def test_one_way_table_with_its_total() -> None:
    table = Table.of(("client_group",), {("7",): 40, ("14",): 4, ("19",): 25})
    released = protect_counts(table, SUPPLY, secret=SECRET)
    assert released["14",].rule is Protection.PRIMARY
    assert released["19",].rule is Protection.SECONDARY  # the smallest other, or 14 follows from the total
    assert released["7",].value == 40
    assert released[TOTAL,].value in (65, 70)


def test_absent_combinations_are_zeros_and_are_released() -> None:
    table = _table({("7", KENT_DISTRICTS[0]): 30, ("14", KENT_DISTRICTS[1]): 40})
    released = protect_counts(table, SUPPLY, secret=SECRET)
    assert released["7", KENT_DISTRICTS[1]].value == 0
    assert released["14", KENT_DISTRICTS[0]].value == 0


def test_three_dimensions_are_laid_out_two_way() -> None:
    rule = POLICY.rule("movement")
    values = {
        ("14", o, d): v
        for (o, d), v in zip(
            [("E06000035", "E10000016"), ("E10000030", "E10000016"), ("E06000035", "E10000030")],
            [3, 40, 22],
            strict=True,
        )
    }
    table = Table.of(("client_group", "origin", "destination"), values)
    released = protect_counts(table, rule, secret=SECRET)
    assert released["14", "E06000035", "E10000016"].suppressed
    assert released[TOTAL, TOTAL, TOTAL].value is not None
    assert not _determined(released)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Table(("a", "a"), ()),
        lambda: Table((), ()),
        lambda: Table.of(("a",), {("x", "y"): 1}),
        lambda: Table.of(("a",), {(TOTAL,): 1}),
        lambda: Table.of(("a",), {("x",): -1}),
        lambda: MagnitudeTable(("a",), (MagnitudeCell(("x",), {"p": float("nan")}),)),
    ],
)
def test_malformed_tables_are_invalid(build: object) -> None:
    with pytest.raises(InvalidRequest):
        build()  # type: ignore[operator]


# --- money -------------------------------------------------------------------------------------------


def _vfm(cells: dict[tuple[str, str], dict[str, float]]) -> MagnitudeTable:
    return MagnitudeTable(("service_type", "authority"), tuple(MagnitudeCell(k, v) for k, v in cells.items()))


def test_money_rules() -> None:
    table = _vfm(
        {
            ("refuge", "E10000016"): {"p1": 9_000.0, "p2": 300.0, "p3": 200.0},  # dominance
            ("refuge", "E10000030"): {"p1": 5_000.0, "p2": 4_000.0, "p3": 1_000.0},
            ("refuge", "E10000032"): {"p1": 5_000.0, "p2": 4_000.0},  # too few
            ("hostel", "E10000016"): {"p1": 3_000.4, "p2": 2_500.0, "p3": 2_000.0, "p4": 1_900.0},
            ("hostel", "E10000030"): {},
        }
    )
    released = protect_magnitudes(table, VFM, margins=False)
    assert released["refuge", "E10000016"].rule is Protection.DOMINANCE
    assert released["refuge", "E10000030"].rule is Protection.RELEASED  # top two exactly 90%
    assert released["refuge", "E10000032"].rule is Protection.MIN_CONTRIBUTORS
    assert released["hostel", "E10000016"].value == 9_400  # to the pound
    assert released["hostel", "E10000030"].value == 0


def test_p_percent_rule_when_dominance_is_looser() -> None:
    # With (2, 90%) the 10% p-rule can never bite on its own (the rest is at least 10% of the
    # total, so at least 10% of the largest); it does once the dominance rule is relaxed.
    table = _vfm({("refuge", "E10000030"): {"p1": 5_000.0, "p2": 4_800.0, "p3": 450.0}})
    one_largest = VFM.model_copy(update={"dominance_n": 1, "dominance_k": 0.9})
    released = protect_magnitudes(table, one_largest, margins=False)
    assert released["refuge", "E10000030"].rule is Protection.P_PERCENT
    assert protect_magnitudes(table, VFM, margins=False)["refuge", "E10000030"].rule is Protection.DOMINANCE


def test_money_margins_merge_a_contributor_across_cells() -> None:
    # p1 holds 45% of each cell; counted as one contributor it holds 45% of the row, counted as
    # two it would hold 22.5% each. With (n, k) = (1, 40%) only the merged reading is dominated.
    table = _vfm(
        {
            ("refuge", "E10000016"): {"p1": 45_000.0, "p2": 30_000.0, "p3": 25_000.0},
            ("refuge", "E10000030"): {"p1": 45_000.0, "p4": 30_000.0, "p5": 25_000.0},
        }
    )
    rule = VFM.model_copy(update={"dominance_n": 1, "dominance_k": 0.4})
    assert protect_magnitudes(table, rule)["refuge", TOTAL].rule is Protection.DOMINANCE
    assert protect_magnitudes(table, VFM)["refuge", TOTAL].value == 200_000


# --- refusals ----------------------------------------------------------------------------------------


def test_query_set_restriction() -> None:
    require_min_records(0, SUPPLY)
    require_min_records(8, SUPPLY)
    with pytest.raises(DisclosureRefused, match="query-set restriction"):
        require_min_records(7, SUPPLY)
    with pytest.raises(DisclosureRefused, match="query-set restriction"):
        require_min_records(9, SUPPLY, client_group=DOMESTIC_VIOLENCE)


def test_minimum_authorities() -> None:
    require_min_authorities(3, VFM)
    with pytest.raises(DisclosureRefused, match="minimum authorities") as refused:
        require_min_authorities(2, VFM)
    assert not re.search(r"\d", refused.value.public_message)


# --- the ledger ----------------------------------------------------------------------------------------


def test_in_memory_store_is_a_release_store_and_keeps_true_counts() -> None:
    store: ReleaseStore = InMemoryReleaseStore()
    at = datetime(2010, 4, 1, tzinfo=UTC)
    store.record("supply-map", "q1", ("client_group",), {("14",): 3}, at)
    [release] = list(store.previous("supply-map"))
    assert release.query_signature == "q1"
    assert dict(release.cells) == {("14",): 3}
    assert release.at == at
    assert list(store.previous("vfm")) == []


def test_repeating_a_query_gives_the_same_figures_and_records_once() -> None:
    store = InMemoryReleaseStore()
    ledger = ReleaseLedger(store)
    values = _synthetic_supply(3)
    releases = []
    for _ in range(3):
        cells = ledger.admit("supply-map", "q", ("client_group", "district"), values, SUPPLY)
        releases.append(protect_counts(_table(dict(cells)), SUPPLY, secret=SECRET))
    assert releases[0] == releases[1] == releases[2]
    assert len(list(store.previous("supply-map"))) == 1


# --- properties over random tables ---------------------------------------------------------------------

COUNT = st.one_of(st.just(0), st.integers(1, 12), st.integers(13, 300))


@st.composite
def tables(draw: st.DrawFn, min_rows: int = 1) -> Table:
    groups = draw(st.lists(st.sampled_from(GROUPS), min_size=min_rows, max_size=6, unique=True))
    districts = draw(st.lists(st.sampled_from(KENT_DISTRICTS), min_size=1, max_size=6, unique=True))
    values = {(str(g), d): draw(COUNT) for g in groups for d in districts}
    return _table(values)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(tables(), st.sampled_from(["keyed", "nearest", "midpoint6"]))
def test_no_released_count_lies_in_the_suppressed_range(table: Table, mode: str) -> None:
    released = protect_counts(table, _rule(rounding_mode=mode), secret=SECRET)
    for cell in released.cells:
        if cell.value is None:
            continue
        strict = cell.key[0] != TOTAL and int(cell.key[0]) in STRICT
        limit = 10 if strict else 7
        assert not 1 <= cell.value <= limit, cell


@PROPERTY
@given(tables())
def test_no_suppressed_count_can_be_worked_out(table: Table) -> None:
    released = protect_counts(table, SUPPLY, secret=SECRET)
    for interior, margin in _lines(released):
        suppressed = [k for k in [*interior, margin] if released[k].suppressed]
        assert len(suppressed) != 1, (interior, margin)
    assert _determined(released) == []


@PROPERTY
@given(tables())
def test_suppression_is_only_ever_of_sensitive_or_protecting_cells(table: Table) -> None:
    released = protect_counts(table, SUPPLY, secret=SECRET)
    truth = _true_values(table)
    for cell in released.cells:
        value = truth.get(cell.key, 0)
        if cell.rule is Protection.PRIMARY:
            assert 1 <= value <= 7
        if cell.rule is Protection.GROUP:
            # A strict group's own cell, or a total that sums a non-zero one.
            covered = [
                k
                for k, v in truth.items()
                if v > 0
                and all(part in (TOTAL, mine) for part, mine in zip(cell.key, k, strict=True))
                and TOTAL not in k
            ]
            assert 8 <= value <= 10 and any(int(k[0]) in STRICT for k in covered), cell


def test_a_total_of_one_strict_group_only_takes_its_threshold() -> None:
    """A margin that sums only domestic violence clients is as sensitive as their cell: where
    the cell is suppressed, the total is too, even though it sums over client groups."""
    values = {("14", KENT_DISTRICTS[0]): 9, ("1", KENT_DISTRICTS[0]): 0, ("1", KENT_DISTRICTS[1]): 30}
    released = protect_counts(_table(values), SUPPLY, secret=SECRET)
    assert released["14", KENT_DISTRICTS[0]].rule is Protection.GROUP
    assert released[TOTAL, KENT_DISTRICTS[0]].suppressed
    # A stand-alone total says which groups it covers.
    total = Table.of(("people",), {("all",): 9})
    assert (
        protect_counts(total, SUPPLY, secret=SECRET, group_of=lambda _: {1, 14}, margins=False)[("all",)].rule
        is Protection.GROUP
    )
    assert protect_counts(total, SUPPLY, secret=SECRET, group_of=lambda _: {1, 7}, margins=False)[("all",)].value == 10


@PROPERTY
@given(tables())
def test_released_counts_are_multiples_of_five_within_one_step(table: Table) -> None:
    truth = _true_values(table)
    for mode in ("keyed", "nearest"):
        released = protect_counts(table, _rule(rounding_mode=mode), secret=SECRET)
        for cell in released.cells:
            if cell.value is not None:
                assert cell.value % 5 == 0
                assert abs(cell.value - truth.get(cell.key, 0)) < 5


@PROPERTY
@given(tables(), st.integers(13, 300))
def test_rounding_is_consistent_across_calls_and_tables(table: Table, extra: int) -> None:
    first = protect_counts(table, SUPPLY, secret=SECRET)
    assert protect_counts(table, SUPPLY, secret=SECRET) == first
    # The same true value in the same cell rounds the same way in a wider table.
    values = {c.key: c.value for c in table.cells}
    groups = {k[0] for k in values}
    wider = _table({**values, **{(g, "E07000999"): extra for g in groups}})
    second = protect_counts(wider, SUPPLY, secret=SECRET)
    for key in values:
        if first[key].value is not None and second[key].value is not None:
            assert first[key].value == second[key].value


@st.composite
def money_tables(draw: st.DrawFn) -> MagnitudeTable:
    services = draw(
        st.lists(st.sampled_from(["refuge", "hostel", "foyer", "sheltered"]), min_size=1, max_size=4, unique=True)
    )
    authorities = draw(st.lists(st.sampled_from(sorted(AUTHORITIES)), min_size=1, max_size=4, unique=True))
    providers = [f"provider-{i}" for i in range(8)]
    cells = []
    for s in services:
        for a in authorities:
            chosen = draw(st.lists(st.sampled_from(providers), max_size=5, unique=True))
            amounts = {p: float(draw(st.integers(500, 200_000))) for p in chosen}
            cells.append(MagnitudeCell((s, a), amounts))
    return MagnitudeTable(("service_type", "authority"), tuple(cells))


@PROPERTY
@given(money_tables())
def test_money_releases_respect_every_rule_and_hide_suppressed_cells(table: MagnitudeTable) -> None:
    released = protect_magnitudes(table, VFM)
    merged: dict[CellKey, dict[str, float]] = {}
    for cell in table.cells:
        for target in [cell.key, (cell.key[0], TOTAL), (TOTAL, cell.key[1]), (TOTAL, TOTAL)]:
            into = merged.setdefault(target, {})
            for p, a in cell.contributions.items():
                into[p] = into.get(p, 0.0) + a
    for cell in released.cells:
        if cell.value is None or cell.value == 0:
            continue
        amounts = sorted(merged[cell.key].values(), reverse=True)
        total = sum(amounts)
        assert len(amounts) >= 3
        assert amounts[0] + amounts[1] <= 0.9 * total
        assert total - amounts[0] - amounts[1] >= 0.10 * amounts[0]
    assert _determined(released) == []


@pytest.mark.parametrize("group", [1, DOMESTIC_VIOLENCE, REFUGEES])
def test_an_intake_band_and_a_share_band_never_narrow_a_count_to_a_few_values(group: int) -> None:
    """Every way a service could be described (intake band, share band) against every intake,
    unknown-origin and non-local count that gives that description: the non-local count and the
    local count each keep at least thirteen possible values, and the non-local count is above the
    group's threshold (a service with fewer is not described)."""
    rule = default_policy().rule("non-local-services")
    threshold = rule.threshold_for(group)
    possible: dict[tuple[str, str], tuple[set[int], set[int]]] = {}
    for intake in range(100):
        band = intake_band(intake, rule, client_group=group)
        for known in range(threshold + 1, intake + 1):
            for non_local in range(threshold + 1, known + 1):
                if band is None or 100 * non_local < 25 * known:
                    continue
                non_locals, locals_ = possible.setdefault((band, share_band(non_local, known)), (set(), set()))
                non_locals.add(non_local)
                locals_.add(known - non_local)
    assert possible
    for description, (non_locals, locals_) in possible.items():
        assert min(non_locals) > threshold, description
        assert len(non_locals) >= 13 and len(locals_) >= 13, (description, sorted(non_locals), sorted(locals_))


def test_share_thresholds_are_a_fixed_grid() -> None:
    assert [check_share_threshold(p) for p in (25, 50, 75)] == [25, 50, 75]
    for free in (0, 1, 49, 51, 67, 100):
        with pytest.raises(InvalidRequest, match="min_share_percent"):
            check_share_threshold(free)
    assert [share_band(n, 100) for n in (0, 24, 25, 50, 74, 75, 100)] == [
        "0-24%",
        "0-24%",
        "25-49%",
        "50-74%",
        "50-74%",
        "75-100%",
        "75-100%",
    ]

"""The node's release path end to end: `Releaser.supply_map` over a real store, on SQLite and on
PostgreSQL. What leaves the node is checked against the true figures in the same store: small
counts suppressed (stricter for domestic violence and refugees), the rest rounded consistently to
fives, capacity released exactly, money protected by the contributor rules, secondary suppression
keeping every suppressed figure out of reach of its row total, and the gates before it all (role,
filter, query-set restriction, a durable differencing ledger)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from node.answers.supply import CellKey, RawCell, RawSupply, contract_values, supply_map
from node.ledger import SqlReleaseStore
from node.release import SUPPLY_MAP, Releaser
from node.store import add_contract, add_provider, add_service, ensure_authority, open_store
from node.synthetic.supply import load
from shared.disclosure import Protection
from shared.errors import DisclosureRefused, InvalidRequest, NotFound, NotPermitted
from shared.models import SupplyCell, SupplyMap
from shared.policy import AggregateRule, Policy, default_policy, default_policy_toml, parse_policy
from shared.vocabulary import ServiceType, Term
from tests.sixutil import AUTHORITIES

KENT, MEDWAY = "E10000016", "E06000035"
ASHFORD, CANTERBURY, DOVER, MAIDSTONE, THANET = "E07000105", "E07000106", "E07000108", "E07000110", "E07000114"
ACC, FS = ServiceType.ACCOMMODATION_BASED, ServiceType.FLOATING_SUPPORT
OLDER, HOMELESS, YOUNG, DV, FAMILIES, REFUGEES, TRAVELLERS = 1, 7, 12, 14, 16, 17, 20

SECRET = b"kent-node-rounding-key-0123456789"
MEMBER = ("member-authority",)
POLICY = default_policy()
RULE = POLICY.rule(SUPPLY_MAP)

COUNTS = ("services", "designated_services")
FIGURES = (*COUNTS, "annual_value")
COUNT_RULES = {Protection.PRIMARY, Protection.GROUP, Protection.SECONDARY}


# --- a small hand-made Kent ------------------------------------------------------------------------

PROVIDERS = {
    "KCC-P0001": "Porchlight",
    "KCC-P0002": "Home Group Ltd",
    "KCC-P0003": "Look Ahead Housing and Care",
    "KCC-P0004": "Hanover Housing Association",
    "KCC-P0005": "Anchor Trust",
    "KCC-P0006": "Housing 21",
    "KCC-P0007": "Rising Sun Domestic Violence and Abuse Service",
}


@dataclass(frozen=True)
class Planned:
    """`count` alike services, each under one current contract worth `value` pounds a year."""

    count: int
    group: int
    service_type: ServiceType
    provider: str
    district: str
    units: int
    value: int
    designated: bool = False
    hours: float | None = None


SMALL_KENT = [
    # Sheltered schemes for older people: three providers of much the same size.
    Planned(4, OLDER, ACC, "KCC-P0004", CANTERBURY, 30, 48_360),
    Planned(4, OLDER, ACC, "KCC-P0005", THANET, 36, 51_480),
    Planned(4, OLDER, ACC, "KCC-P0006", DOVER, 32, 47_840),
    # Hostels for single homeless people, seven of the twelve designated (direct access).
    Planned(3, HOMELESS, ACC, "KCC-P0001", CANTERBURY, 22, 214_500, designated=True),
    Planned(1, HOMELESS, ACC, "KCC-P0001", CANTERBURY, 22, 214_500),
    Planned(2, HOMELESS, ACC, "KCC-P0002", THANET, 18, 176_800, designated=True),
    Planned(2, HOMELESS, ACC, "KCC-P0002", THANET, 18, 176_800),
    Planned(2, HOMELESS, ACC, "KCC-P0003", MAIDSTONE, 25, 243_750, designated=True),
    Planned(2, HOMELESS, ACC, "KCC-P0003", MAIDSTONE, 25, 243_750),
    # Three floating support services for single homeless people, all Porchlight's: a small count.
    Planned(3, HOMELESS, FS, "KCC-P0001", CANTERBURY, 40, 79_560, hours=90.0),
    # Foyers for young people at risk, and floating support dominated by one provider.
    Planned(4, YOUNG, ACC, "KCC-P0003", ASHFORD, 15, 117_000),
    Planned(4, YOUNG, ACC, "KCC-P0002", THANET, 15, 112_320),
    Planned(7, YOUNG, FS, "KCC-P0003", MAIDSTONE, 30, 57_460, hours=65.0),
    Planned(1, YOUNG, FS, "KCC-P0001", CANTERBURY, 8, 12_376, hours=14.0),
    Planned(1, YOUNG, FS, "KCC-P0002", THANET, 6, 10_608, hours=12.0),
    # Three refuges, all one DV charity's, all designated.
    Planned(1, DV, ACC, "KCC-P0007", CANTERBURY, 8, 104_000, designated=True),
    Planned(1, DV, ACC, "KCC-P0007", THANET, 6, 83_200, designated=True),
    Planned(1, DV, ACC, "KCC-P0007", DOVER, 6, 81_120, designated=True),
]
# Hanover's schemes were renewed in 2006; the earlier, cheaper contracts no longer count.
RENEWED_PROVIDER, EARLIER_VALUE = "KCC-P0004", 44_200


class Builder:
    """Writes services (and their contracts) through the store's own functions."""

    def __init__(self, engine: Engine, prefix: str) -> None:
        self.engine, self.prefix, self.number = engine, prefix, 0

    def add(self, planned: Planned) -> None:
        for _ in range(planned.count):
            self.number += 1
            ref = f"{self.prefix}-S{self.number:05d}"
            add_service(
                self.engine,
                service_ref=ref,
                provider_ref=planned.provider,
                name=f"{planned.service_type.value} service {ref}",
                district_code=planned.district,
                service_type=planned.service_type,
                client_group=planned.group,
                units=planned.units,
                term=Term.LONG if planned.group == OLDER else Term.SHORT,
                designated=planned.designated,
                contracted_hours=planned.hours,
            )
            contracts = [(f"{ref}-C2", planned.value, date(2006, 4, 1), date(2009, 3, 31))]
            if planned.provider == RENEWED_PROVIDER:
                contracts.append((f"{ref}-C1", EARLIER_VALUE, date(2003, 4, 1), date(2006, 3, 31)))
            for contract_ref, value, start, end in contracts:
                add_contract(
                    self.engine,
                    contract_ref=contract_ref,
                    service_ref=ref,
                    annual_value=Decimal(value),
                    start_date=start,
                    end_date=end,
                )


@pytest.fixture
def kent(engine: Engine) -> Builder:
    ensure_authority(engine, authority_code=KENT)
    for ref, name in PROVIDERS.items():
        add_provider(engine, provider_ref=ref, name=name)
    builder = Builder(engine, "KCC")
    for planned in SMALL_KENT:
        builder.add(planned)
    return builder


def _ask(
    engine: Engine,
    *,
    by_district: bool = False,
    client_groups: Sequence[int] = (),
    policy: Policy = POLICY,
    secret: bytes = SECRET,
    authority: str = KENT,
) -> SupplyMap:
    return Releaser(engine, authority, secret).supply_map(
        policy, roles=MEMBER, by_district=by_district, client_groups=client_groups
    )


def _ledger(engine: Engine) -> int:
    return len(SqlReleaseStore(engine).previous(SUPPLY_MAP))


def _cell(released: SupplyMap, group: int, service_type: ServiceType, district: str = "") -> SupplyCell:
    (found,) = [
        c
        for c in released.cells
        if (c.client_group, c.service_type, c.district) == (group, service_type.value, district)
    ]
    return found


def _group_total(released: SupplyMap, group: int) -> SupplyCell:
    (found,) = [c for c in released.client_group_totals if c.client_group == group]
    return found


def _named(figure: SupplyCell) -> dict[str, Protection]:
    """What `suppressed` says: figure name -> rule, each figure named at most once."""
    named: dict[str, Protection] = {}
    for entry in figure.suppressed:
        name, _, rule = entry.partition(": ")
        assert name in FIGURES and name not in named, figure
        named[name] = Protection(rule)
    return named


def _services_figures(released: SupplyMap) -> list[int | None]:
    figures = [*released.cells, *released.client_group_totals, released.total]
    return [f.services for f in figures]


def _clean(refused: DisclosureRefused) -> str:
    message = refused.public_message
    assert str(refused) == message  # no detail either
    assert not re.search(r"\d", message), message
    return message


# --- the checks every released map must pass -------------------------------------------------------


def _money_rule(contributions: dict[str, float], rule: AggregateRule) -> Protection | None:
    """The policy's money rules, as the network policy states them."""
    amounts = sorted((a for a in contributions.values() if a > 0), reverse=True)
    if not amounts:
        return None
    total = math.fsum(amounts)
    if len(amounts) < rule.min_contributors:
        return Protection.MIN_CONTRIBUTORS
    if math.fsum(amounts[: rule.dominance_n]) > rule.dominance_k * total:
        return Protection.DOMINANCE
    if total - amounts[0] - amounts[1] < rule.p_percent * amounts[0]:
        return Protection.P_PERCENT
    return None


def _truths(
    released: SupplyMap, raw: RawSupply, money: dict[CellKey, dict[str, float]]
) -> list[tuple[SupplyCell, int | None, list[RawCell], dict[str, float]]]:
    """Each released figure with its client group (None for the total), the raw cells it sums
    and its contributions by provider."""

    def contributions(members: list[RawCell]) -> dict[str, float]:
        merged: dict[str, float] = {}
        for member in members:
            for provider, amount in money.get(member.key, {}).items():
                merged[provider] = merged.get(provider, 0.0) + amount
        return merged

    out: list[tuple[SupplyCell, int | None, list[RawCell], dict[str, float]]] = []
    for figure, member in zip(released.cells, raw.cells, strict=True):
        out.append((figure, member.client_group, [member], contributions([member])))
    for figure in released.client_group_totals:
        members = [c for c in raw.cells if c.client_group == figure.client_group]
        out.append((figure, figure.client_group, members, contributions(members)))
    out.append((released.total, None, list(raw.cells), contributions(list(raw.cells))))
    return out


def _assert_protected(engine: Engine, released: SupplyMap, rule: AggregateRule = RULE) -> None:
    """`released` against the true figures in the store, under `rule`."""
    raw = supply_map(
        engine,
        authority_code=released.authority,
        by_district=released.by_district,
        client_groups=released.client_groups,
    )
    money = contract_values(
        engine,
        authority_code=released.authority,
        by_district=released.by_district,
        client_groups=released.client_groups,
    )
    assert released.population == AUTHORITIES[released.authority].population
    assert [(c.client_group, c.service_type, c.district, c.unit_type) for c in released.cells] == [
        (c.client_group, c.service_type, c.district, c.unit_type) for c in raw.cells
    ]
    assert [g.client_group for g in released.client_group_totals] == sorted({c.client_group for c in raw.cells})

    for figure, group, members, contributions in _truths(released, raw, money):
        named = _named(figure)
        for name in COUNTS:
            true = sum(getattr(m, name) for m in members)
            # A total takes the strictest threshold of the groups it sums (and of a filter's groups).
            covered = {m.client_group for m in members if getattr(m, name) > 0} | set(released.client_groups)
            threshold = rule.threshold_for(group) if group is not None else rule.threshold_over(covered)
            value = getattr(figure, name)
            if value is None:
                if 1 <= true <= rule.threshold:
                    expected = Protection.PRIMARY
                elif 1 <= true <= threshold:
                    expected = Protection.GROUP
                else:
                    expected = Protection.SECONDARY
                assert named.get(name) == expected, (figure, name, true)
            else:
                assert name not in named, figure
                assert not 1 <= value <= threshold, (figure, name)
                assert value % rule.rounding_base == 0, (figure, name)
                assert abs(value - true) < rule.rounding_base, (figure, name, true)
                assert (value == 0) == (true == 0), (figure, name, true)
        # Capacity is released exactly.
        assert figure.units == sum(m.units for m in members)
        assert figure.designated_units == sum(m.designated_units for m in members)
        assert figure.contracted_hours == pytest.approx(sum(m.contracted_hours for m in members), abs=0.01)
        # Money: the primary rule the policy calls for, else released to the pound (or suppressed secondarily).
        expected_money = _money_rule(contributions, rule)
        if expected_money is not None:
            assert figure.annual_value is None, (figure, contributions)
            assert named.get("annual_value") == expected_money, figure
        elif figure.annual_value is None:
            assert named.get("annual_value") == Protection.SECONDARY, figure
        else:
            assert "annual_value" not in named, figure
            assert abs(figure.annual_value - math.fsum(contributions.values())) <= 0.5 + 1e-6, figure
        assert not set(named) - set(FIGURES)
        for name, protection in named.items():
            assert getattr(figure, name) is None
            if name in COUNTS:
                assert protection in COUNT_RULES

    _assert_no_lone_suppression(released)


def _assert_no_lone_suppression(released: SupplyMap) -> None:
    """No row of released figures (a client group's cells with its total; the group totals with the
    grand total) holds exactly one suppressed figure, which the others would give away."""
    rows = [
        [*(c for c in released.cells if c.client_group == total.client_group), total]
        for total in released.client_group_totals
    ]
    rows.append([*released.client_group_totals, released.total])
    for name in FIGURES:
        for row in rows:
            suppressed = [f for f in row if getattr(f, name) is None]
            assert len(suppressed) != 1, (name, suppressed)


# --- 1. synthetic authorities ------------------------------------------------------------------------


@pytest.mark.parametrize(("authority", "seed"), [(KENT, 3), (MEDWAY, 5)], ids=["kent", "medway"])
def test_a_synthetic_authoritys_map_releases_only_protected_figures(engine: Engine, authority: str, seed: int) -> None:
    load(engine, authority_code=authority, seed=seed)
    for by_district in (False, True):
        released = _ask(engine, authority=authority, by_district=by_district)

        assert released.by_district is by_district and released.client_groups == ()
        _assert_protected(engine, released)
        # Not everything is hidden: the map is still a map.
        raw = supply_map(engine, authority_code=authority, by_district=by_district)
        true_total = sum(c.services for c in raw.cells)
        assert released.total.services is not None and abs(released.total.services - true_total) < 5
        assert any(c.services for c in released.cells)
        assert any(c.services is None for c in released.cells)
        if by_district:
            assert {c.district for c in released.cells} <= {d.code for d in AUTHORITIES[authority].districts}
        else:
            assert {c.district for c in released.cells} == {""}


def test_kents_synthetic_map_is_rounded_the_same_way_with_and_without_districts(engine: Engine) -> None:
    # A client group's total is the same cell whether or not the map is split by district, so it
    # rounds the same way in both: asking both ways averages nothing out.
    load(engine, authority_code=KENT, seed=3)
    plain, split = _ask(engine, by_district=False), _ask(engine, by_district=True)
    pairs = [*zip(plain.client_group_totals, split.client_group_totals, strict=True), (plain.total, split.total)]
    compared = 0
    for a, b in pairs:
        assert a.client_group == b.client_group
        assert (a.units, a.designated_units) == (b.units, b.designated_units)
        for name in COUNTS:
            x, y = getattr(a, name), getattr(b, name)
            if x is not None and y is not None:
                assert x == y, (a, b)
                compared += 1
    assert compared > 10


# --- 2. secondary suppression ------------------------------------------------------------------------


def test_a_lone_small_cell_cannot_be_recovered_from_its_row(kent: Builder) -> None:
    released = _ask(kent.engine)
    _assert_protected(kent.engine, released)

    # Single homeless: twelve hostels and three floating support services. Only the three is small...
    hostels, floating = _cell(released, HOMELESS, ACC), _cell(released, HOMELESS, FS)
    total = _group_total(released, HOMELESS)
    assert _named(floating)["services"] is Protection.PRIMARY
    assert _named(hostels).get("services") is not Protection.PRIMARY
    # ... yet the row total less the hostels would give it away, unless one of them is hidden too.
    assert total.services is None or hostels.services is None
    # Seven designated hostels (and no designated floating support): hidden the same way.
    assert _named(hostels)["designated_services"] is Protection.PRIMARY
    assert total.designated_services is None or floating.designated_services is None

    # Split by district, every row still hides at least two counts or none.
    split = _ask(kent.engine, by_district=True)
    _assert_protected(kent.engine, split)
    for total in split.client_group_totals:
        row = [c for c in split.cells if c.client_group == total.client_group]
        for name in COUNTS:
            hidden = [f for f in (*row, total) if getattr(f, name) is None]
            assert len(hidden) != 1, (total.client_group, name)


# --- 3. money ------------------------------------------------------------------------------------------


def test_money_one_providers_cell_is_suppressed_and_a_shared_cell_is_released_to_the_pound(kent: Builder) -> None:
    released = _ask(kent.engine)
    _assert_protected(kent.engine, released)

    # Three refuges, all one DV charity's: its contract values must not be shown.
    refuges = _cell(released, DV, ACC)
    assert refuges.annual_value is None
    assert "annual_value: min-contributors" in refuges.suppressed
    assert _group_total(released, DV).annual_value is None
    # Porchlight's three floating support services for single homeless people likewise.
    assert "annual_value: min-contributors" in _cell(released, HOMELESS, FS).suppressed
    # Young people's floating support: three providers, but one holds almost all of it.
    young = _cell(released, YOUNG, FS)
    assert young.annual_value is None and "annual_value: dominance" in young.suppressed

    # Sheltered housing: three providers of much the same size, released to the pound, from each
    # scheme's latest contract only (Hanover's 2003 contracts were superseded).
    sheltered = _cell(released, OLDER, ACC)
    expected = sum(p.count * p.value for p in SMALL_KENT if (p.group, p.service_type) == (OLDER, ACC))
    assert expected == 590_720
    assert sheltered.annual_value == expected
    assert not any(entry.startswith("annual_value") for entry in sheltered.suppressed)
    assert _group_total(released, OLDER).annual_value == expected


# --- 4. consistent rounding ----------------------------------------------------------------------------


def test_asking_again_gives_the_same_map_and_records_nothing_new(database_url: str, engine: Engine) -> None:
    load(engine, authority_code=KENT, seed=3)
    releaser = Releaser(engine, KENT, SECRET)
    first = [releaser.supply_map(POLICY, roles=MEMBER, by_district=by_district) for by_district in (False, True)]
    assert _ledger(engine) == 2
    again = [releaser.supply_map(POLICY, roles=MEMBER, by_district=by_district) for by_district in (False, True)]
    assert again == first
    assert _ledger(engine) == 2

    # After a restart: a new engine and a new releaser with the same key give the same figures.
    engine.dispose()
    restarted = open_store(database_url)
    try:
        assert [_ask(restarted, by_district=by_district) for by_district in (False, True)] == first
        assert _ledger(restarted) == 2
    finally:
        restarted.dispose()


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(secret=st.binary(min_size=16, max_size=64), by_district=st.booleans())
def test_any_rounding_key_keeps_the_rules(engine: Engine, secret: bytes, by_district: bool) -> None:
    # The store is only read (the ledger repeats its first answer), so examples may share it.
    if not _has_medway(engine):
        load(engine, authority_code=MEDWAY, seed=2)
    released = _ask(engine, authority=MEDWAY, by_district=by_district, secret=secret)
    _assert_protected(engine, released)


def _has_medway(engine: Engine) -> bool:
    try:
        supply_map(engine, authority_code=MEDWAY, by_district=False)
    except NotFound:
        return False
    return True


# --- 5. query-set restriction ----------------------------------------------------------------------


# Medway's floating support by client group: (group, services, answered when asked for alone).
MEDWAY_FILTERS = [
    (19, 1, False),  # rough sleepers: one outreach worker's caseload
    (10, 7, False),  # offenders: seven is still within the threshold
    (HOMELESS, 8, True),  # eight is above it
    (REFUGEES, 10, False),  # above the general threshold, within the refugees' own
    (DV, 11, True),  # above the DV threshold
]


def _medway(engine: Engine) -> None:
    """Medway: twelve sheltered schemes and a few floating support services for some client groups."""
    ensure_authority(engine, authority_code=MEDWAY)
    add_provider(engine, provider_ref="MED-P0001", name="Medway Council")
    add_provider(engine, provider_ref="MED-P0002", name="Medway Floating Support Partnership")
    builder = Builder(engine, "MED")
    builder.add(Planned(12, OLDER, ACC, "MED-P0001", MEDWAY, 35, 42_000))
    for group, n, _ in MEDWAY_FILTERS:
        builder.add(Planned(n, group, FS, "MED-P0002", MEDWAY, 12, 24_960, hours=25.0))


def test_a_filter_selecting_a_handful_of_services_is_refused(engine: Engine) -> None:
    _medway(engine)
    for group, n, answered in MEDWAY_FILTERS:
        if answered:
            released = _ask(engine, authority=MEDWAY, client_groups=[group])
            assert released.client_groups == (group,)
            # The first multiple of five above the group's threshold.
            expected = 15 if group in (DV, REFUGEES) else 10
            assert _cell(released, group, FS).services == _group_total(released, group).services == expected
            _assert_protected(engine, released)
            continue
        with pytest.raises(DisclosureRefused) as refusal:
            _ask(engine, authority=MEDWAY, client_groups=[group])
        assert _clean(refusal.value).startswith("query-set restriction"), (group, n)
    assert _ledger(engine) == 2  # the two answers; refusals record nothing

    # The same services inside a wider question are answered: they are just suppressed cells.
    released = _ask(engine, authority=MEDWAY, client_groups=[OLDER, 19, 10, REFUGEES])
    for group in (19, 10, REFUGEES):
        assert _cell(released, group, FS).services is None
    _assert_protected(engine, released)


def test_a_dv_only_total_is_not_released_inside_the_dv_range(engine: Engine) -> None:
    _medway(engine)
    released = _ask(engine, authority=MEDWAY, client_groups=[DV])
    assert _group_total(released, DV).services == 15
    assert released.total.services is None or not 1 <= released.total.services <= RULE.threshold_for(DV)


def test_a_filter_selecting_no_services_is_answered_but_three_refuges_are_refused(kent: Builder) -> None:
    # Kent's store holds no services for travellers: "none" is not about anyone.
    released = _ask(kent.engine, client_groups=[TRAVELLERS])
    assert released.client_groups == (TRAVELLERS,)
    assert released.cells == () and released.client_group_totals == ()
    assert (released.total.services, released.total.designated_services, released.total.annual_value) == (0, 0, 0)
    assert released.total.suppressed == ()
    # DV and refugees together select the three refuges: refused at the DV threshold of ten.
    with pytest.raises(DisclosureRefused) as refusal:
        _ask(kent.engine, client_groups=[REFUGEES, DV])
    assert _clean(refusal.value).startswith("query-set restriction")


# --- 6. differencing -------------------------------------------------------------------------------


def test_differencing_by_one_more_client_group_is_refused_and_stays_refused(database_url: str, kent: Builder) -> None:
    without_dv, with_dv = list(range(1, 14)), list(range(1, 15))
    first = _ask(kent.engine, client_groups=without_dv)
    _assert_protected(kent.engine, first)
    # Groups 1-14 differ from 1-13 by the three refuges alone.
    with pytest.raises(DisclosureRefused) as refusal:
        _ask(kent.engine, client_groups=with_dv)
    assert _clean(refusal.value).startswith("differencing")
    assert _ledger(kent.engine) == 1  # a refusal is not a release

    # The ledger is in the database: after a restart the same question is still refused, split by
    # district or not, and the earlier question still gets its earlier answer.
    kent.engine.dispose()
    restarted = open_store(database_url)
    try:
        for by_district in (False, True):
            with pytest.raises(DisclosureRefused, match=r"^differencing"):
                _ask(restarted, by_district=by_district, client_groups=with_dv)
        assert _ask(restarted, client_groups=without_dv) == first
        assert _ledger(restarted) == 1
    finally:
        restarted.dispose()


def test_a_late_record_gets_the_earlier_figures(kent: Builder) -> None:
    before = [_ask(kent.engine, by_district=by_district) for by_district in (False, True)]
    # One more Porchlight hostel in Canterbury, entered after the maps were released.
    kent.add(Planned(1, HOMELESS, ACC, "KCC-P0001", CANTERBURY, 22, 214_500))
    after = [_ask(kent.engine, by_district=by_district) for by_district in (False, True)]

    for a, b in zip(after, before, strict=True):
        assert _services_figures(a) == _services_figures(b)
        assert [c.designated_services for c in a.cells] == [c.designated_services for c in b.cells]
    assert _ledger(kent.engine) == 2  # one release for each way of asking, none for the repeats


def test_a_late_record_in_a_new_cell_does_not_show_through_a_repeat(kent: Builder) -> None:
    before = _ask(kent.engine)
    # One floating support service for homeless families in Thanet: a cell the earlier map did not have.
    kent.add(Planned(1, FAMILIES, FS, "KCC-P0002", THANET, 20, 45_240, hours=50.0))
    after = _ask(kent.engine)

    assert _ledger(kent.engine) == 1  # the ledger repeated the earlier counts...
    # ... so the map should be the earlier one, with no cell for the one new service.
    assert [(c.client_group, c.service_type) for c in after.cells] == [
        (c.client_group, c.service_type) for c in before.cells
    ]
    assert not [c for c in after.cells if c.services == 0 and c.units > 0]


def test_a_late_designated_record_does_not_change_a_repeated_answer(kent: Builder) -> None:
    before = _ask(kent.engine)
    # One more foyer for young people at risk, designated, entered after the map was released.
    kent.add(Planned(1, YOUNG, ACC, "KCC-P0002", THANET, 15, 112_320, designated=True))
    after = _ask(kent.engine)

    assert _services_figures(after) == _services_figures(before)  # the services are repeated
    assert [c.designated_services for c in after.cells] == [c.designated_services for c in before.cells]


# --- 7, 8. the principal's role and the filter ---------------------------------------------------------


def test_a_role_the_policy_does_not_name_is_not_permitted(engine: Engine) -> None:
    ensure_authority(engine, authority_code=KENT)
    releaser = Releaser(engine, KENT, SECRET)
    for roles in [("regional-board",), (), ("coordinator",)]:
        with pytest.raises(NotPermitted, match="supply-map"):
            releaser.supply_map(POLICY, roles=roles, by_district=False)
    assert _ledger(engine) == 0


def test_a_role_the_policy_names_is_answered(kent: Builder) -> None:
    answers = [
        Releaser(kent.engine, KENT, SECRET).supply_map(POLICY, roles=roles, by_district=True)
        for roles in [MEMBER, ("cag-chair",), ("regional-board", "member-authority")]
    ]
    assert answers[0].authority == KENT and answers[0].by_district
    assert answers[1] == answers[0] and answers[2] == answers[0]
    _assert_protected(kent.engine, answers[0])


def test_a_filter_outside_the_client_groups_is_invalid(engine: Engine) -> None:
    ensure_authority(engine, authority_code=KENT)
    for client_groups in [[22], [0], [HOMELESS, 22], [-1]]:
        with pytest.raises(InvalidRequest, match="client_groups"):
            _ask(engine, client_groups=client_groups)
    assert _ledger(engine) == 0
    with pytest.raises(NotFound):  # nor may a node answer for an authority it does not hold
        _ask(engine, authority=MEDWAY)


# --- 9. a stricter policy --------------------------------------------------------------------------


def _stricter_policy() -> Policy:
    source = default_policy_toml()
    assert source.count(b"\nthreshold = 7 ") == 1
    policy = parse_policy(source.replace(b"\nthreshold = 7 ", b"\nthreshold = 9 "))
    rule = policy.rule(SUPPLY_MAP)
    assert (rule.threshold, rule.threshold_for(DV), rule.threshold_for(REFUGEES)) == (9, 10, 10)
    return policy


def test_a_stricter_policy_suppresses_more(engine: Engine) -> None:
    load(engine, authority_code=KENT, seed=3)
    strict = _stricter_policy()

    def small(released: SupplyMap) -> set[tuple[int, str, str, str]]:
        figures = [*released.cells, *released.client_group_totals, released.total]
        return {
            (f.client_group, f.service_type, f.district, name)
            for f in figures
            for name, rule in _named(f).items()
            if rule in (Protection.PRIMARY, Protection.GROUP)
        }

    for by_district in (False, True):
        default = _ask(engine, by_district=by_district)
        stricter = _ask(engine, by_district=by_district, policy=strict)
        _assert_protected(engine, stricter, strict.rule(SUPPLY_MAP))

        assert small(default) < small(stricter)  # every small count still hidden, and more besides
        # Never fewer service counts hidden (an 8 or 9 may already be hidden by secondary suppression).
        hidden = sum(v is None for v in _services_figures(stricter))
        assert hidden >= sum(v is None for v in _services_figures(default))
        for value in _services_figures(stricter):
            assert value is None or not 1 <= value <= 9


def test_a_stricter_policy_hides_the_eight_and_nine_service_cells(kent: Builder) -> None:
    default = _ask(kent.engine)
    assert _named(_cell(default, YOUNG, ACC)).get("services") is not Protection.PRIMARY  # 8 foyers
    assert _named(_cell(default, YOUNG, FS)).get("services") is not Protection.PRIMARY  # 9 services
    stricter = _ask(kent.engine, policy=_stricter_policy())
    assert _named(_cell(stricter, YOUNG, ACC))["services"] is Protection.PRIMARY
    assert _named(_cell(stricter, YOUNG, FS))["services"] is Protection.PRIMARY

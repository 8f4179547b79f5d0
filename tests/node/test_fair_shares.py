"""Fair shares never give away a small count: an attacker who knows the released intake band,
every origin's share band and the policy's thresholds works out, for each origin, every count
consistent with all of it; for an origin that sent a few people (1 to the threshold) more than one
count always remains, and none is among them. Services are synthetic, with small counts planted
beside large ones, at the ordinary threshold and domestic violence's stricter one."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from node.answers.fair_shares import HostedService
from node.fair_shares import TOO_SMALL, describe_fair_shares, share_band_of
from shared.disclosure import intake_band
from shared.kinds.fair_shares import FEW, OUTSIDE
from shared.models import RecordsQuestion
from shared.policy import AggregateRule, default_policy

MEMBERS = ("E06000035", "E06000043", "E10000011", "E10000016", "E10000030", "E10000032")
HOST = "E10000016"
RULE = default_policy().rule("fair-shares")
INTAKE_CAP = 99  # the simulated intakes stay within the bands "8-49" and "50-99" (or "11-49" ...)


def _release(group: int, counts: dict[str, int]) -> tuple[str, dict[str, str]]:
    service = HostedService("S1", "A provider", "A hostel", "accommodation-based", group, "E07000105", 20, "bed-spaces")
    intake = {(str(group), "S1", origin, "2009-06"): n for origin, n in counts.items() if n}
    released = describe_fair_shares(
        RULE, authority=HOST, services=[service], intake=intake, members=MEMBERS, question=RecordsQuestion()
    )
    s = released.services[0]
    return s.intake_band, s.shares


def _band_range(band: str) -> tuple[int, int]:
    low, _, high = band.partition("-")
    return int(low), int(high) if high else INTAKE_CAP


def consistent_counts(
    band: str, shares: dict[str, str], threshold: int, band_of: Callable[[int, int, int], str] = share_band_of
) -> dict[str, set[int]]:
    """Every count of each origin consistent with what was released: for each known intake K in
    reach of the intake band (the unknown-origin count, never released, fills the rest), each
    origin's counts whose band at K is the released one (a contiguous run), and of those the ones
    the other origins' runs can make up the rest of K with."""
    _low, high = _band_range(band)
    found: dict[str, set[int]] = {o: set() for o in shares}
    for known in range(threshold + 1, high + 1):
        runs: dict[str, tuple[int, int]] = {}
        for origin, shown in shares.items():
            fits = [c for c in range(known + 1) if band_of(c, known, threshold) == shown]
            if not fits:
                break
            runs[origin] = (fits[0], fits[-1])
        else:
            for origin, (lo, hi) in runs.items():
                rest_lo = sum(r[0] for o, r in runs.items() if o != origin)
                rest_hi = sum(r[1] for o, r in runs.items() if o != origin)
                found[origin] |= {v for v in range(lo, hi + 1) if rest_lo <= known - v <= rest_hi}
    return found


def _services(seed: int, n: int) -> list[tuple[int, dict[str, int]]]:
    """Services with intakes from a handful to 99, one origin dominant, and small counts planted."""
    rng = random.Random(seed)
    made = []
    for _ in range(n):
        group = rng.choice((9, 10, 14, 17, 7))
        threshold = RULE.threshold_for(group)
        counts = {o: 0 for o in (*MEMBERS, OUTSIDE, "unknown")}
        counts[rng.choice((*MEMBERS, OUTSIDE))] = rng.randint(threshold + 1, 70)
        for origin in rng.sample(list(counts), rng.randint(1, 4)):
            counts[origin] += rng.randint(1, threshold)  # planted: a few people
        if rng.random() < 0.5:
            counts[rng.choice(MEMBERS)] += rng.randint(threshold + 1, 25)
        while sum(counts.values()) > INTAKE_CAP:
            top = max(counts, key=lambda o: counts[o])
            counts[top] -= 1
        made.append((group, counts))
    return made


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_small_count_is_recovered_from_the_bands(seed: int) -> None:
    attacked = 0
    for group, counts in _services(seed, 60):
        threshold = RULE.threshold_for(group)
        band, shares = _release(group, counts)
        if not shares:
            continue
        possible = consistent_counts(band, shares, threshold)
        for origin, values in possible.items():
            true = counts.get(origin, 0)
            assert true in values, (origin, counts, shares)  # the attack's model is the release's
            if 1 <= true <= threshold:
                attacked += 1
                assert len(values) > 1 and 0 in values, (origin, true, sorted(values), counts, shares)
    assert attacked > 50  # the planted small counts were released beside large ones and attacked


def test_the_attack_recovers_a_small_count_from_a_release_that_gives_it_away() -> None:
    """The attack is real: bands of one percentage point with no "few" pin a small count down
    once the other origin's band is set beside it."""

    def leaky(count: int, known: int, _threshold: int) -> str:
        return f"{100 * count // known}%"

    counts = {HOST: 21, MEMBERS[0]: 4}
    shares = {o: leaky(n, 25, 7) for o, n in counts.items()}
    assert consistent_counts("8-49", shares, 7, band_of=leaky)[MEMBERS[0]] == {4}


def test_a_share_is_given_only_for_a_count_above_the_threshold() -> None:
    assert share_band_of(0, 40, 7) == share_band_of(7, 40, 7) == FEW
    assert share_band_of(8, 40, 7) == "10-24%"
    assert share_band_of(8, 100, 7) == "0-9%"
    assert share_band_of(20, 40, 7) == share_band_of(40, 40, 7) == "50-100%"
    assert share_band_of(10, 40, 7) == "25-49%"


def test_a_small_intake_and_a_dv_service_are_released_as_non_local_services_are() -> None:
    small = {HOST: 5, OUTSIDE: 2}
    assert _release(9, small) == ("", {})
    # Enough intake, but too little of it with a known origin: no shares either.
    assert _release(9, {HOST: 3, "unknown": 40}) == ("", {})
    service = HostedService("S2", "Refuge Trust", "Safe House", "accommodation-based", 14, "E07000105", 8, "units")
    intake = {("14", "S2", OUTSIDE, "2009-06"): 12, ("14", "S2", HOST, "2009-07"): 9}
    released = describe_fair_shares(
        RULE, authority=HOST, services=[service], intake=intake, members=MEMBERS, question=RecordsQuestion()
    ).services[0]
    assert (released.provider, released.name, released.district) == ("(withheld)", "(withheld: DV service)", "")
    # Nine from the host is within domestic violence's threshold of 10: few, like none.
    assert released.shares[HOST] == FEW and released.shares[OUTSIDE] == "50-100%"
    assert released.intake_band == intake_band(21, RULE, client_group=14) and released.units == 8
    assert TOO_SMALL == "intake too small to describe"


def test_the_stricter_threshold_applies_to_refugees() -> None:
    rule: AggregateRule = RULE
    assert rule.threshold_for(17) == rule.threshold_for(14) > rule.threshold_for(9)
    _band, shares = _release(17, {HOST: 30, MEMBERS[0]: 9})
    assert shares[MEMBERS[0]] == FEW

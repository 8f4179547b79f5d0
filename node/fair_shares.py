"""The release rules for fair shares (called from `node.release` only): each designated service's
intake as a band, and each member authority's share of its known intake in a fixed band. A share
is given only for a count above the client group's small-count threshold; a count within it (none
included) is "few", so that a few people and nobody read alike. A service whose intake or known
intake is within the threshold has no shares at all, exactly as non-local services are withheld;
a domestic violence service's provider, name and district are never released.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from node.answers.fair_shares import HostedService
from node.answers.movement import UNKNOWN
from shared import vocabulary
from shared.disclosure import intake_band
from shared.kinds.fair_shares import FEW, OUTSIDE, SHARE_BANDS, DesignatedService, FairShares
from shared.models import RecordsQuestion
from shared.policy import AggregateRule

__all__ = ["TOO_SMALL", "band_label", "describe_fair_shares", "share_band_of"]

TOO_SMALL = "intake too small to describe"


def band_label(low: int, high: int) -> str:
    return f"{low}-{min(high, 101) - 1}%"


def share_band_of(count: int, known: int, threshold: int) -> str:
    """An origin's share of `known` intake: FEW within `threshold` (none included), else its band."""
    if count <= threshold:
        return FEW
    for low, high in SHARE_BANDS:
        if 100 * count < high * known:
            return band_label(low, high)
    return band_label(*SHARE_BANDS[-1])


def describe_fair_shares(
    rule: AggregateRule,
    *,
    authority: str,
    services: Sequence[HostedService],
    intake: Mapping[tuple[str, ...], int],
    members: Iterable[str],
    question: RecordsQuestion,
) -> FairShares:
    """The released answer from the designated services and their true intake at the ledger's grain
    ((client group, service, origin, month) -> count)."""
    by_service: dict[str, dict[str, int]] = {}
    for (_group, ref, origin, _month), n in intake.items():
        origins = by_service.setdefault(ref, {})
        origins[origin] = origins.get(origin, 0) + n
    origins_shown = sorted({*members, OUTSIDE})
    released = []
    for s in services:
        counts = by_service.get(s.service_ref, {})
        total = sum(counts.values())
        known = total - counts.get(UNKNOWN, 0)
        threshold = rule.threshold_for(s.client_group)
        band = intake_band(total, rule, client_group=s.client_group)
        described = band is not None and known > threshold
        protected = s.client_group == vocabulary.DOMESTIC_VIOLENCE
        released.append(
            DesignatedService(
                provider="(withheld)" if protected else s.provider,
                name="(withheld: DV service)" if protected else s.name,
                service_type=s.service_type,
                client_group=s.client_group,
                district="" if protected else s.district,
                units=s.units,
                unit_type=s.unit_type,
                intake_band=(band or "") if described else "",
                shares={o: share_band_of(counts.get(o, 0), known, threshold) for o in origins_shown}
                if described
                else {},
                withheld="" if described else TOO_SMALL,
            )
        )
    return FairShares(authority=authority, services=tuple(released), question=question)

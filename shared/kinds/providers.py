"""The joint results about providers: common providers (combined from the nodes' signed reveals)
and value-for-money benchmarks (read off the CAG-wide sum of masked histograms). Pure functions
of what the nodes signed, so that `verify_bundle` can recompute common providers offline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.pb.cagnet.v1 import node_pb2
from shared.vfm import Benchmark

__all__ = [
    "JOINT_REVIEW_AUTHORITIES",
    "CommonProvider",
    "CommonProviders",
    "ProviderAtAuthority",
    "VfmBenchmarks",
    "combine_common_providers",
]

# A provider common to this many authorities (or with a designated service) is a joint review candidate.
JOINT_REVIEW_AUTHORITIES = 3


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProviderAtAuthority(_Model):
    authority: str
    name: str  # as this authority spells it
    services: int
    units: int
    designated: bool


class CommonProvider(_Model):
    name: str  # the spelling most authorities use (the first alphabetically on a tie)
    national_provider_id: str
    charity_number: str
    company_number: str
    authorities: tuple[ProviderAtAuthority, ...]
    designated: bool  # any of its services, anywhere, is designated cross-authority
    joint_review_candidate: bool


class CommonProviders(_Model):
    kind: Literal["common-providers"] = "common-providers"
    authorities: tuple[str, ...]  # the authorities that took part
    providers: tuple[CommonProvider, ...]


def combine_common_providers(reveals: Sequence[node_pb2.RevealResponse]) -> CommonProviders:
    """Join the revealed providers across authorities: two revealed entries are one provider when
    they share a token (a provider may match one authority by charity number and another by name,
    so the join is transitive)."""
    entries: list[tuple[str, node_pb2.RevealedProvider]] = [(r.authority, p) for r in reveals for p in r.providers]
    parent = list(range(len(entries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[bytes, int] = {}
    for i, (_, p) in enumerate(entries):
        for token in p.tokens:
            j = first_with.setdefault(token, i)
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(entries)):
        groups.setdefault(find(i), []).append(i)
    providers = []
    for members in groups.values():
        at = sorted(
            (
                ProviderAtAuthority(
                    authority=entries[i][0],
                    name=entries[i][1].name,
                    services=entries[i][1].services,
                    units=entries[i][1].units,
                    designated=entries[i][1].designated,
                )
                for i in members
            ),
            key=lambda a: (a.authority, a.name),
        )
        spellings = Counter(a.name for a in at)
        name = min(spellings, key=lambda n: (-spellings[n], n))

        def first(field: str, members: list[int] = members) -> str:
            return next((v for i in sorted(members) if (v := getattr(entries[i][1], field))), "")

        designated = any(a.designated for a in at)
        distinct = len({a.authority for a in at})
        providers.append(
            CommonProvider(
                name=name,
                national_provider_id=first("national_provider_id"),
                charity_number=first("charity_number"),
                company_number=first("company_number"),
                authorities=tuple(at),
                designated=designated,
                joint_review_candidate=designated or distinct >= JOINT_REVIEW_AUTHORITIES,
            )
        )
    providers.sort(key=lambda p: (p.name.casefold(), p.name))
    return CommonProviders(authorities=tuple(sorted(r.authority for r in reveals)), providers=tuple(providers))


class VfmBenchmarks(_Model):
    """The CAG's unit-cost benchmarks by client group x service type, as released."""

    kind: Literal["vfm"] = "vfm"
    authorities: tuple[str, ...]
    client_groups: tuple[int, ...]  # the filter asked (empty: every group)
    service_type: str  # the filter asked ("": every type)
    cells: tuple[Benchmark, ...]

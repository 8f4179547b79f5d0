"""Designated services and fair shares: the designated cross-authority services across the CAG
(service type, client group, capacity, host) and, for each with enough intake over a period, each
member authority's share of that intake in fixed bands, the figure a joint funding split starts
from. The node's answer model, its protobuf form, and the combine (a pure function of the nodes'
answers, so anyone holding a bundle can recompute it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import places
from shared.models import RecordsQuestion
from shared.pb.cagnet.v1 import envelope_pb2, node_pb2

__all__ = [
    "FEW",
    "OUTSIDE",
    "SHARE_BANDS",
    "DesignatedService",
    "FairShares",
    "HostedDesignatedService",
    "JointFairShares",
    "combine_fair_shares",
    "fair_shares_from_proto",
    "fair_shares_to_proto",
]

# The fixed bands of a member's share of a service's known intake, lowest first: (low, high) in
# percent, high exclusive except the last. Fixed so that no question can move an edge.
SHARE_BANDS = ((0, 10), (10, 25), (25, 50), (50, 101))
FEW = "few"  # a count within the small-count threshold, none included
OUTSIDE = "outside"  # every known origin outside the network, together


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DesignatedService(_Model):
    """One designated service as its host released it. `shares`: origin -> band, empty when withheld."""

    provider: str
    name: str
    service_type: str
    client_group: int = Field(ge=1, le=21)
    district: str = ""
    units: int = Field(ge=0)
    unit_type: str = ""
    intake_band: str = ""  # "" when the intake is too small to describe
    shares: dict[str, str] = {}
    withheld: str = ""  # why the shares are not given


class FairShares(_Model):
    """One node's answer: the designated services it hosts, over the question's period."""

    authority: str
    services: tuple[DesignatedService, ...] = ()
    question: RecordsQuestion = RecordsQuestion()


def fair_shares_to_proto(released: FairShares, header: envelope_pb2.ResponseHeader) -> node_pb2.FairSharesResponse:
    return node_pb2.FairSharesResponse(
        header=header,
        authority=released.authority,
        services=[
            node_pb2.DesignatedService(
                **s.model_dump(exclude={"shares"}),
                shares=[node_pb2.OriginShare(origin=o, share_band=b) for o, b in sorted(s.shares.items())],
            )
            for s in released.services
        ],
        from_date=released.question.from_date,
        to_date=released.question.to_date,
    )


def fair_shares_from_proto(message: node_pb2.FairSharesResponse) -> FairShares:
    return FairShares(
        authority=message.authority,
        services=tuple(
            DesignatedService(
                provider=s.provider,
                name=s.name,
                service_type=s.service_type,
                client_group=s.client_group,
                district=s.district,
                units=s.units,
                unit_type=s.unit_type,
                intake_band=s.intake_band,
                shares={o.origin: o.share_band for o in s.shares},
                withheld=s.withheld,
            )
            for s in message.services
        ),
        question=RecordsQuestion(from_date=message.from_date, to_date=message.to_date),
    )


class HostedDesignatedService(_Model):
    host: str
    host_name: str
    service: DesignatedService


class JointFairShares(_Model):
    kind: Literal["fair-shares"] = "fair-shares"
    authorities: tuple[str, ...]  # the hosts that answered
    period: str = ""  # the records' span the intakes cover
    services: tuple[HostedDesignatedService, ...]
    units: int  # designated capacity across the answering hosts
    described: int  # services whose shares are given
    withheld: int  # services whose shares are withheld (intake too small)


def _name(code: str) -> str:
    try:
        return places.place_name(code)
    except KeyError:
        return code


def combine_fair_shares(answers: Sequence[FairShares], *, period: str = "") -> JointFairShares:
    services = [
        HostedDesignatedService(host=a.authority, host_name=_name(a.authority), service=s)
        for a in sorted(answers, key=lambda a: a.authority)
        for s in a.services
    ]
    services.sort(
        key=lambda h: (h.service.client_group, h.host, h.service.service_type, h.service.provider, h.service.name)
    )
    return JointFairShares(
        authorities=tuple(sorted(a.authority for a in answers)),
        period=period,
        services=tuple(services),
        units=sum(h.service.units for h in services),
        described=sum(1 for h in services if h.service.shares),
        withheld=sum(1 for h in services if not h.service.shares),
    )

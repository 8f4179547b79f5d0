"""The joint query kinds, each declared once: its signed kind string, the node methods that answer
it, its messages, who may ask, its round protocol, its request checks and its `combine`. Every
other list of kinds (policy, feed mandates, plans, the node's methods and `Describe`) is read here.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from shared.disclosure import check_share_threshold
from shared.kinds.equality import JointEquality, check_cross_tab, combine_equality
from shared.kinds.fair_shares import JointFairShares, combine_fair_shares, fair_shares_from_proto
from shared.kinds.outcomes import JointOutcomes, combine_outcomes
from shared.kinds.providers import CommonProviders, VfmBenchmarks, combine_common_providers
from shared.kinds.records import (
    JointKpi,
    JointMovement,
    JointNetFlow,
    JointNonLocalServices,
    JointPlan,
    RepeatMovers,
    combine_kpi,
    combine_movement,
    combine_net_flow,
    combine_net_flow_version_1,
    combine_non_local_services,
    combine_plan,
    records_span,
)
from shared.kinds.returns import (
    JointKpi1,
    JointUnmetDemand,
    JointUtilisation,
    combine_kpi1,
    combine_unmet_demand,
    combine_utilisation,
    returns_span,
)
from shared.kinds.spend import JointSpend, combine_spend, spend_from_proto
from shared.kinds.supply import JointSupplyMap, as_at_day, combine_supply_maps
from shared.manifest import CAG_CHAIR, MEMBER_AUTHORITY
from shared.pb.cagnet.v1 import coordinator_pb2, node_pb2
from shared.serde import (
    count_table_from_proto,
    non_local_services_from_proto,
    plan_from_proto,
    supply_map_body,
    supply_map_from_body,
    supply_map_from_proto,
)

__all__ = [
    "AGGREGATE_KINDS",
    "FEED",
    "FEED_KINDS",
    "KINDS",
    "NODE_METHOD_PREFIX",
    "PLAN",
    "PLAN_KINDS",
    "JointKind",
    "JointResult",
    "Protocol",
    "kind_of_method",
]

NODE_METHOD_PREFIX = "/cagnet.v1.Node/"
PLAN = "plan"  # "would you answer?" for the standard client-record questions: no figures, no ledger entry
FEED = "feed"  # the policy's rule for CAG-level feeds, not a joint query of its own
DEFAULT_MIN_SHARE = 50  # percent of intake from outside the host authority

Combine = Callable[[Sequence[Any], coordinator_pb2.JointQueryRequest], Any]
Check = Callable[[coordinator_pb2.JointQueryRequest], None]


class Protocol(StrEnum):
    """How the coordinator runs a kind's rounds with the nodes (`coordinator.joint.protocols`)."""

    ONE_ROUND = "one-round"  # ask every member once, combine the signed answers
    LINKED_COUNT = "linked-count"  # one round of linkage tokens, counted by the coordinator, never kept
    REVEAL = "reveal"  # tokens and commitments first, then each node reveals what enough members share
    MASKED_SUM = "masked-sum"  # pairwise-masked vectors whose sum over every member is the figure


@dataclass(frozen=True)
class JointKind:
    kind: str  # signed into every query and bundle: never renamed
    rpc: str  # the node method, e.g. "SupplyMap"
    request_cls: type[Any]
    response_cls: type[Any]  # what the node signs for the coordinator
    protocol: Protocol = Protocol.ONE_ROUND
    # What the bundle carries for each node: the response itself, or (repeat movers, VFM) the
    # node's signed receipt, since a principal never receives linkage tokens or masked histograms.
    receipt_cls: type[Any] | None = None
    # Fields of the node request that are the coordinator's part of a round, not the principal's
    # question (evidence for a reveal, the participants of a masked sum); the node checks them.
    filled_in: tuple[str, ...] = ()
    # A first round under the same principal query (common providers: the tokens), never in the bundle.
    first_rpc: str = ""
    first_request_cls: type[Any] | None = None
    first_response_cls: type[Any] | None = None
    # The code's ceiling on who may ask; the signed network policy narrows it per kind.
    roles: tuple[str, ...] = (MEMBER_AUTHORITY, CAG_CHAIR)
    # Answered only to the coordinator forwarding a principal's query, never to a principal
    # directly: a member officer whose own node holds the linkage key could test guesses against
    # the tokens, or (VFM) take the pairwise masks off a node's histogram.
    coordinator_only: bool = False
    feed: bool = False  # one of the queries a CAG-level feed snapshot is made of
    planned: bool = False  # one of the standard client-record questions a plan covers
    policy_rule: bool = True  # the network policy has an [aggregates.<kind>] rule for it
    check: Check | None = None  # the coordinator's checks of the principal's query, before any round
    combiner: Combine | None = None  # None: the protocol makes the result (repeat movers, VFM)
    # Earlier result versions' combines, by `result_version`, kept so that a bundle saved with one
    # still verifies (docs/protocol.md, "Result versions").
    earlier: Mapping[int, Combine] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return NODE_METHOD_PREFIX + self.rpc

    @property
    def methods(self) -> tuple[str, ...]:
        """Every node method the kind's rounds call, the first round first."""
        first = (NODE_METHOD_PREFIX + self.first_rpc,) if self.first_rpc else ()
        return (*first, self.method)

    @property
    def about_records(self) -> bool:
        """Asked of client records (dates, period, groups) rather than of the supply map."""
        return self.request_cls in (node_pb2.RecordsQuery, node_pb2.EqualityQuery)

    def request_of(self, method: str) -> type[Any]:
        return self.first_request_cls if method != self.method and self.first_request_cls else self.request_cls

    def filled_in_for(self, method: str) -> tuple[str, ...]:
        return self.filled_in if method == self.method else ()

    def combine(self, responses: Sequence[Any], query: coordinator_pb2.JointQueryRequest) -> Any:
        """The joint result from the nodes' verified responses: a pure function of them."""
        if self.combiner is None:
            raise ValueError(f"{self.kind} is not combined from the bundle's contributions")
        return self.combiner(responses, query)

    def recombine(self, responses: Sequence[Any], query: coordinator_pb2.JointQueryRequest, result: Any) -> Any:
        """What `result` should be, recomputed from the responses with the combine of the result
        version it says it is (the current one unless an earlier version is named)."""
        earlier = self.earlier.get(getattr(result, "result_version", 0))
        return earlier(responses, query) if earlier is not None else self.combine(responses, query)


def _non_local_share(query: coordinator_pb2.JointQueryRequest) -> None:
    if query.min_share_percent:
        check_share_threshold(query.min_share_percent)  # the grid only: a free value could be bisected


class _JointSupplyMaps:
    """The joint supply map is a pure function of the maps' bytes and the selected groups, and the
    coordinator and every client holding the bundle work it out from the same maps query after query
    (a node repeats its answer while its records stand): combine each distinct set once. Keyed on a
    digest of the exact bytes, so a changed figure is a new key; the last few sets are kept."""

    _SIZE = 16

    def __init__(self) -> None:
        self._done: OrderedDict[tuple[bytes, tuple[int, ...]], JointSupplyMap] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, responses: Sequence[Any], query: coordinator_pb2.JointQueryRequest) -> JointSupplyMap:
        bodies = [supply_map_body(m) for m in responses]
        groups = tuple(query.client_groups)  # as asked: the result names them in that order
        key = (hashlib.sha256(b"".join(len(b).to_bytes(8, "big") + b for b in bodies)).digest(), groups)
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
        joint = combine_supply_maps([supply_map_from_body(b) for b in bodies], client_groups=groups)
        with self._lock:
            self._done[key] = joint
            if len(self._done) > self._SIZE:
                self._done.popitem(last=False)
        return joint


def _cross_tab(query: coordinator_pb2.JointQueryRequest) -> None:
    check_cross_tab(query.cross_tab)


def _supply_day(query: coordinator_pb2.JointQueryRequest) -> None:
    as_at_day(query.as_at)


def _span(responses: Sequence[Any], query: coordinator_pb2.JointQueryRequest) -> str:
    """The records' span each row of the result names, from the question and the nodes' signed
    statements of how recent their records are (none from older nodes: then "")."""
    stated = [m.currency.records_to for m in responses if m.HasField("currency")]
    return records_span(query.from_date, query.to_date, stated)


def _counts(combine: Callable[..., Any], *, periods: bool = False) -> Combine:
    """A count kind's combine; with `periods`, each row names the span of records it covers."""
    if periods:
        return lambda responses, query: combine(
            [count_table_from_proto(m) for m in responses], period=_span(responses, query)
        )
    return lambda responses, _query: combine([count_table_from_proto(m) for m in responses])


def _returns(combine: Callable[..., Any]) -> Combine:
    """A count kind read from the services' quarterly returns: each row names the question's span."""
    return lambda responses, query: combine(
        [count_table_from_proto(m) for m in responses], period=returns_span(query.from_date, query.to_date)
    )


_DECLARED = (
    JointKind(
        "supply-map",
        "SupplyMap",
        node_pb2.SupplyMapRequest,
        node_pb2.SupplyMapResponse,
        feed=True,
        check=_supply_day,
        combiner=_JointSupplyMaps(),
        earlier={
            1: lambda responses, query: combine_supply_maps(
                [supply_map_from_proto(m) for m in responses], client_groups=query.client_groups, version=1
            )
        },
    ),
    JointKind(
        "movement",
        "Movement",
        node_pb2.RecordsQuery,
        node_pb2.CountsResponse,
        planned=True,
        combiner=_counts(combine_movement),
    ),
    JointKind(
        "net-flow",
        "NetFlow",
        node_pb2.RecordsQuery,
        node_pb2.CountsResponse,
        feed=True,
        planned=True,
        combiner=_counts(combine_net_flow, periods=True),
        earlier={1: _counts(combine_net_flow_version_1)},
    ),
    JointKind(
        "kpi",
        "Kpi",
        node_pb2.RecordsQuery,
        node_pb2.CountsResponse,
        feed=True,
        planned=True,
        combiner=_counts(combine_kpi, periods=True),
        earlier={1: _counts(lambda tables: combine_kpi(tables, version=1))},
    ),
    JointKind(
        "non-local-services",
        "NonLocalServices",
        node_pb2.RecordsQuery,
        node_pb2.NonLocalServicesResponse,
        planned=True,
        check=_non_local_share,
        combiner=lambda responses, query: combine_non_local_services(
            [non_local_services_from_proto(m) for m in responses],
            min_share_percent=query.min_share_percent or DEFAULT_MIN_SHARE,
            period=_span(responses, query),
        ),
    ),
    JointKind(
        PLAN,
        "Plan",
        node_pb2.RecordsQuery,
        node_pb2.PlanResponse,
        policy_rule=False,
        combiner=lambda responses, _query: combine_plan([plan_from_proto(m) for m in responses]),
    ),
    JointKind(
        "repeat-movers",
        "LinkageTokens",
        node_pb2.RecordsQuery,
        node_pb2.LinkageTokensResponse,
        protocol=Protocol.LINKED_COUNT,
        receipt_cls=node_pb2.LinkageReceipt,
        coordinator_only=True,
        planned=True,
    ),
    JointKind(
        "common-providers",
        "RevealProviders",
        node_pb2.RevealRequest,
        node_pb2.RevealResponse,
        protocol=Protocol.REVEAL,
        filled_in=("tokens", "commitments", "evidence"),
        first_rpc="ProviderTokens",
        first_request_cls=node_pb2.ProvidersQuery,
        first_response_cls=node_pb2.ProviderTokensResponse,
        coordinator_only=True,
        combiner=lambda responses, _query: combine_common_providers(responses),
    ),
    JointKind(
        "vfm",
        "Vfm",
        node_pb2.VfmQuery,
        node_pb2.VfmResponse,
        protocol=Protocol.MASKED_SUM,
        receipt_cls=node_pb2.VfmReceipt,
        filled_in=("participants",),
        coordinator_only=True,
    ),
    JointKind(
        "fair-shares",
        "FairShares",
        node_pb2.RecordsQuery,
        node_pb2.FairSharesResponse,
        planned=True,
        combiner=lambda responses, query: combine_fair_shares(
            [fair_shares_from_proto(m) for m in responses], period=_span(responses, query)
        ),
    ),
    JointKind(
        "spend",
        "Spend",
        node_pb2.RecordsQuery,
        node_pb2.SpendResponse,
        planned=True,
        combiner=lambda responses, query: combine_spend(
            [spend_from_proto(m) for m in responses], period=_span(responses, query)
        ),
    ),
    JointKind(
        "outcomes",
        "Outcomes",
        node_pb2.RecordsQuery,
        node_pb2.CountsResponse,
        planned=True,
        combiner=_counts(combine_outcomes, periods=True),
    ),
    JointKind(
        "equality",
        "Equality",
        node_pb2.EqualityQuery,
        node_pb2.CountsResponse,
        planned=True,
        check=_cross_tab,
        combiner=_counts(combine_equality, periods=True),
    ),
    JointKind(
        "kpi1",
        "Kpi1",
        node_pb2.RecordsQuery,
        node_pb2.CountsResponse,
        planned=True,
        combiner=_returns(combine_kpi1),
    ),
    JointKind(
        "utilisation",
        "Utilisation",
        node_pb2.RecordsQuery,
        node_pb2.CountsResponse,
        planned=True,
        combiner=_returns(combine_utilisation),
    ),
    JointKind(
        "unmet-demand",
        "UnmetDemand",
        node_pb2.RecordsQuery,
        node_pb2.CountsResponse,
        planned=True,
        combiner=_returns(combine_unmet_demand),
    ),
)

KINDS: dict[str, JointKind] = {k.kind: k for k in _DECLARED}

# Derived lists, in the registry's order.
FEED_KINDS = tuple(k.kind for k in _DECLARED if k.feed)
PLAN_KINDS = tuple(k.kind for k in _DECLARED if k.planned)
AGGREGATE_KINDS = (*(k.kind for k in _DECLARED if k.policy_rule), FEED)

_BY_METHOD = {method: k for k in _DECLARED for method in k.methods}


def kind_of_method(method: str) -> JointKind | None:
    """The kind a node method answers for, or None (Describe)."""
    return _BY_METHOD.get(method)


JointResult = Annotated[
    JointSupplyMap
    | JointMovement
    | JointNetFlow
    | JointKpi
    | JointNonLocalServices
    | JointPlan
    | RepeatMovers
    | CommonProviders
    | VfmBenchmarks
    | JointFairShares
    | JointSpend
    | JointOutcomes
    | JointEquality
    | JointKpi1
    | JointUtilisation
    | JointUnmetDemand,
    Field(discriminator="kind"),
]

"""The joint query kinds: which node method answers each, what its messages are, and how the
answers combine. One table, read by the server (to fan out), the bundle (to verify) and the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from coordinator.joint.combine import JointSupplyMap, combine_supply_maps
from coordinator.joint.providers import CommonProviders, VfmBenchmarks, combine_common_providers
from coordinator.joint.records import (
    JointKpi,
    JointMovement,
    JointNetFlow,
    JointNonLocalServices,
    JointPlan,
    RepeatMovers,
    combine_kpi,
    combine_movement,
    combine_net_flow,
    combine_non_local_services,
    combine_plan,
)
from shared.pb.cagnet.v1 import coordinator_pb2, node_pb2
from shared.serde import (
    count_table_from_proto,
    non_local_services_from_proto,
    plan_from_proto,
    supply_map_from_proto,
)

__all__ = ["KINDS", "PLAN", "JointKind", "JointResult"]

JointResult = Annotated[
    JointSupplyMap
    | JointMovement
    | JointNetFlow
    | JointKpi
    | JointNonLocalServices
    | JointPlan
    | RepeatMovers
    | CommonProviders
    | VfmBenchmarks,
    Field(discriminator="kind"),
]

DEFAULT_MIN_SHARE = 50  # percent of intake from outside the host authority
# "Would you answer?" for the standard client-record questions: no figures, and no ledger entry.
PLAN = "plan"
_UNUSED = None  # percent of intake from outside the host authority


@dataclass(frozen=True)
class JointKind:
    kind: str
    rpc: str  # the node method, e.g. "SupplyMap"
    request_cls: type[Any]
    response_cls: type[Any]  # what the node signs for the coordinator
    # What the bundle carries for each node: the response itself, or (repeat movers, VFM) the
    # node's signed receipt, since a principal never receives linkage tokens or masked histograms.
    receipt_cls: type[Any] | None = None
    # Fields of the node request that are the coordinator's part of a round, not the principal's
    # question (evidence for a reveal, the participants of a masked sum); the node checks them.
    filled_in: tuple[str, ...] = ()
    # A first round under the same principal query (common providers: the tokens), never in the bundle.
    first_rpc: str = ""

    @property
    def method(self) -> str:
        return f"/cagnet.v1.Node/{self.rpc}"

    def combine(self, responses: Sequence[Any], query: coordinator_pb2.JointQueryRequest) -> Any:
        """The joint result from the nodes' verified responses: a pure function of them."""
        if self.kind == "supply-map":
            return combine_supply_maps([supply_map_from_proto(m) for m in responses], client_groups=query.client_groups)
        if self.kind == "movement":
            return combine_movement([count_table_from_proto(m) for m in responses])
        if self.kind == "net-flow":
            return combine_net_flow([count_table_from_proto(m) for m in responses])
        if self.kind == "kpi":
            return combine_kpi([count_table_from_proto(m) for m in responses])
        if self.kind == "non-local-services":
            return combine_non_local_services(
                [non_local_services_from_proto(m) for m in responses],
                min_share_percent=query.min_share_percent or DEFAULT_MIN_SHARE,
            )
        if self.kind == "common-providers":
            return combine_common_providers(responses)
        if self.kind == PLAN:
            return combine_plan([plan_from_proto(m) for m in responses])
        raise ValueError(f"{self.kind} is not combined from the bundle's contributions")


KINDS: dict[str, JointKind] = {
    k.kind: k
    for k in (
        JointKind("supply-map", "SupplyMap", node_pb2.SupplyMapRequest, node_pb2.SupplyMapResponse),
        JointKind("movement", "Movement", node_pb2.RecordsQuery, node_pb2.CountsResponse),
        JointKind("net-flow", "NetFlow", node_pb2.RecordsQuery, node_pb2.CountsResponse),
        JointKind("kpi", "Kpi", node_pb2.RecordsQuery, node_pb2.CountsResponse),
        JointKind("non-local-services", "NonLocalServices", node_pb2.RecordsQuery, node_pb2.NonLocalServicesResponse),
        JointKind(PLAN, "Plan", node_pb2.RecordsQuery, node_pb2.PlanResponse),
        JointKind(
            "repeat-movers",
            "LinkageTokens",
            node_pb2.RecordsQuery,
            node_pb2.LinkageTokensResponse,
            receipt_cls=node_pb2.LinkageReceipt,
        ),
        JointKind(
            "common-providers",
            "RevealProviders",
            node_pb2.RevealRequest,
            node_pb2.RevealResponse,
            filled_in=("tokens", "commitments", "evidence"),
            first_rpc="ProviderTokens",
        ),
        JointKind(
            "vfm",
            "Vfm",
            node_pb2.VfmQuery,
            node_pb2.VfmResponse,
            receipt_cls=node_pb2.VfmReceipt,
            filled_in=("participants",),
        ),
    )
}

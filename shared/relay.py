"""The relay's names and its hello, for both ends: a node that only dials out attaches to the
coordinator's `Relay` service with a signed hello, and is then asked on that stream exactly what a
listening node is asked on its `Node` service (docs/protocol.md, "The relay")."""

from __future__ import annotations

from shared import dsse
from shared.auth import request_header, sign_message
from shared.identity import Identity
from shared.pb.cagnet.v1 import relay_pb2
from shared.roles import COORDINATOR

SERVICE = "cagnet.v1.Relay"

# A relay stream is idle between queries, and the firewalls and NAT a dial-out node sits behind
# forget an idle connection after a few minutes without telling either end: a query would then
# wait out its deadline on a dead stream. Both ends ping every 30 s and give up on a peer that does
# not answer a ping within 10 s, so a dead stream is found within about 40 s (the node dials
# again; the coordinator reports the node unreachable at once instead of late).
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),  # the stream may carry nothing for hours
)
# What the coordinator's server accepts from the nodes' pings (gRPC's default of one ping each
# 5 minutes would answer the nodes' with GOAWAY "too many pings"), and its own pings to them.
SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    *KEEPALIVE_OPTIONS,
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
)
ATTACH = f"/{SERVICE}/Attach"
NODE_SERVICE = "cagnet.v1.Node"


def attached_service(authority: str) -> str:
    """The name under which the coordinator's health service says whether `authority`'s dial-out
    node is attached now (SERVING) or not (NOT_SERVING): how a dial-out node's health check, the
    demo and `cagnet network status` see it, since the node itself has no port to probe."""
    return f"{SERVICE}/{authority}"


def node_method(rpc: str) -> str:
    """The full method path of the `Node` RPC `rpc` (e.g. "SupplyMap"), as a relayed call names it."""
    return f"/{NODE_SERVICE}/{rpc}"


def hello(identity: Identity) -> dsse.Envelope:
    """The node's first frame: an AttachRequest addressed to the coordinator for `ATTACH`, fresh
    (issued now, a new nonce) and signed with the node's manifest key."""
    header = request_header(identity, audience=COORDINATOR, method=ATTACH)
    return sign_message(relay_pb2.AttachRequest(header=header), identity)

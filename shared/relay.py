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

"""The probe behind `cagnet health`: ask a cagnet server's standard gRPC health service, over the
same mTLS every other call uses, whether it is SERVING. Container health checks and monitoring
run it with a party's own identity; the servers accept no other kind of connection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.errors import Unavailable
from shared.identity import Identity
from shared.interceptor import secure_channel


def check(target: str, *, identity: Identity, peer_party_id: str, service: str = "", timeout_s: float = 5.0) -> str:
    """The serving status of `service` ("" for the server as a whole) at `target`, whose TLS
    certificate must name `peer_party_id`, by its name in the health protocol (SERVING,
    NOT_SERVING, SERVICE_UNKNOWN). Raises Unavailable when no such server answers in time."""
    channel = secure_channel(
        target,
        peer_party_id=peer_party_id,
        ca_pem=identity.ca_cert_pem,
        key_pem=identity.tls_key_pem,
        cert_pem=identity.tls_cert_pem,
    )
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # the standard answer for a service it does not host
            return "SERVICE_UNKNOWN"
        raise Unavailable(f"no cagnet server answered at {target} as {peer_party_id} ({exc.code().name})") from None
    finally:
        channel.close()
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

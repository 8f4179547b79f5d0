"""The coordinator keeps the nonces of the requests it accepts in its audit database, as a node
does: a request replayed to a coordinator that restarted in the meantime is still refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from coordinator import network
from coordinator.server import JOINT_QUERY, CoordinatorRuntime, create_server
from shared.auth import request_header, sign_message
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR
from shared.nonces import accepted_nonce
from shared.pb.cagnet.v1 import coordinator_pb2, coordinator_pb2_grpc
from shared.serde import envelope_to_proto


def _ask(netdir: Path, request: object) -> grpc.RpcError:
    runtime = CoordinatorRuntime.open(netdir)
    server, port = create_server(runtime, address="127.0.0.1:0")
    chair = network.principal_identity(netdir)
    try:
        with secure_channel(
            f"127.0.0.1:{port}",
            peer_party_id=COORDINATOR,
            ca_pem=chair.ca_cert_pem,
            key_pem=chair.tls_key_pem,
            cert_pem=chair.tls_cert_pem,
        ) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                coordinator_pb2_grpc.CoordinatorStub(channel).JointQuery(request, timeout=30)
            return refused.value
    finally:
        server.stop(grace=None).wait()
        runtime.close()


def test_a_request_replayed_after_a_restart_is_refused(tmp_path: Path) -> None:
    netdir = tmp_path / "network"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    chair = network.principal_identity(netdir)
    policy = network.read_policy(netdir)
    header = request_header(chair, audience=COORDINATOR, method=JOINT_QUERY, policy_digest=policy.digest)
    request = envelope_to_proto(
        sign_message(coordinator_pb2.JointQueryRequest(header=header, kind="supply-map"), chair)
    )
    # Accepted (and refused afterwards for want of members): its nonce is spent.
    first = _ask(netdir, request)
    assert first.code() != grpc.StatusCode.ALREADY_EXISTS
    # A new coordinator process on the same folder: the nonce is in its database, not only in memory.
    replayed = _ask(netdir, request)
    assert replayed.code() == grpc.StatusCode.ALREADY_EXISTS and replayed.details() == "replayed request"
    runtime = CoordinatorRuntime.open(netdir)
    try:
        with runtime.audit.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(accepted_nonce)).scalar_one() == 1
    finally:
        runtime.close()

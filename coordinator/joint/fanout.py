"""Asking every member node at once, each with its own deadline, and sorting the answers into
verified contributions and missing authorities with a reason each.

Channels are kept open per node (the TLS handshake is paid once, not per query).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from shared import dsse
from shared.auth import digest, sign_message, verify_response
from shared.errors import CagnetError, Unavailable
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import Party
from shared.pb.cagnet.v1 import node_pb2_grpc
from shared.serde import envelope_from_proto, envelope_to_proto


@dataclass(frozen=True)
class Contribution:
    """One node's answer: the coordinator's signed request and the node's signed response."""

    authority: str
    request: dsse.Envelope
    response: dsse.Envelope
    message: Any
    parsed: Any = None  # `parse(message)`, when fan_out was given a parse


@dataclass(frozen=True)
class Missing:
    authority: str
    reason: str


class NodeClients:
    """One mTLS channel per member node, created on first use and reused, and the threads that
    wait on them. (grpc's `.future()` starts a thread per call, which costs more than the call.)"""

    def __init__(self, identity: Identity, *, max_parallel: int = 32) -> None:
        self._identity = identity
        self._channels: dict[tuple[str, str], grpc.Channel] = {}
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="fan-out")

    def stub(self, party: Party) -> node_pb2_grpc.NodeStub:
        key = (party.id, party.endpoint)
        with self._lock:
            channel = self._channels.get(key)
            if channel is None:
                channel = secure_channel(
                    party.endpoint,
                    peer_party_id=party.id,
                    ca_pem=self._identity.ca_cert_pem,
                    key_pem=self._identity.tls_key_pem,
                    cert_pem=self._identity.tls_cert_pem,
                )
                self._channels[key] = channel
        return node_pb2_grpc.NodeStub(channel)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


def _reason(error: grpc.RpcError, deadline_s: float) -> str:
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within the deadline ({deadline_s * 1000:.0f} ms)"
    if code == grpc.StatusCode.UNAVAILABLE and error.details() == Unavailable("no valid network policy").public_message:
        return f"refused ({code.name}): {error.details()}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "unreachable"
    return f"refused ({code.name}): {error.details()}"


def fan_out(
    clients: NodeClients,
    identity: Identity,
    members: tuple[Party, ...],
    *,
    rpc: str,
    build: Callable[[Party], Any],
    response_cls: type[Any],
    deadline_s: float,
    parse: Callable[[Any], Any] | None = None,
) -> tuple[list[Contribution], list[Missing]]:
    """Send `build(member)` (signed) to every member concurrently; collect what verifies in time.

    Each answer is verified (and `parse`d) on the thread that waited for it, as soon as it arrives,
    so the work on early answers overlaps the wait for the slowest.
    """

    def ask(member: Party, request: dsse.Envelope) -> tuple[dsse.Envelope, Any, Any]:
        call = getattr(clients.stub(member), rpc)
        # Each call carries the deadline itself, so every future below settles within it.
        reply = envelope_from_proto(call(envelope_to_proto(request), timeout=deadline_s))
        message = verify_response(reply, response_cls, signer=member, request_digest=digest(request.payload))
        return reply, message, parse(message) if parse is not None else None

    pending = []
    for member in members:
        request = sign_message(build(member), identity)
        pending.append((member, request, clients.pool.submit(ask, member, request)))
    answered: list[Contribution] = []
    missing: list[Missing] = []
    for member, request, future in pending:
        try:
            reply, message, parsed = future.result()
        except grpc.RpcError as exc:
            missing.append(Missing(member.id, _reason(exc, deadline_s)))
            continue
        except CagnetError as exc:
            missing.append(Missing(member.id, f"response failed verification: {exc.public_message}"))
            continue
        answered.append(Contribution(member.id, request, reply, message, parsed))
    return answered, missing

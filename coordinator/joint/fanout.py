"""Asking every member node at once, each with its own deadline, and sorting the answers into
verified contributions and missing authorities with a reason each.

The calls are asynchronous (`grpc.aio`) on one event loop, so that every member is asked at the
same moment however many there are: no pool of threads for a request to queue behind. Channels are
kept open per node (the TLS handshake is paid once, not per query). A member the manifest lists as
"dial-out" is asked the same signed request on the stream its node holds open to the coordinator
(`coordinator.relay`), with the same deadline; one not attached is unreachable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from coordinator.relay.attached import AttachedNodes
from shared import dsse
from shared.auth import digest, sign_message, verify_response
from shared.errors import CagnetError, Unavailable
from shared.identity import Identity
from shared.interceptor import secure_aio_channel
from shared.manifest import Party
from shared.pb.cagnet.v1 import envelope_pb2, node_pb2_grpc
from shared.relay import node_method
from shared.serde import envelope_from_proto, envelope_to_proto

T = TypeVar("T")


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
    """One mTLS channel per member node, created on first use and reused, and the one thread whose
    event loop makes every call to them. Joint queries from any thread hand their calls to it."""

    def __init__(self, identity: Identity, attached: AttachedNodes | None = None) -> None:
        self._identity = identity
        # The dial-out members' streams (`coordinator.relay`), filled in by the Relay service.
        self.attached = attached if attached is not None else AttachedNodes()
        # Each node's channel and its stub, made once (touched on the loop only).
        self._channels: dict[tuple[str, str], tuple[grpc.aio.Channel, node_pb2_grpc.NodeStub]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fan-out", daemon=True)
        self._thread.start()

    def stub(self, party: Party) -> node_pb2_grpc.NodeStub:
        """The stub for `party`'s node (call on the loop: an aio channel belongs to it)."""
        key = (party.id, party.endpoint)
        entry = self._channels.get(key)
        if entry is None:
            channel = secure_aio_channel(
                party.endpoint,
                peer_party_id=party.id,
                ca_pem=self._identity.ca_cert_pem,
                key_pem=self._identity.tls_key_pem,
                cert_pem=self._identity.tls_cert_pem,
            )
            entry = self._channels[key] = (channel, node_pb2_grpc.NodeStub(channel))
        return entry[1]

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the loop and wait for it (from any thread but the loop's)."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def close_channels() -> None:
            entries, self._channels = list(self._channels.values()), {}
            await asyncio.gather(*(channel.close() for channel, _stub in entries), return_exceptions=True)

        if self._loop.is_running():
            self.run(close_channels())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()


def _reason(code: grpc.StatusCode, details: str | None, deadline_s: float) -> str:
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within the deadline ({deadline_s * 1000:.0f} ms)"
    if code == grpc.StatusCode.UNAVAILABLE and details == Unavailable("no valid network policy").public_message:
        return f"refused ({code.name}): {details}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "unreachable"
    return f"refused ({code.name}): {details}"


_STATUS = {code.value[0]: code for code in grpc.StatusCode}


async def _relayed(
    clients: NodeClients, member: Party, rpc: str, request: envelope_pb2.Envelope, deadline_s: float
) -> tuple[envelope_pb2.Envelope | None, grpc.StatusCode, str]:
    """`request` to a dial-out member over its stream: (its signed answer, OK, ""), or (None, the
    status and details the listening transport would have given), so that the same failures get
    the same reasons."""
    attachment = clients.attached.get(member.id)
    if attachment is None:
        return None, grpc.StatusCode.UNAVAILABLE, "not attached"
    future = attachment.ask(node_method(rpc), request, deadline_s)
    try:
        answer = await asyncio.wait_for(asyncio.wrap_future(future), deadline_s)
    except TimeoutError:
        return None, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"
    except Unavailable:
        return None, grpc.StatusCode.UNAVAILABLE, "not attached"
    code = _STATUS.get(answer.status_code, grpc.StatusCode.UNKNOWN)
    return (answer.response, code, "") if code == grpc.StatusCode.OK else (None, code, answer.status_message)


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
    """Send `build(member)` (signed) to every member at once; collect what verifies in time.

    Each answer is verified (and `parse`d) as soon as it arrives, so the work on early answers
    overlaps the wait for the slowest.
    """
    requests = [(member, sign_message(build(member), identity)) for member in members]

    async def ask(member: Party, request: dsse.Envelope) -> Contribution | Missing:
        try:
            # Each call carries the deadline itself, so every one settles within it.
            if member.dials_out:
                relayed, code, details = await _relayed(clients, member, rpc, envelope_to_proto(request), deadline_s)
                if relayed is None:
                    return Missing(member.id, _reason(code, details, deadline_s))
                answer = relayed
            else:
                answer = await getattr(clients.stub(member), rpc)(envelope_to_proto(request), timeout=deadline_s)
            reply = envelope_from_proto(answer)
            message = verify_response(reply, response_cls, signer=member, request_digest=digest(request.payload))
        except grpc.RpcError as exc:
            return Missing(member.id, _reason(exc.code(), exc.details(), deadline_s))
        except CagnetError as exc:
            return Missing(member.id, f"response failed verification: {exc.public_message}")
        return Contribution(member.id, request, reply, message, parse(message) if parse is not None else None)

    async def ask_all() -> list[Contribution | Missing]:
        return await asyncio.gather(*(ask(member, request) for member, request in requests))

    outcomes = clients.run(ask_all())
    answered = [o for o in outcomes if isinstance(o, Contribution)]
    missing = [o for o in outcomes if isinstance(o, Missing)]
    return answered, missing

"""One mTLS channel from a party to a service the coordinator hosts (the register, governance).

Every call is a request signed with the party's key, and every answer must verify as the
coordinator's reply to exactly that request. A refusal comes back as ServiceRefused with the
gRPC status and the server's public message (a rule, never data).

The coordinator may move (`cagnet network propose-endpoint coordinator HOST:PORT`): the verified
manifest chain carries each address it has had, so a kit or a node tries the one its head lists,
then the ones before it, newest first (`coordinator_endpoints`), and says which it tried when none
answers. A version announcing the move may be published before the coordinator has moved, and a
kit not used since the move learns the new address from the old one while it still answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from shared import dsse
from shared.auth import digest, now_ms, request_header, sign_message, verify_response
from shared.errors import CagnetError, Unavailable
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR, Manifest, ManifestSource
from shared.serde import envelope_from_proto, envelope_to_proto

R = TypeVar("R", bound=Message)


class ServiceRefused(CagnetError):
    """A coordinator service refused a request: its gRPC status and its message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message or code.name.lower().replace("_", " "))
        self.code = code


# Addresses tried after the head's: enough to follow a move or two, few enough to fail fast.
KNOWN_ENDPOINTS = 3


def coordinator_endpoints(manifests: ManifestSource) -> tuple[str, ...]:
    """Where the coordinator may be, from a verified chain: the address its head lists, then those
    earlier versions listed, newest first (never port 0, which only a test's first version names)."""
    manifests.current()  # verifies up to the head, so that `history` is the verified chain
    found: list[str] = []
    for manifest, _ in reversed(manifests.history):
        endpoint = manifest.coordinator_endpoint
        if endpoint and not endpoint.endswith(":0") and endpoint not in found:
            found.append(endpoint)
    return tuple(found[: 1 + KNOWN_ENDPOINTS])


def unreachable(what: str, tried: Sequence[str]) -> str:
    """The message when no address answered."""
    if len(tried) == 1:
        return f"{what} at {tried[0]} is not reachable"
    return (
        f"{what} is not reachable at any address the manifest chain has listed for it ({', '.join(tried)}):"
        " ask the coordinator's operator where it is now"
    )


class CoordinatorChannel:
    """A channel to one service on the coordinator, acting as `identity`; `manifest` says whom
    to trust (and, unless `endpoint` is given, where the coordinator is: the head's address, then
    `known`, the addresses earlier versions listed, tried in turn when one is unreachable)."""

    service = ""  # the full service name, e.g. "cagnet.v1.Register"
    what = "the coordinator"
    refused: type[ServiceRefused] = ServiceRefused

    def __init__(
        self,
        identity: Identity,
        manifest: Callable[[], Manifest],
        *,
        endpoint: str | None = None,
        known: Sequence[str] = (),
    ) -> None:
        self.identity = identity
        self._manifest = manifest
        self._targets = [endpoint] if endpoint else list(dict.fromkeys([manifest().coordinator_endpoint, *known]))
        self.target = self._targets[0]
        self._channel = self._open(self.target)
        self._stub: Any = None  # set by the subclass, from self._channel

    def _open(self, target: str) -> grpc.Channel:
        return secure_channel(
            target,
            peer_party_id=COORDINATOR,
            ca_pem=self.identity.ca_cert_pem,
            key_pem=self.identity.tls_key_pem,
            cert_pem=self.identity.tls_cert_pem,
        )

    def _move_to(self, target: str) -> None:
        self._channel.close()
        self.target, self._channel = target, self._open(target)
        self._stub = type(self._stub)(self._channel)  # a generated stub is made from its channel alone

    @property
    def manifest(self) -> Manifest:
        return self._manifest()

    def _call(self, name: str, request: Message, response_cls: type[R], *, timeout_s: float = 30.0) -> R:
        reply, request_digest = self._send(name, request, timeout_s=timeout_s)
        # A reply just received: a key the coordinator rotated out still counts within its overlap.
        return verify_response(
            reply, response_cls, signer=self.manifest.party(COORDINATOR), request_digest=request_digest, now=now_ms()
        )

    def _send(self, name: str, request: Message, *, timeout_s: float = 30.0) -> tuple[dsse.Envelope, bytes]:
        """Sign and send `request`; the reply envelope, not yet verified, and the request's digest."""
        tried: list[str] = []
        while True:
            # Signed afresh for each address: a new nonce, and the request is never replayed.
            header = request_header(self.identity, audience=COORDINATOR, method=f"/{self.service}/{name}")
            request.header.CopyFrom(header)  # type: ignore[attr-defined]
            envelope = sign_message(request, self.identity)
            try:
                reply = getattr(self._stub, name)(envelope_to_proto(envelope), timeout=timeout_s)
                return envelope_from_proto(reply), digest(envelope.payload)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise self.refused(exc.code(), exc.details() or "") from None
                tried.append(self.target)
                following = [t for t in self._targets if t not in tried]
                if not following:
                    raise Unavailable(unreachable(self.what, tried)) from None
                self._move_to(following[0])

    def close(self) -> None:
        self._channel.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

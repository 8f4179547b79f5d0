"""One mTLS channel from a party to a service the coordinator hosts (the register, governance).

Every call is a request signed with the party's key, and every answer must verify as the
coordinator's reply to exactly that request. A refusal comes back as ServiceRefused with the
gRPC status and the server's public message (a rule, never data).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from shared.auth import digest, request_header, sign_message, verify_response
from shared.errors import CagnetError, Unavailable
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR, Manifest
from shared.serde import envelope_from_proto, envelope_to_proto

R = TypeVar("R", bound=Message)


class ServiceRefused(CagnetError):
    """A coordinator service refused a request: its gRPC status and its message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message or code.name.lower().replace("_", " "))
        self.code = code


class CoordinatorChannel:
    """A channel to one service on the coordinator, acting as `identity`; `manifest` says whom
    to trust (and, unless `endpoint` is given, where the coordinator is)."""

    service = ""  # the full service name, e.g. "cagnet.v1.Register"
    what = "the coordinator"
    refused: type[ServiceRefused] = ServiceRefused

    def __init__(self, identity: Identity, manifest: Callable[[], Manifest], *, endpoint: str | None = None) -> None:
        self.identity = identity
        self._manifest = manifest
        self.target = endpoint or manifest().coordinator_endpoint
        self._channel = secure_channel(
            self.target,
            peer_party_id=COORDINATOR,
            ca_pem=identity.ca_cert_pem,
            key_pem=identity.tls_key_pem,
            cert_pem=identity.tls_cert_pem,
        )
        self._stub: Any = None  # set by the subclass, from self._channel

    @property
    def manifest(self) -> Manifest:
        return self._manifest()

    def _call(self, name: str, request: Message, response_cls: type[R], *, timeout_s: float = 30.0) -> R:
        header = request_header(self.identity, audience=COORDINATOR, method=f"/{self.service}/{name}")
        request.header.CopyFrom(header)  # type: ignore[attr-defined]
        envelope = sign_message(request, self.identity)
        try:
            reply = getattr(self._stub, name)(envelope_to_proto(envelope), timeout=timeout_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise Unavailable(f"{self.what} at {self.target} is not reachable") from None
            raise self.refused(exc.code(), exc.details() or "") from None
        return verify_response(
            envelope_from_proto(reply),
            response_cls,
            signer=self.manifest.party(COORDINATOR),
            request_digest=digest(envelope.payload),
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

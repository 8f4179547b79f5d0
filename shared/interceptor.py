"""The authentication interceptor every cagnet server installs.

For each unary call on a cagnet service, and for the request that opens a server-streaming call
(a feed), it takes the TLS peer's party id from the client
certificate, verifies the signed envelope (through the `authenticate` function the server gives
it), exposes the verified request to the servicer through `current_request()`, and maps every
error to a gRPC status: a CagnetError to its own code and public message, anything else to
INTERNAL with the detail only in this server's log. Health checks pass through (mTLS still applies).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from shared import pki
from shared.auth import NonceCache, Verified, verify_request
from shared.dsse import Envelope
from shared.errors import CagnetError, InvalidRequest, PeerMismatch
from shared.manifest import Manifest
from shared.metrics import note_principal, note_refusal
from shared.serde import envelope_from_proto

log = logging.getLogger(__name__)

Authenticate = Callable[[str, Envelope, str | None], Verified[Any]]
# (method, TLS peer's party id, the error, the verified request when it got that far)
OnReject = Callable[[str, str | None, CagnetError, Verified[Any] | None], None]

_current: contextvars.ContextVar[Verified[Any]] = contextvars.ContextVar("cagnet_verified_request")
_peer_fingerprint: contextvars.ContextVar[str | None] = contextvars.ContextVar("cagnet_peer_fingerprint", default=None)


def current_peer_fingerprint() -> str | None:
    """The SHA-256 fingerprint of the TLS client certificate of the call being authenticated."""
    return _peer_fingerprint.get()


def verify_call(
    methods: Mapping[str, tuple[type[Message], tuple[str, ...]]],
    method: str,
    envelope: Envelope,
    *,
    manifest: Manifest,
    audience: str,
    nonces: NonceCache,
    peer: str | None,
) -> Verified[Any]:
    """One call to a service that asks nothing more of a request than the common rules: `method` is
    one it serves, and the request verifies (signer, audience, expiry, nonce, signature, the TLS peer
    and the certificate the manifest lists for it). The role check is the caller's, so that a server
    can record who was refused a method by role (known by then) apart from who could not be verified."""
    try:
        message_cls, _roles = methods[method]
    except KeyError:
        raise InvalidRequest("unknown method") from None
    return verify_request(
        envelope,
        message_cls,
        manifest=manifest,
        audience=audience,
        method=method,
        nonces=nonces,
        peer_party_id=peer,
        peer_fingerprint=current_peer_fingerprint(),
    )


def current_request() -> Verified[Any]:
    """The verified request of the call being served (set by the interceptor)."""
    return _current.get()


def peer_party_id(context: grpc.ServicerContext) -> str | None:
    """The party id in the client's TLS certificate, or None on an insecure channel."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert")
    if not pems:
        return None
    try:
        return _party_id_of(bytes(pems[0]))[0]
    except CagnetError:
        raise PeerMismatch("the TLS client certificate carries no cagnet identity") from None


def peer_fingerprint(context: grpc.ServicerContext) -> str | None:
    """The fingerprint of the client's TLS certificate, or None on an insecure channel."""
    pems = (context.auth_context() or {}).get("x509_pem_cert")
    if not pems:
        return None
    return _party_id_of(bytes(pems[0]))[1]


@functools.lru_cache(maxsize=256)
def _party_id_of(cert_pem: bytes) -> tuple[str, str]:
    # A pure function of the certificate's bytes (gRPC has already checked the chain), asked on every
    # call with the same few certificates: parse each once. A certificate without an id is not cached.
    cert = pki.load_cert(cert_pem)
    return pki.party_id_from_certificate(cert), pki.fingerprint(cert)


class SignedEnvelopeInterceptor(grpc.ServerInterceptor):
    def __init__(
        self, services: tuple[str, ...], authenticate: Authenticate, on_reject: OnReject, *, explicit: bool = False
    ) -> None:
        self._prefixes = tuple(f"/{s}/" for s in services)
        # explicit: a unary handler is called with the verified request in place of the raw
        # envelope, so that it reads nothing ambient (`current_request` is for the others).
        self._explicit = explicit
        self._authenticate = authenticate
        self._on_reject = on_reject

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefixes):
            return handler
        if handler.unary_unary is not None:
            return self._unary(method, handler)
        if handler.unary_stream is not None:
            return self._stream(method, handler)
        return handler

    def _refuse(
        self,
        method: str,
        peer: str | None,
        verified: Verified[Any] | None,
        exc: BaseException,
        context: grpc.ServicerContext,
    ) -> None:
        code, details = self._refusal(method, peer, verified, exc)
        context.abort(code, details)

    def _refusal(
        self, method: str, peer: str | None, verified: Verified[Any] | None, exc: BaseException
    ) -> tuple[grpc.StatusCode, str]:
        """Count, log and record a refusal; the status the caller is to be given."""
        note_refusal(exc, peer)
        if isinstance(exc, CagnetError):
            log.info("refused %s from %s: %s", method, peer or "unknown peer", exc)
            self._on_reject(method, peer, exc, verified)
            return exc.code, exc.public_message
        log.error("unexpected error in %s", method, exc_info=exc)
        self._on_reject(method, peer, CagnetError(), verified)
        return grpc.StatusCode.INTERNAL, "internal error"

    def relayed(
        self, method: str, request: Any, *, peer: str, inner: Callable[[Verified[Any]], Any]
    ) -> tuple[Any, grpc.StatusCode, str]:
        """One call that reached this server over a relay stream (`node.rpc.dialout`) rather than
        as a unary call: authenticated, answered by `inner` and refused exactly as `_unary` does,
        the TLS peer being the one the stream was opened to (`peer`, checked by the channel). Returns
        (the response or None, the status code, its public message)."""
        verified: Verified[Any] | None = None
        try:
            verified = self._authenticate(method, envelope_from_proto(request), peer)
            note_principal(verified.principal.id)
            return inner(verified), grpc.StatusCode.OK, ""
        except Exception as exc:
            return (None, *self._refusal(method, peer, verified, exc))

    def _unary(self, method: str, handler: Any) -> Any:
        inner = handler.unary_unary

        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            peer: str | None = None
            verified: Verified[Any] | None = None
            try:
                peer = peer_party_id(context)
                fingerprint = _peer_fingerprint.set(peer_fingerprint(context))
                try:
                    verified = self._authenticate(method, envelope_from_proto(request), peer)
                finally:
                    _peer_fingerprint.reset(fingerprint)
                note_principal(verified.principal.id)
                if self._explicit:
                    return inner(verified, context)
                token = _current.set(verified)
                try:
                    return inner(request, context)
                finally:
                    _current.reset(token)
            except Exception as exc:
                self._refuse(method, peer, verified, exc, context)

        return grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _stream(self, method: str, handler: Any) -> Any:
        # The one request that opens the stream is checked exactly as a unary request is (issuer,
        # audience, method, expiry, nonce, signature, TLS peer = signer); every message the server
        # then sends is signed by the servicer itself.
        inner = handler.unary_stream

        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            peer: str | None = None
            try:
                peer = peer_party_id(context)
                verified = self._authenticate(method, envelope_from_proto(request), peer)
            except Exception as exc:
                self._refuse(method, peer, None, exc, context)
                return
            note_principal(verified.principal.id)
            # gRPC iterates this generator on one worker thread, so the variable holds throughout.
            token = _current.set(verified)
            try:
                yield from inner(request, context)
            except CagnetError as exc:
                self._refuse(method, peer, verified, exc, context)
            finally:
                _current.reset(token)

        return grpc.unary_stream_rpc_method_handler(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def channel_credentials(ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)


def server_credentials(ca_pem: bytes, key_pem: bytes, cert_pem: bytes) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)


# gRPC's default reconnect backoff (1 s, growing 1.6-fold to 120 s) leaves a peer that was down
# for a minute "unreachable" for up to 24 s after it listens again, however often it is asked. A
# node or coordinator on the network is few and known, so retrying it often costs nothing: start
# at 250 ms and never wait more than 1 s, so a restarted peer is answering within about a second.
# (grpc.min_reconnect_backoff_ms is left alone: it is also how long one attempt may take to connect
# and finish the TLS handshake, 20 s, and a slow link must still be able to connect.)
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def secure_channel(
    target: str,
    *,
    peer_party_id: str,
    ca_pem: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    options: tuple[tuple[str, int], ...] = (),
) -> grpc.Channel:
    """An mTLS channel that only accepts a server whose certificate names `peer_party_id`, and
    that reconnects to a restarted server within about a second (`RECONNECT_OPTIONS`); `options`
    are added (e.g. the relay's keepalive, `shared.relay`)."""
    return grpc.secure_channel(
        target,
        channel_credentials(ca_pem, key_pem, cert_pem),
        options=[("grpc.ssl_target_name_override", pki.dns_name_for(peer_party_id)), *RECONNECT_OPTIONS, *options],
    )


def secure_aio_channel(
    target: str, *, peer_party_id: str, ca_pem: bytes, key_pem: bytes, cert_pem: bytes
) -> grpc.aio.Channel:
    """`secure_channel` for asynchronous calls (`grpc.aio`), with the same credentials and options."""
    return grpc.aio.secure_channel(
        target,
        channel_credentials(ca_pem, key_pem, cert_pem),
        options=[("grpc.ssl_target_name_override", pki.dns_name_for(peer_party_id)), *RECONNECT_OPTIONS],
    )

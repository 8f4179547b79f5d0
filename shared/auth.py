"""Signed requests and responses: building them, and checking every rule a receiver enforces.

A request payload starts with a RequestHeader (issuer, audience, method, issued-at, expiry, nonce).
A receiver checks, in this order, each failure raising its own error from `shared.errors`:
unknown issuer (key id not in the manifest) -> bad signature -> payload type -> issuer matches the
signing key -> TLS peer is the signer -> audience -> method -> expiry -> replayed nonce -> role.
A response payload starts with a ResponseHeader naming the responder and the digest of the request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from shared import dsse
from shared.errors import (
    BadSignature,
    ExpiredRequest,
    InvalidRequest,
    NotPermitted,
    PeerMismatch,
    ReplayedRequest,
    UnknownIssuer,
    WrongAudience,
)
from shared.identity import Identity
from shared.manifest import Manifest, Party
from shared.pb.cagnet.v1 import envelope_pb2
from shared.serde import envelope_from_proto, envelope_to_proto

if TYPE_CHECKING:
    from shared.mandate import MandateUse

REQUEST_LIFETIME_S = 60
# Clocks at councils drift; allow this much either side before calling a request expired.
CLOCK_SKEW_S = 30
NONCE_BYTES = 16

M = TypeVar("M", bound=Message)


def payload_type_for(message_cls: type[Message]) -> str:
    return f"application/vnd.cagnet.v1.{message_cls.DESCRIPTOR.name}+proto"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


def sign_message(message: Message, identity: Identity) -> dsse.Envelope:
    """Serialize once, sign those exact bytes; the bytes travel as they were signed."""
    payload = message.SerializeToString(deterministic=True)
    return dsse.sign(payload_type_for(type(message)), payload, identity.signing_key)


def request_header(
    identity: Identity,
    *,
    audience: str,
    method: str,
    on_behalf_of: dsse.Envelope | envelope_pb2.Envelope | None = None,
    lifetime_s: int = REQUEST_LIFETIME_S,
    policy_digest: str = "",
) -> envelope_pb2.RequestHeader:
    issued = now_ms()
    header = envelope_pb2.RequestHeader(
        issuer=identity.party_id,
        audience=audience,
        method=method,
        issued_at_ms=issued,
        expires_at_ms=issued + lifetime_s * 1000,
        nonce=secrets.token_bytes(NONCE_BYTES),
        policy_digest=policy_digest,
    )
    if isinstance(on_behalf_of, dsse.Envelope):
        header.on_behalf_of.CopyFrom(envelope_to_proto(on_behalf_of))
    elif on_behalf_of is not None:  # already converted (once for every member of a joint query)
        header.on_behalf_of.CopyFrom(on_behalf_of)
    return header


def response_header(
    identity: Identity, *, request_digest: bytes, policy_digest: str = ""
) -> envelope_pb2.ResponseHeader:
    return envelope_pb2.ResponseHeader(
        responder=identity.party_id,
        request_digest=request_digest,
        issued_at_ms=now_ms(),
        policy_digest=policy_digest,
    )


def open_signed(envelope: dsse.Envelope, message_cls: type[M], signer: Party, *, now: int | None = None) -> M:
    """Verify `envelope` against `signer`'s key and parse it as `message_cls` (raises on any fault).

    With `now`, a key the signer rotated out is still accepted until its overlap window ends."""
    *earlier, last = signer.keys_at(now) if now is not None else (signer.public_key,)
    for key in earlier:
        try:
            dsse.verify(envelope, key)
            return parse_payload(envelope, message_cls)
        except BadSignature:
            continue
    # The last key decides, raising BadSignature: no path reaches the payload unverified.
    dsse.verify(envelope, last)
    return parse_payload(envelope, message_cls)


def parse_payload(envelope: dsse.Envelope, message_cls: type[M]) -> M:
    """`envelope`'s payload as `message_cls`, its type checked, its signatures NOT: only for an
    envelope whose bytes a signature already checked covers (`open_signed` checks its own)."""
    if envelope.payload_type != payload_type_for(message_cls):
        raise InvalidRequest(f"expected a {message_cls.DESCRIPTOR.name} payload")
    message = message_cls()
    try:
        message.ParseFromString(envelope.payload)
    except DecodeError:
        raise InvalidRequest(f"malformed {message_cls.DESCRIPTOR.name} payload") from None
    return message


def _signer(envelope: dsse.Envelope, manifest: Manifest, now: int) -> Party:
    """The listed party whose key made a signature; the key id only picks which key to try."""
    for signature in envelope.signatures:
        try:
            party = manifest.by_keyid(signature.keyid, now)
        except UnknownIssuer:
            continue
        return party
    raise UnknownIssuer()


class NonceCache:
    """Nonces seen in requests that have not yet expired; a second sighting is a replay."""

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def check_and_add(self, nonce: bytes, expires_at_ms: int, now: int) -> None:
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {n: e for n, e in self._seen.items() if e + CLOCK_SKEW_S * 1000 >= now}
            if nonce in self._seen:
                raise ReplayedRequest()
            self._seen[nonce] = expires_at_ms


@dataclass(frozen=True)
class Verified(Generic[M]):
    """A request that passed every check: who sent it, on whose behalf, and the parsed message."""

    issuer: Party
    message: M
    request_digest: bytes
    principal: Party  # who the request is ultimately for: the issuer, or whom the coordinator forwards
    principal_request: Message | None = None
    # For a query the coordinator sends under a CAG chair's feed mandate: the mandate and slot
    # (the principal is then the chair).
    mandate: MandateUse | None = None


def verify_request(
    envelope: dsse.Envelope,
    message_cls: type[M],
    *,
    manifest: Manifest,
    audience: str,
    method: str,
    nonces: NonceCache,
    peer_party_id: str | None,
    peer_fingerprint: str | None = None,
    now: int | None = None,
    inner_cls: type[Message] | None = None,
    inner_method: str | None = None,
) -> Verified[M]:
    """Check a signed request end to end. Raises the specific error for the first rule broken.

    With `inner_cls`, a request from the coordinator must carry the principal's own signed request
    (`on_behalf_of`, addressed to the coordinator for `inner_method`), which is checked the same way
    except for the nonce (the coordinator has already spent it).
    """
    now = now_ms() if now is None else now
    issuer = _signer(envelope, manifest, now)
    message = open_signed(envelope, message_cls, issuer, now=now)
    header = getattr(message, "header", None)
    if not isinstance(header, envelope_pb2.RequestHeader):
        raise InvalidRequest("the payload has no request header")
    if header.issuer != issuer.id:
        raise BadSignature("the header's issuer is not the signer")
    if peer_party_id is not None and peer_party_id != issuer.id:
        raise PeerMismatch()
    if peer_fingerprint is not None and peer_fingerprint != issuer.cert_fingerprint:
        # A certificate from the network CA is not enough: it must be the one the manifest lists.
        raise PeerMismatch("the TLS certificate is not the one the manifest lists for this party")
    _check_header(header, audience=audience, method=method, now=now)
    if len(header.nonce) < NONCE_BYTES:
        raise InvalidRequest("the request nonce is too short")
    nonces.check_and_add(header.nonce, header.expires_at_ms, now)

    principal, inner = issuer, None
    if inner_cls is not None and inner_method is not None and header.HasField("on_behalf_of"):
        inner_env = envelope_from_proto(header.on_behalf_of)
        principal = _signer(inner_env, manifest, now)
        inner = open_signed(inner_env, inner_cls, principal, now=now)
        inner_header = getattr(inner, "header", None)
        if not isinstance(inner_header, envelope_pb2.RequestHeader) or inner_header.issuer != principal.id:
            raise BadSignature("the forwarded request's issuer is not its signer")
        _check_header(inner_header, audience=issuer.id, method=inner_method, now=now)
    return Verified(issuer, message, digest(envelope.payload), principal, inner)


def _check_header(header: envelope_pb2.RequestHeader, *, audience: str, method: str, now: int) -> None:
    if header.audience != audience:
        raise WrongAudience()
    if header.method != method:
        raise WrongAudience("the request was signed for another method")
    skew = CLOCK_SKEW_S * 1000
    if header.expires_at_ms - header.issued_at_ms > (REQUEST_LIFETIME_S + CLOCK_SKEW_S) * 1000:
        raise ExpiredRequest("the request's lifetime is longer than allowed")
    if now > header.expires_at_ms + skew:
        raise ExpiredRequest()
    if header.issued_at_ms > now + skew:
        raise ExpiredRequest("the request is dated in the future")


# The header rules on their own, for a request signed by a key no manifest lists yet (a joiner's
# on the onboarding port, `coordinator.onboarding_server`).
check_header = _check_header


def require_role(party: Party, allowed: tuple[str, ...], method: str) -> None:
    if not any(party.has_role(r) for r in allowed):
        roles = ",".join(party.roles) or "none"
        raise NotPermitted(f"role {roles} may not call {method}")


def verify_response(
    envelope: dsse.Envelope, message_cls: type[M], *, signer: Party, request_digest: bytes, now: int | None = None
) -> M:
    """A response must be signed by the party asked, and answer exactly the request sent. With
    `now` (a reply being received, never evidence checked later), a key the party rotated out is
    accepted within its overlap, as on requests: a coordinator switches when it restarts, and
    between the version listing its new key and the restart it still signs with the old one."""
    message = open_signed(envelope, message_cls, signer, now=now)
    header = getattr(message, "header", None)
    if not isinstance(header, envelope_pb2.ResponseHeader):
        raise InvalidRequest("the payload has no response header")
    if header.responder != signer.id:
        raise BadSignature("the response names another responder")
    if header.request_digest != request_digest:
        raise BadSignature("the response answers a different request")
    return message


ResponseBuilder = Callable[[Verified[M]], Message]


def forwarded_request(
    request_cls: type[M],
    header: envelope_pb2.RequestHeader,
    principal_query: Message,
    *,
    filled_in: Collection[str] = (),
) -> M:
    """The node request that asks exactly the principal's question: every field besides the
    header (and the coordinator's own `filled_in` fields, left for the caller) is copied from the
    principal's query field of the same name (sets sorted)."""
    request = request_cls()
    request.header.CopyFrom(header)  # type: ignore[attr-defined]  # every request type has one
    for descriptor in request.DESCRIPTOR.fields:
        if descriptor.name == "header" or descriptor.name in filled_in:
            continue
        value = getattr(principal_query, descriptor.name)
        if descriptor.is_repeated:
            getattr(request, descriptor.name).extend(sorted(set(value)))
        else:
            setattr(request, descriptor.name, value)
    return request


def asks_same_question(principal_query: Message, forwarded: Message, *, filled_in: Collection[str] = ()) -> bool:
    """Whether a forwarded request asks the principal's own question and nothing else. Fields in
    `filled_in` are the coordinator's part of a round (tokens, evidence, participants), which the
    receiver checks on their own terms."""
    for descriptor in forwarded.DESCRIPTOR.fields:
        if descriptor.name == "header" or descriptor.name in filled_in:
            continue
        mine, theirs = getattr(principal_query, descriptor.name), getattr(forwarded, descriptor.name)
        if descriptor.is_repeated:
            mine, theirs = sorted(set(mine)), sorted(set(theirs))
        if mine != theirs:
            return False
    return True


def contribution_digest(response: Message) -> bytes:
    """SHA-256 of a node response's deterministic serialisation with its `receipt` left empty:
    what a ContributionReceipt attests. The holder of the response recomputes it; the holder of
    the receipt alone (a regional board) learns nothing of the figures from it."""
    bare = type(response)()
    bare.CopyFrom(response)
    bare.ClearField("receipt")
    return digest(bare.SerializeToString(deterministic=True))


def attach_receipt(response: Message, identity: Identity, *, authority: str) -> None:
    """Sign a ContributionReceipt for `response` (whose header is set) and put it in `receipt`."""
    from shared.pb.cagnet.v1 import node_pb2

    receipt = node_pb2.ContributionReceipt(
        header=response.header,  # type: ignore[attr-defined]
        authority=authority,
        response_digest=contribution_digest(response),
    )
    if response.HasField("currency"):  # a feed reader sees how recent the figures are, not the figures
        receipt.currency.CopyFrom(response.currency)  # type: ignore[attr-defined]
    response.receipt.CopyFrom(envelope_to_proto(sign_message(receipt, identity)))  # type: ignore[attr-defined]

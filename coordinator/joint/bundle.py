"""The joint result bundle: what a CAG chair receives, saves and can re-check offline.

A bundle holds the principal's signed query, `answered` and `missing` (each with a reason), the
combined `result`, and for each answering node the coordinator's signed request to it and the
node's signed response, unchanged. The whole bundle travels inside a DSSE envelope signed by the
coordinator. `verify_bundle` checks every link of that chain and recomputes the result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from coordinator.joint.fanout import Contribution, Missing
from shared import dsse, places
from shared.auth import asks_same_question, digest, open_signed, parse_payload, verify_response
from shared.canonical import canonical_json
from shared.errors import BadSignature, BundleMismatch, InvalidRequest, UnknownIssuer
from shared.kinds.registry import KINDS, JointKind, JointResult, Protocol
from shared.mandate import check_mandated_query
from shared.manifest import COORDINATOR, MEMBER_AUTHORITY, Manifest, Party, claimed_version, manifest_at
from shared.pb.cagnet.v1 import coordinator_pb2
from shared.serde import envelope_from_proto

BUNDLE_PAYLOAD_TYPE = "application/vnd.cagnet.v1.bundle+json"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MissingAuthority(_Model):
    authority: str
    reason: str


class SignedContribution(_Model):
    authority: str
    request: dict[str, Any]  # DSSE JSON: the coordinator's request to the node
    # DSSE JSON: the node's response exactly as it signed it (for repeat movers, the node's signed
    # receipt for its linkage tokens: the tokens themselves never reach a principal)
    response: dict[str, Any]


class AuthorityCurrency(_Model):
    """How recent one answering authority's records were, as its signed answer states."""

    authority: str
    records_to: str = ""  # the last day of the month its client records run to
    last_import: str = ""  # when its records were last imported (UTC)


def currency_lines(currency: Sequence[AuthorityCurrency]) -> list[str]:
    """Each answering authority's records currency as its signed answer states it, named from the
    register: "Kent: records to 2010-03-31, last import 2026-12-05 09:14 UTC"."""
    lines = []
    for c in currency:
        try:
            name = places.place_name(c.authority)
        except KeyError:
            name = c.authority
        parts = [f"records to {c.records_to}" if c.records_to else "no client records"]
        if c.last_import:
            parts.append(f"last import {c.last_import[:10]} {c.last_import[11:16]} UTC")
        lines.append(f"{name}: {', '.join(parts)}")
    return lines


def span_label(bundle: Bundle) -> str:
    """The span of client records a joint answer covers, as a chair reads it: the dates asked, and
    where the question left the end open, the month the answering authorities' records run to."""
    query = coordinator_pb2.JointQueryRequest.FromString(dsse.Envelope.from_json(bundle.query).payload)
    latest = max((c.records_to for c in bundle.currency if c.records_to), default="")
    end = query.to_date or latest
    if query.from_date:
        return f"{query.from_date} to {end or 'the latest records'}"
    return f"all records to {end}" if end else "all records"


def currency_of(authority: str, message: Any) -> AuthorityCurrency | None:
    """What a signed answer (or receipt) says of its records' currency; None from a node that
    says nothing (one older than the field), so an old bundle's list stays empty."""
    if not message.HasField("currency"):
        return None
    c = message.currency
    return AuthorityCurrency(authority=authority, records_to=c.records_to, last_import=c.last_import)


def _currencies(signed: list[tuple[str, Any]]) -> tuple[AuthorityCurrency, ...]:
    found = (currency_of(authority, message) for authority, message in sorted(signed, key=lambda s: s[0]))
    return tuple(c for c in found if c is not None)


class Bundle(_Model):
    network: str
    manifest_version: int
    kind: str
    created_at: str
    query: dict[str, Any]  # DSSE JSON: the principal's own signed query
    answered: tuple[str, ...]
    missing: tuple[MissingAuthority, ...]
    policy_digest: str  # the network policy every contribution was made under
    result: JointResult
    contributions: tuple[SignedContribution, ...]
    # Per answering authority, how recent its records are: read from its signed contribution (a
    # verifier checks the two agree). Empty in a bundle made before nodes said so.
    currency: tuple[AuthorityCurrency, ...] = ()

    def payload(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


def build_bundle(
    *,
    manifest: Manifest,
    query: dsse.Envelope,
    query_message: coordinator_pb2.JointQueryRequest,
    answered: list[Contribution],
    missing: list[Missing],
    policy_digest: str,
    result: Any = None,
) -> Bundle:
    """The bundle for a joint query; `result` is combined from the answers unless given (repeat
    movers are counted by the coordinator from tokens the bundle does not carry)."""
    spec = KINDS[query_message.kind]
    if result is None:
        result = spec.combine([c.message for c in answered], query_message)

    def carried(c: Contribution) -> dsse.Envelope:
        return envelope_from_proto(c.message.receipt) if spec.receipt_cls is not None else c.response

    def signed(c: Contribution) -> Any:
        return spec.receipt_cls.FromString(carried(c).payload) if spec.receipt_cls is not None else c.message

    return Bundle(
        network=manifest.network,
        manifest_version=manifest.version,
        kind=spec.kind,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        query=query.to_json(),
        answered=tuple(sorted(c.authority for c in answered)),
        missing=tuple(
            MissingAuthority(authority=m.authority, reason=m.reason) for m in sorted(missing, key=lambda m: m.authority)
        ),
        policy_digest=policy_digest,
        result=result,
        contributions=tuple(
            SignedContribution(authority=c.authority, request=c.request.to_json(), response=carried(c).to_json())
            for c in sorted(answered, key=lambda c: c.authority)
        ),
        currency=_currencies([(c.authority, signed(c)) for c in answered]),
    )


def sign_bundle(bundle: Bundle, key: Any) -> dsse.Envelope:
    return dsse.sign(BUNDLE_PAYLOAD_TYPE, bundle.payload(), key)


def open_bundle(envelope: dsse.Envelope, manifest: Manifest) -> Bundle:
    """Check the coordinator's signature on a bundle envelope and parse it (no deeper checks)."""
    payload = dsse.verify(envelope, manifest.party(COORDINATOR).public_key)
    if envelope.payload_type != BUNDLE_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet bundle")
    try:
        return Bundle.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidRequest("the bundle is malformed", detail=str(exc)) from None


def open_contribution_request(
    authority: str,
    request_json: dict[str, Any],
    *,
    spec: JointKind,
    manifest: Manifest,
    query: coordinator_pb2.JointQueryRequest,
    query_env: dsse.Envelope,
    seen: set[str],
) -> tuple[Party, dsse.Envelope, Any]:
    """What every holder of a node's contribution checks first, in a bundle or a feed snapshot
    whose coordinator signature the caller has verified: it comes from a member authority not
    already counted (added to `seen`), and the coordinator's request to it is addressed to it and
    the kind's method, made for `query` and asking exactly its question. Returns the member, the
    request envelope and the request.

    The coordinator's own signature on the request is not checked again: the request's bytes,
    signature included, lie inside the document the coordinator signed as a whole, so that one
    check vouches for them (the node checked the request's signature before it answered, and its
    signed answer names the request's digest). One Ed25519 verification fewer per node, on every
    query a principal asks and every bundle checked offline."""
    member = manifest.party(authority)
    if not member.has_role(MEMBER_AUTHORITY) or authority in seen:
        raise BundleMismatch("a contribution is not from a distinct member authority")
    seen.add(authority)
    request_env = dsse.Envelope.from_json(request_json)
    request = parse_payload(request_env, spec.request_cls)
    if request.header.audience != authority or request.header.method != spec.method:
        raise BundleMismatch("a contribution's request was addressed to another authority or method")
    if envelope_from_proto(request.header.on_behalf_of) != query_env:
        raise BundleMismatch("a contribution's request was not made for this query")
    if not asks_same_question(query, request, filled_in=spec.filled_in):
        raise BundleMismatch("a contribution's request asked a different question")
    return member, request_env, request


def verify_bundle(envelope: dsse.Envelope, manifest: Manifest, *, sent: dsse.Envelope | None = None) -> Bundle:
    """Every signature in the chain, every binding between them, and the result. Raises on any fault.

    `sent`: the signed query this process has just sent, for the principal who asked (the live
    client). The bundle must carry exactly that query, byte for byte; its signature, made here a
    moment ago, is then not verified again.

    For repeat movers and VFM the result cannot be recomputed (the bundle holds each node's signed
    receipt for its tokens or masked histogram, not those); what is checked is that each receipt
    was made for this query under this policy, that every node used the same linkage key, and (VFM)
    that every node masked for exactly the authorities that answered. Common providers are
    recomputed from the nodes' signed reveals."""
    bundle = open_bundle(envelope, manifest)
    if sent is not None and bundle.query != sent.to_json():
        raise BundleMismatch("the bundle answers another query than the one just sent")
    query_env = dsse.Envelope.from_json(bundle.query)
    principal = _signer(query_env, manifest)
    if sent is not None:
        query = parse_payload(query_env, coordinator_pb2.JointQueryRequest)
    else:
        query = open_signed(query_env, coordinator_pb2.JointQueryRequest, principal)
    if principal.has_role(COORDINATOR):
        # The coordinator's own query stands only under a CAG chair's feed mandate, in its slot.
        check_mandated_query(query, manifest, current=False)
    elif query.HasField("mandate"):
        raise BundleMismatch("only the coordinator's scheduled query carries a feed mandate")
    if query.kind != bundle.kind or bundle.kind not in KINDS or bundle.result.kind != bundle.kind:
        raise BundleMismatch("the bundle's kind is not the query's")
    spec = KINDS[bundle.kind]
    responses = []
    seen: set[str] = set()
    for c in bundle.contributions:
        member, request_env, request = open_contribution_request(
            c.authority, c.request, spec=spec, manifest=manifest, query=query, query_env=query_env, seen=seen
        )
        response = verify_response(
            dsse.Envelope.from_json(c.response),
            spec.receipt_cls or spec.response_cls,
            signer=member,
            request_digest=digest(request_env.payload),
        )
        if not bundle.policy_digest == request.header.policy_digest == response.header.policy_digest:
            raise BundleMismatch("a contribution was not made under the bundle's policy")
        responses.append(response)
    if _currencies([(c.authority, r) for c, r in zip(bundle.contributions, responses, strict=True)]) != bundle.currency:
        raise BundleMismatch("the records' currency is not what the contributions say")
    if tuple(sorted(seen)) != bundle.answered:
        raise BundleMismatch("`answered` does not list exactly the authorities that contributed")
    if seen & {m.authority for m in bundle.missing}:
        raise BundleMismatch("an authority is listed as both answered and missing")
    if spec.receipt_cls is not None:
        if len({r.key_check for r in responses}) > 1:
            raise BundleMismatch("the contributions were made under different linkage keys")
        if tuple(sorted(r.authority for r in responses)) != bundle.result.authorities:  # type: ignore[union-attr]
            raise BundleMismatch("the result does not name the authorities that contributed")
        # A masked sum means something only over exactly the participants every node was told.
        if spec.protocol is Protocol.MASKED_SUM and (
            any(tuple(sorted(r.participants)) != bundle.answered for r in responses) or bundle.missing
        ):
            raise BundleMismatch("the benchmark's sum is not over exactly the authorities that answered")
    elif spec.recombine(responses, query, bundle.result) != bundle.result:
        raise BundleMismatch()
    return bundle


def verify_saved_bundle(envelope: dsse.Envelope, history: Sequence[Manifest]) -> tuple[Bundle, Manifest]:
    """`verify_bundle` against the manifest version the bundle names, from the verified chain
    (`history`, oldest first): every signature is checked against the key its party held then, so
    a bundle saved before a member, a principal or the coordinator rotated its key still verifies.
    Returns the bundle and that version."""
    version = claimed_version(envelope.payload)
    if version is None:
        raise InvalidRequest("not a cagnet bundle: it names no manifest version")
    manifest = manifest_at(history, version, what="the bundle")
    return verify_bundle(envelope, manifest), manifest


def _signer(envelope: dsse.Envelope, manifest: Manifest) -> Any:
    for s in envelope.signatures:
        try:
            return manifest.by_keyid(s.keyid)
        except UnknownIssuer:
            continue
    raise BadSignature("the query is not signed by a listed party")


def save(path: Path, envelope: dsse.Envelope, *, network_dir: Path) -> None:
    """Write a bundle file: the signed envelope, and where its trusted manifest lives (a hint)."""
    doc = {"network_dir": str(network_dir.resolve()), "envelope": envelope.to_json()}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def load(path: Path) -> tuple[dsse.Envelope, Path | None]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"no such file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a bundle file: {exc}") from None
    if not isinstance(doc, dict) or "envelope" not in doc:
        raise InvalidRequest(f"{path} is not a bundle file: no envelope")
    hint = doc.get("network_dir")
    return dsse.Envelope.from_json(doc["envelope"]), Path(hint) if isinstance(hint, str) else None

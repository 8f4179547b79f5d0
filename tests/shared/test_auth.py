"""`shared.auth.open_signed` and `parse_payload`: which keys a party's signature is checked
against, and that nothing reaches a payload unverified by mistake."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import dsse
from shared.auth import open_signed, parse_payload, payload_type_for
from shared.errors import BadSignature, InvalidRequest
from shared.manifest_document import Party
from shared.pb.cagnet.v1 import coordinator_pb2, node_pb2

NOW = 1_780_000_000_000  # ms
HOUR = 3_600_000


def _raw(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(dsse.public_key_raw(key.public_key())).decode()


def _party(new: Ed25519PrivateKey, old: Ed25519PrivateKey | None = None, until_ms: int = 0) -> Party:
    return Party(
        id="E06000035",
        name="Medway",
        roles=("member-authority",),
        signing_key=_raw(new),
        cert_fingerprint="00" * 32,
        previous_key=_raw(old) if old is not None else "",
        previous_key_until_ms=until_ms,
    )


def _signed(key: Ed25519PrivateKey, kind: str = "supply-map") -> dsse.Envelope:
    message = coordinator_pb2.JointQueryRequest(kind=kind)
    return dsse.sign(payload_type_for(coordinator_pb2.JointQueryRequest), message.SerializeToString(), key)


def test_a_rotated_out_key_signs_until_its_overlap_ends_and_the_new_key_always() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    medway = _party(new, old, until_ms=NOW + HOUR)
    cls = coordinator_pb2.JointQueryRequest
    assert open_signed(_signed(new), cls, medway, now=NOW).kind == "supply-map"
    assert open_signed(_signed(old, "kpi"), cls, medway, now=NOW).kind == "kpi"  # within the overlap
    with pytest.raises(BadSignature):
        open_signed(_signed(old), cls, medway, now=NOW + HOUR)  # the overlap has ended
    with pytest.raises(BadSignature):
        open_signed(_signed(old), cls, medway)  # no clock given: only the key in force
    with pytest.raises(BadSignature):
        open_signed(_signed(Ed25519PrivateKey.generate()), cls, medway, now=NOW)  # nobody's key


def test_an_edited_payload_is_refused_under_every_key_the_party_holds() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    medway = _party(new, old, until_ms=NOW + HOUR)
    for key in (new, old):
        signed = _signed(key)
        edited = dsse.Envelope(signed.payload_type, signed.payload + b"\x10\x01", signed.signatures)
        with pytest.raises(BadSignature):
            open_signed(edited, coordinator_pb2.JointQueryRequest, medway, now=NOW)


def test_parse_payload_checks_the_type_and_the_bytes_but_no_signature() -> None:
    key = Ed25519PrivateKey.generate()
    unsigned = dsse.Envelope(_signed(key).payload_type, _signed(key).payload, ())
    assert parse_payload(unsigned, coordinator_pb2.JointQueryRequest).kind == "supply-map"
    with pytest.raises(InvalidRequest, match="expected a SupplyMapRequest payload"):
        parse_payload(unsigned, node_pb2.SupplyMapRequest)
    garbled = dsse.Envelope(unsigned.payload_type, b"\xff\xff\xff", ())
    with pytest.raises(InvalidRequest, match="malformed JointQueryRequest payload"):
        parse_payload(garbled, coordinator_pb2.JointQueryRequest)

"""DSSE envelopes: the PAE test vector, signing and verifying, keyid as a hint, JSON, key loading, quorum."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import dsse
from shared.errors import BadSignature, InvalidRequest

PAYLOAD_TYPE = "application/vnd.cagnet.request+json"
PAYLOAD = b'{"measure":"clients_by_client_group","period":"2024Q1"}'


def _envelope() -> tuple[Ed25519PrivateKey, dsse.Envelope]:
    key = Ed25519PrivateKey.generate()
    return key, dsse.sign(PAYLOAD_TYPE, PAYLOAD, key)


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- PAE ---------------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_test_vector() -> None:
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_utf8_bytes_not_characters() -> None:
    assert dsse.pae("é", b"") == b"DSSEv1 2 \xc3\xa9 0 "


# --- sign / verify -----------------------------------------------------------------------------


def test_sign_then_verify_returns_the_exact_payload_bytes() -> None:
    key, envelope = _envelope()
    assert envelope.payload_type == PAYLOAD_TYPE
    assert envelope.signatures[0].keyid == dsse.keyid(key.public_key())
    assert dsse.verify(envelope, key.public_key()) == PAYLOAD


def test_signature_covers_pae_not_the_bare_payload() -> None:
    key, envelope = _envelope()
    key.public_key().verify(envelope.signatures[0].sig, dsse.pae(PAYLOAD_TYPE, PAYLOAD))


def test_a_flipped_payload_byte_is_a_bad_signature() -> None:
    key, envelope = _envelope()
    tampered = bytearray(envelope.payload)
    tampered[5] ^= 0x01
    with pytest.raises(BadSignature):
        dsse.verify(dataclasses.replace(envelope, payload=bytes(tampered)), key.public_key())


def test_a_changed_payload_type_is_a_bad_signature() -> None:
    key, envelope = _envelope()
    with pytest.raises(BadSignature):
        dsse.verify(dataclasses.replace(envelope, payload_type="application/json"), key.public_key())


def test_a_signature_from_another_key_is_a_bad_signature() -> None:
    _, envelope = _envelope()
    with pytest.raises(BadSignature):
        dsse.verify(envelope, Ed25519PrivateKey.generate().public_key())


def test_an_envelope_without_signatures_is_a_bad_signature() -> None:
    key, envelope = _envelope()
    with pytest.raises(BadSignature, match="no signatures"):
        dsse.verify(dataclasses.replace(envelope, signatures=()), key.public_key())


def test_a_wrong_keyid_does_not_reject_a_valid_signature() -> None:
    key, envelope = _envelope()
    misleading = dsse.Signature(keyid="0" * 64, sig=envelope.signatures[0].sig)
    assert dsse.verify(dataclasses.replace(envelope, signatures=(misleading,)), key.public_key()) == PAYLOAD


def test_a_matching_keyid_on_a_garbage_signature_does_not_stop_a_later_valid_one() -> None:
    key, envelope = _envelope()
    decoy = dsse.Signature(keyid=dsse.keyid(key.public_key()), sig=b"\x00" * 64)
    valid = dataclasses.replace(envelope.signatures[0], keyid="")
    signed = dataclasses.replace(envelope, signatures=(decoy, valid))
    assert dsse.verify(signed, key.public_key()) == PAYLOAD


def test_a_matching_keyid_alone_proves_nothing() -> None:
    key, envelope = _envelope()
    forged = dsse.Signature(keyid=dsse.keyid(key.public_key()), sig=b"\x00" * 64)
    with pytest.raises(BadSignature):
        dsse.verify(dataclasses.replace(envelope, signatures=(forged,)), key.public_key())


def test_add_signature_co_signs_without_touching_the_payload() -> None:
    first, envelope = _envelope()
    second = Ed25519PrivateKey.generate()
    cosigned = dsse.add_signature(envelope, second)
    assert cosigned.payload == envelope.payload
    assert cosigned.signatures[0] == envelope.signatures[0]
    assert len(cosigned.signatures) == 2
    assert dsse.verify(cosigned, first.public_key()) == PAYLOAD
    assert dsse.verify(cosigned, second.public_key()) == PAYLOAD


def test_keyid_is_lowercase_hex_sha256_of_the_raw_key() -> None:
    public = Ed25519PrivateKey.generate().public_key()
    assert dsse.keyid(public) == hashlib.sha256(dsse.public_key_raw(public)).hexdigest()
    assert len(dsse.public_key_raw(public)) == 32


# --- JSON --------------------------------------------------------------------------------------


def test_json_round_trip() -> None:
    _, envelope = _envelope()
    envelope = dsse.add_signature(envelope, Ed25519PrivateKey.generate())
    as_json = envelope.to_json()
    assert set(as_json) == {"payloadType", "payload", "signatures"}
    assert as_json["payload"] == base64.b64encode(PAYLOAD).decode()
    assert dsse.Envelope.from_json(as_json) == envelope
    assert dsse.Envelope.from_json(json.dumps(as_json)) == envelope


def test_from_json_accepts_url_safe_base64_and_a_missing_keyid() -> None:
    key, envelope = _envelope()
    data = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.urlsafe_b64encode(PAYLOAD).decode(),
        "signatures": [{"sig": base64.urlsafe_b64encode(envelope.signatures[0].sig).decode()}],
        "someFutureField": True,
    }
    parsed = dsse.Envelope.from_json(data)
    assert parsed.signatures[0].keyid == ""
    assert dsse.verify(parsed, key.public_key()) == PAYLOAD


@pytest.mark.parametrize("missing", ["payloadType", "payload", "signatures"])
def test_from_json_refuses_a_missing_field(missing: str) -> None:
    _, envelope = _envelope()
    data = envelope.to_json()
    del data[missing]
    with pytest.raises(InvalidRequest, match=missing):
        dsse.Envelope.from_json(data)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.update(payload="not base64!"), id="bad-payload-base64"),
        pytest.param(lambda d: d.update(payload="YWJj="), id="surplus-padding"),
        pytest.param(lambda d: d.update(payload="YWI"), id="missing-padding"),
        pytest.param(lambda d: d.update(payload="YWJ="), id="non-canonical-trailing-bits"),
        pytest.param(lambda d: d.update(payload="ab+-"), id="mixed-alphabets"),
        pytest.param(lambda d: d.update(payload=b"raw"), id="payload-not-a-string"),
        pytest.param(lambda d: d.update(payloadType=7), id="type-not-a-string"),
        pytest.param(lambda d: d.update(signatures={"sig": ""}), id="signatures-not-a-list"),
        pytest.param(lambda d: d.update(signatures=["sig"]), id="signature-not-an-object"),
        pytest.param(lambda d: d.update(signatures=[{"keyid": "k"}]), id="sig-missing"),
        pytest.param(lambda d: d.update(signatures=[{"keyid": "k", "sig": "%%%"}]), id="bad-sig-base64"),
        pytest.param(lambda d: d.update(signatures=[{"keyid": 3, "sig": ""}]), id="keyid-not-a-string"),
    ],
)
def test_from_json_refuses_malformed_envelopes(mutate: object) -> None:
    _, envelope = _envelope()
    data = envelope.to_json()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(InvalidRequest):
        dsse.Envelope.from_json(data)


@pytest.mark.parametrize("data", [None, [], "not json", b"[1, 2]", 42])
def test_from_json_refuses_what_is_not_a_json_object(data: object) -> None:
    with pytest.raises(InvalidRequest):
        dsse.Envelope.from_json(data)


# --- key loading -------------------------------------------------------------------------------


def test_private_key_pem_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    loaded = dsse.load_private_key(dsse.private_key_pem(key))
    assert dsse.public_key_raw(loaded.public_key()) == dsse.public_key_raw(key.public_key())
    assert dsse.private_key_pem(key).startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    "other_key",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ec"),
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), id="rsa"),
    ],
)
def test_load_private_key_refuses_keys_of_another_type(other_key: object) -> None:
    with pytest.raises(InvalidRequest, match="not an Ed25519"):
        dsse.load_private_key(_pem(other_key()))  # type: ignore[operator]


def test_load_private_key_refuses_garbage_and_encrypted_keys() -> None:
    with pytest.raises(InvalidRequest):
        dsse.load_private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(InvalidRequest):
        dsse.load_private_key(encrypted)


def test_load_public_key_from_raw_bytes_and_pem() -> None:
    public = Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for data in (dsse.public_key_raw(public), pem):
        assert dsse.public_key_raw(dsse.load_public_key(data)) == dsse.public_key_raw(public)


def test_load_public_key_refuses_other_key_types_and_garbage() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for data in (ec_pem, b"short", b"x" * 33):
        with pytest.raises(InvalidRequest):
            dsse.load_public_key(data)


# --- quorum ------------------------------------------------------------------------------------


def _parties(*names: str) -> dict[str, Ed25519PrivateKey]:
    return {name: Ed25519PrivateKey.generate() for name in names}


def _cosign(envelope: dsse.Envelope, *keys: Ed25519PrivateKey) -> dsse.Envelope:
    for key in keys:
        envelope = dsse.add_signature(envelope, key)
    return envelope


def test_verify_threshold_names_the_parties_that_signed() -> None:
    parties = _parties("E06000035", "E06000036", "cag-chair")
    envelope = _cosign(
        dsse.sign(PAYLOAD_TYPE, PAYLOAD, parties["E06000035"]),
        parties["cag-chair"],
        Ed25519PrivateKey.generate(),
    )
    keys = {name: key.public_key() for name, key in parties.items()}
    assert dsse.verify_threshold(envelope, keys, 2) == {"E06000035", "cag-chair"}


def test_verify_threshold_counts_a_party_signing_twice_once() -> None:
    parties = _parties("E06000035", "E06000036")
    keys = {name: key.public_key() for name, key in parties.items()}
    twice = _cosign(dsse.sign(PAYLOAD_TYPE, PAYLOAD, parties["E06000035"]), parties["E06000035"])
    assert len(twice.signatures) == 2
    with pytest.raises(BadSignature) as raised:
        dsse.verify_threshold(twice, keys, 2)
    assert raised.value.public_message == "1 of 2 required signatures verified"


def test_verify_threshold_does_not_count_one_signature_for_two_names_of_the_same_key() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = dsse.sign(PAYLOAD_TYPE, PAYLOAD, key)
    keys = {"E06000035": key.public_key(), "alias": key.public_key()}
    with pytest.raises(BadSignature, match="1 of 2"):
        dsse.verify_threshold(envelope, keys, 2)
    assert len(dsse.verify_threshold(envelope, keys, 1)) == 1


def test_verify_threshold_ignores_tampered_and_unknown_signatures() -> None:
    parties = _parties("E06000035", "E06000036")
    keys = {name: key.public_key() for name, key in parties.items()}
    envelope = _cosign(dsse.sign(PAYLOAD_TYPE, PAYLOAD, parties["E06000035"]), parties["E06000036"])
    tampered = dataclasses.replace(envelope, payload=PAYLOAD + b" ")
    with pytest.raises(BadSignature, match="0 of 1"):
        dsse.verify_threshold(tampered, keys, 1)
    with pytest.raises(BadSignature, match="0 of 1"):
        dsse.verify_threshold(dataclasses.replace(envelope, signatures=()), keys, 1)


def test_verify_threshold_refuses_a_threshold_below_one() -> None:
    _, envelope = _envelope()
    with pytest.raises(ValueError):
        dsse.verify_threshold(envelope, {}, 0)

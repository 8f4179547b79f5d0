"""The network policy: parsing with errors that name the field, the digest, roles, and the signed path."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import dsse
from shared.errors import BadSignature, DisclosureRefused, InvalidRequest, NotPermitted
from shared.kinds.registry import AGGREGATE_KINDS
from shared.policy import (
    POLICY_PAYLOAD_TYPE,
    default_policy,
    default_policy_toml,
    digest,
    load_signed_policy,
    parse_policy,
)
from shared.vocabulary import DOMESTIC_VIOLENCE, REFUGEES

DEFAULT = default_policy_toml()


def _edit(old: bytes, new: bytes) -> bytes:
    assert old in DEFAULT, old
    return DEFAULT.replace(old, new, 1)


def test_default_policy_covers_every_aggregate_kind_with_the_documented_defaults() -> None:
    policy = default_policy()
    assert set(policy.aggregates) == set(AGGREGATE_KINDS)
    for kind in AGGREGATE_KINDS:
        rule = policy.rule(kind)
        assert rule.kind == kind
        assert rule.threshold == 7
        assert rule.rounding_base == 5
        assert rule.group_thresholds == {DOMESTIC_VIOLENCE: 10, REFUGEES: 10}
        assert (rule.dominance_n, rule.dominance_k, rule.p_percent) == (2, 0.9, 0.10)
    assert policy.rule("vfm").min_authorities == 3
    assert policy.rule("supply-map").max_dimensions == 3


def test_roles_regional_board_gets_only_the_feed_and_the_coordinator_nothing() -> None:
    policy = default_policy()
    for kind in AGGREGATE_KINDS:
        assert not policy.permits(kind, "coordinator")
        assert policy.permits(kind, "cag-chair")
        assert policy.permits(kind, "regional-board") == (kind == "feed")
    assert not policy.permits("no-such-kind", "cag-chair")


def test_require_role_names_the_role_and_kind() -> None:
    policy = default_policy()
    assert policy.require_role("vfm", "member-authority").kind == "vfm"
    with pytest.raises(NotPermitted) as refused:
        policy.require_role("vfm", "regional-board")
    assert "'regional-board'" in refused.value.public_message
    assert "'vfm'" in refused.value.public_message
    with pytest.raises(NotPermitted) as unknown:
        policy.require_role("vfm", "someone <script>")
    assert "<script>" not in unknown.value.public_message


def test_unknown_kind_is_refused_without_echoing_it() -> None:
    with pytest.raises(DisclosureRefused) as refused:
        default_policy().rule("secret-kind")
    assert "no rule for this aggregate kind" in refused.value.public_message
    assert "secret-kind" not in refused.value.public_message


def test_digest_is_sha256_over_the_exact_bytes() -> None:
    policy = default_policy()
    assert policy.digest == "sha256:" + hashlib.sha256(DEFAULT).hexdigest()
    assert digest(DEFAULT) == policy.digest
    # A comment is part of the signed document: changing it changes the digest.
    assert parse_policy(DEFAULT + b"\n# note\n").digest != policy.digest


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b"dominance_k = 0.9 ", b"dominance_k = 1.5 ", "defaults.dominance_k"),
        (b"p_percent = 0.10 ", b"p_percent = 10 ", "defaults.p_percent"),
        (b"threshold = 7 ", b"threshold = -1 ", "defaults.threshold"),
        (b'rounding_mode = "keyed"', b'rounding_mode = "banker"', "defaults.rounding_mode"),
        (b"max_dimensions = 3 ", b"max_dimenions = 3 ", "aggregates.supply-map.max_dimenions"),
        (b"version = 1 ", b"version = 2 ", "version"),
        (b"revision = 1 ", b"revision = 0 ", "revision"),
        (b"{ 14 = 10, 17 = 10 }", b"{ 14 = 5, 17 = 10 }", "defaults"),
        (b"{ 14 = 10, 17 = 10 }", b"{ 22 = 10 }", "defaults.group_thresholds"),
    ],
)
def test_bad_fields_are_named(old: bytes, new: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as bad:
        parse_policy(_edit(old, new))
    assert f"policy field {field}:" in bad.value.public_message


def test_roles_are_checked() -> None:
    coordinator = _edit(
        b'[aggregates.vfm]\nroles = ["member-authority", "cag-chair"]',
        b'[aggregates.vfm]\nroles = ["coordinator"]',
    )
    with pytest.raises(InvalidRequest, match=r"aggregates\.vfm\.roles: the coordinator"):
        parse_policy(coordinator)
    with pytest.raises(InvalidRequest, match="unknown role"):
        parse_policy(_edit(b'roles = ["member-authority", "cag-chair"]', b'roles = ["mayor"]'))


def test_a_kind_override_applies_to_that_kind_only() -> None:
    stricter = parse_policy(_edit(b"[aggregates.kpi]\n", b"[aggregates.kpi]\nthreshold = 9\n"))
    assert stricter.rule("kpi").threshold == 9
    assert stricter.rule("vfm").threshold == 7


@pytest.mark.parametrize(
    "document",
    [b"version = 1\nname = [", b"\xff\xfe", DEFAULT + b'\ndigest = "sha256:00"\n'],
)
def test_malformed_documents_are_invalid(document: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_policy(document)


# --- the signed path -------------------------------------------------------------------------------


def test_signed_policy_loads_with_the_digest_of_the_signed_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = dsse.sign(POLICY_PAYLOAD_TYPE, DEFAULT, key)
    policy = load_signed_policy(envelope.to_json(), key.public_key())
    assert policy.digest == digest(DEFAULT)
    assert policy.source == DEFAULT


def test_signed_policy_from_another_key_is_refused() -> None:
    envelope = dsse.sign(POLICY_PAYLOAD_TYPE, DEFAULT, Ed25519PrivateKey.generate())
    with pytest.raises(BadSignature):
        load_signed_policy(envelope.to_json(), Ed25519PrivateKey.generate().public_key())


def test_tampered_policy_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    signed = dsse.sign(POLICY_PAYLOAD_TYPE, DEFAULT, key)
    loosened = _edit(b"threshold = 7 ", b"threshold = 0 ")
    tampered = dsse.Envelope(POLICY_PAYLOAD_TYPE, loosened, signed.signatures)
    with pytest.raises(BadSignature):
        load_signed_policy(tampered.to_json(), key.public_key())


def test_envelope_of_another_type_is_not_a_policy() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = dsse.sign("application/vnd.cagnet.v1.request+json", DEFAULT, key)
    with pytest.raises(InvalidRequest, match="does not carry a network policy"):
        load_signed_policy(envelope.to_json(), key.public_key())


def test_signed_but_invalid_policy_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = dsse.sign(POLICY_PAYLOAD_TYPE, _edit(b"version = 1 ", b"version = 9 "), key)
    with pytest.raises(InvalidRequest, match="unsupported policy version"):
        load_signed_policy(envelope.to_json(), key.public_key())


def test_the_equality_profile_is_on_the_standard_table_set_only_with_movement() -> None:
    """Its fields are rows of movement's protected block: without movement there is no block."""
    grid = default_policy().grid
    assert grid is not None and "equality" in grid.kinds and "movement" in grid.kinds
    listed = ", ".join(f'"{k}"' for k in grid.kinds)
    without = ", ".join(f'"{k}"' for k in grid.kinds if k != "movement")
    toml = default_policy_toml().replace(f"kinds = [{listed}]".encode(), f"kinds = [{without}]".encode())
    with pytest.raises(InvalidRequest, match="only with 'movement'"):
        parse_policy(toml)

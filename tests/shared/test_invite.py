"""Invite codes (shared/invite.py): an authority's stays format 1 byte for byte; a person's is
format 2 and carries the role and name it invites, which the person then signs exactly."""

from __future__ import annotations

import base64

import pytest

from shared.errors import InvalidRequest
from shared.invite import PREFIX, Invite, decode

KEY = base64.b64encode(bytes(range(32))).decode()


def _invite(**kwargs: str) -> Invite:
    return Invite(
        network="South East CAG",
        endpoint="coord.example.org:7443",
        coordinator_key=KEY,
        ca_fingerprint="ab" * 32,
        expires_at=1_800_000_000,
        secret=bytes(16),
        **kwargs,
    )


def test_an_authoritys_invite_is_format_1_and_reads_back() -> None:
    invite = _invite(authority="E10000014")
    code = invite.encode()
    raw = base64.urlsafe_b64decode(code[len(PREFIX) :] + "==")
    assert raw[0] == 1 and decode(code) == invite and not decode(code).for_person


def test_a_persons_invite_carries_its_role_and_name() -> None:
    invite = _invite(authority="jane-smith", role="cag-chair", name="Jane Smith, Lead Officer")
    code = invite.encode()
    raw = base64.urlsafe_b64decode(code[len(PREFIX) :] + "==")
    assert raw[0] == 2
    read = decode(code)
    assert read == invite and read.for_person and read.name == "Jane Smith, Lead Officer"
    # Cut short, it is refused as damaged rather than read as an authority's invite.
    with pytest.raises(InvalidRequest, match="damaged"):
        decode(code[: -len("Officer")])

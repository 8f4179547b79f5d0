"""Invite codes: what a coordinator's operator gives an authority so that it can join over the
wire with nothing copied by hand (docs/onboarding.md).

An invite pins the network (name), where its onboarding port is, the founding coordinator key
the manifest chain is verified from, the SHA-256 fingerprint of the network CA certificate, an
expiry, the authority it is for (optional) and a one-time secret. The coordinator keeps only the
secret's SHA-256 (`coordinator.onboarding`). The code is the binary form below in base64url,
after a prefix that names the format:

    cagnet-invite-1.<base64url of: version 1 (1 byte) | expiry, Unix seconds (4) | secret (16) |
        coordinator key, raw Ed25519 (32) | CA fingerprint (32) | network, endpoint, authority
        (each: length (1) + UTF-8)>

An invite for a person (a CAG chair, a regional board: `cagnet kit join`) is format version 2: the
same, with two more texts after the authority field, which then holds the principal's id: the role
it is invited to hold and its name, so that the person signs exactly what it is invited as. An
authority's invite stays version 1, byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import struct
import time
from dataclasses import dataclass

from shared.errors import InvalidRequest, InviteExpired

PREFIX = "cagnet-invite-1."
_VERSION = 1
_PERSON_VERSION = 2  # a person's invite: role and name follow
_FIXED = struct.Struct(">BI16s32s32s")
SECRET_BYTES = 16


@dataclass(frozen=True)
class Invite:
    network: str
    endpoint: str  # the coordinator's onboarding port, HOST:PORT
    coordinator_key: str  # base64 of the raw founding Ed25519 key (as network.toml pins it)
    ca_fingerprint: str  # lowercase hex SHA-256 of the CA certificate's DER
    expires_at: int  # Unix seconds
    secret: bytes
    authority: str = ""  # the one authority that may use it ("" for any); a person's: its principal id
    role: str = ""  # a person's invite: the principal role it is invited to hold; "" for an authority's
    name: str = ""  # a person's invite: the name the manifest will show ("Jane Smith, Lead Officer")

    @property
    def for_person(self) -> bool:
        return bool(self.role)

    @property
    def invite_id(self) -> str:
        return invite_id(self.secret)

    @property
    def secret_digest(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()

    def encode(self) -> str:
        key = base64.b64decode(self.coordinator_key)
        version = _PERSON_VERSION if self.role else _VERSION
        fixed = _FIXED.pack(version, self.expires_at, self.secret, key, bytes.fromhex(self.ca_fingerprint))
        texts = (self.network, self.endpoint, self.authority) + ((self.role, self.name) if self.role else ())
        tail = b"".join(_text(v) for v in texts)
        return PREFIX + base64.urlsafe_b64encode(fixed + tail).decode().rstrip("=")

    def require_unexpired(self, now: float | None = None) -> None:
        if (time.time() if now is None else now) > self.expires_at:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.expires_at))
            raise InviteExpired(f"the invite expired at {when}: ask the coordinator's operator for a new one")


def invite_id(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()[:16]


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise InvalidRequest("an invite's network name, endpoint and authority are at most 255 bytes each")
    return bytes([len(raw)]) + raw


def decode(code: str) -> Invite:
    """The invite a code carries; InvalidRequest saying what is wrong with a code that is not one."""
    code = "".join(code.split())  # a code pasted across lines
    if not code.startswith(PREFIX):
        raise InvalidRequest(f"not a cagnet invite: an invite code starts with {PREFIX!r}")
    body = code[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise InvalidRequest("the invite code is damaged (not base64url): copy it again") from None
    if len(raw) < _FIXED.size + 3:
        raise InvalidRequest("the invite code is damaged (too short): copy it again")
    version, expires_at, secret, key, fingerprint = _FIXED.unpack_from(raw)
    if version not in (_VERSION, _PERSON_VERSION):
        raise InvalidRequest(f"invite format {version} is not one this cagnet reads")
    fields: list[str] = []
    at = _FIXED.size
    for _ in range(3 if version == _VERSION else 5):
        if at >= len(raw) or at + 1 + raw[at] > len(raw):
            raise InvalidRequest("the invite code is damaged (truncated): copy it again")
        try:
            fields.append(raw[at + 1 : at + 1 + raw[at]].decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest("the invite code is damaged: copy it again") from None
        at += 1 + raw[at]
    if at != len(raw):
        raise InvalidRequest("the invite code is damaged (trailing bytes): copy it again")
    network, endpoint, authority = fields[:3]
    role, name = fields[3:] if version == _PERSON_VERSION else ("", "")
    if version == _PERSON_VERSION and not role:
        raise InvalidRequest("the invite code is damaged (a person's invite names no role): copy it again")
    return Invite(
        network=network,
        endpoint=endpoint,
        coordinator_key=base64.b64encode(key).decode(),
        ca_fingerprint=fingerprint.hex(),
        expires_at=expires_at,
        secret=secret,
        authority=authority,
        role=role,
        name=name,
    )

"""Accreditation register entries: what an authority decided about a provider, signed by that
authority, and a provider's current status derived from every authority's entries.

An entry is a DSSE envelope (payload type `application/vnd.cagnet.v1.accreditation+json`, the
entry as canonical JSON) with exactly one signature, the accrediting authority's. The log stores
the envelope's canonical JSON form (`entry_bytes`) and its leaf hash is over exactly those bytes.
See docs/register.md for the fields and the status rules.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared import dsse
from shared.canonical import canonical_json
from shared.errors import BadSignature, InvalidRequest, NotPermitted, UnknownIssuer
from shared.manifest import MEMBER_AUTHORITY, Manifest, Party
from shared.provider_identity import identifier_keys

__all__ = [
    "CRITERIA",
    "DECISIONS",
    "ENTRY_PAYLOAD_TYPE",
    "QAF_OBJECTIVES",
    "STATUSES",
    "AccreditationEntry",
    "AuthorityStatus",
    "LoggedEntry",
    "ProviderRef",
    "ProviderStatus",
    "entry_bytes",
    "entry_from_mapping",
    "entry_from_toml",
    "evidence_digest",
    "open_entry",
    "provider_status",
    "register_statuses",
    "sign_entry",
    "three_years_after",
    "verify_entry",
]

ENTRY_PAYLOAD_TYPE = "application/vnd.cagnet.v1.accreditation+json"
SCHEMA = "cagnet.accreditation/v1"

Decision = Literal["applied", "accredited", "passported", "suspended", "withdrawn", "expired"]
DECISIONS: tuple[str, ...] = ("applied", "accredited", "passported", "suspended", "withdrawn", "expired")
STATUSES = DECISIONS
Result = Literal["met", "not-met", "not-assessed"]
Level = Literal["A", "B", "C", "D", "not-assessed"]
CRITERIA = ("financial_viability", "administration", "employment_policies", "management", "competence_to_deliver")
QAF_OBJECTIVES = (
    "assessment_and_support_planning",
    "security_health_and_safety",
    "safeguarding_and_protection_from_abuse",
    "fair_access_diversity_and_inclusion",
    "client_involvement",
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProviderRef(_Model):
    """The provider as the authority knows it; `key` must be `provider_key` of the other fields."""

    key: str
    name: str = Field(min_length=1, max_length=200)
    national_provider_id: str | None = None
    charity_number: str | None = None
    company_number: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return identifier_keys(
            name=self.name,
            national_provider_id=self.national_provider_id,
            charity_number=self.charity_number,
            company_number=self.company_number,
        )

    @model_validator(mode="after")
    def _key_matches(self) -> ProviderRef:
        try:
            keys = self.keys
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if self.key != keys[0]:
            raise ValueError(f"provider key must be {keys[0]!r} for these identifiers")
        return self


class Criteria(_Model):
    """The five accreditation criteria and their results."""

    financial_viability: Result = "not-assessed"
    administration: Result = "not-assessed"
    employment_policies: Result = "not-assessed"
    management: Result = "not-assessed"
    competence_to_deliver: Result = "not-assessed"


class QafLevels(_Model):
    """Quality Assessment Framework (2009) levels for the five core objectives: A best, C minimum."""

    assessment_and_support_planning: Level = "not-assessed"
    security_health_and_safety: Level = "not-assessed"
    safeguarding_and_protection_from_abuse: Level = "not-assessed"
    fair_access_diversity_and_inclusion: Level = "not-assessed"
    client_involvement: Level = "not-assessed"


class AccreditationEntry(_Model):
    """One authority's decision about one provider."""

    schema_: Literal["cagnet.accreditation/v1"] = Field(default="cagnet.accreditation/v1", alias="schema")
    origin: str = Field(min_length=1)  # the register's origin: binds the entry to this network's register
    authority: str = Field(min_length=1)
    provider: ProviderRef
    decision: Decision
    passported_from: str | None = None
    criteria: Criteria = Criteria()
    qaf: QafLevels = QafLevels()
    decided_on: date
    valid_from: date
    valid_to: date
    evidence_sha256: str
    reference: str = Field(default="", max_length=64)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _rules(self) -> AccreditationEntry:
        if not _HEX64.fullmatch(self.evidence_sha256):
            raise ValueError("evidence_sha256 must be 64 lowercase hex digits")
        if self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if (self.decision == "passported") != (self.passported_from is not None):
            raise ValueError("passported_from is required for a passport, and only for a passport")
        if self.passported_from == self.authority:
            raise ValueError("an authority cannot passport its own accreditation")
        if self.decision == "accredited":
            unmet = [c for c in CRITERIA if getattr(self.criteria, c) != "met"]
            if unmet:
                raise ValueError(f"an accreditation needs every criterion met: {', '.join(unmet)}")
            below = [o for o in QAF_OBJECTIVES if getattr(self.qaf, o) not in ("A", "B", "C")]
            if below:
                raise ValueError(f"an accreditation needs QAF level C or better in: {', '.join(below)}")
        return self

    def canonical_bytes(self) -> bytes:
        doc = self.model_dump(mode="json", by_alias=True)
        return canonical_json(doc, ensure_ascii=False)


def three_years_after(start: date) -> date:
    """The default end of an accreditation: renewed every three years (29 February -> 28 February)."""
    try:
        return start.replace(year=start.year + 3)
    except ValueError:
        return start.replace(year=start.year + 3, day=28)


def sign_entry(entry: AccreditationEntry, key: Ed25519PrivateKey) -> dsse.Envelope:
    return dsse.sign(ENTRY_PAYLOAD_TYPE, entry.canonical_bytes(), key)


def entry_bytes(envelope: dsse.Envelope) -> bytes:
    """The exact bytes the log stores and hashes: the DSSE JSON envelope, canonical and compact."""
    return canonical_json(envelope.to_json())


def open_entry(data: bytes) -> tuple[dsse.Envelope, AccreditationEntry]:
    """Parse logged bytes as an entry: canonical envelope, the entry type, one signature, a valid
    canonical entry. Nothing is verified here (see `verify_entry`)."""
    envelope = dsse.Envelope.from_json(bytes(data))
    if entry_bytes(envelope) != bytes(data):
        raise InvalidRequest("the entry envelope is not in canonical form")
    if envelope.payload_type != ENTRY_PAYLOAD_TYPE:
        raise InvalidRequest("not an accreditation entry")
    if len(envelope.signatures) != 1:
        raise InvalidRequest("an entry carries exactly one signature, the accrediting authority's")
    try:
        entry = AccreditationEntry.model_validate_json(envelope.payload)
    except ValidationError as exc:
        raise InvalidRequest("malformed accreditation entry", detail=str(exc)) from None
    if entry.canonical_bytes() != envelope.payload:
        raise InvalidRequest("the accreditation entry is not in canonical form")
    return envelope, entry


def verify_entry(
    data: bytes,
    manifest: Manifest,
    *,
    register: str,
    earlier: Sequence[Manifest] = (),
    now_ms: int | None = None,
) -> tuple[AccreditationEntry, Party]:
    """An entry that is well formed, for this register, and signed by the member authority it names.

    `manifest` is the version in force: membership is read from it, and its key for the authority
    is the only one a new entry may be signed with (the coordinator's and a witness's check of an
    entry just submitted). An entry already in the log was signed when it was submitted, so a
    reader passes the verified chain as `earlier`: a key the authority held at any version of it
    is accepted too, and a member's key rotation leaves the register readable. A witness checking
    entries added since its last cosignature passes `now_ms` instead: the key a rotation replaced
    counts only within the rotation's overlap (an entry submitted just before it), so a retired
    key that leaked cannot add an entry the witnesses would cosign.

    Raises InvalidRequest (malformed, another register), NotPermitted (the authority or the
    passport's source is not a member) or BadSignature (not signed by that authority's key).
    """
    envelope, entry = open_entry(data)
    if entry.origin != register:
        raise InvalidRequest("the entry is for another register")
    try:
        authority = manifest.party(entry.authority)
    except UnknownIssuer:
        raise NotPermitted("the accrediting authority is not a member of this network") from None
    if not authority.has_role(MEMBER_AUTHORITY):
        raise NotPermitted("the accrediting authority is not a member of this network")
    if entry.passported_from is not None:
        source = next((p for p in manifest.members if p.id == entry.passported_from), None)
        if source is None:
            raise NotPermitted("a passport must name a member authority's accreditation")
    current = authority.keys_at(now_ms) if now_ms is not None else (authority.public_key,)
    for key in _keys_held(authority, current, earlier):
        try:
            dsse.verify(envelope, key)
        except BadSignature:
            continue
        return entry, authority
    raise BadSignature("the entry is not signed by the authority it names")


def _keys_held(
    authority: Party, current: Sequence[Ed25519PublicKey], earlier: Sequence[Manifest]
) -> list[Ed25519PublicKey]:
    """The authority's keys now, then each other key the verified chain lists for it, newest first."""
    seen = {authority.signing_key}
    keys = list(current)
    for manifest in reversed(earlier):
        held = next((p for p in manifest.parties if p.id == authority.id), None)
        if held is not None and held.signing_key not in seen:
            seen.add(held.signing_key)
            keys.append(held.public_key)
    return keys


def evidence_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the evidence documents, which stay at the authority.

    The digest of a text listing each document as `sha256sum` prints it ("<hex>  <file name>"),
    sorted, one per line: `sha256sum * | sort | sha256sum` in the evidence folder gives the same.
    """
    lines = sorted(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in paths)
    if not lines:
        raise InvalidRequest("an entry needs at least one evidence document")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def entry_from_toml(
    text: str, *, authority: str, register: str, base: Path, today: date | None = None
) -> AccreditationEntry:
    """An entry from an authority's ENTRY.toml (see docs/register.md); the authority and register
    come from the node, never from the file. Evidence files are relative to `base`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"the entry file is not valid TOML: {exc}") from None
    try:
        return entry_from_mapping(raw, authority=authority, register=register, base=base, today=today)
    except ValidationError as exc:
        raise InvalidRequest("the entry file is not a valid accreditation entry", detail=str(exc)) from None


def entry_from_mapping(
    raw: dict[str, Any], *, authority: str, register: str, base: Path, today: date | None = None
) -> AccreditationEntry:
    """An entry from the fields of ENTRY.toml as a mapping (a TOML file, or a row of an authority's
    accreditation list): defaults filled in, the provider key derived, the evidence hashed.
    Raises InvalidRequest for what the file may not say, or pydantic's ValidationError (with
    each field's location) for what the entry rules refuse."""
    raw = dict(raw)
    for forbidden in ("authority", "origin", "schema"):
        if forbidden in raw:
            raise InvalidRequest(f"the entry file may not set {forbidden!r}: it comes from the node")
    provider = dict(raw.pop("provider", {}))
    if "evidence" in raw:
        if "evidence_sha256" in raw:
            raise InvalidRequest("give evidence files or evidence_sha256, not both")
        files = raw.pop("evidence")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise InvalidRequest("evidence must be a list of file names")
        try:
            raw["evidence_sha256"] = evidence_digest(base / f for f in files)
        except FileNotFoundError as exc:
            raise InvalidRequest(f"evidence file not found: {exc.filename}") from None
    decided_on = raw.setdefault("decided_on", today or date.today())
    valid_from = raw.setdefault("valid_from", decided_on)
    if isinstance(valid_from, date):
        raw.setdefault("valid_to", three_years_after(valid_from))
    try:
        keys = identifier_keys(
            name=str(provider.get("name", "")),
            national_provider_id=provider.get("national_provider_id"),
            charity_number=provider.get("charity_number"),
            company_number=provider.get("company_number"),
        )
    except ValueError as exc:
        raise InvalidRequest(f"the provider has no identity: {exc}") from None
    return AccreditationEntry.model_validate(
        {**raw, "authority": authority, "origin": register, "provider": {**provider, "key": keys[0]}}
    )


# -- status -------------------------------------------------------------------------------------


class LoggedEntry(_Model):
    """An entry as it sits in the log."""

    leaf_index: int
    entry: AccreditationEntry


class AuthorityStatus(_Model):
    authority: str
    status: str
    decision: str  # the authority's latest decision, as logged
    leaf_index: int
    valid_from: date
    valid_to: date
    passported_from: str | None = None
    note: str = ""


class ProviderStatus(_Model):
    provider: str
    names: tuple[str, ...]
    on: date
    overall: str
    suspended_by: tuple[str, ...]
    authorities: tuple[AuthorityStatus, ...]


def _own_status(entry: AccreditationEntry, on: date) -> tuple[str, str]:
    if entry.decision in ("accredited", "passported"):
        if on > entry.valid_to:
            return "expired", f"expired on {entry.valid_to.isoformat()}"
        if on < entry.valid_from:
            return "applied", f"valid from {entry.valid_from.isoformat()}"
    return entry.decision, ""


def provider_status(provider: str, entries: Sequence[LoggedEntry], *, on: date) -> ProviderStatus:
    """A provider's status on `on`, from its entries (any order; the log's order decides).

    Each authority's latest entry is its decision. An accreditation or a passport past its
    valid_to is expired. A passport stands only while the authority it came from holds a current
    accreditation of its own, and otherwise takes that authority's status (or expired). A
    suspension by any member shows in `suspended_by` and makes the overall status suspended.
    """
    if not entries:
        raise InvalidRequest("no entries for this provider")
    latest: dict[str, LoggedEntry] = {}
    for logged in sorted(entries, key=lambda e: e.leaf_index):
        latest[logged.entry.authority] = logged
    own = {a: _own_status(e.entry, on) for a, e in latest.items()}
    rows = []
    for authority in sorted(latest):
        logged = latest[authority]
        entry = logged.entry
        status, note = own[authority]
        if status == "passported" and entry.passported_from is not None:
            source = entry.passported_from
            source_status = own.get(source, ("none", ""))[0]
            if source_status != "accredited":
                lapsed = source_status if source_status in ("suspended", "withdrawn", "expired") else "expired"
                if source_status == "passported":
                    source_status = "itself a passport"
                status, note = lapsed, f"passport from {source}, whose accreditation is {source_status}"
            else:
                note = f"passport from {source}"
        rows.append(
            AuthorityStatus(
                authority=authority,
                status=status,
                decision=entry.decision,
                leaf_index=logged.leaf_index,
                valid_from=entry.valid_from,
                valid_to=entry.valid_to,
                passported_from=entry.passported_from,
                note=note,
            )
        )
    suspended_by = tuple(r.authority for r in rows if r.decision == "suspended")
    statuses = {r.status for r in rows}
    overall = "suspended" if suspended_by else next(s for s in _PRECEDENCE if s in statuses)
    names = tuple(sorted({e.entry.provider.name for e in entries}))
    return ProviderStatus(
        provider=provider, names=names, on=on, overall=overall, suspended_by=suspended_by, authorities=tuple(rows)
    )


# Without a suspension, the best standing any member gives the provider.
_PRECEDENCE = ("accredited", "passported", "applied", "suspended", "withdrawn", "expired")


def register_statuses(entries: Sequence[LoggedEntry], *, on: date) -> list[ProviderStatus]:
    """Every provider's status on `on`, from the whole register's verified entries.

    Entries are about the same provider when they share any identifier (one authority may key a
    provider by charity number and another by its name, as long as one entry carries both), as
    `status` finds them; each provider is named by the key of its strongest identifier."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for logged in entries:
        first, *others = logged.entry.provider.keys
        for other in others:
            parent[root(other)] = root(first)
    groups: dict[str, list[LoggedEntry]] = {}
    for logged in entries:
        groups.setdefault(root(logged.entry.provider.key), []).append(logged)
    statuses = []
    for members in groups.values():
        keys = {k for e in members for k in e.entry.provider.keys}
        strongest = min(keys, key=lambda k: (_KEY_ORDER.index(k.split(":", 1)[0]), k))
        statuses.append(provider_status(strongest, members, on=on))
    return sorted(statuses, key=lambda s: (s.names[0].casefold(), s.provider))


_KEY_ORDER = ("npi", "charity", "company", "name")

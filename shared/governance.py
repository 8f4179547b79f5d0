"""Governance: how one manifest version follows from the one before, and proposals for changes.

Version 1 and every founding-phase version (no `governance` in the manifest) are signed by the
founding coordinator key that nodes pin. The charter version (the first with `governance`) must be
signed by that key and by every member authority it lists. From then on a version N+1 counts only
if a quorum of the member authorities of version N signed its exact bytes (more when its policy
loosens a rule); the coordinator's key counts for nothing, and no version may drop governance.
See docs/governance.md.
"""

from __future__ import annotations

import base64
import difflib
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, ValidationError

from shared import dsse, pki
from shared.authorities import register_of
from shared.canonical import canonical_json
from shared.errors import BadSignature, CagnetError, InvalidRequest, ManifestRefused, VerificationError
from shared.manifest_document import MANIFEST_PAYLOAD_TYPE, Governance, Manifest, Party, encode_key
from shared.models import JoinRequest
from shared.policy import digest, parse_policy
from shared.reference import parse_reference, reference_of
from shared.roles import MEMBER_AUTHORITY, ROLES

PROPOSAL_PAYLOAD_TYPE = "application/vnd.cagnet.v1.proposal+json"
HISTORY = "manifests"

Action = Literal[
    "charter",
    "add-member",
    "remove-member",
    "rotate-key",
    "set-endpoints",
    "set-roles",
    "set-policy",
    "set-governance",
    "set-authority",
    "set-reference",
]


# --- the chain -------------------------------------------------------------------------------


def parse_unverified(envelope: dsse.Envelope) -> Manifest:
    """The manifest an envelope carries, before any signature is checked (to learn its version)."""
    if envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet manifest")
    try:
        return Manifest.model_validate_json(envelope.payload)
    except ValidationError as exc:
        raise InvalidRequest("the manifest is malformed", detail=str(exc)) from None


def verify_first(envelope: dsse.Envelope, root_key: Ed25519PublicKey) -> Manifest:
    """Version 1: signed by the founding coordinator key, and not yet governed."""
    manifest = parse_unverified(envelope)
    if manifest.version != 1:
        raise ManifestRefused(f"the chain starts at version {manifest.version}, not 1")
    if manifest.governed:
        raise ManifestRefused("version 1 must be a founding manifest (no governance yet)")
    dsse.verify(envelope, root_key)
    return manifest


def verify_step(previous: Manifest, envelope: dsse.Envelope, root_key: Ed25519PublicKey) -> Manifest:
    """The version after `previous`, if `envelope` carries exactly that with the signatures it
    needs; else ManifestRefused (or BadSignature) naming the rule broken."""
    manifest = parse_unverified(envelope)
    if manifest.network != previous.network:
        raise ManifestRefused("the manifest is for another network")
    if manifest.version <= previous.version:
        raise ManifestRefused(f"version {manifest.version} is not newer than version {previous.version} (rollback)")
    if manifest.version != previous.version + 1:
        raise ManifestRefused(f"version {manifest.version} skips versions after {previous.version}")
    if previous.governance is None:
        dsse.verify(envelope, root_key)
        if manifest.governance is not None:
            # The charter: every founding member agrees to it, each with its own key.
            members = manifest.members
            if not members:
                raise ManifestRefused("a charter needs member authorities")
            _quorum(envelope, members, len(members), "the charter needs every member authority")
        return manifest
    if manifest.governance is None:
        raise ManifestRefused("a governed network cannot go back to the founding phase")
    members = previous.members
    loosens = policy_loosens(previous.policy, manifest.policy)
    need = previous.governance.required(len(members), loosens=loosens)
    what = "a policy that loosens a rule" if loosens else "a new manifest version"
    _quorum(envelope, members, need, f"{what} needs {need} of {len(members)} member authorities")
    return manifest


def _quorum(envelope: dsse.Envelope, members: Iterable[Party], need: int, rule: str) -> set[str]:
    keys = {p.id: p.public_key for p in members}
    try:
        return dsse.verify_threshold(envelope, keys, need)
    except BadSignature as exc:
        # Signatures by anyone outside `members` (the coordinator, a non-member) never count.
        raise ManifestRefused(f"{rule}: {exc.public_message}") from None


def signers(previous: Manifest | None, envelope: dsse.Envelope) -> list[str]:
    """Member authorities of `previous` whose signature on `envelope` verifies (for display)."""
    if previous is None:
        return []
    message = dsse.pae(envelope.payload_type, envelope.payload)
    found = []
    for party in previous.members:
        for s in envelope.signatures:
            try:
                party.public_key.verify(s.sig, message)
            except Exception:
                continue
            found.append(party.id)
            break
    return found


def policy_loosens(old: str, new: str) -> bool:
    """Whether policy text `new` lets out anything `old` would not: a kind or role added, or any
    disclosure rule made less strict. An unreadable policy, or none, is treated as loosening."""
    if old == new:
        return False

    try:
        before, after = parse_policy(old.encode()), parse_policy(new.encode())
    except CagnetError:
        return True
    for kind, rule in after.aggregates.items():
        was = before.aggregates.get(kind)
        if was is None or not set(rule.roles) <= set(was.roles):
            return True
        lower_is_looser = ("threshold", "rounding_base", "min_authorities", "min_contributors", "p_percent")
        if any(getattr(rule, f) < getattr(was, f) for f in lower_is_looser):
            return True
        if rule.max_dimensions > was.max_dimensions or rule.dominance_k > was.dominance_k:
            return True
        if rule.dominance_n != was.dominance_n or rule.rounding_mode != was.rounding_mode:
            return True  # not simply stricter or looser: the stricter quorum decides
        for group, value in was.group_thresholds.items():
            if rule.threshold_for(group) < value:
                return True
    return False


# --- published history -----------------------------------------------------------------------


def history_dir(manifest_path: Path) -> Path:
    return manifest_path.parent / HISTORY


def history_file(directory: Path, version: int) -> Path:
    return directory / f"{version:06d}.json"


def read_envelope(path: Path) -> dsse.Envelope:
    try:
        return dsse.Envelope.from_json(path.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"no manifest at {path}") from None


def write_envelope(path: Path, envelope: dsse.Envelope) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: two processes (a node's sync and its server) may write the same version.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(envelope.to_json(), indent=2) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a manifest


def envelope_digest(envelope: dsse.Envelope) -> str:
    return hashlib.sha256(dsse.pae(envelope.payload_type, envelope.payload)).hexdigest()


class Chain:
    """The verified versions of one network's manifest, from version 1, each with its envelope.

    `advance` accepts only the next versions (fetching any in between from `fetch`), and refuses
    an older version, a skipped one, or a different envelope for a version already held.
    """

    def __init__(self, root_key: Ed25519PublicKey) -> None:
        self._root = root_key
        self.versions: list[tuple[Manifest, dsse.Envelope]] = []

    def copy(self) -> Chain:
        chain = Chain(self._root)
        chain.versions = list(self.versions)
        return chain

    @property
    def head(self) -> Manifest:
        return self.versions[-1][0]

    def advance(self, envelope: dsse.Envelope, fetch: Callable[[int], dsse.Envelope]) -> list[dsse.Envelope]:
        """Verify `envelope` and every version before it that is not yet held; returns the newly
        accepted envelopes, oldest first."""
        claimed = parse_unverified(envelope)
        if self.versions:
            held = self.head.version
            if claimed.version < held:
                raise ManifestRefused(f"version {claimed.version} is older than version {held} (rollback)")
            if claimed.version == held:
                if envelope.payload != self.versions[-1][1].payload:
                    raise ManifestRefused(f"a different version {held} from the one already accepted")
                return []
        added: list[dsse.Envelope] = []
        start = self.head.version + 1 if self.versions else 1
        for version in range(start, claimed.version + 1):
            step = envelope if version == claimed.version else fetch(version)
            manifest = verify_step(self.head, step, self._root) if self.versions else verify_first(step, self._root)
            if manifest.version != version:
                raise ManifestRefused(f"the history file for version {version} holds version {manifest.version}")
            self.versions.append((manifest, step))
            added.append(step)
        return added


def load_chain(directory: Path, root_key: Ed25519PublicKey, *, upto: int | None = None) -> Chain:
    """Every version in a history folder, verified from version 1 (to `upto`, or the last)."""
    chain = Chain(root_key)
    last = upto or max((int(f.stem) for f in directory.glob("[0-9]*.json")), default=0)
    if last == 0:
        raise InvalidRequest(f"no manifest history in {directory}")
    chain.advance(read_envelope(history_file(directory, last)), lambda v: read_envelope(history_file(directory, v)))
    return chain


# --- proposals --------------------------------------------------------------------------------


class Change(BaseModel):
    """One change to the manifest. Which fields matter depends on `action`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    party: Party | None = None  # add-member: the authority as it will be listed
    party_id: str = ""  # remove-member, rotate-key, set-roles
    endpoints: dict[str, str] = {}  # set-endpoints: party id -> host:port
    roles: tuple[str, ...] = ()  # set-roles
    signing_key: str = ""  # rotate-key: the new key (base64 raw Ed25519)
    overlap_until_ms: int = 0  # rotate-key: the old key is accepted on requests until then
    policy: str = ""  # set-policy, charter: the policy's exact TOML text
    governance: Governance | None = None  # set-governance, charter
    # set-authority: a correction to the authority register (shared.authorities)
    authority: str = ""  # its GSS code
    population: int | None = None  # for `year` (None: unchanged)
    year: int | None = None  # None: the latest year the register holds
    districts: dict[str, str] = {}  # a county's districts to add or rename: code -> name
    # set-reference: need indicators or grant allocations to add or replace (shared.reference), as
    # canonical CSV text; left out of the signed proposal when empty, so other changes sign as before.
    reference: str = ""

    def describe(self) -> str:
        match self.action:
            case "add-member":
                assert self.party is not None
                if not self.party.endpoint:  # a principal: it asks, it does not answer
                    return f"add {self.party.id} ({self.party.name}) as {', '.join(self.party.roles)}"
                return f"add member {self.party.id} ({self.party.name}) at {self.party.endpoint}"
            case "remove-member":
                return f"remove {self.party_id}"
            case "rotate-key":
                until = datetime.fromtimestamp(self.overlap_until_ms / 1000, UTC)
                return f"rotate {self.party_id}'s signing key (old key accepted until {until:%Y-%m-%d %H:%M} UTC)"
            case "set-endpoints":
                return "endpoints: " + ", ".join(f"{k} -> {v}" for k, v in sorted(self.endpoints.items()))
            case "set-roles":
                return f"roles of {self.party_id}: {', '.join(self.roles) or 'none'}"
            case "set-policy":
                return f"policy {digest(self.policy.encode())}"
            case "set-authority":
                what = [f"population {self.population:,}" + (f" ({self.year})" if self.year else "")]
                what = what if self.population is not None else []
                what += [f"district {code} {name}" for code, name in sorted(self.districts.items())]
                return f"authority register: {self.authority} " + ", ".join(what)
            case "set-reference":
                rows = parse_reference(self.reference, source="the proposed reference data")
                names = ", ".join(rows.indicators())
                return f"reference data: {len(rows)} figures ({names})"
            case "set-governance":
                assert self.governance is not None
                rules = self.governance
                return f"quorum {rules.quorum or 'majority'}, loosening {rules.loosening_quorum or 'all'}"
            case _:
                return "charter: members govern the network from this version"


def apply_change(manifest: Manifest, change: Change) -> Manifest:
    """The next version: `manifest` with exactly `change` applied (InvalidRequest if it cannot be)."""
    parties = list(manifest.parties)
    update: dict[str, object] = {"version": manifest.version + 1}

    def index(party_id: str) -> int:
        for i, p in enumerate(parties):
            if p.id == party_id:
                return i
        raise InvalidRequest(f"{party_id} is not listed in manifest version {manifest.version}")

    if change.action == "charter":
        if manifest.governed:
            raise InvalidRequest("the network is already governed")
        update["governance"] = change.governance or Governance()
        update["policy"] = change.policy
    elif not manifest.governed:
        raise InvalidRequest("the network is in its founding phase: adopt a charter first")
    elif change.action == "add-member":
        if change.party is None or any(p.id == change.party.id for p in parties):
            raise InvalidRequest("add-member needs a party not yet listed")

        if change.party.has_role(MEMBER_AUTHORITY) and change.party.id not in register_of(manifest):
            raise InvalidRequest(f"{change.party.id!r} is not an English upper-tier authority in the register")
        parties.append(change.party)
    elif change.action == "remove-member":
        parties.pop(index(change.party_id))
    elif change.action == "rotate-key":
        i = index(change.party_id)
        old = parties[i]
        if not change.signing_key or change.signing_key == old.signing_key:
            raise InvalidRequest("rotate-key needs a new key")
        parties[i] = old.model_copy(
            update={
                "signing_key": change.signing_key,
                "previous_key": old.signing_key,
                "previous_key_until_ms": change.overlap_until_ms,
            }
        )
    elif change.action == "set-endpoints":
        for party_id, endpoint in change.endpoints.items():
            i = index(party_id)
            parties[i] = parties[i].model_copy(update={"endpoint": endpoint})
            if party_id == "coordinator":
                update["coordinator_endpoint"] = endpoint
    elif change.action == "set-roles":
        unknown = [r for r in change.roles if r not in ROLES]
        if unknown:
            raise InvalidRequest(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}")
        i = index(change.party_id)
        parties[i] = parties[i].model_copy(update={"roles": change.roles})
    elif change.action == "set-policy":
        parse_policy(change.policy.encode())
        if change.policy == manifest.policy:
            raise InvalidRequest("the policy is unchanged")
        update["policy"] = change.policy
    elif change.action == "set-governance":
        if change.governance is None:
            raise InvalidRequest("set-governance needs the new rules")
        update["governance"] = change.governance
    elif change.action == "set-authority":
        corrected = register_of(manifest).corrected(
            change.authority, population=change.population, year=change.year, districts=change.districts
        )
        update["authorities"] = corrected.to_csv()
    elif change.action == "set-reference":
        update["reference"] = with_reference(manifest, change.reference, source="the proposed reference data")
    update["parties"] = tuple(parties)
    return manifest.model_copy(update=update)


def with_reference(manifest: Manifest, text: str, *, source: str) -> str:
    """The manifest's reference text with the rows of `text` added or replacing theirs; every row
    checked (its authority in the manifest's register) before anything changes."""
    rows = parse_reference(text, source=source, register=register_of(manifest))
    return reference_of(manifest).merged(rows).to_csv()


class Proposal(BaseModel):
    """What a proposer signs: the change and the version it applies to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    network: str
    applies_to: int
    proposed_by: str
    change: Change

    def canonical_bytes(self) -> bytes:
        data = self.model_dump(mode="json")
        if not data["change"]["reference"]:
            del data["change"]["reference"]  # every other change signs exactly as it did
        return canonical_json(data)


def proposal_id(envelope: dsse.Envelope) -> str:
    return hashlib.sha256(envelope.payload).hexdigest()[:12]


def parse_proposal(envelope: dsse.Envelope) -> Proposal:
    """The proposal an envelope carries, before its signature is checked."""
    if envelope.payload_type != PROPOSAL_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet proposal")
    try:
        return Proposal.model_validate_json(envelope.payload)
    except ValidationError as exc:
        raise InvalidRequest("the proposal is malformed", detail=str(exc)) from None


def open_proposal(envelope: dsse.Envelope, manifest: Manifest) -> Proposal:
    """The proposal, if it is signed by its proposer: a listed party, or the authority it adds."""
    proposal = parse_proposal(envelope)
    joining = proposal.change.party
    if joining is not None and proposal.proposed_by == joining.id:
        dsse.verify(envelope, joining.public_key)  # the joiner proves it holds the key it lists
    else:
        dsse.verify(envelope, manifest.party(proposal.proposed_by).public_key)
    return proposal


# --- joining, reviewing, approving ------------------------------------------------------------

JOIN_REQUEST_PAYLOAD_TYPE = "application/vnd.cagnet.v1.join-request+json"


def sign_join_request(request: JoinRequest, key: Ed25519PrivateKey) -> dsse.Envelope:
    """A join request signed with the new key it lists: the joiner's proof that it holds that key,
    which a sponsoring member hands to the coordinator."""
    if encode_key(key.public_key()) != request.signing_key:
        raise InvalidRequest("a join request is signed with the key it lists")
    # A node's request carries no role: its bytes stay exactly as before the field existed.
    payload = canonical_json(request.model_dump(mode="json", exclude=set() if request.role else {"role"}))
    return dsse.sign(JOIN_REQUEST_PAYLOAD_TYPE, payload, key)


def open_join_request(envelope: dsse.Envelope) -> JoinRequest:
    """The join request, if it is signed with the key it lists (else BadSignature / InvalidRequest)."""
    if envelope.payload_type != JOIN_REQUEST_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet join request")
    try:
        request = JoinRequest.model_validate_json(envelope.payload)
        key = dsse.load_public_key(base64.b64decode(request.signing_key, validate=True))
    except (ValidationError, ValueError) as exc:
        raise InvalidRequest("the join request is malformed", detail=str(exc)) from None
    dsse.verify(envelope, key)
    return request


@dataclass(frozen=True)
class Filed:
    """A proposal as the coordinator holds it: the proposer's signed proposal, the candidate
    collecting approvals and, for a join, the certificate and the joiner's signed request.
    `approvals`, `needed` and `published` are the holder's view; a member recomputes them."""

    id: str
    signed: dsse.Envelope
    envelope: dsse.Envelope
    approvals: tuple[str, ...]
    needed: int
    published: bool = False
    certificate: bytes = b""
    join_request: dsse.Envelope | None = None
    sponsor: str = ""

    @functools.cached_property
    def proposal(self) -> Proposal:
        return parse_proposal(self.signed)

    @functools.cached_property
    def candidate(self) -> Manifest:
        return parse_unverified(self.envelope)


def voters(base: Manifest, proposal: Proposal) -> Manifest:
    """The version whose member authorities sign a proposal: for a charter the members it lists
    (every one of them), for any other change the members of the version it applies to."""
    if proposal.change.action == "charter":
        return apply_change(base, proposal.change)
    return base


def needed(base: Manifest, proposal: Proposal, candidate: Manifest) -> int:
    """Signatures the candidate needs to become the version after `base`."""
    if proposal.change.action == "charter":
        return len(candidate.members)
    if base.governance is None:
        return 0
    loosens = policy_loosens(base.policy, candidate.policy)
    return base.governance.required(len(base.members), loosens=loosens)


@dataclass(frozen=True)
class Review:
    """A proposal as one member checked it against its own verified chain."""

    id: str
    proposal: Proposal
    base: Manifest  # the reviewer's head: the version the proposal applies to
    candidate: Manifest  # recomputed by the reviewer: the change applied to `base`
    approvals: tuple[str, ...]  # members whose signatures on the candidate verify
    needed: int
    sponsor: str = ""

    def diff(self) -> list[str]:
        return manifest_diff(self.base, self.candidate)


def review_all(
    base: Manifest, filed: Iterable[Filed], *, ca_cert_pem: bytes
) -> list[tuple[Filed, Review | CagnetError]]:
    """Each proposal with the reviewer's review, or the reason it fails review (to list them all)."""
    out: list[tuple[Filed, Review | CagnetError]] = []
    for f in filed:
        try:
            out.append((f, review(base, f, ca_cert_pem=ca_cert_pem)))
        except CagnetError as exc:
            out.append((f, exc))
    return out


def review(base: Manifest, filed: Filed, *, ca_cert_pem: bytes) -> Review:
    """Check a filed proposal against `base`, the reviewer's own head: the proposer's signature,
    the version it applies to, the candidate's exact bytes against the change applied to `base`,
    and for a join the certificate and the joiner's proof of its key. Raises on the first fault
    (ManifestRefused when what the holder shows is not what the change yields)."""
    proposal = open_proposal(filed.signed, base)
    if proposal.network != base.network:
        raise ManifestRefused("the proposal is for another network")
    if proposal.applies_to != base.version:
        raise InvalidRequest(
            f"proposal {filed.id} applies to version {proposal.applies_to}, this chain is at version {base.version}"
        )
    candidate = apply_change(base, proposal.change)
    if filed.envelope.payload_type != MANIFEST_PAYLOAD_TYPE or filed.envelope.payload != candidate.canonical_bytes():
        raise ManifestRefused(
            f"proposal {filed.id}'s candidate manifest is not its change applied to version {base.version}"
        )
    if proposal.change.action == "add-member":
        _check_join(proposal, filed, ca_cert_pem)
    counted = voters(base, proposal)
    return Review(
        id=filed.id,
        proposal=proposal,
        base=base,
        candidate=candidate,
        approvals=tuple(signers(counted, filed.envelope)),
        needed=needed(base, proposal, candidate),
        sponsor=filed.sponsor,
    )


def _check_join(proposal: Proposal, filed: Filed, ca_cert_pem: bytes) -> None:

    party = proposal.change.party
    assert party is not None  # apply_change refuses an add-member without one
    if not filed.certificate:
        raise ManifestRefused("a join comes with the certificate its candidate lists")
    cert = pki.load_cert(filed.certificate)
    try:
        holder = pki.verify_certificate(cert, pki.load_cert(ca_cert_pem))
    except VerificationError as exc:
        raise ManifestRefused(f"the joiner's certificate: {exc.public_message}") from None
    if holder != party.id or pki.fingerprint(cert) != party.cert_fingerprint:
        raise ManifestRefused("the joiner's certificate is not the one its candidate lists")
    if filed.join_request is None and MEMBER_AUTHORITY not in party.roles:
        return  # a principal: its keys are made in the network folder (`propose-principal`), not by it
    if filed.join_request is not None:
        request = open_join_request(filed.join_request)
        asked = (request.party_id, request.name, request.endpoint, request.population, request.signing_key)
        if asked != (party.id, party.name, party.endpoint, party.population, party.signing_key):
            raise ManifestRefused("the candidate lists the joiner otherwise than its signed request")
        if party.roles != ((request.role,) if request.role else (MEMBER_AUTHORITY,)):
            raise ManifestRefused("the candidate gives the joiner other roles than its signed request asks for")
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        theirs = load_pem_public_key(request.tls_public_key_pem.encode()).public_bytes(*spki)
        if cert.public_key().public_bytes(*spki) != theirs:
            raise ManifestRefused("the joiner's certificate is not for the TLS key in its signed request")
    elif proposal.proposed_by != party.id:
        raise ManifestRefused("a member authority joins with its own signature: its signed request or its proposal")


def approval(candidate: Manifest, key: Ed25519PrivateKey) -> bytes:
    """An approver's signature: over the candidate it computed itself, never the bytes it was shown."""
    return key.sign(dsse.pae(MANIFEST_PAYLOAD_TYPE, candidate.canonical_bytes()))


def manifest_diff(old: Manifest, new: Manifest) -> list[str]:
    """What `new` changes from `old`, as unified-diff lines (the policy as a diff of its own)."""

    def lines(manifest: Manifest) -> list[str]:
        data = manifest.model_dump(mode="json")
        data["policy"] = digest(manifest.policy.encode()) if manifest.policy else ""
        data["authorities"] = digest(manifest.authorities.encode()) if manifest.authorities else ""
        data["reference"] = digest(manifest.reference.encode()) if manifest.reference else ""
        return json.dumps(data, indent=2, sort_keys=True).splitlines()

    old_name, new_name = f"manifest version {old.version}", f"manifest version {new.version}"
    out = list(difflib.unified_diff(lines(old), lines(new), old_name, new_name, lineterm="", n=2))
    if old.policy != new.policy:
        before, after = old.policy.splitlines(), new.policy.splitlines()
        out += difflib.unified_diff(before, after, f"policy in {old_name}", f"policy in {new_name}", lineterm="")
    if old.authorities != new.authorities:
        before, after = old.authorities.splitlines(), new.authorities.splitlines()
        out += difflib.unified_diff(
            before, after, f"authority register in {old_name}", f"authority register in {new_name}", lineterm="", n=0
        )
    if old.reference != new.reference:
        before, after = old.reference.splitlines(), new.reference.splitlines()
        out += difflib.unified_diff(
            before, after, f"reference data in {old_name}", f"reference data in {new_name}", lineterm="", n=0
        )
    return out

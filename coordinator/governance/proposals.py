"""Proposals in a network folder: filing them, approving them, and publishing at quorum.

    NETDIR/proposals/<id>.json   the signed proposal, the candidate next manifest collecting
                                 approvals (DSSE signatures over its exact bytes) and, for a join,
                                 the certificate that goes with it and the joiner's signed request
    NETDIR/proposals/.lock       held while a proposal is changed, so no approval is lost
    NETDIR/proposals/withdrawn/  proposals the coordinator's operator withdrew, kept
    NETDIR/proposals/closed/     proposals closed because another change was published first, kept
                                 with the reason
    NETDIR/joined/<party>/       a new member's certificate, once its join is published

The coordinator only collects and publishes: a candidate becomes the manifest only when
`shared.governance.verify_step` accepts it, which needs the members' signatures, not the
coordinator's. Each approver recomputes the candidate from the proposal before signing it (here
for the folder's own commands; `node.governance` for a member over gRPC), and an approval is a
signature over those bytes, so one made for a different candidate does not verify.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import network
from shared import dsse, governance, pki
from shared.errors import BadSignature, CagnetError, InvalidRequest, NotFound, NotPermitted
from shared.governance import Change, Filed, Proposal
from shared.identity import Identity
from shared.manifest import (
    COORDINATOR,
    MANIFEST_PAYLOAD_TYPE,
    MEMBER_AUTHORITY,
    Governance,
    Manifest,
    Party,
    publish_manifest,
)
from shared.models import JoinRequest


class Signer(Protocol):
    """Who signs a proposal or an approval: an Identity, or a joining node that has no certificate yet."""

    @property
    def party_id(self) -> str: ...
    @property
    def signing_key(self) -> Ed25519PrivateKey: ...


@dataclass(frozen=True)
class Joiner:
    party_id: str
    signing_key: Ed25519PrivateKey


def proposals_dir(netdir: Path) -> Path:
    return netdir / "proposals"


def joined_dir(netdir: Path, party_id: str) -> Path:
    return netdir / "joined" / party_id


# Changes to proposals are read-modify-write: one at a time, across threads (a server's workers)
# and processes (the server and an operator's command), or two approvals at once lose one.
_thread_lock = threading.RLock()
_held = threading.local()


@contextlib.contextmanager
def _exclusive(netdir: Path) -> Iterator[None]:
    with _thread_lock:
        if getattr(_held, "depth", 0):
            _held.depth += 1
            try:
                yield
            finally:
                _held.depth -= 1
            return
        folder = proposals_dir(netdir)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            _held.depth = 1
            try:
                yield
            finally:
                _held.depth = 0


# For the other writers of the network folder's governance state (onboarding's join requests).
exclusive = _exclusive


def propose(netdir: Path, change: Change, proposer: Signer, *, certificate: bytes = b"") -> Filed:
    """File a change signed by `proposer`; a member proposer's approval is counted at once."""
    manifest = network.read(netdir)
    proposal = Proposal(
        network=manifest.network, applies_to=manifest.version, proposed_by=proposer.party_id, change=change
    )
    signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), proposer.signing_key)
    filed = file_proposal(netdir, signed, certificate=certificate)
    if proposer.party_id in {p.id for p in manifest.members}:
        return approve(netdir, filed.id, proposer)
    return filed


def file_proposal(
    netdir: Path,
    signed: dsse.Envelope,
    *,
    proposer: str | None = None,
    certificate: bytes = b"",
    join_request: dsse.Envelope | None = None,
    sponsor: str = "",
) -> Filed:
    """File a proposal already signed by its proposer (`proposer`, when given, must be the one who
    signed it: a caller files its own proposals). The candidate is the change applied to the
    current version; filing the same signed proposal again changes nothing."""
    with _exclusive(netdir):
        manifest = network.read(netdir)
        proposal = governance.open_proposal(signed, manifest)
        if proposer is not None and proposal.proposed_by != proposer:
            raise NotPermitted("a party files only proposals it signed itself")
        if proposal.network != manifest.network:
            raise InvalidRequest("the proposal is for another network")
        if proposal.applies_to != manifest.version:
            raise InvalidRequest(
                f"the proposal applies to version {proposal.applies_to}, the network is at {manifest.version}"
            )
        pid = governance.proposal_id(signed)
        if (proposals_dir(netdir) / f"{pid}.json").exists():
            return status(netdir, pid)
        _refuse_if_another_is_open(netdir, manifest)
        candidate = governance.apply_change(manifest, proposal.change)
        envelope = dsse.Envelope(MANIFEST_PAYLOAD_TYPE, candidate.canonical_bytes(), ())
        if proposal.change.action == "charter":
            if proposal.change.policy != network.read_policy(netdir).source.decode("utf-8"):
                raise InvalidRequest("a charter carries the network policy in force; propose a new policy after it")
            # Leaving the founding phase is the one step the founding key also signs.
            envelope = dsse.add_signature(envelope, network.coordinator_identity(netdir).signing_key)
        _save(netdir, pid, _Stored(signed, envelope, certificate, join_request, sponsor))
        return status(netdir, pid)


def _refuse_if_another_is_open(netdir: Path, manifest: Manifest) -> None:
    """Each proposal is signed against one manifest version and becomes the next: of two open
    against the same version only one can be published. A second change is refused here, while
    its proposer is there to hear it, when a member has already approved the first (it is under
    way); one nobody has approved (a coordinator's own attempt, a join not yet signed) does not
    block, and is closed, with the reason kept, if another is published first (`_close_stale`)."""
    for other in pending(netdir):
        if other.approvals:
            raise InvalidRequest(
                f"proposal {other.id} ({other.proposal.change.describe()}, proposed by "
                f"{other.proposal.proposed_by}; {len(other.approvals)} of {other.needed} approvals) is already open "
                f"against manifest version {manifest.version}, and only one change can become version "
                f"{manifest.version + 1}: approve it, or have the coordinator's operator withdraw it "
                f"(`cagnet network withdraw {other.id} --network NETDIR`), then propose again"
            )


def closed_reason(netdir: Path, pid: str) -> str | None:
    """Why proposal `pid` was closed or withdrawn unpublished, or None if it was not."""
    for kind in ("closed", "withdrawn"):
        try:
            record = json.loads((proposals_dir(netdir) / kind / f"{pid}.json").read_text())
        except (FileNotFoundError, ValueError):
            continue
        return str(record.get("closed_because") or "withdrawn by the coordinator's operator")
    return None


def _close(netdir: Path, pid: str, kind: str, reason: str) -> None:
    folder = proposals_dir(netdir) / kind
    folder.mkdir(exist_ok=True)
    record = json.loads((proposals_dir(netdir) / f"{pid}.json").read_text())
    record["closed_because"] = reason
    (folder / f"{pid}.json").write_text(json.dumps(record, indent=2) + "\n")
    (proposals_dir(netdir) / f"{pid}.json").unlink()


def _close_stale(netdir: Path, published: Filed) -> list[str]:
    """Once `published` is the manifest, every other proposal open against the version it replaced
    can never be published: close each with the reason, kept in proposals/closed/, and remove key
    material made for a principal it would have listed, so that proposing it again starts clean."""
    closed = []
    base = published.proposal.applies_to
    for path in sorted(proposals_dir(netdir).glob("*.json")):
        try:
            other = status(netdir, path.stem)
        except CagnetError:
            continue
        if other.published or other.proposal.applies_to != base or other.id == published.id:
            continue
        reason = (
            f"version {published.candidate.version} was published from proposal {published.id} "
            f"({published.proposal.change.describe()}) first: propose this change again against it"
        )
        _close(netdir, other.id, "closed", reason)
        _drop_unlisted_principal(netdir, other)
        closed.append(other.id)
    return closed


def withdraw(netdir: Path, pid: str) -> tuple[Filed, list[Path]]:
    """Take an unpublished proposal off the table (the coordinator's operator, on the network
    folder): its record moves to proposals/withdrawn/ (kept, not deleted), and the key material
    made for a principal it would have listed is removed, so that proposing it again starts clean.
    Returns the proposal and the folders removed."""
    with _exclusive(netdir):
        filed = status(netdir, pid)
        if filed.published:
            raise InvalidRequest(f"proposal {pid} is published (manifest version {filed.candidate.version})")
        _close(netdir, pid, "withdrawn", "withdrawn by the coordinator's operator")
        return filed, _drop_unlisted_principal(netdir, filed)


def _drop_unlisted_principal(netdir: Path, filed: Filed) -> list[Path]:
    """The principals/ID folder `propose-principal` made for this proposal, if the manifest does
    not list ID: its private key would otherwise lie in the folder and block proposing ID again."""
    change = filed.proposal.change
    party = change.party
    if change.action != "add-member" or party is None or party.has_role(MEMBER_AUTHORITY):
        return []
    if any(p.id == party.id for p in network.read(netdir).parties):
        return []
    folder = network.principal_dir(netdir, party.id)
    try:
        listed_key = Identity.load(folder).keyid
    except (CagnetError, OSError):
        return []
    if listed_key != party.keyid:
        return []  # someone else's key material under that name: not this proposal's to remove
    shutil.rmtree(folder)
    return [folder]


def _issue_certificate(netdir: Path, request: JoinRequest) -> tuple[Party, bytes]:
    """The joiner's certificate and the party the candidate will list (by the certificate's fingerprint)."""
    cert, party = network.member_certificate(netdir, request)
    return party, pki.cert_pem(cert)


def propose_join(netdir: Path, request: JoinRequest, joiner: Signer) -> Filed:
    """File an authority's request to join, signed with its own new key. The certificate is made
    now, so that members approve the exact certificate the manifest will list; the node gets it
    only at quorum, and until then it opens no door (nodes trust only listed fingerprints)."""
    party, certificate = _issue_certificate(netdir, request)
    return propose(netdir, Change(action="add-member", party=party), joiner, certificate=certificate)


def sponsor_join(netdir: Path, join_request: dsse.Envelope, sponsor: str) -> Filed:
    """File a join that member `sponsor` hands in: the joiner's request, signed with the key it
    lists. The coordinator issues the certificate and files the change under its own key as the
    clerk (its signature is no approval); members, the sponsor first, approve it as any other."""
    request = governance.open_join_request(join_request)
    with _exclusive(netdir):
        manifest = network.read(netdir)
        if sponsor not in {p.id for p in manifest.members}:
            raise NotPermitted(f"only a member authority may sponsor a join; {sponsor} is not one")
        if any(p.id == request.party_id for p in manifest.parties):
            raise InvalidRequest(f"{request.party_id} is already listed")
        for filed in pending(netdir):
            if filed.join_request is not None and filed.join_request.payload == join_request.payload:
                return filed  # the same request again: one certificate, one proposal
        party, certificate = _issue_certificate(netdir, request)
        proposal = Proposal(
            network=manifest.network,
            applies_to=manifest.version,
            proposed_by=COORDINATOR,
            change=Change(action="add-member", party=party),
        )
        coordinator = network.coordinator_identity(netdir)
        signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), coordinator.signing_key)
        return file_proposal(netdir, signed, certificate=certificate, join_request=join_request, sponsor=sponsor)


def charter(netdir: Path, proposer: Signer, rules: Governance | None = None) -> Filed:
    """Propose leaving the founding phase: from the charter on, members govern. Every member
    authority must approve it; the current policy moves into the manifest."""
    policy = network.read_policy(netdir).source.decode("utf-8")
    return propose(netdir, Change(action="charter", governance=rules or Governance(), policy=policy), proposer)


def approve(netdir: Path, pid: str, approver: Signer) -> Filed:
    """Sign the candidate of proposal `pid` with a member's key, after checking that it is exactly
    the proposed change applied to the current version; publish it if that makes a quorum."""
    with _exclusive(netdir):
        manifest = network.read(netdir)
        filed = status(netdir, pid)
        _require_voter(manifest, filed, approver.party_id)
        checked = governance.review(manifest, filed, ca_cert_pem=(netdir / "ca" / "ca.crt").read_bytes())
        return add_approval(
            netdir, pid, approver.party_id, governance.approval(checked.candidate, approver.signing_key)
        )


def add_approval(netdir: Path, pid: str, approver: str, signature: bytes) -> Filed:
    """Add member `approver`'s signature over proposal `pid`'s candidate, then publish if that
    makes a quorum. The signature must verify over the candidate's exact bytes under the key the
    manifest lists for the approver, so an approver who computed a different candidate adds nothing."""
    with _exclusive(netdir):
        manifest = network.read(netdir)
        filed = status(netdir, pid)
        if filed.published:
            return filed
        proposal = filed.proposal
        if proposal.applies_to != manifest.version:
            raise InvalidRequest(
                f"proposal {pid} applies to version {proposal.applies_to}, "
                f"the network is at {manifest.version}: propose again"
            )
        party = _require_voter(manifest, filed, approver)
        envelope = filed.envelope
        try:
            party.public_key.verify(signature, dsse.pae(envelope.payload_type, envelope.payload))
        except Exception:
            raise BadSignature(
                f"the approval is not {approver}'s signature over proposal {pid}'s candidate under its listed key"
            ) from None
        if approver not in filed.approvals:
            signature_ = dsse.Signature(keyid=party.keyid, sig=signature)
            envelope = dsse.Envelope(envelope.payload_type, envelope.payload, (*envelope.signatures, signature_))
            _save(netdir, pid, _Stored(filed.signed, envelope, filed.certificate, filed.join_request, filed.sponsor))
        return publish_if_ready(netdir, pid)


def _require_voter(manifest: Manifest, filed: Filed, party_id: str) -> Party:
    counted = governance.voters(manifest, filed.proposal)
    for party in counted.members:
        if party.id == party_id:
            return party
    raise NotPermitted(f"only a member authority may approve; {party_id} is not one")


def publish_if_ready(netdir: Path, pid: str) -> Filed:
    with _exclusive(netdir):
        filed = status(netdir, pid)
        if filed.published or len(filed.approvals) < filed.needed:
            return filed
        manifest = network.read(netdir)
        envelope = filed.envelope
        governance.verify_step(manifest, envelope, network.root_key(netdir))  # what every node will check
        if filed.proposal.change.action == "add-member" and filed.certificate:
            party = filed.proposal.change.party
            assert party is not None
            folder = joined_dir(netdir, party.id)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "tls.crt").write_bytes(filed.certificate)
            (folder / "ca.crt").write_bytes((netdir / "ca" / "ca.crt").read_bytes())
        publish_manifest(network.manifest_path(netdir), envelope)
        if filed.candidate.governed:
            # Founding-phase readers of policy.json see the same bytes; nodes read the manifest's.
            network.write_policy_file(netdir, filed.candidate.policy.encode())
        network.read(netdir)
        published = status(netdir, pid)
        _close_stale(netdir, published)
        return published


def status(netdir: Path, pid: str) -> Filed:
    manifest = network.read(netdir)
    stored = _load(netdir, pid)
    proposal = governance.parse_proposal(stored.signed)
    candidate = governance.parse_unverified(stored.envelope)
    published = manifest.version >= candidate.version and any(
        env.payload == stored.envelope.payload for _, env in network.history(netdir)
    )
    base = _base(netdir, proposal.applies_to)
    return Filed(
        id=pid,
        signed=stored.signed,
        envelope=stored.envelope,
        approvals=tuple(governance.signers(governance.voters(base, proposal), stored.envelope)),
        needed=governance.needed(base, proposal, candidate),
        published=published,
        certificate=stored.certificate,
        join_request=stored.join_request,
        sponsor=stored.sponsor,
    )


def pending(netdir: Path) -> list[Filed]:
    """Proposals not yet published that still apply to the current version."""
    version = network.read(netdir).version
    out = []
    for path in sorted(proposals_dir(netdir).glob("*.json")):
        try:
            filed = status(netdir, path.stem)
        except CagnetError:
            continue
        if not filed.published and filed.proposal.applies_to == version:
            out.append(filed)
    return out


def _base(netdir: Path, version: int) -> Manifest:
    for manifest, _ in network.history(netdir):
        if manifest.version == version:
            return manifest
    raise NotFound(f"no manifest version {version}")


@dataclass(frozen=True)
class _Stored:
    signed: dsse.Envelope
    envelope: dsse.Envelope
    certificate: bytes = b""
    join_request: dsse.Envelope | None = None
    sponsor: str = ""


def _save(netdir: Path, pid: str, stored: _Stored) -> None:
    folder = proposals_dir(netdir)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "id": pid,
        "proposal": stored.signed.to_json(),
        "manifest": stored.envelope.to_json(),
        "certificate": stored.certificate.decode() if stored.certificate else "",
        "join_request": stored.join_request.to_json() if stored.join_request is not None else None,
        "sponsor": stored.sponsor,
    }
    tmp = folder / f"{pid}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(folder / f"{pid}.json")


def _load(netdir: Path, pid: str) -> _Stored:
    if not pid.isalnum():
        raise InvalidRequest("a proposal id is hex")
    try:
        record = json.loads((proposals_dir(netdir) / f"{pid}.json").read_text())
    except FileNotFoundError:
        why = closed_reason(netdir, pid)
        raise NotFound(f"no proposal {pid}" + (f": closed, {why}" if why else "")) from None
    join_request = record.get("join_request")
    return _Stored(
        signed=dsse.Envelope.from_json(record["proposal"]),
        envelope=dsse.Envelope.from_json(record["manifest"]),
        certificate=str(record.get("certificate", "")).encode(),
        join_request=dsse.Envelope.from_json(join_request) if join_request else None,
        sponsor=str(record.get("sponsor", "")),
    )

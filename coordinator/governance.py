"""Proposals in a network folder: filing them, approving them, and publishing at quorum.

    NETDIR/proposals/<id>.json   the signed proposal, the candidate next manifest collecting
                                 approvals (DSSE signatures over its exact bytes) and, for a join,
                                 the certificate that goes with it
    NETDIR/joined/<party>/       a new member's certificate, once its join is published

The coordinator only collects and publishes: a candidate becomes the manifest only when
`shared.governance.verify_step` accepts it, which needs the members' signatures, not the
coordinator's. Each approver recomputes the candidate from the proposal before signing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from coordinator import network
from shared import dsse, governance, pki
from shared.errors import CagnetError, InvalidRequest, NotFound, NotPermitted
from shared.governance import Change, Proposal
from shared.manifest import MANIFEST_PAYLOAD_TYPE, MEMBER_AUTHORITY, Governance, Manifest, Party, publish_manifest
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


@dataclass(frozen=True)
class Filed:
    """A proposal as it stands in the network folder."""

    id: str
    proposal: Proposal
    candidate: Manifest
    approvals: tuple[str, ...]  # member authorities (of the version it applies to) that signed
    needed: int
    published: bool = False


def proposals_dir(netdir: Path) -> Path:
    return netdir / "proposals"


def joined_dir(netdir: Path, party_id: str) -> Path:
    return netdir / "joined" / party_id


def propose(netdir: Path, change: Change, proposer: Signer, *, certificate: bytes = b"") -> Filed:
    """File a change signed by `proposer`; a member proposer's approval is counted at once."""
    manifest = network.read(netdir)
    proposal = Proposal(
        network=manifest.network, applies_to=manifest.version, proposed_by=proposer.party_id, change=change
    )
    signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), proposer.signing_key)
    governance.open_proposal(signed, manifest)  # the proposer is listed (or is the joiner)
    candidate = governance.apply_change(manifest, change)
    envelope = dsse.Envelope(MANIFEST_PAYLOAD_TYPE, candidate.canonical_bytes(), ())
    if change.action == "charter":
        # Leaving the founding phase is the one step the founding key also signs.
        envelope = dsse.add_signature(envelope, network.coordinator_identity(netdir).signing_key)
    pid = governance.proposal_id(signed)
    _save(netdir, pid, signed, envelope, certificate)
    if proposer.party_id in {p.id for p in manifest.members}:
        return approve(netdir, pid, proposer)
    return status(netdir, pid)


def propose_join(netdir: Path, request: JoinRequest, joiner: Signer) -> Filed:
    """File an authority's request to join, signed with its own new key. The certificate is made
    now, so that members approve the exact certificate the manifest will list; the node gets it
    only at quorum, and until then it opens no door (nodes trust only listed fingerprints)."""
    ca_key, ca_cert = network.load_ca(netdir)
    tls_key = load_pem_public_key(request.tls_public_key_pem.encode())
    if not isinstance(tls_key, ec.EllipticCurvePublicKey):
        raise InvalidRequest("the node's TLS key must be an EC key")
    cert = pki.issue_certificate(
        ca_key,
        ca_cert,
        party_id=request.party_id,
        public_key=tls_key,
        server=True,
        hosts=(request.endpoint.rsplit(":", 1)[0].strip("[]"),),
    )
    party = Party(
        id=request.party_id,
        name=request.name,
        roles=(MEMBER_AUTHORITY,),
        signing_key=request.signing_key,
        cert_fingerprint=pki.fingerprint(cert),
        endpoint=request.endpoint,
        population=request.population,
    )
    return propose(netdir, Change(action="add-member", party=party), joiner, certificate=pki.cert_pem(cert))


def charter(netdir: Path, proposer: Signer, rules: Governance | None = None) -> Filed:
    """Propose leaving the founding phase: from the charter on, members govern. Every member
    authority must approve it; the current policy moves into the manifest."""
    policy = network.read_policy(netdir).source.decode("utf-8")
    return propose(netdir, Change(action="charter", governance=rules or Governance(), policy=policy), proposer)


def approve(netdir: Path, pid: str, approver: Signer) -> Filed:
    """Sign the candidate of proposal `pid` with a member's key, after checking that it is exactly
    the proposed change applied to the current version; publish it if that makes a quorum."""
    manifest = network.read(netdir)
    signed, envelope, certificate = _load(netdir, pid)
    proposal = governance.open_proposal(signed, manifest)
    if proposal.applies_to != manifest.version:
        raise InvalidRequest(
            f"proposal {pid} applies to version {proposal.applies_to}, "
            f"the network is at {manifest.version}: propose again"
        )
    expected = governance.apply_change(manifest, proposal.change)
    if envelope.payload != expected.canonical_bytes():
        raise InvalidRequest(f"proposal {pid}'s candidate manifest is not the change it describes")
    charter_members = {p.id for p in expected.members} if proposal.change.action == "charter" else set()
    if approver.party_id not in {p.id for p in manifest.members} | charter_members:
        raise NotPermitted(f"only a member authority may approve; {approver.party_id} is not one")
    if approver.party_id not in governance.signers(_voters(manifest, proposal), envelope):
        envelope = dsse.add_signature(envelope, approver.signing_key)
        _save(netdir, pid, signed, envelope, certificate)
    return publish_if_ready(netdir, pid)


def publish_if_ready(netdir: Path, pid: str) -> Filed:
    filed = status(netdir, pid)
    if filed.published or len(filed.approvals) < filed.needed:
        return filed
    manifest = network.read(netdir)
    _, envelope, certificate = _load(netdir, pid)
    governance.verify_step(manifest, envelope, network.root_key(netdir))  # what every node will check
    if filed.proposal.change.action == "add-member" and certificate:
        party = filed.proposal.change.party
        assert party is not None
        folder = joined_dir(netdir, party.id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tls.crt").write_bytes(certificate)
        (folder / "ca.crt").write_bytes((netdir / "ca" / "ca.crt").read_bytes())
    publish_manifest(network.manifest_path(netdir), envelope)
    if filed.candidate.governed:
        # Founding-phase readers of policy.json see the same bytes; nodes read the manifest's.
        network.write_policy_file(netdir, filed.candidate.policy.encode())
    network.read(netdir)
    return status(netdir, pid)


def status(netdir: Path, pid: str) -> Filed:
    manifest = network.read(netdir)
    signed, envelope, _ = _load(netdir, pid)
    proposal = Proposal.model_validate_json(signed.payload)
    candidate = governance.parse_unverified(envelope)
    published = manifest.version >= candidate.version and any(
        env.payload == envelope.payload for _, env in network.history(netdir)
    )
    base = _base(netdir, proposal.applies_to)
    voters = _voters(base, proposal)
    if proposal.change.action == "charter":
        needed = len(candidate.members)
    elif base.governance is None:
        needed = 0
    else:
        loosens = governance.policy_loosens(base.policy, candidate.policy)
        needed = base.governance.required(len(base.members), loosens=loosens)
    approvals = tuple(governance.signers(voters, envelope))
    return Filed(pid, proposal, candidate, approvals, needed, published)


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


def _voters(base: Manifest, proposal: Proposal) -> Manifest:
    # A charter is signed by the members it lists; any other change by the members before it.
    if proposal.change.action == "charter":
        return governance.apply_change(base, proposal.change)
    return base


def _save(netdir: Path, pid: str, signed: dsse.Envelope, candidate: dsse.Envelope, certificate: bytes) -> None:
    folder = proposals_dir(netdir)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "id": pid,
        "proposal": signed.to_json(),
        "manifest": candidate.to_json(),
        "certificate": certificate.decode() if certificate else "",
    }
    tmp = folder / f"{pid}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(folder / f"{pid}.json")


def _load(netdir: Path, pid: str) -> tuple[dsse.Envelope, dsse.Envelope, bytes]:
    if not pid.isalnum():
        raise InvalidRequest("a proposal id is hex")
    try:
        record = json.loads((proposals_dir(netdir) / f"{pid}.json").read_text())
    except FileNotFoundError:
        raise NotFound(f"no proposal {pid}") from None
    certificate = str(record.get("certificate", "")).encode()
    return dsse.Envelope.from_json(record["proposal"]), dsse.Envelope.from_json(record["manifest"]), certificate

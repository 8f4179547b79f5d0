"""A principal's kit: what a CAG chair or a board member needs to ask the network, and nothing else.

    KIT/kit.toml                 the principal it is for, the person's name, the network
    KIT/network.toml             the network's name and the founding coordinator key (public)
    KIT/manifest.json, manifests/, policy.json   the public files, verified from version 1
    KIT/ca/ca.crt                the network CA certificate (never its key)
    KIT/principals/ID/           the principal's own keys and certificate

A kit is laid out as a network folder with only these files, so every command that takes
`--network NETDIR` takes `--kit KIT`; it holds no `ca/ca.key`, no coordinator key and no other
party's keys. Before each use its manifest chain is brought up to date from the coordinator's
Governance Manifest RPC, which every listed principal may call, and verified link by link.

A kit is made where it is used (`cagnet kit join`, `coordinator.onboarding.person`), or, on one
machine running a demo or a test network, exported from the network folder (`export`). Its holder
rotates its own key from it (`rotate_key`): the next key is made beside the current one, the
rotation is proposed signed with the current key, members approve it, and the kit switches to the
new key the first time it is used after a manifest it has verified lists it.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from coordinator import network
from shared import dsse, governance, keys
from shared.channel import coordinator_endpoints
from shared.errors import InvalidRequest, Unavailable
from shared.governance import Change, Filed, Proposal
from shared.governance_client import GovernanceClient, sync_manifests
from shared.manifest import ManifestSource, encode_key

PRINCIPAL_FILES = ("signing.key", "tls.key", "tls.crt", "ca.crt")


def export(netdir: Path, principal_id: str, out: Path) -> Path:
    """Write `principal_id`'s kit to `out` (a new or empty folder)."""
    manifest = network.read(netdir)
    party = manifest.party(principal_id)
    if party.endpoint or principal_id == "coordinator":
        raise InvalidRequest(
            f"{principal_id} is not a principal: a kit is for a person who asks, not a party that serves"
        )
    source = network.principal_dir(netdir, principal_id)
    if not (source / "signing.key").exists():
        raise InvalidRequest(f"{netdir} holds no keys for {principal_id}")
    if out.exists() and any(out.iterdir()):
        raise InvalidRequest(f"{out} is not empty: a kit goes in a folder of its own")
    try:
        (out / "principals" / principal_id).mkdir(parents=True)
        for name in PRINCIPAL_FILES:
            shutil.copy2(source / name, out / "principals" / principal_id / name)
        (out / "ca").mkdir()
        shutil.copy2(netdir / "ca" / "ca.crt", out / "ca" / "ca.crt")
        history = governance.history_dir(network.manifest_path(out))
        for listed, envelope in network.history(netdir):
            governance.write_envelope(governance.history_file(history, listed.version), envelope)
        governance.write_envelope(network.manifest_path(out), network.history(netdir)[-1][1])
        shutil.copy2(network.policy_path(netdir), network.policy_path(out))
        shutil.copy2(netdir / "network.toml", out / "network.toml")
        (out / network.KIT).write_text(
            f"principal = {json.dumps(principal_id)}\nname = {json.dumps(party.name)}\n"
            f"network = {json.dumps(manifest.network)}\n"
        )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    network.read(out)  # the kit verifies as its holder will verify it
    return out


def refresh(kit: Path) -> int:
    """Bring the kit's manifest chain up to date from the coordinator (each new version verified
    as the next link); the version held. An unreachable coordinator leaves the kit as it is."""
    identity = network.principal_identity(kit)
    manifests = ManifestSource(network.manifest_path(kit), network.root_key(kit))
    try:
        with GovernanceClient(identity, manifests.current, known=coordinator_endpoints(manifests)) as client:
            return sync_manifests(manifests, client)[0]
    except Unavailable:
        return manifests.current().version


def rotate_key(kit: Path, *, overlap_days: int = 7) -> tuple[Filed, Path, datetime]:
    """Make the kit's principal a next signing key (in the kit, beside the current one) and propose
    it over signed gRPC, signed with the current key; the proposal, where the key waits, and until
    when the old key stays accepted once the rotation is published."""
    refresh(kit)  # the proposal applies to the network's head: bring the chain up to date first
    identity = network.principal_identity(kit)
    manifests = ManifestSource(network.manifest_path(kit), network.root_key(kit))
    head = manifests.current()
    head.party(identity.party_id)  # UnknownIssuer: not listed
    folder = network.principal_dir(kit, identity.party_id)
    new = keys.next_key(folder)
    until = datetime.now(UTC) + timedelta(days=overlap_days)
    change = Change(
        action="rotate-key",
        party_id=identity.party_id,
        signing_key=encode_key(new.public_key()),
        overlap_until_ms=int(until.timestamp() * 1000),
    )
    governance.apply_change(head, change)  # a change that cannot apply is refused here, nothing sent
    proposal = Proposal(network=head.network, applies_to=head.version, proposed_by=identity.party_id, change=change)
    signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), identity.signing_key)
    with GovernanceClient(identity, manifests.current, known=coordinator_endpoints(manifests)) as client:
        filed = client.propose(signed)
    return filed, folder / keys.NEXT, until

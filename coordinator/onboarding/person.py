"""A person joining a network by invite, on the person's own machine (`cagnet kit join`): a CAG
chair or a regional board makes its own keys, and its kit is assembled where it will be used, so
no private key of a person ever exists anywhere else (docs/onboarding.md).

`start` checks the invite and the coordinator before anything is written, then makes the keys in
the kit folder and files the person's signed join request (its id, name and role exactly as the
invite names them) over the onboarding port. `collect` follows it; once admitted (by the
coordinator's operator while the network is being founded, by the members' quorum once governed)
it checks the certificate against the CA and the verified manifest and completes the kit:

    KIT/join.json             the invite code and the onboarding port while the join is open
                              (mode 0600: the invite's secret is in it); removed once joined
    KIT/join-request.json     the signed request, public halves only
    KIT/principals/ID/        the person's signing and TLS keys (made here), then its certificate
    KIT/kit.toml ...          written last, once admitted: the kit `coordinator.kit` describes
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import network
from shared import dsse, governance, keyfile, pki
from shared.errors import InvalidRequest, ManifestRefused, VerificationError
from shared.identity import install_certificate, write_keys
from shared.invite import Invite, decode
from shared.manifest import encode_key
from shared.models import JoinRequest
from shared.onboarding_client import OnboardingClient, PublicFiles, fetch_network_ca
from shared.pb.cagnet.v1 import onboarding_pb2

JOIN_STATE = "join.json"
JOIN_REQUEST = "join-request.json"

Status = onboarding_pb2.JoinStatusResponse


@dataclass(frozen=True)
class Pending:
    """A person's join in progress, as its kit folder records it."""

    kit: Path
    invite: Invite
    coordinator: str
    join_request: dsse.Envelope

    @property
    def request(self) -> JoinRequest:
        return governance.open_join_request(self.join_request)

    @property
    def keys_dir(self) -> Path:
        return network.principal_dir(self.kit, self.request.party_id)


def pending(kit: Path) -> Pending | None:
    """The join this kit folder has open, or None."""
    try:
        state = json.loads((kit / JOIN_STATE).read_text())
    except FileNotFoundError:
        return None
    request = dsse.Envelope.from_json((kit / JOIN_REQUEST).read_text())
    return Pending(kit, decode(state["invite"]), state["coordinator"], request)


def joined(kit: Path) -> bool:
    return (kit / network.KIT).exists()


def start(kit: Path, *, invite: Invite, coordinator: str | None = None) -> tuple[Pending, Status]:
    """Make the person's keys in `kit` and file its join request. Everything the invite and the
    coordinator can refuse is asked before the folder is touched; if filing fails after that, the
    folder is removed again."""
    if not invite.for_person:
        raise InvalidRequest("this invite is for an authority's node: its staff join with `cagnet node join`")
    invite.require_unexpired()
    if kit.exists() and any(kit.iterdir()):
        raise InvalidRequest(f"{kit} is not empty: a kit goes in a folder of its own")
    target = coordinator or invite.endpoint
    ca_pem = fetch_network_ca(target, invite.ca_fingerprint)
    signing = Ed25519PrivateKey.generate()
    tls_key = pki.new_tls_key()
    with OnboardingClient(target, invite, party_id=invite.authority, signing_key=signing, ca_pem=ca_pem) as client:
        files = client.public_files()  # the coordinator checks the invite here: nothing is written yet
        if any(p.id == invite.authority for p in files.manifest.parties):
            raise InvalidRequest(f"{invite.authority} is already listed in {files.manifest.network}")
        request = JoinRequest(
            party_id=invite.authority,
            name=invite.name,
            endpoint="",
            population=0,
            signing_key=encode_key(signing.public_key()),
            tls_public_key_pem=tls_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode(),
            role=invite.role,
        )
        created = not kit.exists()
        try:
            write_keys(network.principal_dir(kit, invite.authority), signing=signing, tls_key=tls_key)
            signed = governance.sign_join_request(request, signing)
            governance.write_envelope(kit / JOIN_REQUEST, signed)
            _write_state(kit, invite, target)
            status = client.file_join(signed)
        except BaseException:
            if created:
                shutil.rmtree(kit, ignore_errors=True)
            else:
                for child in kit.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            raise
    return Pending(kit, invite, target, signed), status


def _write_state(kit: Path, invite: Invite, coordinator: str) -> None:
    fd = os.open(kit / JOIN_STATE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"invite": invite.encode(), "coordinator": coordinator}, f, indent=2)


def collect(
    join: Pending,
    *,
    wait: bool = True,
    poll_s: float = 5.0,
    timeout_s: float = 0.0,
    progress: Callable[[Status], None] = lambda _: None,
) -> bool:
    """Follow the join; once admitted, check what the coordinator hands over and complete the kit
    (True). Without `wait`, one look (False: not yet); `timeout_s` 0 waits without end."""
    signing = keyfile.read_signing_key(join.keys_dir / "signing.key")
    ca_pem = fetch_network_ca(join.coordinator, join.invite.ca_fingerprint)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with OnboardingClient(
        join.coordinator, join.invite, party_id=join.request.party_id, signing_key=signing, ca_pem=ca_pem
    ) as client:
        while True:
            status = client.status()
            progress(status)
            if status.state == "admitted":
                _complete(join, client.public_files(), status)
                return True
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(poll_s)


def _complete(join: Pending, files: PublicFiles, status: Status) -> None:
    """Check the certificate and the listing against the verified chain, then write the kit."""
    request, kit = join.request, join.kit
    listed = next((p for p in files.manifest.parties if p.id == request.party_id), None)
    if listed is None:
        raise ManifestRefused(
            f"the coordinator says admitted, but the verified manifest does not list {request.party_id}"
        )
    if listed.signing_key != request.signing_key or listed.roles != (request.role,):
        raise VerificationError("the manifest lists this person otherwise than its signed request asks")
    certificate = pki.load_cert(bytes(status.certificate))
    ca = pki.load_cert(files.ca_pem)
    if pki.verify_certificate(certificate, ca) != request.party_id:
        raise VerificationError("the certificate is for another party")
    if pki.fingerprint(certificate) != listed.cert_fingerprint:
        raise VerificationError("the certificate is not the one the verified manifest lists")
    public = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public.decode() != request.tls_public_key_pem:
        raise VerificationError("the certificate is not for this kit's TLS key")
    install_certificate(join.keys_dir, cert=certificate, ca_cert=ca)
    (kit / "ca").mkdir(exist_ok=True)
    (kit / "ca" / "ca.crt").write_bytes(files.ca_pem)
    history = governance.history_dir(network.manifest_path(kit))
    for manifest, envelope in files.chain.versions:
        governance.write_envelope(governance.history_file(history, manifest.version), envelope)
    governance.write_envelope(network.manifest_path(kit), files.chain.versions[-1][1])
    network.policy_path(kit).write_bytes(files.policy)
    (kit / "network.toml").write_text(
        f"name = {json.dumps(files.manifest.network)}\ncoordinator_key = {json.dumps(join.invite.coordinator_key)}\n"
    )
    # Written last: a folder with kit.toml is a kit every query, report and feed command takes.
    (kit / network.KIT).write_text(
        f"principal = {json.dumps(request.party_id)}\nname = {json.dumps(request.name)}\n"
        f"network = {json.dumps(files.manifest.network)}\n"
    )
    network.read(kit)  # the kit verifies as its holder will verify it
    network.read_policy(kit)
    (kit / JOIN_STATE).unlink()

"""Joining a governed network over the wire, from the joining authority's side (docs/onboarding.md).

`start` checks the invite and the coordinator before anything is written (an expired invite, one
for another network or one already used is refused with nothing on disk), then makes the node's
folder: its keys (signing, TLS, and an X25519 key the linkage key is sealed to), the network's
public files as the verified chain gives them, its configuration and its signed join request,
which it files with the coordinator. `collect` follows the join and, once admitted (by the members'
quorum, or while the network is being founded by the coordinator's operator) and a member has
sealed the network linkage key to it, checks the certificate against the CA and the verified
manifest, opens the linkage key and completes the node. The first founding member is sealed
nothing: it makes the linkage key itself and seals it to the founders after it.

    NODEDIR/join.json         the invite code and the onboarding port, while the join is open
                              (mode 0600: the invite's secret is in it); removed once joined
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.answers import linkage
from node.config import CONFIG, complete_join, init_node, load_config
from shared import dsse, governance, keyfile, pki, sealing, vocabulary
from shared.authorities import register_of
from shared.errors import InvalidRequest, ManifestRefused, VerificationError
from shared.identity import SEALING_KEY, write_sealing_key
from shared.invite import Invite, decode
from shared.manifest import Manifest, ManifestSource
from shared.onboarding_client import OnboardingClient, PublicFiles, fetch_network_ca
from shared.pb.cagnet.v1 import onboarding_pb2
from shared.policy import PolicySource
from shared.serde import envelope_from_proto

JOIN_STATE = "join.json"
JOIN_REQUEST = "join-request.json"
NETWORK = "network"  # the node's own copy of the network's public files

Status = onboarding_pb2.JoinStatusResponse


@dataclass(frozen=True)
class Pending:
    """A join in progress, as the node's folder records it."""

    nodedir: Path
    invite: Invite
    coordinator: str
    join_request: dsse.Envelope

    @property
    def party_id(self) -> str:
        return governance.open_join_request(self.join_request).party_id


def pending(nodedir: Path) -> Pending | None:
    """The join this folder has open, or None."""
    try:
        state = json.loads((nodedir / JOIN_STATE).read_text())
    except FileNotFoundError:
        return None
    request = dsse.Envelope.from_json((nodedir / JOIN_REQUEST).read_text())
    return Pending(nodedir, decode(state["invite"]), state["coordinator"], request)


def _write_public_files(nodedir: Path, files: PublicFiles) -> Path:
    folder = nodedir / NETWORK
    for manifest, envelope in files.chain.versions:
        governance.write_envelope(
            governance.history_file(governance.history_dir(folder / "manifest.json"), manifest.version), envelope
        )
    governance.write_envelope(folder / "manifest.json", files.chain.versions[-1][1])
    (folder / "policy.json").write_bytes(files.policy)
    return folder / "manifest.json"


def _check_policy(manifest_path: Path, coordinator_key: str) -> None:
    """The policy file verifies as a node will verify it when it starts."""
    root = dsse.load_public_key(base64.b64decode(coordinator_key))
    manifests = ManifestSource(manifest_path, root)
    PolicySource(manifest_path.parent / "policy.json", root, manifests=manifests).current()


def start(
    nodedir: Path, *, invite: Invite, authority: str, endpoint: str, coordinator: str | None = None
) -> tuple[Pending, Status]:
    """Make the node and file its join request. Everything the invite and the coordinator can
    refuse is asked before the folder is touched; if filing fails after that, the folder is
    removed again, so a refused join leaves nothing behind."""
    if invite.for_person:
        raise InvalidRequest(f"this invite is for a person ({invite.authority}): they join with `cagnet kit join`")
    invite.require_unexpired()
    if invite.authority and invite.authority != authority:
        raise InvalidRequest(f"the invite is for authority {invite.authority}, not {authority}")
    if not vocabulary.GSS_UPPER_TIER.match(authority):
        raise InvalidRequest(f"{authority!r} is not an English upper-tier authority's GSS code")
    if nodedir.exists() and any(nodedir.iterdir()):
        raise InvalidRequest(f"{nodedir} is not empty: a joining node needs a folder of its own")
    target = coordinator or invite.endpoint
    ca_pem = fetch_network_ca(target, invite.ca_fingerprint)
    signing = Ed25519PrivateKey.generate()
    tls_key = pki.new_tls_key()
    with OnboardingClient(target, invite, party_id=authority, signing_key=signing, ca_pem=ca_pem) as client:
        files = client.public_files()  # the coordinator checks the invite here: nothing is written yet
        register = register_of(files.manifest)  # the network's signed authority register
        try:
            info = register.authority(authority)
        except KeyError as exc:
            raise InvalidRequest(str(exc.args[0])) from None
        if any(p.id == authority for p in files.manifest.parties):
            raise InvalidRequest(f"{info.name} ({authority}) is already listed in {files.manifest.network}")
        created = not nodedir.exists()
        try:
            manifest_path = _write_public_files(nodedir, files)
            _check_policy(manifest_path, invite.coordinator_key)
            request = init_node(
                nodedir,
                authority=authority,
                endpoint=endpoint,
                manifest_path=manifest_path,
                await_linkage_key=True,
                keys=(signing, tls_key),
                register=register,
            )
            sealing_key = write_sealing_key(nodedir / "identity")
            request = request.model_copy(update={"sealing_key": sealing.public_key_b64(sealing_key.public_key())})
            signed = governance.sign_join_request(request, signing)
            governance.write_envelope(nodedir / JOIN_REQUEST, signed)
            _write_state(nodedir, invite, target)
            status = client.file_join(signed)
        except BaseException:
            if created:
                shutil.rmtree(nodedir, ignore_errors=True)
            else:
                for child in nodedir.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            raise
    return Pending(nodedir, invite, target, signed), status


def _write_state(nodedir: Path, invite: Invite, coordinator: str) -> None:
    path = nodedir / JOIN_STATE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
    """Follow the join; once admitted with the linkage key sealed to it, complete the node and
    return True. Without `wait`, one look (False: not yet); `timeout_s` 0 waits without end."""
    nodedir = join.nodedir
    signing = keyfile.read_signing_key(nodedir / "identity" / "signing.key")
    ca_pem = fetch_network_ca(join.coordinator, join.invite.ca_fingerprint)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with OnboardingClient(
        join.coordinator, join.invite, party_id=join.party_id, signing_key=signing, ca_pem=ca_pem
    ) as client:
        while True:
            status = client.status()
            progress(status)
            if status.state == "admitted" and status.HasField("sealed_linkage_key"):
                _complete(join, client.public_files(), status)
                return True
            if status.state == "admitted":
                files = client.public_files()
                if first_member(files.manifest, join.party_id):
                    _complete(join, files, status)
                    return True
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(poll_s)


def first_member(manifest: Manifest, party_id: str) -> bool:
    """Whether `party_id` is the network's first member authority (founding phase, no other member
    listed in the verified chain): it makes the network linkage key itself, on its own node, and
    seals it to the members after it; nobody else ever held it."""
    return not manifest.governed and [p.id for p in manifest.members] == [party_id]


def _complete(join: Pending, files: PublicFiles, status: Status) -> None:
    """Check what the coordinator hands over against the verified chain, then install it."""
    nodedir, request = join.nodedir, governance.open_join_request(join.join_request)
    manifest = files.manifest
    listed = next((p for p in manifest.members if p.id == request.party_id), None)
    if listed is None:
        raise ManifestRefused(
            f"the coordinator says admitted, but the verified manifest does not list {request.party_id}"
        )
    certificate = pki.load_cert(bytes(status.certificate))
    ca = pki.load_cert(files.ca_pem)
    if pki.verify_certificate(certificate, ca) != request.party_id:
        raise VerificationError("the certificate is for another party")
    if pki.fingerprint(certificate) != listed.cert_fingerprint:
        raise VerificationError("the certificate is not the one the quorum-signed manifest lists")
    public = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public.decode() != request.tls_public_key_pem:
        raise VerificationError("the certificate is not for this node's TLS key")
    key = None  # the first member makes it (`first_member`)
    if status.HasField("sealed_linkage_key"):
        key = sealing.unseal(
            envelope_from_proto(status.sealed_linkage_key),
            manifest,
            private_key=keyfile.read_x25519_key(nodedir / "identity" / SEALING_KEY),
            join_request=join.join_request,
        )
    elif not first_member(manifest, request.party_id):
        raise VerificationError("admitted, but no member has sealed the network linkage key to this node yet")
    _write_public_files(nodedir, files)
    linkage.install_linkage_key(nodedir / "identity" / "linkage.key", key)
    complete_join(
        nodedir, cert_pem=bytes(status.certificate), ca_pem=files.ca_pem, coordinator_key=join.invite.coordinator_key
    )
    load_config(nodedir)
    (nodedir / JOIN_STATE).unlink()


def joined(nodedir: Path) -> bool:
    try:
        return "coordinator_key" in (nodedir / CONFIG).read_text()
    except FileNotFoundError:
        return False

"""Invites and join requests filed over the onboarding port, in the network folder.

    NETDIR/invites/<id>.json      one invite: the SHA-256 of its secret (never the secret), the
                                  network, the authority it is for, its expiry and, once used,
                                  the joiner's key and request it is bound to
    NETDIR/joins/<party>.json     a join request filed with an invite, waiting for a sponsor
    NETDIR/joins/<party>.sealed.json  the network linkage key sealed to the joiner by a member
                                  (`shared.sealing`): kept and handed on, never readable here

An invite admits one joiner: the first join request filed with it binds it to that request's key,
and from then on only that key may use it (to follow the join and collect its certificate). The
expiry bounds when a join may be filed, not how long the members take. The rules every onboarding
call is checked against are here; `coordinator.onboarding_server` serves them (docs/onboarding.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path

from coordinator import network
from coordinator.governance import proposals as gov
from shared import dsse, governance, pki, sealing
from shared.errors import InvalidRequest, InviteExpired, InviteRefused, InviteUsed, NotPermitted
from shared.invite import Invite, new_secret
from shared.manifest import Party
from shared.models import JoinRequest

FILED, PROPOSED, ADMITTED = "filed", "proposed", "admitted"


def invites_dir(netdir: Path) -> Path:
    return netdir / "invites"


def joins_dir(netdir: Path) -> Path:
    return netdir / "joins"


def _write_json(path: Path, record: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def create_invite(
    netdir: Path,
    *,
    endpoint: str,
    authority: str = "",
    valid_days: float = 14,
    now: float | None = None,
    principal: str = "",
    role: str = "",
    name: str = "",
) -> Invite:
    """A new invite for the network in `netdir`; only the digest of its secret is kept here. For an
    authority's node (`authority`: the one that may use it, "" for any), or for a person
    (`principal`, `role`, `name`: who it is, what it may do, the name the manifest will show)."""
    if valid_days <= 0:
        raise InvalidRequest("an invite must be valid for some time (--valid-days above 0)")
    manifest = network.read(netdir)
    if principal or role:
        if authority:
            raise InvalidRequest("an invite is for an authority's node or for a person, not both")
        network.check_principal(netdir, party_id=principal, role=role)
        authority, name = principal, name or principal
    if authority and any(p.id == authority for p in manifest.parties):
        raise InvalidRequest(f"{authority} is already listed in the network")
    created = time.time() if now is None else now
    invite = Invite(
        network=manifest.network,
        endpoint=endpoint,
        coordinator_key=network.coordinator_key_b64(netdir),
        ca_fingerprint=manifest.ca_fingerprint,
        expires_at=int(created + valid_days * 86400),
        secret=new_secret(),
        authority=authority,
        role=role,
        name=name if role else "",
    )
    invite.encode()  # a name or endpoint too long for a code is refused before anything is kept
    _write_json(
        invites_dir(netdir) / f"{invite.invite_id}.json",
        {
            "id": invite.invite_id,
            "secret_sha256": invite.secret_digest,
            "network": invite.network,
            "authority": authority,
            "role": invite.role,
            "name": invite.name,
            "endpoint": endpoint,
            "created_at": int(created),
            "expires_at": invite.expires_at,
            "signing_key": "",
            "party_id": "",
        },
    )
    return invite


def list_invites(netdir: Path) -> list[dict[str, object]]:
    """Every invite made here (never a secret: only its digest is kept), oldest first."""
    records = [json.loads(p.read_text()) for p in invites_dir(netdir).glob("*.json")]
    return sorted(records, key=lambda r: (int(r["created_at"]), str(r["id"])))


def revoke_invite(netdir: Path, invite_id: str) -> None:
    """Refuse every further use of an invite (a join already filed with it stays filed)."""
    path = invites_dir(netdir) / f"{invite_id}.json"
    if not invite_id.isalnum() or not path.exists():
        raise InvalidRequest(f"no invite {invite_id} in {netdir}")
    with gov.exclusive(netdir):
        record = json.loads(path.read_text())
        record["revoked"] = True
        _write_json(path, record)


@dataclass(frozen=True)
class Proof:
    """What an onboarding call shows: the invite's id and secret, the network it names, and the
    joiner's key that signed the call (already verified by the caller of `check`)."""

    invite_id: str
    secret: bytes
    network: str
    signing_key: str


def check(netdir: Path, proof: Proof, *, now: float | None = None) -> dict[str, object]:
    """The invite record `proof` opens, or the typed refusal: another network, unknown or wrong
    secret (InviteRefused), bound to another joiner (InviteUsed), expired (InviteExpired)."""
    if proof.network != network.read(netdir).network:
        raise InviteRefused("the invite is for another network")
    if not proof.invite_id.isalnum() or len(proof.invite_id) != 16:
        raise InviteRefused("unknown invite")
    try:
        record = json.loads((invites_dir(netdir) / f"{proof.invite_id}.json").read_text())
    except FileNotFoundError:
        raise InviteRefused("unknown invite") from None
    secret_digest = hashlib.sha256(proof.secret).hexdigest()
    if not hmac.compare_digest(secret_digest, str(record["secret_sha256"])):
        raise InviteRefused("unknown invite")
    if record.get("revoked"):
        raise InviteRefused("the invite was revoked by the coordinator's operator")
    bound = str(record.get("signing_key", ""))
    if bound:
        if bound != proof.signing_key:
            raise InviteUsed()
        return dict(record)
    if (time.time() if now is None else now) > int(record["expires_at"]):
        raise InviteExpired()
    return dict(record)


def file_join(netdir: Path, proof: Proof, join_request: dsse.Envelope, *, now: float | None = None) -> JoinRequest:
    """File the joiner's signed request and bind the invite to its key; filing the same request
    again changes nothing, a different one with the same invite is refused. A request filed earlier
    for the same authority with another invite is replaced, unless a proposal holds it."""
    request = governance.open_join_request(join_request)
    if request.signing_key != proof.signing_key:
        raise NotPermitted("a joiner files only the join request signed with its own key")
    with gov.exclusive(netdir):
        record = check(netdir, proof, now=now)
        if record.get("authority") and record["authority"] != request.party_id:
            raise InviteRefused(f"the invite is for another authority, not {request.party_id}")
        _matches_invite(record, request)
        if record.get("party_id") and record["party_id"] != request.party_id:
            raise InviteUsed()
        manifest = network.read(netdir)
        if any(p.id == request.party_id for p in manifest.parties):
            raise InvalidRequest(f"{request.party_id} is already listed")
        path = joins_dir(netdir) / f"{request.party_id}.json"
        if path.exists():
            held = dsse.Envelope.from_json(json.loads(path.read_text())["join_request"])
            if held.payload == join_request.payload:
                return request
            # An earlier attempt with another invite (abandoned, say) gives way to this one,
            # unless members are already voting on it.
            if any(f.join_request is not None and f.join_request.payload == held.payload for f in gov.pending(netdir)):
                raise InvalidRequest(f"members are voting on an earlier join request for {request.party_id}")
        if not request.sealing_key and not request.role:
            raise InvalidRequest("a join over the wire lists a sealing key for the network linkage key")
        _write_json(
            path, {"join_request": join_request.to_json(), "invite": proof.invite_id, "filed_at": int(time.time())}
        )
        record.update(signing_key=proof.signing_key, party_id=request.party_id)
        _write_json(invites_dir(netdir) / f"{proof.invite_id}.json", record)
        return request


def _matches_invite(record: dict[str, object], request: JoinRequest) -> None:
    """A person's request asks for exactly what it was invited as (its id, role and name) and
    serves nothing; an authority's node asks for no principal role."""
    role = str(record.get("role") or "")
    if not role:
        if request.role:
            raise InviteRefused("the invite is for an authority's node, not for a person")
        return
    if (request.party_id, request.role, request.name) != (record["authority"], role, record.get("name")):
        raise InviteRefused(f"the invite is for {record['authority']} as {role}, and the request asks otherwise")
    if request.endpoint or request.sealing_key or request.population:
        raise InvalidRequest("a person's join request lists no endpoint, population or sealing key")


def filed_request(netdir: Path, party_id: str) -> dsse.Envelope | None:
    try:
        return dsse.Envelope.from_json(json.loads((joins_dir(netdir) / f"{party_id}.json").read_text())["join_request"])
    except FileNotFoundError:
        return None


def awaiting_sponsor(netdir: Path) -> list[dsse.Envelope]:
    """Filed join requests of authorities not yet listed and with no open proposal."""
    manifest = network.read(netdir)
    listed = {p.id for p in manifest.parties}
    proposed = {f.join_request.payload for f in gov.pending(netdir) if f.join_request is not None}
    waiting = []
    for path in sorted(joins_dir(netdir).glob("*.json")):
        if path.name.endswith(".sealed.json") or path.stem in listed:
            continue
        envelope = dsse.Envelope.from_json(json.loads(path.read_text())["join_request"])
        if envelope.payload not in proposed:
            waiting.append(envelope)
    return waiting


def awaiting_key(netdir: Path) -> list[dsse.Envelope]:
    """Filed join requests of parties the manifest now lists as member authorities (founding
    members the operator admitted, joiners a quorum admitted) with no linkage key sealed to them
    yet: a member seals it (`cagnet network seal-linkage-key`)."""
    members = {p.id for p in network.read(netdir).members} - {_key_maker(netdir)}
    waiting = []
    for path in sorted(joins_dir(netdir).glob("*.json")):
        if path.name.endswith(".sealed.json") or path.stem not in members:
            continue
        envelope = dsse.Envelope.from_json(json.loads(path.read_text())["join_request"])
        request = governance.open_join_request(envelope)
        if request.sealing_key and _sealed(netdir, path.stem, envelope) is None:
            waiting.append(envelope)
    return waiting


def _key_maker(netdir: Path) -> str | None:
    """The first founder, which made the network linkage key on its own node (`node.network.
    onboarding.first_member`: the only member authority the first version listing any names): it
    waits for no one's key."""
    for manifest, _ in network.history(netdir):
        if manifest.members:
            only = len(manifest.members) == 1 and not manifest.governed
            return manifest.members[0].id if only else None
    return None


def admit_founding(netdir: Path, party_id: str) -> tuple[JoinRequest, int]:
    """The coordinator's operator admits a join request filed over the onboarding port while the
    network is being founded: the certificate is issued for the TLS key the joiner made, the
    manifest lists it (signed by the founding key, as every founding-phase version), and the
    joiner collects both over the onboarding port. Once governed, a member sponsors instead and a
    quorum decides (`propose-join`). Returns the request and the manifest version listing it."""
    with gov.exclusive(netdir):
        if network.read(netdir).governed:
            raise InvalidRequest(
                "the network is governed by its members: a member sponsors the join"
                f" (`cagnet network propose-join {party_id} --node NODEDIR`) and a quorum approves"
            )
        if any(p.id == party_id for p in network.read(netdir).parties):
            raise InvalidRequest(f"{party_id} is already listed")
        envelope = filed_request(netdir, party_id)
        if envelope is None:
            raise InvalidRequest(f"no join request from {party_id} is filed over the onboarding port")
        request = governance.open_join_request(envelope)
        cert, ca_cert, manifest = network.admit(netdir, request)
        folder = gov.joined_dir(netdir, party_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tls.crt").write_bytes(pki.cert_pem(cert))
        (folder / "ca.crt").write_bytes(pki.cert_pem(ca_cert))
        return request, manifest.version


@dataclass(frozen=True)
class JoinState:
    state: str
    proposal_id: str = ""
    approvals: tuple[str, ...] = ()
    needed: int = 0
    certificate: bytes = b""
    sealed: dsse.Envelope | None = None
    manifest_version: int = 0


def state(netdir: Path, proof: Proof) -> JoinState:
    """How far the join filed with `proof`'s invite is, and (admitted) the certificate listed for it."""
    record = check(netdir, proof)
    party_id = str(record.get("party_id", ""))
    request = filed_request(netdir, party_id) if party_id else None
    if request is None:
        raise InvalidRequest("no join request is filed with this invite yet")
    manifest = network.read(netdir)
    sealed = _sealed(netdir, party_id, request)
    listed = next((p for p in manifest.parties if p.id == party_id), None)
    cert_path = gov.joined_dir(netdir, party_id) / "tls.crt"
    if listed is not None and cert_path.exists():
        certificate = cert_path.read_bytes()
        if pki.fingerprint(pki.load_cert(certificate)) == listed.cert_fingerprint:
            return JoinState(ADMITTED, certificate=certificate, sealed=sealed, manifest_version=manifest.version)
    for filed in gov.pending(netdir):
        if filed.join_request is not None and filed.join_request.payload == request.payload:
            return JoinState(
                PROPOSED,
                proposal_id=filed.id,
                approvals=filed.approvals,
                needed=filed.needed,
                sealed=sealed,
                manifest_version=manifest.version,
            )
    return JoinState(FILED, sealed=sealed, manifest_version=manifest.version)


def _sealed(netdir: Path, party_id: str, request: dsse.Envelope) -> dsse.Envelope | None:
    try:
        envelope = dsse.Envelope.from_json((joins_dir(netdir) / f"{party_id}.sealed.json").read_text())
    except FileNotFoundError:
        return None
    # Only the one sealed for this exact request: an older request's key would not open.
    return envelope if sealing.parse(envelope).join_request_digest == sealing.join_request_digest(request) else None


def store_sealed(netdir: Path, member: Party, envelope: dsse.Envelope) -> str:
    """Keep the linkage key `member` sealed for a filed joiner. The coordinator checks only that
    the member signed it and that it names a join request filed here; it cannot open it."""
    sealed = sealing.parse(envelope)
    if sealed.sealed_by != member.id:
        raise NotPermitted("a member files only a linkage key it sealed itself")
    dsse.verify(envelope, member.public_key)
    with gov.exclusive(netdir):
        request = filed_request(netdir, sealed.party_id)
        if request is None:
            raise InvalidRequest(f"no join request from {sealed.party_id} is filed over the onboarding port")
        if sealed.join_request_digest != sealing.join_request_digest(request):
            raise InvalidRequest("the sealed key is bound to another join request than the one filed")
        path = joins_dir(netdir) / f"{sealed.party_id}.sealed.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(envelope.to_json(), indent=2) + "\n")
        tmp.replace(path)
    return sealed.party_id


def public_files(netdir: Path) -> tuple[list[dsse.Envelope], bytes, bytes]:
    """Every published manifest version, policy.json and the CA certificate: the public files."""
    envelopes = [envelope for _, envelope in network.history(netdir)]
    return envelopes, network.policy_path(netdir).read_bytes(), (netdir / "ca" / "ca.crt").read_bytes()

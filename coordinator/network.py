"""Setting up a network folder and admitting parties to it.

NETDIR holds the network CA, the coordinator's identity, principals' identities (the CAG chair
and any others made here), `manifest.json`, the manifest signed by the coordinator's key, and
`policy.json`, the signed network policy every node applies.
In the founding phase the operator admits parties and signs with the founding coordinator key;
once members adopt a charter, every change is a proposal that a quorum of members approves
(`coordinator.governance`, docs/governance.md) and the functions here that sign alone refuse.
"""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from shared import dsse, keyfile, keys, pki
from shared.authorities import Register, parse_register, register_of, shipped_register
from shared.errors import InvalidRequest, ManifestRefused
from shared.governance import with_reference
from shared.identity import Identity, create_identity
from shared.manifest import (
    CAG_CHAIR,
    COORDINATOR,
    MEMBER_AUTHORITY,
    REGIONAL_BOARD,
    Manifest,
    ManifestSource,
    Party,
    encode_key,
    write_manifest,
)
from shared.models import JoinRequest
from shared.policy import Policy, PolicySource, default_policy_toml, parse_policy, sign_policy
from shared.reference import ReferenceData, reference_of

MANIFEST = "manifest.json"
POLICY = "policy.json"


def _host(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0].strip("[]")


def manifest_path(netdir: Path) -> Path:
    return netdir / MANIFEST


def policy_path(netdir: Path) -> Path:
    return netdir / POLICY


def rounding_key_path(netdir: Path) -> Path:
    """The coordinator's own rounding key, for the few counts it makes itself (repeat movers)."""
    return netdir / "coordinator" / "rounding.key"


def principal_dir(netdir: Path, principal_id: str) -> Path:
    return netdir / "principals" / principal_id


def init_network(
    netdir: Path,
    *,
    name: str,
    coordinator_endpoint: str = "127.0.0.1:7100",
    authorities: Path | None = None,
    chair: bool = True,
) -> Manifest:
    """A new network: CA, coordinator identity, a cag-chair principal (unless not `chair`: the
    chair then joins by invite with keys of its own) and version 1 of the manifest, whose
    authority register is the shipped 2011 list, or the register file `authorities`."""
    if manifest_path(netdir).exists():
        raise InvalidRequest(f"{netdir} already holds a network; choose an empty folder")
    # Checked before anything is written: a bad register leaves no half-made network behind.
    register = shipped_register() if authorities is None else read_register_file(authorities)
    netdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = pki.create_ca(name)
    (netdir / "ca").mkdir(exist_ok=True)
    keyfile.write_private_key(netdir / "ca" / "ca.key", ca_key)
    (netdir / "ca" / "ca.crt").write_bytes(pki.cert_pem(ca_cert))

    coordinator = create_identity(
        netdir / "coordinator",
        party_id=COORDINATOR,
        ca_key=ca_key,
        ca_cert=ca_cert,
        server=True,
        hosts=(_host(coordinator_endpoint),),
    )
    # The coordinator's public key is pinned here: everything else in NETDIR is checked against it.
    (netdir / "network.toml").write_text(
        f"name = {json.dumps(name)}\ncoordinator_key = {json.dumps(encode_key(coordinator.public_key))}\n"
    )
    parties = [_party(coordinator, name="Coordinator", roles=(COORDINATOR,), endpoint=coordinator_endpoint)]
    if chair:
        made = create_identity(
            principal_dir(netdir, CAG_CHAIR), party_id=CAG_CHAIR, ca_key=ca_key, ca_cert=ca_cert, server=False
        )
        parties.append(_party(made, name="CAG chair", roles=(CAG_CHAIR,)))
    manifest = Manifest(
        network=name,
        version=1,
        ca_fingerprint=pki.fingerprint(ca_cert),
        coordinator_endpoint=coordinator_endpoint,
        parties=tuple(parties),
        authorities=register.to_csv(),
    )
    write_manifest(manifest_path(netdir), manifest, coordinator.signing_key)
    _write_policy(netdir, default_policy_toml(), coordinator)
    return manifest


def read_register_file(path: Path) -> Register:
    """An authority register file (the shipped list's format), checked row by row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path}: cannot read the authority register ({exc.__class__.__name__})") from None
    return parse_register(text, source=str(path))


def read_register(netdir: Path) -> Register:
    """The network's authority register, from its current verified manifest."""
    return register_of(read(netdir))


def set_authority(
    netdir: Path,
    code: str,
    *,
    population: int | None = None,
    year: int | None = None,
    districts: dict[str, str] | None = None,
) -> Manifest:
    """Correct one authority in the register (founding phase: a new version signed by the founding
    key; once governed, `cagnet network propose-authority`). Checked before anything is written."""
    _founding(netdir, "a register correction")
    manifest = read(netdir)
    corrected = register_of(manifest).corrected(code, population=population, year=year, districts=districts or {})
    manifest = manifest.model_copy(update={"version": manifest.version + 1, "authorities": corrected.to_csv()})
    write_manifest(manifest_path(netdir), manifest, coordinator_identity(netdir).signing_key)
    return manifest


def read_reference_file(path: Path) -> str:
    """A reference data CSV's text (UTF-8, with or without a byte-order mark)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path}: cannot read the reference data ({exc.__class__.__name__})") from None


def set_reference(netdir: Path, text: str, *, source: str) -> Manifest:
    """Add or replace need indicators and grant allocations (founding phase: a new version signed by
    the founding key; once governed, `cagnet network propose-reference`). Every row is checked
    before anything is written."""
    _founding(netdir, "a reference data change")
    manifest = read(netdir)
    reference = with_reference(manifest, text, source=source)
    manifest = manifest.model_copy(update={"version": manifest.version + 1, "reference": reference})
    write_manifest(manifest_path(netdir), manifest, coordinator_identity(netdir).signing_key)
    return manifest


def read_reference(netdir: Path) -> ReferenceData:
    """The network's reference data, from its current verified manifest."""
    return reference_of(read(netdir))


def read_policy(netdir: Path) -> Policy:
    """The network policy: the governed manifest's, or (founding phase) the file signed by the
    pinned coordinator key."""
    return PolicySource(policy_path(netdir), root_key(netdir), manifests=_source(netdir)).current()


def _founding(netdir: Path, what: str) -> None:
    if read(netdir).governed:
        raise InvalidRequest(f"the network is governed by its members: {what} needs a proposal (docs/governance.md)")


def set_policy(netdir: Path, policy_bytes: bytes) -> Policy:
    """Sign and publish a new policy; its revision must be above the current one, so that a
    node that sees two can tell which is newer. Nodes pick it up when the file changes."""
    _founding(netdir, "a policy change")
    new = parse_policy(policy_bytes)
    current = read_policy(netdir)
    if new.revision <= current.revision:
        raise InvalidRequest(
            f"policy field revision: must be above the current revision {current.revision} (got {new.revision})"
        )
    _write_policy(netdir, policy_bytes, coordinator_identity(netdir))
    return new


def write_policy_file(netdir: Path, policy_bytes: bytes) -> None:
    """policy.json for founding-phase readers; once governed, nodes take the manifest's policy."""
    _write_policy(netdir, policy_bytes, coordinator_identity(netdir))


def _write_policy(netdir: Path, policy_bytes: bytes, coordinator: Identity) -> None:
    # The founding key signs the file; once governed it only mirrors the quorum-signed manifest.
    envelope = sign_policy(policy_bytes, coordinator.signing_key)
    tmp = policy_path(netdir).with_suffix(".tmp")
    tmp.write_text(json.dumps(envelope, indent=2) + "\n")
    tmp.replace(policy_path(netdir))  # atomic: a node never reads half a policy


def _party(identity: Identity, *, name: str, roles: tuple[str, ...], endpoint: str = "") -> Party:
    return Party(
        id=identity.party_id,
        name=name,
        roles=roles,
        signing_key=encode_key(identity.public_key),
        cert_fingerprint=pki.fingerprint(identity.certificate),
        endpoint=endpoint,
    )


def load_ca(netdir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key, _ = keyfile.read_tls_key(netdir / "ca" / "ca.key")
        cert = pki.load_cert((netdir / "ca" / "ca.crt").read_bytes())
    except FileNotFoundError:
        raise InvalidRequest(f"{netdir} is not a network folder (run `cagnet network init` first)") from None
    return key, cert


def coordinator_identity(netdir: Path) -> Identity:
    return _holder_identity(netdir, netdir / "coordinator", COORDINATOR)


KIT = "kit.toml"


def kit_principal(netdir: Path) -> str | None:
    """The principal a kit (`coordinator.kit`) is for, or None when `netdir` is not a kit."""
    try:
        return str(tomllib.loads((netdir / KIT).read_text())["principal"])
    except FileNotFoundError:
        return None
    except (tomllib.TOMLDecodeError, KeyError):
        raise InvalidRequest(f"{netdir / KIT} is not a cagnet kit file") from None


def principal_identity(netdir: Path, principal_id: str = "") -> Identity:
    """A principal's identity in a network folder or a kit; "" for the kit's own principal (in a
    network folder, the CAG chair)."""
    kit = kit_principal(netdir)
    principal_id = principal_id or kit or CAG_CHAIR
    if kit is not None and principal_id != kit:
        raise InvalidRequest(f"{netdir} is {kit}'s kit: it holds no keys of {principal_id}")
    return _holder_identity(netdir, principal_dir(netdir, principal_id), principal_id)


def _holder_identity(netdir: Path, folder: Path, party_id: str) -> Identity:
    # A rotation waiting for the quorum: switch once the manifest lists the new key (shared/keys.py).
    if (folder / keys.NEXT).exists():
        keys.promote_if_listed(folder, read(netdir), party_id)
    return Identity.load(folder)


def _network_toml(netdir: Path) -> dict[str, object]:
    try:
        return tomllib.loads((netdir / "network.toml").read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"{netdir} is not a network folder (run `cagnet network init` first)") from None


def coordinator_key_b64(netdir: Path) -> str:
    """The pinned public key that signs this network's manifests."""
    return str(_network_toml(netdir)["coordinator_key"])


def network_name(netdir: Path) -> str:
    return str(_network_toml(netdir)["name"])


def root_key(netdir: Path) -> Ed25519PublicKey:
    """The founding coordinator key: the root of the manifest chain (version 1 and the founding phase)."""
    return dsse.load_public_key(base64.b64decode(coordinator_key_b64(netdir)))


_sources: dict[Path, ManifestSource] = {}


def _source(netdir: Path) -> ManifestSource:
    # One verified chain per network folder per process: reading the manifest checks only new versions.
    path = manifest_path(netdir).resolve()
    source = _sources.get(path)
    if source is None:
        source = _sources[path] = ManifestSource(path, root_key(netdir))
    return source


def read(netdir: Path) -> Manifest:
    """The current manifest, verified along its chain from version 1."""
    source = _source(netdir)
    manifest = source.current()
    if source.refused:
        raise ManifestRefused(source.refused)
    return manifest


def history(netdir: Path) -> list[tuple[Manifest, dsse.Envelope]]:
    """Every published version, verified from version 1, oldest first."""
    read(netdir)
    return _source(netdir).history


def party_names(netdir: Path) -> dict[str, str]:
    """Every party id any published version listed, with the name the latest such version gives
    it (a principal's is the person's, e.g. "Jane Smith, Lead Officer"): who an audit entry names."""
    names: dict[str, str] = {}
    for manifest, _ in history(netdir):
        names.update({p.id: p.name for p in manifest.parties})
    return names


def admit(netdir: Path, request: JoinRequest) -> tuple[x509.Certificate, x509.Certificate, Manifest]:
    """Issue the node's certificate and list it as a member authority in a new manifest version
    (founding phase only: a governed network admits by `propose-join` and a quorum)."""
    _founding(netdir, "admitting a member")
    cert, party = member_certificate(netdir, request)
    manifest = read(netdir).with_party(party)
    write_manifest(manifest_path(netdir), manifest, coordinator_identity(netdir).signing_key)
    return cert, load_ca(netdir)[1], manifest


def member_certificate(netdir: Path, request: JoinRequest) -> tuple[x509.Certificate, Party]:
    """A joiner's certificate from the network CA, for the TLS key in its request, and the party
    the manifest will list (with that certificate's fingerprint): a member authority that serves,
    or (a request naming a role: a person who joined with `cagnet kit join`) a principal that
    only asks, with a client certificate."""
    if request.role:
        check_principal(netdir, party_id=request.party_id, role=request.role)
    ca_key, ca_cert = load_ca(netdir)
    tls_key = load_pem_public_key(request.tls_public_key_pem.encode())
    if not isinstance(tls_key, ec.EllipticCurvePublicKey):
        raise InvalidRequest("the joiner's TLS key must be an EC key")
    cert = pki.issue_certificate(
        ca_key,
        ca_cert,
        party_id=request.party_id,
        public_key=tls_key,
        server=not request.role,
        hosts=() if request.role else (_host(request.endpoint),),
    )
    party = Party(
        id=request.party_id,
        name=request.name,
        roles=(request.role,) if request.role else (MEMBER_AUTHORITY,),
        signing_key=request.signing_key,
        cert_fingerprint=pki.fingerprint(cert),
        endpoint=request.endpoint,
        population=request.population,
    )
    return cert, party


# Roles a principal made here may hold: never member-authority (a node joins with its own keys)
# nor coordinator (there is one, made at init).
PRINCIPAL_ROLES = (CAG_CHAIR, REGIONAL_BOARD)


def add_principal(netdir: Path, *, party_id: str, role: str, name: str = "") -> Manifest:
    """A new principal (e.g. a regional housing board): its identity under `principals/<id>/`, a
    client certificate from the network CA, and a new manifest version listing it with `role`
    (founding phase only: once governed, listing a party is a quorum's decision, and
    `make_principal` makes the party for the proposal)."""
    _founding(netdir, "adding a principal")
    manifest = read(netdir).with_party(make_principal(netdir, party_id=party_id, role=role, name=name))
    write_manifest(manifest_path(netdir), manifest, coordinator_identity(netdir).signing_key)
    return manifest


def check_principal(netdir: Path, *, party_id: str, role: str) -> None:
    """A principal's id and role as the network accepts them, and not yet a party in it."""
    if role not in PRINCIPAL_ROLES:
        raise InvalidRequest(f"a principal's role must be one of {', '.join(PRINCIPAL_ROLES)}")
    if not party_id or not all(c.isalnum() or c == "-" for c in party_id):
        raise InvalidRequest("a principal's id is letters, digits and hyphens")
    if any(p.id == party_id for p in read(netdir).parties):
        raise InvalidRequest(f"{party_id} is already a party in this network")


def make_principal(netdir: Path, *, party_id: str, role: str, name: str = "") -> Party:
    """A principal's identity under `principals/<id>/` and the party that would list it (its keys
    made here, on the operator's machine: for one-machine demos and test networks; a person joins
    with `cagnet kit join` and makes its keys on its own)."""
    check_principal(netdir, party_id=party_id, role=role)
    folder = principal_dir(netdir, party_id)
    if folder.exists():
        raise InvalidRequest(f"{folder} already exists")
    ca_key, ca_cert = load_ca(netdir)
    identity = create_identity(folder, party_id=party_id, ca_key=ca_key, ca_cert=ca_cert, server=False)
    return _party(identity, name=name or party_id, roles=(role,))


def set_endpoint(netdir: Path, party_id: str, endpoint: str) -> Manifest:
    """A new manifest version with `party_id` reachable at `endpoint` (nodes pick it up on reload)."""
    manifest = read(netdir)
    party = manifest.party(party_id)
    if party.endpoint == endpoint:
        return manifest
    _founding(netdir, "an endpoint change")
    manifest = manifest.with_party(party.model_copy(update={"endpoint": endpoint}))
    if party_id == COORDINATOR:
        manifest = manifest.model_copy(update={"coordinator_endpoint": endpoint})
    write_manifest(manifest_path(netdir), manifest, coordinator_identity(netdir).signing_key)
    return manifest

"""Founding a network by invite (docs/onboarding.md, "Who makes which key where"): the coordinator's
operator and each founding member work in folders of their own, and only invite codes pass between
them. Each founder makes its own keys with `cagnet node join`, the operator admits it while the
network is being founded (`cagnet network admit`), the first founder makes the network linkage key
on its own node and seals it to the others; the founders adopt a charter over signed gRPC and
answer a joint query. Afterwards no private key of a founder exists outside its own folder.

Real servers with real TLS: the coordinator (mTLS and onboarding ports) and the founders' nodes,
each on a port of its own; the commands run as a user would type them (Typer's runner).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.demo import free_port
from coordinator import network
from coordinator.governance.server import GovernanceRuntime
from coordinator.joint import bundle as bundle_file
from coordinator.joint.bundle import verify_bundle
from coordinator.onboarding import invites as onboarding
from coordinator.onboarding.server import create_server as create_onboarding
from coordinator.server import CoordinatorRuntime
from coordinator.server import create_server as create_coordinator
from node.config import load_config
from node.network import onboarding as joining
from node.network.governance import ManifestPoller, Member, node_manifests
from node.rpc.server import NodeRuntime
from node.rpc.server import create_server as create_node
from shared import dsse, governance, keyfile, pki
from shared.channel import ServiceRefused
from shared.errors import ManifestRefused
from shared.governance import Change, Proposal, open_join_request
from shared.governance_client import GovernanceClient
from shared.identity import Identity
from shared.manifest import MANIFEST_PAYLOAD_TYPE, encode_key
from shared.models import JoinRequest
from shared.onboarding_client import OnboardingClient, fetch_network_ca

# Six South East authorities of the shipped register: Kent, Medway, Surrey, West Sussex, East
# Sussex, Brighton & Hove (counties and unitaries), as the network of six.
FOUNDERS = ("E10000016", "E06000035", "E10000030", "E10000032", "E10000011", "E06000043")


def cli(*args: str, ok: bool = True, passphrase: str = "") -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "CAGNET_KEY_PASSPHRASE": passphrase})
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        return " ".join(f"{result.output} error: {result.exception}".split())  # what `cagnet` prints
    return " ".join(result.output.split())


@dataclass
class Founded:
    root: Path
    netdir: Path  # the operator's folder: nothing of any founder's but public halves
    onboarding: str
    nodedirs: dict[str, Path]  # each on "its own machine": root/machine-CODE/node
    kit: Path | None = None  # the CAG chair's, on its own machine: root/machine-chair/kit
    servers: list[grpc.Server] = field(default_factory=list)  # the nodes'
    coordinator: CoordinatorRuntime | None = None
    coordinator_servers: list[grpc.Server] = field(default_factory=list)  # its mTLS and onboarding ports
    nodes: list[NodeRuntime] = field(default_factory=list)


def serve_coordinator(net: Founded, listen: str) -> None:
    """(Re)start the coordinator as `cagnet coordinator serve NETDIR --listen LISTEN --onboarding
    ...` would: a new runtime (which takes up a rotated key the manifest now lists), its mTLS port on
    `listen` and its onboarding port where the invites say."""
    for server in net.coordinator_servers:
        server.stop(grace=None).wait()
    if net.coordinator is not None:
        net.coordinator.close()
    coordinator = net.coordinator = CoordinatorRuntime.open(net.netdir)
    mtls, _ = create_coordinator(coordinator, address=listen)
    runtime = GovernanceRuntime(net.netdir, coordinator.identity, coordinator.manifests, nonces=coordinator.nonces)
    runtime.audit = coordinator.audit
    onboard_server, _ = create_onboarding(runtime, address=net.onboarding)
    net.coordinator_servers = [mtls, onboard_server]


def found(root: Path, founders: tuple[str, ...]) -> Iterator[Founded]:
    """Found a network of `founders`, each from its own folder, and keep it serving."""
    operator = root / "operator"
    netdir = operator / "network"
    listen = f"127.0.0.1:{free_port()}"
    # --no-chair: the operator makes no keys for the chair, who joins by invite like everyone else.
    cli("network", "init", str(netdir), "--name", "Test CAG", "--coordinator-endpoint", listen, "--no-chair")
    founded = Founded(root, netdir, f"127.0.0.1:{free_port()}", {})
    try:
        serve_coordinator(founded, listen)
        for i, code in enumerate(founders):
            printed = cli(
                "network", "invite", "--network", str(netdir), "--authority", code, "--endpoint", founded.onboarding
            )  # fmt: skip
            invite = printed.split()[-1]  # the one thing that crosses to the founder's machine
            machine = root / f"machine-{code}"
            machine.mkdir()
            (machine / "invite.txt").write_text(invite)
            nodedir = machine / "node"
            endpoint = f"127.0.0.1:{free_port()}"
            filed = cli(
                "node", "join", str(nodedir), "--invite", f"@{machine / 'invite.txt'}",
                "--authority", code, "--endpoint", endpoint, "--no-wait",
            )  # fmt: skip
            assert "join request filed" in filed and "cagnet network admit" in filed
            first = founded.nodedirs.get(founders[0])
            if i % 2 == 1:  # sealed before the operator admits it ...
                assert first is not None
                cli("network", "seal-linkage-key", code, "--node", str(first))
            admitted = cli("network", "admit", code, "--network", str(netdir), "--yes")
            assert f"{code} admitted" in admitted
            if i >= 2 and i % 2 == 0:  # ... or after: the joiner waits for it either way
                waiting = cli("node", "join", str(nodedir), "--no-wait", ok=False)
                assert "waiting for a member to seal" in waiting
                assert first is not None
                listed = cli("network", "proposals", "--node", str(first))
                assert f"cagnet network seal-linkage-key {code}" in listed
                cli("network", "seal-linkage-key", code, "--node", str(first))
            joined = cli("node", "join", str(nodedir), "--poll-s", "0.2", "--timeout", "30")
            assert f"{code} joined" in joined
            founded.nodedirs[code] = nodedir
        founded.kit = join_person(founded, CHAIR, "cag-chair", "Jane Smith, Lead Officer", admit="operator")
        for code, nodedir in founded.nodedirs.items():
            cli("node", "sync-manifest", str(nodedir))
            cli("node", "synth", str(nodedir), "--clients", "300", "--seed", str(len(code)))
            node = NodeRuntime.open(load_config(nodedir))
            server, _ = create_node(node, address=load_config(nodedir).endpoint)
            founded.nodes.append(node)
            founded.servers.append(server)
        yield founded
    finally:
        for server in founded.servers + founded.coordinator_servers:
            server.stop(grace=None).wait()
        if founded.coordinator is not None:
            founded.coordinator.close()
        for node in founded.nodes:
            node.engine.dispose()


CHAIR = "jane-smith"


def join_person(net: Founded, principal: str, role: str, name: str, *, admit: str, passphrase: str = "") -> Path:
    """A person joins by invite from a machine of its own: `cagnet kit join`, admitted by the
    operator (`admit="operator"`, founding phase) or sponsored by the first founder and approved by
    the others (`admit="members"`, governed)."""
    printed = cli(
        "network", "invite", "--network", str(net.netdir), "--principal", principal, "--role", role,
        "--name", name, "--endpoint", net.onboarding,
    )  # fmt: skip
    assert "cagnet kit join" in printed
    machine = net.root / f"machine-{principal}"
    machine.mkdir()
    (machine / "invite.txt").write_text(printed.split()[-1])
    kit = machine / "kit"
    no_passphrase = () if passphrase else ("--no-passphrase",)
    filed = cli(
        "kit", "join", "--invite", f"@{machine / 'invite.txt'}", "--out", str(kit), "--no-wait", *no_passphrase,
        passphrase=passphrase,
    )  # fmt: skip
    assert "join request filed" in filed and not (kit / "kit.toml").exists()
    if admit == "operator":
        cli("network", "admit", principal, "--network", str(net.netdir), "--yes")
    else:
        # The sponsor checks the person asks for exactly this id, role and name, from its own node folder.
        first, *rest = net.nodedirs.values()
        sponsored = cli(
            "network", "propose-principal", "--id", principal, "--role", role, "--name", name,
            "--node", str(first), "--yes",
        )  # fmt: skip
        pid = next(w for w in sponsored.split() if w.endswith(":") and len(w) == 13).rstrip(":")
        for nodedir in rest:
            if _listed(net, principal):
                break
            cli("network", "approve", pid, "--node", str(nodedir), "--yes")
    joined = cli("kit", "join", "--out", str(kit), "--poll-s", "0.2", "--timeout", "30", passphrase=passphrase)
    assert "ready in" in joined, joined
    return kit


def _listed(net: Founded, party_id: str) -> bool:
    return any(p.id == party_id for p in network.read(net.netdir).parties)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Founded]:
    yield from found(tmp_path_factory.mktemp("founding"), FOUNDERS)


def private_key_forms(path: Path) -> list[bytes]:
    """The ways a private key in `path` could lie in another file: its PEM and its raw bytes (a
    symmetric key, such as the rounding or person key, is its raw bytes)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" not in data:
        return [data, base64.b64encode(data), data.hex().encode()]
    key = keyfile.read_private_key(path)
    forms = [data]
    try:
        raw = key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    except ValueError:  # an EC key has no raw form: its DER
        raw = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    return [*forms, raw, base64.b64encode(raw), raw.hex().encode()]


def files_outside(root: Path, own: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and own not in path.parents:
            yield path


def assert_private_keys_only_in(root: Path, own: Path) -> int:
    """Every private key in folder `own` (and the linkage key's bytes, if `own` is a node's) is
    found nowhere under `root` but in `own`; how many keys were looked for."""
    keys = [p for p in own.rglob("*.key") if p.name != "linkage.key"]
    assert keys, f"no private keys in {own}"
    others = [(p, p.read_bytes()) for p in files_outside(root, own)]
    for key in keys:
        for form in private_key_forms(key):
            holders = [str(p) for p, data in others if form in data]
            assert not holders, f"{key} found in {holders}"
    return len(keys)


def test_founders_join_from_their_own_folders_and_answer(net: Founded) -> None:
    manifest = network.read(net.netdir)
    assert sorted(p.id for p in manifest.members) == sorted(FOUNDERS)
    # The first founder made the linkage key; each other founder opened the copy sealed to it.
    keys = {(d / "identity" / "linkage.key").read_bytes() for d in net.nodedirs.values()}
    assert len(keys) == 1
    # ... and the coordinator never held it: not in any form anywhere in the operator's folder.
    (linkage,) = keys
    operator = [p.read_bytes() for p in (net.root / "operator").rglob("*") if p.is_file()]
    for form in (linkage, base64.b64encode(linkage), linkage.hex().encode()):
        assert not any(form in data for data in operator)
    # No founder's folder points outside itself: its own keys and its own copy of the public files.
    for nodedir in net.nodedirs.values():
        assert str(net.root / "operator") not in (nodedir / "node.toml").read_text()
    # The founders adopt a charter over signed gRPC, each from its own folder.
    governed(net)
    first = next(iter(net.nodedirs.values()))
    # A member's officer asks a joint question from its node's folder, and every founder answers.
    out = net.root / "machine-" / "supply.json"
    out.parent.mkdir(exist_ok=True)
    cli("query", "supply-map", "--node", str(first), "--out", str(out))
    bundle = verify_bundle(bundle_file.load(out)[0], network.read(net.netdir))
    assert bundle.answered == tuple(sorted(FOUNDERS)) and not bundle.missing
    # Each founder's private keys (signing, TLS, sealing) exist in its own folder and nowhere else.
    for nodedir in net.nodedirs.values():
        assert assert_private_keys_only_in(net.root, nodedir.parent) >= 3
    # Once governed, the operator cannot admit alone: a member sponsors, a quorum decides.
    refused = cli("network", "admit", "E10000014", "--network", str(net.netdir), "--yes", ok=False)
    assert "governed" in refused


def test_a_chair_joins_by_invite_and_asks_from_its_own_kit(net: Founded) -> None:
    assert net.kit is not None
    chair = network.read(net.netdir).party(CHAIR)
    assert chair.roles == ("cag-chair",) and chair.name == "Jane Smith, Lead Officer" and not chair.endpoint
    # The operator's folder holds no principal's keys at all: --no-chair, and the chair made its own.
    assert not (net.netdir / "principals").exists()
    assert not (net.kit / "join.json").exists()
    out = net.kit.parent / "supply.json"
    cli("query", "supply-map", "--kit", str(net.kit), "--out", str(out))
    bundle = verify_bundle(bundle_file.load(out)[0], network.read(net.netdir))
    assert bundle.answered == tuple(sorted(FOUNDERS))
    assert assert_private_keys_only_in(net.root, net.kit.parent) == 2  # signing and TLS
    # The operator's status shows the certificate the CA issued to the chair at admission.
    shown = cli("network", "status", str(net.netdir), "--timeout-s", "0.5")
    assert re.search(rf"{CHAIR} │ cag-chair │ │ - │ expires \d{{4}}-\d\d-\d\d", shown), shown


def test_once_governed_a_person_is_admitted_by_a_quorum_with_keys_under_a_passphrase(
    net: Founded, monkeypatch: pytest.MonkeyPatch
) -> None:
    governed(net)
    kit = join_person(net, "north-board", "regional-board", "Regional housing board", admit="members", passphrase="pw")
    listed = network.read(net.netdir).party("north-board")
    assert listed.roles == ("regional-board",)
    for key in ("signing.key", "tls.key"):
        assert b"ENCRYPTED PRIVATE KEY" in (kit / "principals" / "north-board" / key).read_bytes()
    # The kit opens only with its passphrase, and says which file wants it.
    locked = cli("feed", "subscribe", "--kit", str(kit), "--out", str(kit.parent / "feed"), ok=False)
    assert "encrypted" in locked and "CAGNET_KEY_PASSPHRASE" in locked
    # An invite for a person is no invite for a node, and the other way round.
    code = cli(
        "network", "invite", "--network", str(net.netdir), "--principal", "someone", "--role", "cag-chair",
        "--endpoint", net.onboarding,
    ).split()[-1]  # fmt: skip
    refused = cli(
        "node", "join", str(net.root / "nowhere"), "--invite", code, "--authority", "E10000014",
        "--endpoint", "127.0.0.1:1",
    ok=False)  # fmt: skip
    assert "for a person" in refused and not (net.root / "nowhere").exists()
    monkeypatch.setenv("CAGNET_KEY_PASSPHRASE", "pw")  # to read the keys it looks for elsewhere
    assert assert_private_keys_only_in(net.root, kit.parent) == 2


def governed(net: Founded) -> None:
    """The founders adopt a charter over signed gRPC, each from its own folder (once)."""
    if network.read(net.netdir).governed:
        return
    first, *rest = net.nodedirs.values()
    proposed = cli("network", "charter", "--node", str(first))
    pid = proposed.split()[1].rstrip(":")
    for nodedir in rest:
        cli("network", "approve", pid, "--node", str(nodedir), "--yes")
    assert network.read(net.netdir).governed
    for nodedir in net.nodedirs.values():
        cli("node", "sync-manifest", str(nodedir))


def test_a_person_gets_exactly_what_it_was_invited_as(net: Founded) -> None:
    # The coordinator refuses a request that asks for another role than the invite names ...
    invite = onboarding.create_invite(
        net.netdir, endpoint=net.onboarding, principal="sam-jones", role="cag-chair", name="Sam Jones"
    )
    signing, tls_key = Ed25519PrivateKey.generate(), pki.new_tls_key()
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    asked = JoinRequest(
        party_id="sam-jones",
        name="Sam Jones",
        endpoint="",
        population=0,
        signing_key=encode_key(signing.public_key()),
        tls_public_key_pem=tls_key.public_key().public_bytes(*spki).decode(),
        role="regional-board",
    )
    ca_pem = fetch_network_ca(net.onboarding, invite.ca_fingerprint)
    with OnboardingClient(net.onboarding, invite, party_id="sam-jones", signing_key=signing, ca_pem=ca_pem) as client:
        with pytest.raises(ServiceRefused) as refused:
            client.file_join(governance.sign_join_request(asked, signing))
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "sam-jones as cag-chair" in refused.value.public_message
    assert onboarding.filed_request(net.netdir, "sam-jones") is None

    # ... and an approver refuses a candidate that lists a person with another role than it signed for.
    as_invited = asked.model_copy(update={"role": "cag-chair"})
    cert, party = network.member_certificate(net.netdir, as_invited)
    head = network.read(net.netdir)
    regional = party.model_copy(update={"roles": ("regional-board",)})
    proposal = Proposal(
        network=head.network,
        applies_to=head.version,
        proposed_by="coordinator",
        change=Change(action="add-member", party=regional),
    )
    coordinator = network.coordinator_identity(net.netdir)
    candidate = governance.apply_change(head, proposal.change)
    filed = governance.Filed(
        id="x",
        signed=dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), coordinator.signing_key),
        envelope=dsse.Envelope(MANIFEST_PAYLOAD_TYPE, candidate.canonical_bytes(), ()),
        approvals=(),
        needed=4,
        certificate=pki.cert_pem(cert),
        join_request=governance.sign_join_request(as_invited, signing),
    )
    ca = (net.netdir / "ca" / "ca.crt").read_bytes()
    with pytest.raises(ManifestRefused, match="other roles"):
        governance.review(head, filed, ca_cert_pem=ca)
    honest = Proposal(**{**proposal.model_dump(), "change": Change(action="add-member", party=party)})
    signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, honest.canonical_bytes(), coordinator.signing_key)
    envelope = dsse.Envelope(MANIFEST_PAYLOAD_TYPE, governance.apply_change(head, honest.change).canonical_bytes(), ())
    governance.review(head, replace(filed, signed=signed, envelope=envelope), ca_cert_pem=ca)  # as asked: fine


def test_the_chair_rotates_its_own_key_from_its_kit_and_a_bundle_saved_before_still_verifies(net: Founded) -> None:
    governed(net)
    assert net.kit is not None
    kit, keys_dir = net.kit, net.kit / "principals" / CHAIR
    before = kit.parent / "before-rotation.json"
    cli("query", "supply-map", "--kit", str(kit), "--out", str(before))
    old_key = network.read(net.netdir).party(CHAIR).signing_key

    # A principal may propose nothing but its own key's rotation: the coordinator says so.
    identity = network.principal_identity(kit)
    head = network.read(kit)
    change = Change(action="set-endpoints", endpoints={"coordinator": "127.0.0.1:1"})
    proposal = Proposal(network=head.network, applies_to=head.version, proposed_by=CHAIR, change=change)
    signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), identity.signing_key)
    with GovernanceClient(identity, lambda: network.read(kit)) as client, pytest.raises(ServiceRefused) as refused:
        client.propose(signed)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and "its own key" in refused.value.public_message

    # The chair proposes its next key from its kit, signed with its current one; members approve.
    rotated = cli("kit", "rotate-key", str(kit), "--overlap-days", "1")
    pid = rotated.split()[1].rstrip(":")
    assert (keys_dir / "signing.next.key").exists()
    for nodedir in net.nodedirs.values():
        if network.read(net.netdir).party(CHAIR).signing_key != old_key:
            break
        cli("network", "approve", pid, "--node", str(nodedir), "--yes")
    listed = network.read(net.netdir).party(CHAIR)
    assert listed.signing_key != old_key and listed.previous_key == old_key

    # The kit switches to its new key the next time it is used, and the network answers it.
    after = kit.parent / "after-rotation.json"
    cli("query", "supply-map", "--kit", str(kit), "--out", str(after))
    assert not (keys_dir / "signing.next.key").exists()
    assert encode_key(Identity.load(keys_dir).public_key) == listed.signing_key
    # Both bundles verify: the one made before against the key the chair held then.
    for saved in (before, after):
        assert "verified" in cli("verify", str(saved), "--kit", str(kit))
    assert assert_private_keys_only_in(net.root, kit.parent) == 2


def test_the_coordinator_proposes_its_own_key_rotation_and_members_decide(
    net: Founded, caplog: pytest.LogCaptureFixture
) -> None:
    governed(net)
    caplog.set_level(logging.WARNING, logger="coordinator.governance.server")
    old_key = network.read(net.netdir).party("coordinator").signing_key
    # The operator, on its own folder, with no member's node folder at hand.
    rotated = cli("network", "rotate-key", "coordinator", "--network", str(net.netdir))
    pid = rotated.split()[1].rstrip(":")
    assert "0 of" in rotated  # the coordinator's own signature is no approval
    for nodedir in net.nodedirs.values():
        if network.read(net.netdir).party("coordinator").signing_key != old_key:
            break
        cli("network", "approve", pid, "--node", str(nodedir), "--yes")
    listed = network.read(net.netdir).party("coordinator")
    assert listed.previous_key == old_key
    # The running coordinator still signs with the old key, and tells its operator to restart it now.
    version = network.read(net.netdir).version
    assert f"manifest version {version} lists the coordinator's new signing key: restart" in caplog.text
    # The nodes take the version up (`node serve` polls every 30 s); restarted within the overlap,
    # the coordinator signs with its new key, and they check it against that.
    for nodedir in net.nodedirs.values():
        cli("node", "sync-manifest", str(nodedir))
    serve_coordinator(net, listed.endpoint)
    assert net.coordinator is not None and encode_key(net.coordinator.identity.public_key) == listed.signing_key
    for nodedir in net.nodedirs.values():
        cli("node", "sync-manifest", str(nodedir))
    # A principal whose keys are in a kit is not rotated from the operator's folder.
    refused = cli("network", "rotate-key", CHAIR, "--network", str(net.netdir), ok=False)
    assert "kit rotate-key" in refused


def test_kits_and_nodes_follow_the_coordinator_when_it_moves(net: Founded) -> None:
    governed(net)
    assert net.kit is not None and net.coordinator is not None
    old, new = network.read(net.netdir).coordinator_endpoint, f"127.0.0.1:{free_port()}"
    first, *rest = net.nodedirs.values()
    proposed = cli("network", "propose-endpoint", "coordinator", new, "--node", str(first))
    pid = proposed.split()[1].rstrip(":")
    for nodedir in rest:
        if network.read(net.netdir).coordinator_endpoint == new:
            break
        cli("network", "approve", pid, "--node", str(nodedir), "--yes")
    assert network.read(net.netdir).coordinator_endpoint == new
    # Published before the coordinator moves: a node or kit whose head names the new address finds
    # it still at the old one, and one whose head names the old address learns the new one there.
    for nodedir in net.nodedirs.values():
        cli("node", "sync-manifest", str(nodedir))  # what `node serve` does every 30 s
    cli("query", "supply-map", "--kit", str(net.kit), "--out", str(net.kit.parent / "before-move.json"))
    assert network.read(net.kit).coordinator_endpoint == new

    # The operator moves it: the old address stops answering, and everyone follows.
    serve_coordinator(net, new)
    cli("query", "supply-map", "--kit", str(net.kit), "--out", str(net.kit.parent / "after-move.json"))
    for nodedir in net.nodedirs.values():
        cli("node", "sync-manifest", str(nodedir))

    # When no address answers, the message says which were tried.
    net.coordinator_servers[0].stop(grace=None).wait()
    refused = cli("query", "supply-map", "--kit", str(net.kit), "--out", str(net.kit.parent / "x.json"), ok=False)
    assert "not reachable at any address" in refused and new in refused and old in refused


def test_once_governed_a_running_node_seals_the_linkage_key_to_a_member_the_quorum_admitted(
    net: Founded,
) -> None:
    governed(net)
    serve_coordinator(net, network.read(net.netdir).coordinator_endpoint)  # the test before stopped it
    joiner = "E10000014"  # Hampshire, from outside the founders
    invite = onboarding.create_invite(net.netdir, endpoint=net.onboarding, authority=joiner)
    machine = net.root / f"machine-{joiner}"
    pending, _ = joining.start(machine / "node", invite=invite, authority=joiner, endpoint=f"127.0.0.1:{free_port()}")
    first, *rest = net.nodedirs.values()
    # A member sponsors it and others approve, without sealing anything (as a library call can).
    with Member(first) as member:
        request = next(e for e in member.join_requests() if open_join_request(e).party_id == joiner)
        filed = member.approve(member.sponsor_join(request))
    for nodedir in rest:
        if filed.published:
            break
        with Member(nodedir) as member:
            filed = member.approve(member.find(filed.id))
    assert joiner in {p.id for p in network.read(net.netdir).members}
    waiting = cli("node", "join", str(machine / "node"), "--no-wait", ok=False)
    assert "waiting for a member to seal" in waiting

    # What `cagnet node serve` runs every manifest_poll_s: the sync, then the seal, by itself.
    config = load_config(rest[-1])
    runtime = next(n for n in net.nodes if n.config.authority == config.authority)
    poller = ManifestPoller(runtime.manifests, lambda: runtime.identity, 0, linkage_key=config.linkage_key_path)
    assert poller.run_once() is not None
    assert joining.collect(pending, wait=False)
    assert (machine / "node" / "identity" / "linkage.key").read_bytes() == (
        first / "identity" / "linkage.key"
    ).read_bytes()
    # ... and nothing more waits: a second round seals nothing again.
    with Member(first) as member:
        assert member.awaiting_key() == []


def test_while_founding_no_node_seals_by_itself(tmp_path: Path) -> None:
    """The founding key alone lists members until the charter, so the coordinator could list a party
    of its own making: a node's poller seals nothing then; a person checks and seals."""
    operator = tmp_path / "operator" / "network"
    listen, port = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    cli("network", "init", str(operator), "--name", "Test CAG", "--coordinator-endpoint", listen, "--no-chair")
    founded = Founded(tmp_path, operator, port, {})
    try:
        serve_coordinator(founded, listen)
        joins = []
        for code in FOUNDERS[:2]:
            invite = onboarding.create_invite(operator, endpoint=port, authority=code)
            pending, _ = joining.start(
                tmp_path / code, invite=invite, authority=code, endpoint=f"127.0.0.1:{free_port()}"
            )
            onboarding.admit_founding(operator, code)
            joins.append(pending)
            if code == FOUNDERS[0]:  # the first founder makes the key on its own node
                assert joining.collect(pending, wait=False)
        first = load_config(tmp_path / FOUNDERS[0])
        manifests = node_manifests(first)
        poller = ManifestPoller(manifests, first.identity, 0, linkage_key=first.linkage_key_path)
        assert poller.run_once() is not None
        assert not joining.collect(joins[1], wait=False)  # the second founder still waits
        listed = cli("network", "status", str(operator))
        assert "waiting for the network linkage key" in listed and FOUNDERS[1] in listed
    finally:
        for server in founded.coordinator_servers:
            server.stop(grace=None).wait()
        if founded.coordinator is not None:
            founded.coordinator.close()

"""Joining a governed network over the wire (docs/onboarding.md): an authority on another machine
gets an invite code and nothing else, joins from its own folder in its own processes, and answers
joint queries; bad invites are refused with nothing written; the network linkage key travels
sealed, so the coordinator that stores it cannot read it, and a changed byte is caught.

The full join runs last: earlier tests leave join requests filed for the same authority, which a
new invite's request replaces, as an abandoned attempt would be.

Real servers on port 0 with real TLS: the members' nodes and the coordinator in this process, the
joiner's `cagnet node join`, `node synth` and `node serve` as separate processes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.demo import free_port, wait_healthy
from coordinator import network
from coordinator.governance import proposals as gov
from coordinator.joint.client import joint_query
from coordinator.onboarding import invites as onboarding
from node.network import onboarding as joining
from shared import audit, dsse, keyfile, sealing
from shared.channel import ServiceRefused
from shared.errors import BadSignature, InviteExpired, InviteRefused, InviteUsed, VerificationError
from shared.identity import Identity
from shared.invite import decode
from shared.kinds.registry import KINDS, PLAN
from shared.onboarding_client import OnboardingClient, fetch_network_ca
from tests.netutil import LiveNetwork, make_network, running, start_onboarding

KENT, MEDWAY, SURREY, WEST_SUSSEX, EAST_SUSSEX, BRIGHTON = (
    "E10000016",
    "E06000035",
    "E10000030",
    "E10000032",
    "E10000011",
    "E06000043",
)


# The joiner is an authority from outside the six founders' group, from the shipped register.
JOINER = "E10000014"  # Hampshire
FOUNDERS = (KENT, MEDWAY, SURREY, WEST_SUSSEX, EAST_SUSSEX, BRIGHTON)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNetwork, str]]:
    built = make_network(tmp_path_factory.mktemp("onboard"), FOUNDERS)
    with running(built) as live:
        members = {code: Identity.load(nodedir / "identity") for code, nodedir in live.nodedirs.items()}
        filed = gov.charter(live.netdir, members[FOUNDERS[0]])
        for code in FOUNDERS[1:]:
            filed = gov.approve(live.netdir, filed.id, members[code])
        assert filed.published and network.read(live.netdir).governed
        yield live, start_onboarding(live)


def _cagnet(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """`cagnet ARGS` as its own process, with nothing from this one but the virtualenv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAGNET_")}
    done = subprocess.run(
        [sys.executable, "-m", "cagnet", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return " ".join(result.output.split())


def _invite(netdir: Path, endpoint: str, **kwargs: object) -> str:
    return onboarding.create_invite(netdir, endpoint=endpoint, **kwargs).encode()  # type: ignore[arg-type]


def _start(tmp_path: Path, code: str, port: str, *, authority: str = "") -> None:
    joining.start(
        tmp_path / "node",
        invite=decode(code),
        authority=authority or JOINER,
        endpoint="127.0.0.1:7199",
        coordinator=port,
    )


def test_bad_invites_are_refused_with_nothing_written(net: tuple[LiveNetwork, str], tmp_path: Path) -> None:
    live, port = net
    netdir = live.netdir
    folder = tmp_path / "node"
    # Expired: refused before anything leaves the machine, and by the coordinator if asked.
    expired = _invite(netdir, port, authority=JOINER, valid_days=1, now=time.time() - 2 * 86400)
    with pytest.raises(InviteExpired, match="expired"):
        _start(tmp_path, expired, port)
    assert not folder.exists()
    record = onboarding.invites_dir(netdir) / f"{decode(expired).invite_id}.json"
    with pytest.raises(InviteExpired):
        onboarding.check(netdir, _proof(expired, netdir))
    # For another network: its CA is not the one this coordinator presents.
    other = tmp_path / "other"
    network.init_network(other, name="South West CAG", coordinator_endpoint="127.0.0.1:0")
    foreign = _invite(other, port, authority=JOINER)
    with pytest.raises(VerificationError, match="another network"):
        _start(tmp_path, foreign, port)
    assert not folder.exists()
    # ... and the coordinator refuses an invite naming another network, whatever its secret.
    wrong = onboarding.Proof(**{**_proof(foreign, netdir).__dict__, "network": "South West CAG"})
    with pytest.raises(InviteRefused, match="another network"):
        onboarding.check(netdir, wrong)
    # Used: the first joiner's key binds it; a second joiner with the same code is refused.
    code = _invite(netdir, port, authority=JOINER)
    first = tmp_path / "first"
    joining.start(first, invite=decode(code), authority=JOINER, endpoint="127.0.0.1:7198", coordinator=port)
    before = sorted(p.name for p in onboarding.joins_dir(netdir).iterdir())
    with pytest.raises(ServiceRefused) as used:
        _start(tmp_path, code, port)
    assert used.value.code == grpc.StatusCode.ALREADY_EXISTS and "already been used" in used.value.public_message
    assert not folder.exists()
    assert sorted(p.name for p in onboarding.joins_dir(netdir).iterdir()) == before
    with pytest.raises(InviteUsed):
        onboarding.check(netdir, onboarding.Proof(**{**_proof(code, netdir).__dict__, "signing_key": "x"}))
    # The CLI says so plainly, exit code 2, no traceback, nothing written.
    result = CliRunner().invoke(
        app,
        ["node", "join", str(folder), "--invite", expired, "--authority", JOINER, "--endpoint", "127.0.0.1:7197"],
    )
    assert result.exit_code != 0 and isinstance(result.exception, InviteExpired)
    assert not folder.exists() and record.exists()
    # Refusals are audited too.
    assert live.coordinator is not None
    refused = [
        e
        for e in audit.entries(live.coordinator.audit.engine)
        if e.method.startswith("/cagnet.v1.Onboarding/") and e.decision.startswith("refused")
    ]
    assert any("already been used" in e.decision for e in refused)


def test_a_revoked_invite_is_refused_and_listed_as_such(net: tuple[LiveNetwork, str], tmp_path: Path) -> None:
    live, port = net
    code = _invite(live.netdir, port, authority=JOINER)
    invite_id = decode(code).invite_id

    def row(output: str) -> list[str]:
        return [cell.strip() for cell in output.rsplit(invite_id, 1)[1].split("│")[1:5]]

    assert row(_cli("network", "invites", "--network", str(live.netdir)))[0] == JOINER
    assert row(_cli("network", "invites", "--network", str(live.netdir)))[3] == "open"
    assert row(_cli("network", "invites", "--network", str(live.netdir), "--revoke", invite_id))[3] == "revoked"
    with pytest.raises(ServiceRefused) as refused:
        _start(tmp_path, code, port)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and "revoked" in refused.value.public_message
    assert not (tmp_path / "node").exists()


def _proof(code: str, netdir: Path) -> onboarding.Proof:
    invite = decode(code)
    return onboarding.Proof(invite.invite_id, invite.secret, invite.network, "")


def test_the_coordinator_keeps_the_sealed_linkage_key_but_cannot_read_it(
    net: tuple[LiveNetwork, str], tmp_path: Path
) -> None:
    live, port = net
    netdir = live.netdir
    code = _invite(netdir, port)
    authority = BRIGHTON if JOINER != BRIGHTON else KENT
    # A joiner whose authority is already listed is refused before anything is written.
    with pytest.raises(Exception, match="already listed"):
        _start(tmp_path, code, port, authority=authority)
    assert not (tmp_path / "node").exists()

    site = tmp_path / "sealed"
    pending, _ = joining.start(site, invite=decode(code), authority=JOINER, endpoint="127.0.0.1:7196", coordinator=port)
    sealed_file = onboarding.joins_dir(netdir) / f"{JOINER}.sealed.json"
    sealed_file.unlink(missing_ok=True)
    _cli("network", "seal-linkage-key", JOINER, "--node", str(live.nodedirs[MEDWAY]))
    key = (live.nodedirs[MEDWAY] / "identity" / "linkage.key").read_bytes()
    stored = sealed_file.read_bytes()
    for form in (key, base64.b64encode(key), key.hex().encode()):
        assert form not in stored
    envelope = dsse.Envelope.from_json(stored)
    manifest = network.read(netdir)
    private = keyfile.read_x25519_key(site / "identity" / "sealing.key")
    assert sealing.unseal(envelope, manifest, private_key=private, join_request=pending.join_request) == key

    # A changed ciphertext, a key re-bound to another request, a blob the coordinator signed itself:
    # each is refused.
    body = json.loads(envelope.payload)
    flipped = base64.b64decode(body["ciphertext"])
    body["ciphertext"] = base64.b64encode(bytes([flipped[0] ^ 1]) + flipped[1:]).decode()
    medway = Identity.load(live.nodedirs[MEDWAY] / "identity")
    resigned = dsse.sign(sealing.SEALED_PAYLOAD_TYPE, json.dumps(body).encode(), medway.signing_key)
    with pytest.raises(BadSignature, match="changed"):
        sealing.unseal(resigned, manifest, private_key=private, join_request=pending.join_request)
    tampered = dsse.Envelope(envelope.payload_type, json.dumps(body).encode(), envelope.signatures)
    with pytest.raises(BadSignature):
        sealing.unseal(tampered, manifest, private_key=private, join_request=pending.join_request)
    other = dsse.sign(sealing.SEALED_PAYLOAD_TYPE, b"{}", medway.signing_key)
    with pytest.raises(BadSignature, match="another join request"):
        sealing.unseal(envelope, manifest, private_key=private, join_request=other)
    forged_body = {**json.loads(envelope.payload), "sealed_by": "coordinator"}
    coordinator = network.coordinator_identity(netdir)
    forged = dsse.sign(sealing.SEALED_PAYLOAD_TYPE, json.dumps(forged_body).encode(), coordinator.signing_key)
    with pytest.raises(BadSignature, match="not a member"):
        sealing.unseal(forged, manifest, private_key=private, join_request=pending.join_request)


def test_a_seventh_authority_joins_from_its_own_folder_and_answers_joint_queries(
    net: tuple[LiveNetwork, str], tmp_path: Path
) -> None:
    live, onboarding_port = net
    netdir = live.netdir
    # The operator prints an invite for the joiner; that code is all that crosses to its machine.
    printed = _cli("network", "invite", "--network", str(netdir), "--authority", JOINER, "--endpoint", onboarding_port)
    code = printed.split()[-1]
    assert code.startswith("cagnet-invite-1.") and len(code) < 200
    machine = tmp_path / "joiner-machine"
    machine.mkdir()
    (machine / "invite.txt").write_text(code)
    endpoint = f"127.0.0.1:{free_port()}"
    filed = _cagnet(
        "node",
        "join",
        "site",
        "--invite",
        "@invite.txt",
        "--authority",
        JOINER,
        "--endpoint",
        endpoint,
        "--no-wait",
        cwd=machine,
    )
    assert "join request filed" in filed.stderr and "waiting for a member authority" in filed.stderr
    site = machine / "site"
    assert not (site / "identity" / "linkage.key").exists()  # it comes sealed, once a member sponsors

    # Members see the filed request, a member sponsors it from its node (and seals the linkage key
    # to the joiner), and others approve, all over signed gRPC.
    listed = _cli("network", "proposals", "--node", str(live.nodedirs[KENT]))
    assert f"cagnet network propose-join {JOINER}" in listed
    sponsored = _cli("network", "propose-join", JOINER, "--node", str(live.nodedirs[KENT]), "--yes")
    assert "sealed" in sponsored
    pid = next(w for w in sponsored.split() if w.endswith(":") and len(w) == 13).rstrip(":")
    waiting = _cagnet("node", "join", "site", "--no-wait", cwd=machine, ok=False)
    assert waiting.returncode == 3 and f"proposal {pid}: 1 of" in waiting.stderr
    for code_ in FOUNDERS[1:]:
        if gov.status(netdir, pid).published:
            break
        _cli("network", "approve", pid, "--node", str(live.nodedirs[code_]), "--yes")
    assert JOINER in {p.id for p in network.read(netdir).members}

    # The joiner collects its certificate and the linkage key, loads its data and serves.
    collected = _cagnet("node", "join", "site", "--poll-s", "0.2", "--timeout", "60", cwd=machine)
    assert "joined" in collected.stderr
    kent_key = (live.nodedirs[KENT] / "identity" / "linkage.key").read_bytes()
    assert (site / "identity" / "linkage.key").read_bytes() == kent_key
    assert not (site / joining.JOIN_STATE).exists()
    # Nothing in its folder points outside it: its own copy of the public files, its own keys.
    assert str(netdir) not in (site / "node.toml").read_text()
    _cagnet("node", "synth", "site", "--seed", "9", "--clients", "2500", cwd=machine)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAGNET_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "cagnet", "node", "serve", "site"],
        cwd=machine,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        chair = network.principal_identity(netdir, "cag-chair")
        wait_healthy(endpoint, JOINER, chair, timeout_s=60)
        # Every kind of joint query the coordinator runs is answered by the seven.
        for kind in KINDS:
            options: dict[str, Any] = {
                "non-local-services": {"min_share_percent": 50},
                # A plan weighs every standard question at each node: on a machine shared with
                # other work the largest founders took longer than the default 5 s. This test is
                # about membership, not speed (bench/ measures that), so give them time.
                PLAN: {"from_date": "2009-04-01", "to_date": "2010-03-31", "node_deadline_ms": 20000},
            }.get(kind, {})
            bundle, _ = joint_query(netdir, kind=kind, **options)
            assert set(bundle.answered) == {*FOUNDERS, JOINER} and not bundle.missing, (kind, bundle.missing)
    finally:
        server.terminate()
        server.wait(timeout=30)

    # Every onboarding call is in the coordinator's audit log, with who asked and what came of it.
    assert live.coordinator is not None
    invite_id = decode(code).invite_id
    calls = [
        e
        for e in audit.entries(live.coordinator.audit.engine)
        if e.method.startswith("/cagnet.v1.Onboarding/") and json.loads(e.parameters).get("invite") == invite_id
    ]
    assert {e.method.rsplit("/", 1)[-1] for e in calls} == {"PublicFiles", "FileJoin", "JoinStatus"}
    assert all(e.role == "joiner" and e.decision == "released" for e in calls)
    assert {e.principal for e in calls if e.method.endswith("FileJoin")} == {JOINER}
    assert all(base64.b64encode(decode(code).secret).decode() not in e.parameters for e in calls)
    audit.verify_chain(live.coordinator.audit.engine)


def test_coordinator_serve_opens_the_onboarding_port_only_when_asked(tmp_path: Path) -> None:
    netdir = tmp_path / "net"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    listen, port = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAGNET_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "cagnet", "coordinator", "serve", str(netdir), "--listen", listen, "--onboarding", port],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(listen, "coordinator", network.principal_identity(netdir), timeout_s=60)
        invite = onboarding.create_invite(netdir, endpoint=port)
        signing = Identity.load(network.principal_dir(netdir, "cag-chair")).signing_key  # any Ed25519 key
        ca_pem = fetch_network_ca(port, invite.ca_fingerprint)
        with OnboardingClient(port, invite, party_id=JOINER, signing_key=signing, ca_pem=ca_pem) as client:
            files = client.public_files()
            # Nothing but onboarding is served there: the mTLS services do not exist on that port.
            for method in ("/cagnet.v1.Coordinator/JointQuery", "/cagnet.v1.Governance/Proposals"):
                call = client._channel.unary_unary(method)
                with pytest.raises(grpc.RpcError) as refused:
                    call(b"", timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert files.manifest.network == "Test CAG" and files.ca_pem == (netdir / "ca" / "ca.crt").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)
    # Without --onboarding (and no onboarding_listen), `network invite` needs an address to print.
    result = CliRunner().invoke(app, ["network", "invite", "--network", str(netdir)])
    assert result.exit_code != 0 and "--endpoint" in result.output

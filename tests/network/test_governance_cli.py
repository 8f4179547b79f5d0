"""Every change to a governed network through the commands a member's SP team runs: charter, key
rotation (a node and a principal switch to their new key by themselves), endpoints, roles, a new
principal and the quorum itself, each taking effect only at the quorum, on a real network (gRPC on
port 0, mTLS, signed envelopes)."""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.governance import proposals as gov
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import Refused, joint_query
from shared import keys
from shared.errors import BadSignature
from shared.identity import Identity
from shared.manifest import CAG_CHAIR, MEMBER_AUTHORITY, REGIONAL_BOARD, encode_key
from tests.netutil import LiveNetwork, make_network, running, start_node

KENT, MEDWAY, BRIGHTON = "E10000016", "E06000035", "E06000043"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("govcli"), (KENT, MEDWAY, BRIGHTON))
    with running(built) as live:
        pid = _propose(live, "charter", node=KENT)
        for code in (MEDWAY, BRIGHTON):
            _cli("network", "approve", pid, "--node", str(live.nodedirs[code]), "--network", str(live.netdir), "--yes")
        assert network.read(live.netdir).governed
        yield live


def _cli(*args: str, ok: bool = True) -> str:
    """The command's output; with `ok=False`, also the error it stopped with (as `cagnet` prints it)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})  # rich tables unwrapped
    if ok:
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())  # as one line
    assert result.exit_code != 0
    return " ".join((result.output + (str(result.exception) if result.exception else "")).split())


def _propose(net: LiveNetwork, command: str, *args: str, node: str) -> str:
    """Run `cagnet network COMMAND ARGS --node NODE --network NETDIR` and return the proposal's id."""
    output = _cli("network", command, *args, "--node", str(net.nodedirs[node]), "--network", str(net.netdir))
    found = re.search(r"proposal (\w+):", output)
    assert found, output
    return found.group(1)


def _approve(net: LiveNetwork, pid: str, *codes: str) -> str:
    output = ""
    for code in codes:
        output = _cli(
            "network", "approve", pid, "--node", str(net.nodedirs[code]), "--network", str(net.netdir), "--yes"
        )
    return output


def test_a_node_rotates_its_key_and_switches_when_the_quorum_publishes_it(net: LiveNetwork) -> None:
    identity_dir = net.nodedirs[MEDWAY] / "identity"
    old = Identity.load(identity_dir)
    output = _cli("node", "rotate-key", str(net.nodedirs[MEDWAY]), "--network", str(net.netdir), "--overlap-days", "1")
    pid = re.search(r"proposal (\w+):", output).group(1)  # type: ignore[union-attr]
    waiting = keys.next_key(identity_dir)  # the key proposed, held beside the current one
    assert "1 of 2 approvals" in output
    # Until the quorum publishes it the node signs with the old key, and answers.
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert MEDWAY in bundle.answered
    assert net.runtimes[MEDWAY].identity.keyid == old.keyid

    assert "published" in _approve(net, pid, BRIGHTON)
    listed = network.read(net.netdir).party(MEDWAY)
    assert listed.signing_key == encode_key(waiting.public_key()) and listed.previous_key == encode_key(old.public_key)
    # The running node switched by itself; its answers verify against the new key in the manifest.
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert MEDWAY in bundle.answered
    assert net.runtimes[MEDWAY].identity.keyid == listed.keyid
    assert not (identity_dir / keys.NEXT).exists()
    assert Identity.load(identity_dir).keyid == listed.keyid


def test_a_running_node_takes_up_its_new_key_when_another_command_switched_its_folder_first(
    net: LiveNetwork,
) -> None:
    identity_dir = net.nodedirs[MEDWAY] / "identity"
    output = _cli("node", "rotate-key", str(net.nodedirs[MEDWAY]), "--network", str(net.netdir), "--overlap-days", "1")
    pid = re.search(r"proposal (\w+):", output).group(1)  # type: ignore[union-attr]
    assert "published" in _approve(net, pid, BRIGHTON)
    listed = network.read(net.netdir).party(MEDWAY)
    # `cagnet node sync-manifest` on the running node's folder switches the key on disk before the
    # node has seen the version; the node then has no next key of its own to switch to ...
    _cli("node", "sync-manifest", str(net.nodedirs[MEDWAY]))
    assert Identity.load(identity_dir).keyid == listed.keyid and not (identity_dir / keys.NEXT).exists()
    # ... and still signs with the key the folder holds now, which the manifest lists.
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert MEDWAY in bundle.answered
    assert net.runtimes[MEDWAY].identity.keyid == listed.keyid


def test_a_principal_rotates_its_key_the_same_way(net: LiveNetwork) -> None:
    pid = _propose(net, "rotate-key", CAG_CHAIR, node=KENT)
    folder = network.principal_dir(net.netdir, CAG_CHAIR)
    assert (folder / keys.NEXT).exists()
    _approve(net, pid, MEDWAY)
    bundle, _ = joint_query(net.netdir, kind="supply-map")  # signed with the chair's new key
    assert len(bundle.answered) == 3
    assert Identity.load(folder).keyid == network.read(net.netdir).party(CAG_CHAIR).keyid


def test_a_bundle_saved_before_a_member_and_the_chair_rotate_their_keys_still_verifies(
    net: LiveNetwork, tmp_path: Path
) -> None:
    saved = tmp_path / "supply.json"
    _cli("query", "supply-map", "--network", str(net.netdir), "--out", str(saved))
    made_under = network.read(net.netdir).version
    output = _cli("node", "rotate-key", str(net.nodedirs[MEDWAY]), "--network", str(net.netdir), "--overlap-days", "1")
    _approve(net, re.search(r"proposal (\w+):", output).group(1), BRIGHTON)  # type: ignore[union-attr]
    _approve(net, _propose(net, "rotate-key", CAG_CHAIR, node=KENT), BRIGHTON)
    current = network.read(net.netdir)
    assert current.version == made_under + 2
    # Against today's keys the bundle no longer verifies: Medway and the chair signed it with keys
    # the manifest lists no more.
    envelope, _ = bundle_mod.load(saved)
    with pytest.raises(BadSignature):
        bundle_mod.verify_bundle(envelope, current)
    # `cagnet verify` checks it against the keys they held at the version it names, and says so.
    verified = _cli("verify", str(saved), "--network", str(net.netdir))
    assert "verified: supply-map bundle from Test CAG, 3 signed contributions" in verified
    assert (
        f"signatures checked against the keys each party held at manifest version {made_under}, from the verified "
        f"chain (the current version is {made_under + 2}" in verified
    )
    # A bundle that claims a version it was not made under is refused, not accepted on old keys.
    doc = json.loads(saved.read_text())
    forged = dict(doc["envelope"])
    payload = json.loads(envelope.payload)
    payload["manifest_version"] = made_under - 1
    forged["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    saved.write_text(json.dumps({**doc, "envelope": forged}))
    assert "bad signature" in _cli("verify", str(saved), "--network", str(net.netdir), ok=False)


def test_roles_change_only_at_the_quorum_and_every_node_enforces_them(net: LiveNetwork) -> None:
    pid = _propose(net, "propose-roles", CAG_CHAIR, "--role", REGIONAL_BOARD, node=KENT)
    joint_query(net.netdir, kind="supply-map")  # one approval of two: nothing changed yet
    _approve(net, pid, BRIGHTON)
    assert network.read(net.netdir).party(CAG_CHAIR).roles == (REGIONAL_BOARD,)
    with pytest.raises(Refused) as refused:
        joint_query(net.netdir, kind="supply-map")
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "role regional-board" in refused.value.public_message
    _approve(net, _propose(net, "propose-roles", CAG_CHAIR, "--role", CAG_CHAIR, node=MEDWAY), KENT)
    assert len(joint_query(net.netdir, kind="supply-map")[0].answered) == 3


def test_an_endpoint_change_takes_effect_at_the_coordinator_and_every_node(net: LiveNetwork) -> None:
    before = network.read(net.netdir).party(BRIGHTON).endpoint
    _approve(net, _propose(net, "propose-endpoint", BRIGHTON, "127.0.0.1:9", node=BRIGHTON), KENT)
    for runtime in net.runtimes.values():
        assert runtime.manifests.current().party(BRIGHTON).endpoint == "127.0.0.1:9"
    partial, _ = joint_query(net.netdir, kind="supply-map", node_deadline_ms=2000)
    assert [m.authority for m in partial.missing] == [BRIGHTON]
    _approve(net, _propose(net, "propose-endpoint", BRIGHTON, before, node=KENT), MEDWAY)
    assert len(joint_query(net.netdir, kind="supply-map")[0].answered) == 3


def test_a_new_principal_is_listed_only_at_the_quorum(net: LiveNetwork) -> None:
    args = ("--id", "regional-board", "--role", REGIONAL_BOARD, "--name", "SE Regional Housing Board")
    pid = _propose(net, "propose-principal", *args, node=KENT)
    assert "regional-board" not in {p.id for p in network.read(net.netdir).parties}
    listed = _cli("network", "proposals", "--node", str(net.nodedirs[MEDWAY]), "--network", str(net.netdir))
    assert "add regional-board (SE Regional Housing Board) as regional-board" in listed
    _approve(net, pid, MEDWAY)
    assert network.read(net.netdir).party("regional-board").roles == (REGIONAL_BOARD,)


def test_raising_the_quorum_needs_the_old_one_and_then_binds(net: LiveNetwork) -> None:
    pid = _propose(net, "propose-quorum", "--quorum", "3", node=KENT)
    assert "1 of 2 approvals" in _approve(net, pid, KENT)  # approving twice is one signature
    _approve(net, pid, MEDWAY)
    assert network.read(net.netdir).governance.quorum == 3  # type: ignore[union-attr]
    version = network.read(net.netdir).version
    pid = _propose(net, "propose-quorum", "--quorum", "0", node=KENT)
    assert "2 of 3 approvals" in _approve(net, pid, MEDWAY)
    assert network.read(net.netdir).version == version  # two of three no longer decide
    assert "published" in _approve(net, pid, BRIGHTON)
    assert network.read(net.netdir).governance.quorum == 0  # type: ignore[union-attr]


def test_bad_proposals_are_refused_with_the_reason_and_nothing_filed(net: LiveNetwork, tmp_path: Path) -> None:
    netdir, kent = str(net.netdir), str(net.nodedirs[KENT])
    before = sorted((net.netdir / "proposals").glob("*.json"))
    cases = [
        (["propose-endpoint", BRIGHTON, "no-port"], "is not HOST:PORT"),
        (["propose-transport", BRIGHTON, "sideways"], "a transport is one of listen, dial-out, not 'sideways'"),
        (["propose-transport", CAG_CHAIR, "dial-out"], "cag-chair has no node"),
        (["propose-transport", BRIGHTON, "listen"], "E06000043's transport is already listen"),
        (["propose-roles", KENT, "--role", "superuser"], "unknown role 'superuser'"),
        (["propose-quorum", "--quorum", "4"], "more than the 3 member authorities"),
        (["propose-principal", "--id", "x", "--role", MEMBER_AUTHORITY], "must be one of"),
        (["rotate-key", "nobody"], "unknown"),
    ]
    for args, reason in cases:
        output = _cli("network", *args, "--node", kent, "--network", netdir, ok=False)
        assert reason in output, output
    assert sorted((net.netdir / "proposals").glob("*.json")) == before


def test_status_shows_each_party_reachable_with_the_certificate_it_presents(net: LiveNetwork) -> None:
    output = _cli("network", "status", str(net.netdir))
    manifest = network.read(net.netdir)
    assert f"manifest version {manifest.version} (governed)" in output
    for code in (KENT, MEDWAY, BRIGHTON):
        row = output[output.index(code) :]
        assert re.match(rf"{code} │ member-authority │ 127\.0\.0\.1:\d+ │ yes │ expires \d{{4}}-", row), row


def test_status_flags_a_certificate_the_manifest_does_not_list_or_that_expires_soon(net: LiveNetwork) -> None:
    from coordinator import status
    from shared import pki

    ca_key, ca_cert = network.load_ca(net.netdir)
    kent = network.read(net.netdir).party(KENT)
    now = status.now()
    other = pki.issue_certificate(
        ca_key, ca_cert, party_id=KENT, public_key=pki.new_tls_key().public_key(), server=True
    )
    assert status.describe(kent, other, now=now).certificate == "not the one the manifest lists"
    soon = pki.issue_certificate(
        ca_key, ca_cert, party_id=KENT, public_key=pki.new_tls_key().public_key(), server=True, valid_days=10
    )
    listed = kent.model_copy(update={"cert_fingerprint": pki.fingerprint(soon)})
    found = status.describe(listed, soon, now=now)
    assert found.warning and found.certificate.startswith("expires ")
    assert not status.describe(
        kent, pki.load_cert((net.nodedirs[KENT] / "identity" / "tls.crt").read_bytes()), now=now
    ).warning


def test_feed_revokes_advice_and_the_docs_run_as_printed(net: LiveNetwork) -> None:
    netdir = str(net.netdir)
    _cli("feed", "authorise", "--network", netdir, "--every", "7d", "--until", "2027-03-31")
    printed = _cli("feed", "revoke", "--network", netdir)
    advice = re.findall(
        r"(cagnet network (?:rotate-key|propose-roles) .*?--node NODEDIR(?: --overlap-days 0)?)", printed
    )
    docs = (Path(__file__).parents[2] / "docs" / "feeds.md").read_text()
    documented = re.findall(r"^    (cagnet network (?:rotate-key|propose-roles) .*)$", docs, flags=re.MULTILINE)
    assert len(advice) == len(documented) == 2, (printed, documented)
    for command in [*advice, *documented]:
        filled = command.replace("NETDIR", netdir).replace("NODEDIR", str(net.nodedirs[KENT]))
        output = _cli(*shlex.split(filled)[1:])
        pid = re.search(r"proposal (\w+):", output)
        assert pid, (command, output)
        gov.withdraw(net.netdir, pid.group(1))  # one open change at a time: the next command files its own


def test_a_refused_or_withdrawn_principal_proposal_leaves_no_keys_and_can_be_made_again(net: LiveNetwork) -> None:
    netdir = str(net.netdir)
    args = ("--role", REGIONAL_BOARD, "--node", str(net.nodedirs[KENT]), "--network", netdir)
    first = re.search(r"proposal (\w+):", _cli("network", "propose-principal", "--id", "auditor", *args))
    assert first
    # A second change against the same version, while the first has Kent's approval: refused at
    # filing, naming the first, and the keys made for it are gone.
    refused = _cli("network", "propose-principal", "--id", "examiner", *args, ok=False)
    assert f"proposal {first.group(1)} (add auditor" in refused and "withdraw" in refused
    assert not network.principal_dir(net.netdir, "examiner").exists()
    # Withdrawn by the operator: kept, its keys removed, and the principal can be proposed again.
    withdrawn = _cli("network", "withdraw", first.group(1), "--network", netdir, "--yes")
    assert "withdrawn" in withdrawn and "removed the keys made for it" in withdrawn
    assert not network.principal_dir(net.netdir, "auditor").exists()
    assert (gov.proposals_dir(net.netdir) / "withdrawn" / f"{first.group(1)}.json").exists()
    again = re.search(r"proposal (\w+):", _cli("network", "propose-principal", "--id", "auditor", *args))
    assert again
    gov.withdraw(net.netdir, again.group(1))


def test_propose_join_asks_before_filing_and_an_answer_of_no_leaves_nothing(net: LiveNetwork, tmp_path: Path) -> None:
    surrey = tmp_path / "surrey"
    _cli(
        "node",
        "init",
        str(surrey),
        "--network",
        str(net.netdir),
        "--authority",
        "E10000030",
        "--endpoint",
        "127.0.0.1:7199",
    )
    command = ["network", "propose-join", str(surrey), "--node", str(net.nodedirs[KENT]), "--network", str(net.netdir)]
    before = sorted(p.name for p in gov.proposals_dir(net.netdir).glob("*.json"))
    aborted = CliRunner().invoke(app, command, input="n\n", env={"COLUMNS": "200"})
    assert aborted.exit_code == 1, aborted.output + repr(aborted.exception)
    assert "asks to join" in aborted.output and "nothing filed" in aborted.output
    assert sorted(p.name for p in gov.proposals_dir(net.netdir).glob("*.json")) == before
    assert "--yes" in CliRunner().invoke(app, ["network", "propose-join", "--help"], env={"COLUMNS": "200"}).output


def test_a_member_moves_its_node_to_dial_out_by_quorum(net: LiveNetwork) -> None:
    # Runs last: Brighton & Hove's node dials out from here on.
    pid = _propose(net, "propose-transport", BRIGHTON, "dial-out", node=BRIGHTON)
    listed = _cli("network", "proposals", "--node", str(net.nodedirs[KENT]), "--network", str(net.netdir))
    assert f"transport of {BRIGHTON}: dial-out" in listed
    _approve(net, pid, KENT)
    assert network.read(net.netdir).party(BRIGHTON).dials_out
    # Listed as dial-out while its node still listens: the coordinator no longer connects to it.
    partial, _ = joint_query(net.netdir, kind="supply-map", node_deadline_ms=2000)
    assert [(m.authority, m.reason) for m in partial.missing] == [(BRIGHTON, "unreachable")]
    # Its operator says the same in node.toml and restarts it: it attaches and answers.
    net.stop_node(BRIGHTON)
    config = net.nodedirs[BRIGHTON] / "node.toml"
    config.write_text(config.read_text() + 'transport = "dial-out"\n')
    start_node(net, BRIGHTON)
    net.wait_attached()
    assert len(joint_query(net.netdir, kind="supply-map")[0].answered) == 3
    output = _cli("network", "status", str(net.netdir))
    row = output[output.index(BRIGHTON) :]
    assert re.match(rf"{BRIGHTON} │ member-authority │ 127\.0\.0\.1:\d+ │ attached \(dial-out\) │", row), row

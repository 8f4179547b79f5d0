"""Governance over signed gRPC, as member authorities on separate machines do it.

Each node runs on its own copy of the network's public files (manifest, history, policy), which
only the coordinator's Manifest RPC brings up to date; members charter, sponsor a join and approve
from their own nodes' folders. An approver refuses a candidate its change does not yield,
principals may not propose or approve, a node refuses a forged, short-quorum or older manifest
from a coordinator, and two members approving at once both count. Real servers on port 0, mTLS,
signed envelopes throughout.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.cli.governance import node_complete_join, read_join_request, write_join_request
from coordinator import network
from coordinator.governance import proposals as gov
from coordinator.governance.server import GovernanceRuntime
from coordinator.joint.client import joint_query
from coordinator.server import create_server as create_coordinator
from node.answers.linkage import load_linkage_key
from node.client_records import load_person_key
from node.config import init_node, load_config
from node.network.governance import ManifestPoller, Member
from node.rpc.server import NodeRuntime
from node.rpc.server import create_server as create_node
from node.synthetic.supply import load as load_synthetic
from shared import audit, dsse, governance
from shared.channel import ServiceRefused
from shared.errors import ManifestRefused, NotFound
from shared.governance import Change
from shared.governance_client import GovernanceClient
from shared.identity import Identity
from shared.manifest import MANIFEST_PAYLOAD_TYPE, REGIONAL_BOARD, Governance, Manifest
from tests.netutil import LiveNetwork, make_network, start_coordinator, start_node, stop_all

KENT, MEDWAY, BRIGHTON, SURREY = "E10000016", "E06000035", "E06000043", "E10000030"


def _own_copy(netdir: Path, nodedir: Path) -> None:
    """The network's public files as a node on another machine holds them, and its node.toml
    pointing there: from now on only the Manifest RPC brings them up to date."""
    own = nodedir / "network"
    own.mkdir(exist_ok=True)
    shutil.copy(netdir / "manifest.json", own / "manifest.json")
    shutil.copytree(netdir / "manifests", own / "manifests", dirs_exist_ok=True)
    shutil.copy(netdir / "policy.json", own / "policy.json")
    config = nodedir / "node.toml"
    text = re.sub(
        r"(?m)^manifest_path = .*$", f"manifest_path = {json.dumps(str(own / 'manifest.json'))}", config.read_text()
    )
    config.write_text(text)


@contextmanager
def running_apart(net: LiveNetwork) -> Iterator[LiveNetwork]:
    """The coordinator first (so each node's copy names where it is), then every node on port 0."""
    try:
        start_coordinator(net)
        for code, nodedir in net.nodedirs.items():
            _own_copy(net.netdir, nodedir)
            start_node(net, code)
        yield net
    finally:
        stop_all(net)


def _member(net: LiveNetwork, code: str, *, endpoint: str | None = None) -> Member:
    return Member(net.nodedirs[code], endpoint=endpoint)


def _sync_all(net: LiveNetwork) -> None:
    for code in net.nodedirs:
        with _member(net, code) as member:
            member.sync()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("govrpc"), (KENT, MEDWAY, BRIGHTON))
    network.add_principal(
        built.netdir, party_id="regional-board", name="SE Regional Housing Board", role=REGIONAL_BOARD
    )
    with running_apart(built) as live:
        # Each node's copy is behind the endpoints set since: the Manifest RPC brings it up to date.
        _sync_all(live)
        for runtime in live.runtimes.values():
            assert runtime.manifests.current() == network.read(live.netdir)
        # The charter: Kent proposes it over gRPC and every member approves it from its own node.
        with _member(live, KENT) as kent:
            filed = kent.charter()
        assert filed.approvals == (KENT,) and filed.needed == 3
        for code in (MEDWAY, BRIGHTON):
            with _member(live, code) as member:
                filed = member.approve(member.find(filed.id))
        assert filed.published
        _sync_all(live)
        chartered = network.read(live.netdir)
        assert chartered.governed
        assert set(governance.signers(chartered, network.history(live.netdir)[-1][1])) == {KENT, MEDWAY, BRIGHTON}
        for runtime in live.runtimes.values():
            assert runtime.manifests.current() == chartered
        yield live


def _kept_versions(nodedir: Path) -> list[int]:
    return sorted(int(p.stem) for p in (nodedir / "manifests").glob("[0-9]*.json"))


def test_a_full_join_over_grpc(net: LiveNetwork, tmp_path: Path) -> None:
    # Surrey makes its node from its own copy of the public files, and a request signed with its new key.
    surrey = tmp_path / "surrey"
    (surrey / "network").mkdir(parents=True)
    for name in ("manifest.json", "policy.json"):
        shutil.copy(net.netdir / name, surrey / "network" / name)
    shutil.copytree(net.netdir / "manifests", surrey / "network" / "manifests")
    request = init_node(
        surrey,
        authority=SURREY,
        endpoint="127.0.0.1:0",
        manifest_path=surrey / "network" / "manifest.json",
        linkage_key=load_linkage_key(net.nodedirs[KENT] / "identity" / "linkage.key"),
    )
    signed, _ = read_join_request(write_join_request(surrey, request))

    # Kent sponsors it: the coordinator issues the certificate and files the change; Kent checks it
    # against its own chain (certificate from the network CA, for Surrey's own TLS key) and signs.
    with _member(net, KENT) as kent:
        review = kent.sponsor_join(signed)
        assert review.proposal.change.party is not None and review.proposal.change.party.id == SURREY
        assert any(line.startswith("+") and SURREY in line for line in review.diff())
        filed = kent.approve(review)
    assert filed.approvals == (KENT,) and filed.needed == 2 and not filed.published
    # Medway finds it among the open proposals, checks it the same way and approves: a quorum.
    with _member(net, MEDWAY) as medway:
        listed = {f.id: checked for f, checked in medway.proposals()}
        assert isinstance(listed[filed.id], governance.Review)
        filed = medway.approve(medway.find(filed.id))
    assert filed.published
    joined = network.read(net.netdir)
    assert SURREY in {p.id for p in joined.members}

    # The nodes pick the version up over gRPC: Kent's server through its poller, Brighton by a sync.
    kent_runtime = net.runtimes[KENT]
    poller = ManifestPoller(kent_runtime.manifests, lambda: kent_runtime.identity, 0)
    synced = poller.run_once()
    assert synced is not None and synced.version == joined.version
    with _member(net, BRIGHTON) as brighton:
        assert brighton.sync().accepted == (joined.version,)
    for runtime in net.runtimes.values():
        assert runtime.manifests.current() == joined
        assert _kept_versions(runtime.config.nodedir)[-1] == joined.version

    # Surrey installs its certificate and syncs its own copy, now as a member.
    node_complete_join(surrey, network_dir=net.netdir)
    with Member(surrey) as member:
        assert member.sync().version == joined.version
    runtime = NodeRuntime.open(load_config(surrey))
    load_synthetic(
        runtime.engine, authority_code=SURREY, seed=11, person_key=load_person_key(runtime.config.person_key_path)
    )
    server, port = create_node(runtime, address="127.0.0.1:0")
    net.runtimes[SURREY], net.servers[SURREY], net.nodedirs[SURREY] = runtime, server, surrey
    # Its real endpoint is a change like any other now: Surrey proposes it, two more members approve.
    with Member(surrey) as member:
        filed = member.propose(Change(action="set-endpoints", endpoints={SURREY: f"127.0.0.1:{port}"}))
    assert filed.approvals == (SURREY,) and filed.needed == 3
    for code in (KENT, BRIGHTON):
        with _member(net, code) as member:
            filed = member.approve(member.find(filed.id))
    assert filed.published
    _sync_all(net)

    # The new member answers a joint query.
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert SURREY in bundle.answered
    assert set(bundle.answered) == {KENT, MEDWAY, BRIGHTON, SURREY}


def test_an_approver_refuses_a_candidate_the_change_does_not_yield(net: LiveNetwork) -> None:
    with _member(net, KENT) as kent:
        filed = kent.propose(Change(action="set-governance", governance=Governance()))
    assert filed.approvals == (KENT,) and not filed.published
    # The coordinator shows a different candidate: the same change, plus a rogue endpoint for Medway.
    path = gov.proposals_dir(net.netdir) / f"{filed.id}.json"
    record = json.loads(path.read_text())
    honest = governance.parse_unverified(dsse.Envelope.from_json(record["manifest"]))
    medway_party = honest.party(MEDWAY).model_copy(update={"endpoint": "203.0.113.9:7102"})
    forged = honest.model_copy(update={"parties": tuple(medway_party if p.id == MEDWAY else p for p in honest.parties)})
    record["manifest"]["payload"] = base64.b64encode(forged.canonical_bytes()).decode()
    path.write_text(json.dumps(record))

    with _member(net, MEDWAY) as medway:
        with pytest.raises(ManifestRefused, match="not its change applied"):
            medway.find(filed.id)
        # Nor does a signature made for the honest candidate count towards the forged one.
        with pytest.raises(ServiceRefused) as refused:
            medway.client.approve(filed.id, governance.approval(honest, medway.identity.signing_key))
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    # The CLI refuses it too, before it asks anything, and signs nothing.
    result = CliRunner().invoke(app, ["network", "approve", filed.id, "--node", str(net.nodedirs[MEDWAY]), "--yes"])
    assert isinstance(result.exception, ManifestRefused)
    after = gov.status(net.netdir, filed.id)
    assert after.approvals == () and not after.published  # Kent's own signature was over the honest bytes
    assert network.read(net.netdir).party(MEDWAY).endpoint != "203.0.113.9:7102"


def test_the_approve_command_shows_the_change_and_the_diff(net: LiveNetwork) -> None:
    with _member(net, KENT) as kent:
        filed = kent.propose(Change(action="set-roles", party_id="regional-board", roles=(REGIONAL_BOARD,)))
    runner = CliRunner()
    refused = runner.invoke(app, ["network", "approve", filed.id, "--node", str(net.nodedirs[MEDWAY])], input="n\n")
    assert refused.exit_code == 1
    assert f"proposal {filed.id}: roles of regional-board: regional-board" in refused.output
    assert '-  "version":' in refused.output and '+  "version":' in refused.output
    assert gov.status(net.netdir, filed.id).approvals == (KENT,)
    signed = runner.invoke(app, ["network", "approve", filed.id, "--node", str(net.nodedirs[MEDWAY]), "--yes"])
    assert signed.exit_code == 0, signed.output
    assert gov.status(net.netdir, filed.id).approvals == (MEDWAY, KENT)
    gov.withdraw(net.netdir, filed.id)  # left open, it would refuse the next change against this version


def _refusal(principal: str, method: str) -> str:
    # A principal may file one proposal, its own key's rotation (`cagnet kit rotate-key`): refused
    # any other by that rule; the other methods by its role.
    if method == "Propose":
        return f"{principal} may propose only the rotation of its own key; members decide the rest"
    return f"role {principal} may not call /cagnet.v1.Governance/{method}"


@pytest.mark.parametrize("principal", ["cag-chair", "regional-board"])
def test_a_principal_may_not_propose_or_approve(net: LiveNetwork, principal: str) -> None:
    with _member(net, KENT) as kent:
        open_one = kent.propose(Change(action="set-governance", governance=Governance(quorum=2)))
    identity = Identity.load(network.principal_dir(net.netdir, principal))
    before = {p.name: p.read_bytes() for p in gov.proposals_dir(net.netdir).glob("*.json")}
    version = network.read(net.netdir).version
    head = network.read(net.netdir)
    proposal = governance.Proposal(
        network=head.network,
        applies_to=head.version,
        proposed_by=principal,
        change=Change(action="remove-member", party_id=KENT),
    )
    signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), identity.signing_key)
    with GovernanceClient(identity, lambda: network.read(net.netdir)) as client:
        # Reading the published manifest is open to every listed party; changing it is not.
        envelope, latest = client.manifest_envelope(0)
        assert latest == version and envelope.payload == network.history(net.netdir)[-1][1].payload
        for method, call in (
            ("Propose", lambda: client.propose(signed)),
            (
                "Approve",
                lambda: client.approve(open_one.id, governance.approval(open_one.candidate, identity.signing_key)),
            ),
            ("Proposals", client.proposals),
        ):
            with pytest.raises(ServiceRefused) as refused:
                call()
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert refused.value.public_message == _refusal(principal, method)
    assert {p.name: p.read_bytes() for p in gov.proposals_dir(net.netdir).glob("*.json")} == before
    assert network.read(net.netdir).version == version
    # Each refusal is in the coordinator's audit log with who asked, as which role, and the rule.
    assert net.coordinator is not None
    logged = audit.entries(net.coordinator.audit.engine)
    refusals = [e for e in logged if e.principal == principal and e.decision.startswith("refused")][-3:]
    assert [e.method.rsplit("/", 1)[-1] for e in refusals] == ["Propose", "Approve", "Proposals"]
    for entry in refusals:
        assert entry.role == principal and entry.release_digest == ""
        assert entry.decision == f"refused: {_refusal(principal, entry.method.rsplit('/', 1)[-1])}"
    assert json.loads(refusals[1].parameters)["proposal_id"] == open_one.id
    audit.verify_chain(net.coordinator.audit.engine)
    gov.withdraw(net.netdir, open_one.id)


class _Forger(GovernanceRuntime):
    """A coordinator that serves whatever manifests it is given (it holds the real keys)."""

    served: dict[int, dsse.Envelope]

    def manifest_envelope(self, version: int) -> tuple[dsse.Envelope, int]:
        latest = max(self.served)
        return self.served[version or latest], latest


def _envelope(manifest: Manifest, *keys: object) -> dsse.Envelope:
    envelope = dsse.Envelope(MANIFEST_PAYLOAD_TYPE, manifest.canonical_bytes(), ())
    for key in keys:
        envelope = dsse.add_signature(envelope, key)  # type: ignore[arg-type]
    return envelope


def test_a_node_refuses_a_forged_or_older_manifest_from_the_coordinator(
    net: LiveNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    _sync_all(net)
    assert net.coordinator is not None
    forger = _Forger(net.netdir, net.coordinator.identity, net.coordinator.manifests)
    server, port = create_coordinator(
        net.coordinator, address="127.0.0.1:0", register=net.coordinator.register, governance=forger
    )
    try:
        runtime = net.runtimes[BRIGHTON]
        head = runtime.manifests.current()
        history = runtime.manifests.history
        kept = _kept_versions(runtime.config.nodedir)
        coordinator_key = network.coordinator_identity(net.netdir).signing_key
        kent_key = Identity.load(net.nodedirs[KENT] / "identity").signing_key
        published = {manifest.version: envelope for manifest, envelope in history}
        next_version = governance.apply_change(head, Change(action="remove-member", party_id=MEDWAY))
        after_next = next_version.model_copy(update={"version": next_version.version + 1})
        forked = head.model_copy(update={"coordinator_endpoint": "203.0.113.9:1"})
        needed = head.governance.required(len(head.members), loosens=False)  # type: ignore[union-attr]
        assert needed >= 2
        cases = {
            # one member's signature (and the coordinator's, which counts for nothing) where a quorum is needed
            "short quorum": (
                {**published, next_version.version: _envelope(next_version, kent_key, coordinator_key)},
                f"needs {needed} of",
            ),
            # an older version offered as the latest
            "rollback": ({v: e for v, e in published.items() if v < head.version}, "rollback"),
            # a different envelope for the version already held
            "fork": ({**published, head.version: _envelope(forked, coordinator_key)}, "different version"),
            # two versions ahead, the one in between forged
            "skip": (
                {
                    **published,
                    next_version.version: _envelope(next_version, coordinator_key),
                    after_next.version: _envelope(after_next, kent_key),
                },
                "needs",
            ),
        }
        endpoint = f"127.0.0.1:{port}"
        poller = ManifestPoller(runtime.manifests, lambda: runtime.identity, 0, endpoint=endpoint)
        for name, (served, reason) in cases.items():
            forger.served = served
            with _member(net, BRIGHTON, endpoint=endpoint) as brighton, pytest.raises(ManifestRefused, match=reason):
                brighton.sync()
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="node.network.governance"):
                assert poller.run_once() is None, name
            assert "manifest from the coordinator refused" in caplog.text, name
            assert runtime.manifests.current() == head, name
            assert _kept_versions(runtime.config.nodedir) == kept, name
        # The honest coordinator still brings it nothing new, and the node's own file was never replaced.
        with _member(net, BRIGHTON) as brighton:
            assert brighton.sync().accepted == ()
        assert governance.parse_unverified(governance.read_envelope(runtime.config.manifest_path)) == head
    finally:
        server.stop(grace=None).wait()


def test_two_members_approving_at_once_both_count(net: LiveNetwork) -> None:
    _sync_all(net)
    coordinator = network.coordinator_identity(net.netdir)
    # Filed by the coordinator, so nobody has approved it yet (its own signature counts for nothing).
    filed = gov.propose(net.netdir, Change(action="set-governance", governance=Governance()), coordinator)
    assert filed.approvals == ()
    reviews = {}
    members = {}
    for code in (MEDWAY, BRIGHTON):
        members[code] = _member(net, code)
        reviews[code] = members[code].find(filed.id)
    start = threading.Barrier(2)
    results: dict[str, object] = {}

    def approve(code: str) -> None:
        start.wait()
        try:
            results[code] = members[code].approve(reviews[code])
        except Exception as exc:  # reported below
            results[code] = exc

    threads = [threading.Thread(target=approve, args=(code,)) for code in (MEDWAY, BRIGHTON)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for member in members.values():
        member.close()
    assert all(isinstance(r, governance.Filed) for r in results.values()), results
    final = gov.status(net.netdir, filed.id)
    assert {MEDWAY, BRIGHTON} <= set(final.approvals)
    # Both approvals are in the coordinator's audit log, each with the signed response it was sent.
    assert net.coordinator is not None
    approvals = [
        e
        for e in audit.entries(net.coordinator.audit.engine)
        if e.method == "/cagnet.v1.Governance/Approve" and json.loads(e.parameters).get("proposal") == filed.id
    ]
    assert sorted(e.principal for e in approvals) == sorted((MEDWAY, BRIGHTON))
    for entry in approvals:
        assert entry.decision == "released" and entry.role == "member-authority"
        assert entry.release_digest.startswith("sha256:") and json.loads(entry.parameters)["state"]
    audit.verify_chain(net.coordinator.audit.engine)
    if not final.published:
        gov.withdraw(net.netdir, filed.id)


def test_a_second_change_to_one_version_is_refused_at_filing_or_closed_with_its_reason(net: LiveNetwork) -> None:
    _sync_all(net)
    version = network.read(net.netdir).version
    # Filed by the coordinator with no approval: it does not block, and it does not vanish.
    coordinator = network.coordinator_identity(net.netdir)
    idle = gov.propose(net.netdir, Change(action="set-governance", governance=Governance(quorum=3)), coordinator)
    with _member(net, KENT) as kent:
        under_way = kent.propose(Change(action="set-roles", party_id="regional-board", roles=(REGIONAL_BOARD,)))
    assert under_way.approvals == (KENT,)
    # A second change while one a member has approved is open: refused at once, naming the first.
    with _member(net, MEDWAY) as medway, pytest.raises(ServiceRefused) as refused:
        medway.propose(Change(action="set-governance", governance=Governance(quorum=2)))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"proposal {under_way.id} (" in refused.value.public_message
    assert f"only one change can become version {version + 1}" in refused.value.public_message
    published = under_way
    for code in (m.id for m in network.read(net.netdir).members if m.id != KENT):
        if not published.published:
            with _member(net, code) as member:
                published = member.approve(member.find(under_way.id))
    assert published.published and network.read(net.netdir).version == version + 1
    # The idle one can never be published now: closed, with the reason kept, and said when asked for.
    with pytest.raises(NotFound, match=f"closed, version {version + 1} was published from proposal {under_way.id}"):
        gov.status(net.netdir, idle.id)
    assert (gov.proposals_dir(net.netdir) / "closed" / f"{idle.id}.json").exists()
    assert idle.id not in {f.id for f in gov.pending(net.netdir)}

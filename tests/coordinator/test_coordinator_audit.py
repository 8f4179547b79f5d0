"""The coordinator's audit log, over real gRPC with mTLS: a joint query refused by role and one
answered are each written with who asked, as which role, what they asked and what was sent (never a
figure); the chain verifies, and `cagnet coordinator audit verify` names an entry edited behind its
back. The log's store is tested on SQLite and PostgreSQL in test_audit.py; governance calls in
test_governance_rpc.py."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.joint.client import Refused, joint_query
from shared import audit
from shared.manifest import REGIONAL_BOARD
from tests.netutil import THREE, LiveNetwork, make_network, running

JOINT_QUERY = "/cagnet.v1.Coordinator/JointQuery"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("coordaudit"))
    network.add_principal(
        built.netdir, party_id="regional-board", name="SE Regional Housing Board", role=REGIONAL_BOARD
    )
    with running(built) as live:
        yield live


def _log(net: LiveNetwork) -> Engine:
    assert net.coordinator is not None
    return net.coordinator.audit.engine


def _policy_digest(net: LiveNetwork) -> str:
    assert net.coordinator is not None
    return net.coordinator.policies.current().digest


ROUTE = "its route to the CAG's figures is the signed feed: `cagnet feed subscribe`"


def test_a_joint_query_outside_the_role_is_refused_and_written(net: LiveNetwork) -> None:
    with pytest.raises(Refused) as refused:
        joint_query(net.netdir, kind="supply-map", principal="regional-board")
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    # Told its route to the CAG's figures, and written as told.
    said = f"role regional-board may not call {JOINT_QUERY}; {ROUTE}"
    assert refused.value.public_message == said
    last = audit.entries(_log(net))[-1]
    assert (last.principal, last.role, last.via, last.method) == ("regional-board", "regional-board", "", JOINT_QUERY)
    assert last.decision == f"refused: {said}"
    assert json.loads(last.parameters) == {"kind": "supply-map"}
    assert last.release_digest == "" and last.policy_digest == _policy_digest(net)
    assert audit.verify_chain(_log(net)) == last.seq


def test_an_answered_joint_query_is_written_with_the_digest_of_what_was_sent(net: LiveNetwork) -> None:
    bundle, envelope = joint_query(net.netdir, kind="supply-map", by_district=True)
    last = audit.entries(_log(net))[-1]
    assert (last.principal, last.role, last.via, last.method) == ("cag-chair", "cag-chair", "", JOINT_QUERY)
    assert last.decision == "released"
    # The exact signed bytes the chair received, and the policy every figure in them was made under.
    assert last.release_digest == "sha256:" + hashlib.sha256(envelope.payload).hexdigest()
    assert last.policy_digest == bundle.policy_digest == _policy_digest(net)
    # What was asked and who answered: nothing else, so no figure.
    assert json.loads(last.parameters) == {
        "kind": "supply-map",
        "by_district": True,
        "answered": sorted(THREE),
        "missing": [],
    }
    audit.verify_chain(_log(net))


def test_the_cli_shows_and_verifies_the_log_and_names_an_edited_entry(net: LiveNetwork) -> None:
    runner = CliRunner()
    netdir = str(net.netdir)
    shown = runner.invoke(app, ["coordinator", "audit", "show", netdir, "--limit", "2", "--json"])
    assert shown.exit_code == 0, shown.output
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(lines) == 2 and lines[-1]["decision"] == "released"
    for record in lines:  # each line verifies on its own, as the export's do
        claimed = record.pop("entry_hash")
        assert audit.entry_hash(record) == claimed
    table = runner.invoke(app, ["coordinator", "audit", "show", netdir])
    assert table.exit_code == 0 and "Audit log (2 of 2 shown)" in table.stdout
    intact = runner.invoke(app, ["coordinator", "audit", "verify", netdir])
    assert intact.exit_code == 0 and "audit log intact" in intact.stdout

    # Someone with the database rewrites a refusal as a release.
    refusal = next(e for e in audit.entries(_log(net)) if e.principal == "regional-board")
    with _log(net).begin() as conn:
        conn.execute(text("UPDATE audit_log SET decision = 'released' WHERE seq = :seq"), {"seq": refusal.seq})
    try:
        verify = subprocess.run(
            [sys.executable, "-m", "cagnet", "coordinator", "audit", "verify", netdir],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verify.returncode != 0
        assert f"entry {refusal.seq}: hash does not match its contents" in verify.stderr
    finally:
        with _log(net).begin() as conn:
            conn.execute(
                text("UPDATE audit_log SET decision = :d WHERE seq = :seq"), {"d": refusal.decision, "seq": refusal.seq}
            )
    audit.verify_chain(_log(net))


def test_a_served_manifest_read_is_not_written_but_a_refused_call_is(net: LiveNetwork) -> None:
    from node.network.governance import Member

    before = len(audit.entries(_log(net)))
    with Member(net.nodedirs[THREE[0]]) as member:
        member.sync()  # what every node's poller does every 30 s
    assert len(audit.entries(_log(net))) == before
    with pytest.raises(Refused):
        joint_query(net.netdir, kind="supply-map", principal="regional-board")
    assert len(audit.entries(_log(net))) == before + 1

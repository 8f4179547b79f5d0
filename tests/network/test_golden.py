"""Evidence saved by an older cagnet still verifies: a supply-map and a movement bundle (and, on
the network of issue 26 under records/, a net-flow and a KPI bundle), a register receipt and a
feed snapshot made by the code of `faa1cc7` (tests/data/golden/README.md), checked with the
commands a board member or auditor runs. Kind strings, RPC paths and JSON field names are signed
bytes; any change to them fails here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import network
from coordinator.feeds.snapshot import verify_snapshot, verify_snapshot_in_chain
from coordinator.joint import bundle as bundle_mod
from shared import dsse
from shared.checkpoint import verify_receipt_in_chain
from shared.errors import BadSignature, InvalidRequest
from shared.manifest import Party, encode_key

GOLDEN = Path(__file__).parent.parent / "data" / "golden"
CAGNET = Path(sys.executable).parent / "cagnet"


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """A copy, so that nothing a command writes can change the committed files."""
    return Path(shutil.copytree(GOLDEN, tmp_path / "golden"))


def _cagnet(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CAGNET, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("supply-map", "supply-map"),
        ("movement", "movement"),
        # Made before derived figures were withheld or bounded (issue 26): result version 1, whose
        # net flows and shares were computed from "at least" parts; they verify as version 1.
        ("records/net-flow", "net-flow"),
        ("records/kpi", "kpi"),
    ],
)
def test_a_saved_bundle_still_verifies(golden: Path, name: str, kind: str) -> None:
    where = golden / Path(name).parent
    done = _cagnet("verify", f"{Path(name).name}.bundle.json", "--network", "network", cwd=where)
    assert done.returncode == 0, done.stderr + done.stdout
    text = " ".join(done.stdout.split())
    assert f"verified: {kind} bundle from Test CAG, 3 signed contributions" in text
    assert "result recomputed and identical" in text


def test_a_saved_register_receipt_still_verifies(golden: Path) -> None:
    done = _cagnet("register", "verify", "register.receipt.json", "--network", "network", "--allow-pending", cwd=golden)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "verified: 1 entries included in the checkpoint of 1" in " ".join(done.stdout.split())


def test_a_saved_feed_snapshot_still_verifies(golden: Path) -> None:
    envelope = dsse.Envelope.from_json(json.loads((golden / "feed-snapshot.dsse.json").read_text()))
    snapshot = verify_snapshot(envelope, network.read(golden / "network"))
    assert len(snapshot.authorities) == 3 and snapshot.supply


def test_the_golden_files_are_not_trivially_accepted(golden: Path) -> None:
    """The checks above can fail: one changed byte of a signed payload is refused."""
    path = golden / "supply-map.bundle.json"
    doc = json.loads(path.read_text())
    envelope = dsse.Envelope.from_json(doc["envelope"])
    tampered = dsse.Envelope(
        envelope.payload_type, envelope.payload.replace(b"supply-map", b"supply-maq", 1), envelope.signatures
    )
    doc["envelope"] = tampered.to_json()
    path.write_text(json.dumps(doc))
    done = _cagnet("verify", path.name, "--network", "network", cwd=golden)
    assert done.returncode != 0
    snapshot = dsse.Envelope.from_json(json.loads((golden / "feed-snapshot.dsse.json").read_text()))
    forged = dsse.Envelope(snapshot.payload_type, snapshot.payload + b" ", snapshot.signatures)
    with pytest.raises(BadSignature):
        verify_snapshot(forged, network.read(golden / "network"))


def test_saved_evidence_verifies_under_the_keys_held_when_it_was_made(golden: Path) -> None:
    """After a member, the chair and the coordinator rotate their keys (a later version, here made
    in memory: the golden network keeps no private key), each piece of evidence still verifies
    against the version it was made under, from the chain, and not against the rotated keys."""
    chain = [m for m, _ in network.history(golden / "network")]
    made = chain[-1]

    def rotated(party: Party) -> Party:
        if party.id not in ("E10000016", "cag-chair", "coordinator"):
            return party
        new = encode_key(Ed25519PrivateKey.generate().public_key())
        return party.model_copy(update={"signing_key": new, "previous_key": party.signing_key})

    later = made.model_copy(update={"version": made.version + 1, "parties": tuple(map(rotated, made.parties))})
    bundle_env, _ = bundle_mod.load(golden / "supply-map.bundle.json")
    with pytest.raises(BadSignature):
        bundle_mod.verify_bundle(bundle_env, later)
    bundle, under = bundle_mod.verify_saved_bundle(bundle_env, [*chain, later])
    assert under.version == bundle.manifest_version == made.version
    snapshot_env = dsse.Envelope.from_json(json.loads((golden / "feed-snapshot.dsse.json").read_text()))
    with pytest.raises(BadSignature):
        verify_snapshot(snapshot_env, later)
    snapshot, under = verify_snapshot_in_chain(snapshot_env, [*chain, later])
    assert under.version == snapshot.manifest_version
    # A receipt made before receipts named their version: the newest version that verifies it.
    receipt = json.loads((golden / "register.receipt.json").read_text())
    assert "manifest_version" not in receipt
    _, entries, under = verify_receipt_in_chain(receipt, [*chain, later], require_final=False)
    assert under.version == made.version and len(entries) == 1
    # A version the chain does not hold is named, not guessed.
    with pytest.raises(InvalidRequest, match="version 99"):
        verify_receipt_in_chain({**receipt, "manifest_version": 99}, chain, require_final=False)


def test_an_old_net_flow_verifies_as_version_1_not_as_today(golden: Path) -> None:
    """The net flows of a bundle saved before issue 26 were computed from "at least" parts; today's
    combine withholds them, so only the kept version 1 combine makes the saved result again."""
    from coordinator.joint import bundle
    from shared.kinds.records import JointNetFlow, combine_net_flow, combine_net_flow_version_1
    from shared.pb.cagnet.v1 import node_pb2
    from shared.serde import count_table_from_proto

    envelope, _ = bundle.load(golden / "records" / "net-flow.bundle.json")
    saved = bundle.verify_bundle(envelope, network.read(golden / "records" / "network"))
    assert isinstance(saved.result, JointNetFlow) and saved.result.result_version == 1
    tables = [
        count_table_from_proto(node_pb2.CountsResponse.FromString(dsse.Envelope.from_json(c.response).payload))
        for c in saved.contributions
    ]
    assert combine_net_flow_version_1(tables) == saved.result
    today = combine_net_flow(tables)
    assert today != saved.result and today.result_version == 2
    assert any(row.status == "withheld" for row in today.rows)

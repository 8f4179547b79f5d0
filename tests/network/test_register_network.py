"""The register across a real network: the coordinator serving on port 0 with mTLS and signed
envelopes, members submitting and witnessing from their node folders, on SQLite and PostgreSQL.
Who may submit what, checkpoints becoming final at quorum, and witnesses refusing a log that was
rewritten, rolled back or edited behind its back."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from coordinator import network
from coordinator.register import store
from coordinator.register.server import RegisterRuntime
from node.config import load_config
from node.network.witness import EVIDENCE_DIR, STATE_FILE, load_state, witness_round
from shared.accreditation import provider_status
from shared.checkpoint import verify_checkpoint, verify_receipt
from shared.errors import InconsistentLog
from shared.register_client import RegisterRefused, fetch_history
from tests.registerutil import (
    EAST_SUSSEX,
    FIVE,
    KENT,
    MEDWAY,
    SURREY,
    WEST_SUSSEX,
    RegisterNetwork,
    make_entry,
    make_register_network,
    serving,
    signed,
)


@pytest.fixture
def net(tmp_path: Path) -> RegisterNetwork:
    return make_register_network(tmp_path)


def _submit(net: RegisterNetwork, party: str, data: bytes) -> tuple[int, int]:
    with net.client(party) as client:
        return client.submit(data)


def _witness(net: RegisterNetwork, code: str):  # type: ignore[no-untyped-def]
    return witness_round(load_config(net.nodedirs[code]))


def test_members_log_decisions_and_a_quorum_of_witnesses_makes_the_checkpoint_final(
    net: RegisterNetwork, database_url: str
) -> None:
    with serving(net, database_url) as register:
        o = net.origin
        assert _submit(net, KENT, signed(net, make_entry(o, KENT))) == (0, 1)
        assert (
            _submit(net, SURREY, signed(net, make_entry(o, SURREY, decision="passported", passported_from=KENT)))[0]
            == 1
        )
        other = make_entry(o, MEDWAY, name="Coastal Foyer Ltd", charity_number=None)
        assert _submit(net, MEDWAY, signed(net, other))[0] == 2

        first = _witness(net, KENT)
        assert (first.size, first.new_entries, first.cosignatures, first.quorum, first.final) == (3, 3, 1, 3, False)
        assert not _witness(net, MEDWAY).final
        assert _witness(net, SURREY).final

        # East Sussex suspends the provider: every member sees it, whoever asks.
        _submit(net, EAST_SUSSEX, signed(net, make_entry(o, EAST_SUSSEX, decision="suspended")))
        rounds = [_witness(net, code) for code in (KENT, MEDWAY, WEST_SUSSEX)]
        assert [(r.previous_size, r.size, r.new_entries) for r in rounds] == [(3, 4, 1), (3, 4, 1), (0, 4, 4)]
        assert rounds[-1].final and rounds[0].audited == 3
        for party in (MEDWAY, "cag-chair"):
            with net.client(party) as client:
                history = fetch_history(client, "Weald and Downs H.A.")
            assert history.checkpoint.final and history.checkpoint.checkpoint.size == 4
            assert [e.leaf_index for e in history.entries] == [0, 1, 3]
            status = provider_status(history.provider, history.entries, on=date(2026, 1, 1))
            assert status.overall == "suspended" and status.suspended_by == (EAST_SUSSEX,)
            assert {a.authority: a.status for a in status.authorities}[SURREY] == "passported"

        # The receipt verifies offline, and the checkpoint a final one from the witnesses' own state.
        _, logged = verify_receipt(json.loads(json.dumps(history.receipt)), network.read(net.netdir))
        assert [e.entry.authority for e in logged] == [KENT, SURREY, EAST_SUSSEX]
        state = load_state(net.nodedirs[KENT] / STATE_FILE)
        assert state is not None and state.size == 4 and state.root == history.checkpoint.checkpoint.root
        assert store.verify_log(register.engine) == 4


def _refused(exc: pytest.ExceptionInfo[RegisterRefused], code: grpc.StatusCode) -> str:
    assert exc.value.code == code, exc.value
    return exc.value.public_message


def test_only_a_member_may_submit_and_only_for_itself(net: RegisterNetwork, database_url: str) -> None:
    with serving(net, database_url) as register:
        o = net.origin
        medway = make_entry(o, MEDWAY)
        with pytest.raises(RegisterRefused) as exc:
            _submit(net, "cag-chair", signed(net, medway))
        assert (
            _refused(exc, grpc.StatusCode.PERMISSION_DENIED) == "role cag-chair may not call /cagnet.v1.Register/Submit"
        )
        # Kent relaying Medway's own signed decision, and Kent signing a decision in Medway's name.
        for data in (signed(net, medway), signed(net, medway, signer=KENT)):
            with pytest.raises(RegisterRefused) as exc:
                _submit(net, KENT, data)
            assert "only for its own decisions" in _refused(exc, grpc.StatusCode.PERMISSION_DENIED)
        # Medway's entry signed by another key than Medway's.
        with pytest.raises(RegisterRefused) as exc:
            _submit(net, MEDWAY, signed(net, medway, signer=KENT))
        _refused(exc, grpc.StatusCode.UNAUTHENTICATED)
        with pytest.raises(RegisterRefused) as exc:
            _submit(net, MEDWAY, signed(net, make_entry("cagnet.register/elsewhere", MEDWAY)))
        assert _refused(exc, grpc.StatusCode.INVALID_ARGUMENT) == "the entry is for another register"
        with pytest.raises(RegisterRefused) as exc:
            _submit(net, MEDWAY, b'{"payloadType":"x"}')
        _refused(exc, grpc.StatusCode.INVALID_ARGUMENT)

        assert _submit(net, MEDWAY, signed(net, medway)) == (0, 1)
        with pytest.raises(RegisterRefused) as exc:
            _submit(net, MEDWAY, signed(net, medway))
        _refused(exc, grpc.StatusCode.ALREADY_EXISTS)
        # Witnessing is the members' too; the chair may read.
        with net.client("cag-chair") as chair:
            checkpoint = verify_checkpoint(chair.checkpoint(), network.read(net.netdir))
            with pytest.raises(RegisterRefused) as exc:
                chair.cosign(checkpoint.checkpoint.size, checkpoint.checkpoint.root, b"\0" * 64)
            _refused(exc, grpc.StatusCode.PERMISSION_DENIED)
        with net.client(KENT) as kent:
            with pytest.raises(RegisterRefused) as exc:
                kent.cosign(checkpoint.checkpoint.size, checkpoint.checkpoint.root, b"\0" * 64)
            _refused(exc, grpc.StatusCode.UNAUTHENTICATED)
            with pytest.raises(RegisterRefused) as exc:
                kent.cosign(checkpoint.checkpoint.size, b"\1" * 32, b"\0" * 64)
            _refused(exc, grpc.StatusCode.INVALID_ARGUMENT)
        assert store.tree_head(register.engine)[0] == 1
        assert store.cosignatures(register.engine, 1) == []


def _rewrite(register: RegisterRuntime) -> None:
    """Someone with the coordinator's database throws the log away (and its checkpoints)."""
    with register.engine.begin() as conn:
        for table in ("register_cosignature", "register_checkpoint", "register_node", "register_provider_index"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM register_leaf"))
        conn.execute(text("DELETE FROM register_tree"))


def _evidence(net: RegisterNetwork, code: str) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((net.nodedirs[code] / EVIDENCE_DIR).glob("*.json"))]


@pytest.mark.parametrize(
    ("replacement", "reason"),
    [
        ((KENT, MEDWAY, WEST_SUSSEX, EAST_SUSSEX), "not consistent with the earlier one"),  # a fork
        ((KENT, MEDWAY), "the log has shrunk"),  # a rollback
        ((KENT, MEDWAY, EAST_SUSSEX), "a second root for a tree size already cosigned"),
    ],
)
def test_a_witness_refuses_a_checkpoint_inconsistent_with_the_one_it_cosigned(
    net: RegisterNetwork, database_url: str, replacement: tuple[str, ...], reason: str
) -> None:
    with serving(net, database_url) as register:
        o = net.origin
        for code in (KENT, MEDWAY, SURREY):
            _submit(net, code, signed(net, make_entry(o, code)))
        assert _witness(net, KENT).size == 3
        _rewrite(register)
        for code in replacement:
            _submit(net, code, signed(net, make_entry(o, code, reference="rewritten")))
        with pytest.raises(InconsistentLog, match=reason):
            _witness(net, KENT)
        size = len(replacement)
        assert store.cosignatures(register.engine, size) == []
        (kept,) = _evidence(net, KENT)
        assert reason in str(kept["reason"])
        state = load_state(net.nodedirs[KENT] / STATE_FILE)
        assert state is not None and state.size == 3  # it still remembers what it cosigned
        # A witness that never saw the old log has nothing to hold it to: it cosigns.
        assert _witness(net, MEDWAY).size == size


def _replace_entry(register: RegisterRuntime, index: int, data: bytes) -> None:
    with register.engine.begin() as conn:
        conn.execute(text("UPDATE register_leaf SET entry = :e WHERE leaf_index = :i"), {"e": data, "i": index})


def test_a_witness_detects_an_entry_edited_behind_the_logs_back(net: RegisterNetwork, database_url: str) -> None:
    with serving(net, database_url) as register:
        o = net.origin
        _submit(net, KENT, signed(net, make_entry(o, KENT)))
        _submit(net, MEDWAY, signed(net, make_entry(o, MEDWAY)))
        assert _witness(net, KENT).size == 2
        _submit(net, SURREY, signed(net, make_entry(o, SURREY)))
        # A new entry swapped for another that Surrey really signed but never submitted: every
        # signature checks out, but the entries no longer hash to the checkpoint's root.
        _replace_entry(register, 2, signed(net, make_entry(o, SURREY, decision="withdrawn")))
        with pytest.raises(InconsistentLog, match="do not hash to the new root"):
            _witness(net, KENT)
        # An entry cosigned before, swapped in the store: the witness's audit of older entries finds it.
        _replace_entry(register, 2, signed(net, make_entry(o, SURREY)))
        _replace_entry(register, 0, signed(net, make_entry(o, KENT, decision="suspended")))
        with pytest.raises(InconsistentLog, match="inclusion proof"):
            _witness(net, KENT)
        with pytest.raises(InconsistentLog, match="leaf 0"):
            store.verify_log(register.engine)
        assert len(_evidence(net, KENT)) == 2
        assert [c[0] for c in store.cosignatures(register.engine, 3)] == []


def test_every_member_can_witness(net: RegisterNetwork, database_url: str) -> None:
    with serving(net, database_url, quorum=5):
        _submit(net, KENT, signed(net, make_entry(net.origin, KENT)))
        rounds = [_witness(net, code) for code in FIVE]
        assert [r.cosignatures for r in rounds] == [1, 2, 3, 4, 5]
        assert [r.final for r in rounds] == [False] * 4 + [True]


def test_a_certificate_the_manifest_does_not_list_is_refused_by_the_register(
    net: RegisterNetwork, database_url: str
) -> None:
    # A second certificate for Kent from the network CA, with Kent's own signing key: the CA alone
    # does not make a member, at the register as at every node.
    from shared import pki
    from shared.identity import Identity
    from shared.register_client import RegisterClient

    ca_key, ca_cert = network.load_ca(net.netdir)
    kent = load_config(net.nodedirs[KENT]).identity()
    tls_key = pki.new_tls_key()
    cert = pki.issue_certificate(ca_key, ca_cert, party_id=KENT, public_key=tls_key.public_key(), server=False)
    impostor = Identity(KENT, kent.signing_key, pki.key_pem(tls_key), pki.cert_pem(cert), kent.ca_cert_pem)
    with serving(net, database_url) as register:
        with (
            RegisterClient(impostor, lambda: network.read(net.netdir)) as client,
            pytest.raises(RegisterRefused) as exc,
        ):
            client.submit(signed(net, make_entry(net.origin, KENT)))
        assert "not the one the manifest lists" in _refused(exc, grpc.StatusCode.UNAUTHENTICATED)
        assert store.tree_head(register.engine)[0] == 0

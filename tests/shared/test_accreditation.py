"""Accreditation entries, checkpoints and receipts, checked offline: what an entry must say, who
must sign it, how a provider's status follows from the entries, and what a receipt proves."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import date
from pathlib import Path

import pytest

from coordinator import network
from shared import dsse, merkle
from shared.accreditation import (
    AccreditationEntry,
    LoggedEntry,
    entry_bytes,
    entry_from_toml,
    evidence_digest,
    open_entry,
    provider_status,
    three_years_after,
    verify_entry,
)
from shared.checkpoint import (
    Checkpoint,
    cosign,
    make_receipt,
    parse_checkpoint,
    register_origin,
    sign_checkpoint,
    verify_checkpoint,
    verify_receipt,
)
from shared.errors import BadSignature, InconsistentLog, InvalidRequest, NotPermitted
from tests.registerutil import (
    EAST_SUSSEX,
    KENT,
    MEDWAY,
    SURREY,
    WEST_SUSSEX,
    RegisterNetwork,
    make_entry,
    make_register_network,
    signed,
)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> RegisterNetwork:
    return make_register_network(tmp_path_factory.mktemp("register"))


ORIGIN = "cagnet.register/test"


def _edit(entry: AccreditationEntry, **changes: object) -> dict[str, object]:
    return {**entry.model_dump(by_alias=True), **changes}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"criteria": {"financial_viability": "not-met"}}, "every criterion met"),
        ({"qaf": {"client_involvement": "D"}}, "QAF level C or better"),
        ({"decision": "passported"}, "passported_from is required"),
        ({"passported_from": MEDWAY}, "only for a passport"),
        ({"decision": "passported", "passported_from": KENT}, "cannot passport its own"),
        ({"valid_to": date(2025, 4, 1)}, "valid_to must be after valid_from"),
        ({"evidence_sha256": "AB" * 32}, "64 lowercase hex"),
        ({"provider": {"key": "name:someone else", "name": "Weald & Downs HA", "charity_number": "1149085"}}, "key"),
        ({"decision": "revoked"}, "decision"),
        ({"colour": "green"}, "colour"),
    ],
)
def test_an_entry_that_breaks_a_rule_is_refused(changes: dict[str, object], reason: str) -> None:
    good = make_entry(ORIGIN, KENT)
    with pytest.raises(ValueError, match=reason):
        AccreditationEntry.model_validate(_edit(good, **changes))


def test_accreditation_lasts_three_years_by_default(tmp_path: Path) -> None:
    assert three_years_after(date(2024, 2, 29)) == date(2027, 2, 28)
    (tmp_path / "accounts.pdf").write_bytes(b"accounts")
    (tmp_path / "policies.pdf").write_bytes(b"policies")
    text = """
decision = "accredited"
valid_from = 2025-04-01
reference = "KCC-ACC-42"
evidence = ["policies.pdf", "accounts.pdf"]
[provider]
name = "Weald & Downs Housing Association Ltd"
charity_number = "1149085"
[criteria]
financial_viability = "met"
administration = "met"
employment_policies = "met"
management = "met"
competence_to_deliver = "met"
[qaf]
assessment_and_support_planning = "A"
security_health_and_safety = "B"
safeguarding_and_protection_from_abuse = "B"
fair_access_diversity_and_inclusion = "C"
client_involvement = "B"
"""
    entry = entry_from_toml(text, authority=KENT, register=ORIGIN, base=tmp_path, today=date(2025, 3, 20))
    assert (entry.authority, entry.origin, entry.provider.key) == (KENT, ORIGIN, "charity:1149085")
    assert (entry.decided_on, entry.valid_from, entry.valid_to) == (
        date(2025, 3, 20),
        date(2025, 4, 1),
        date(2028, 4, 1),
    )
    # The evidence digest is what `sha256sum * | sort | sha256sum` gives in the evidence folder.
    listing = "".join(
        sorted(
            f"{hashlib.sha256(d).hexdigest()}  {n}\n"
            for n, d in [("accounts.pdf", b"accounts"), ("policies.pdf", b"policies")]
        )
    )
    assert entry.evidence_sha256 == hashlib.sha256(listing.encode()).hexdigest()
    assert evidence_digest([tmp_path / "accounts.pdf"]) != entry.evidence_sha256
    with pytest.raises(InvalidRequest, match="may not set 'authority'"):
        entry_from_toml('authority = "E06000035"\n' + text, authority=KENT, register=ORIGIN, base=tmp_path)
    with pytest.raises(InvalidRequest, match="not a valid accreditation entry"):
        entry_from_toml(
            text.replace('client_involvement = "B"', 'client_involvement = "D"'),
            authority=KENT,
            register=ORIGIN,
            base=tmp_path,
        )


def test_logged_bytes_are_one_canonical_envelope_with_one_signature(net: RegisterNetwork) -> None:
    data = signed(net, make_entry(ORIGIN, KENT))
    envelope, entry = open_entry(data)
    assert entry.authority == KENT and len(envelope.signatures) == 1
    with pytest.raises(InvalidRequest, match="canonical"):
        open_entry(json.dumps(json.loads(data), indent=1).encode())
    doubled = dsse.add_signature(envelope, net.identity(MEDWAY).signing_key)
    with pytest.raises(InvalidRequest, match="exactly one signature"):
        open_entry(entry_bytes(doubled))
    loose = dsse.sign(
        envelope.payload_type,
        json.dumps(json.loads(envelope.payload), indent=1).encode(),
        net.identity(KENT).signing_key,
    )
    with pytest.raises(InvalidRequest, match="not in canonical form"):
        open_entry(entry_bytes(loose))


def test_an_entry_must_be_signed_by_the_member_it_names(net: RegisterNetwork) -> None:
    manifest = network.read(net.netdir)
    entry = make_entry(net.origin, MEDWAY)
    assert verify_entry(signed(net, entry), manifest, register=net.origin)[0] == entry
    with pytest.raises(BadSignature):
        verify_entry(signed(net, entry, signer=KENT), manifest, register=net.origin)
    with pytest.raises(InvalidRequest, match="another register"):
        verify_entry(signed(net, make_entry(ORIGIN, MEDWAY)), manifest, register=net.origin)
    chair = make_entry(net.origin, "cag-chair")
    with pytest.raises(NotPermitted):
        verify_entry(signed(net, chair), manifest, register=net.origin)
    outsider = make_entry(net.origin, MEDWAY, decision="passported", passported_from="E06000043")
    with pytest.raises(NotPermitted, match="passport"):
        verify_entry(signed(net, outsider), manifest, register=net.origin)


def test_a_retired_key_reads_old_entries_but_adds_none_once_its_overlap_ends(net: RegisterNetwork) -> None:
    """After a member rotates its key, an entry it signed before still reads (the verified chain
    lists the key it held), a witness accepts a new one signed with the replaced key only within
    the rotation's overlap, and after it no new entry under the retired key is cosigned: a key
    retired because it leaked cannot add to the register."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared.auth import now_ms
    from shared.manifest import encode_key

    before = network.read(net.netdir)
    medway = before.party(MEDWAY)
    old_signed = signed(net, make_entry(net.origin, MEDWAY))
    until = now_ms() + 3_600_000
    after = before.with_party(
        medway.model_copy(
            update={
                "signing_key": encode_key(Ed25519PrivateKey.generate().public_key()),
                "previous_key": medway.signing_key,
                "previous_key_until_ms": until,
            }
        )
    )
    with pytest.raises(BadSignature):
        verify_entry(old_signed, after, register=net.origin)  # the key in force only
    assert verify_entry(old_signed, after, register=net.origin, earlier=[before, after])[1].id == MEDWAY
    assert verify_entry(old_signed, after, register=net.origin, now_ms=until - 1)[1].id == MEDWAY
    with pytest.raises(BadSignature):
        verify_entry(old_signed, after, register=net.origin, now_ms=until + 1)


def _logged(*entries: AccreditationEntry) -> list[LoggedEntry]:
    return [LoggedEntry(leaf_index=i, entry=e) for i, e in enumerate(entries)]


def test_status_passport_suspension_and_expiry() -> None:
    kent = make_entry(ORIGIN, KENT, valid_from=date(2025, 4, 1), valid_to=date(2028, 4, 1))
    surrey = make_entry(ORIGIN, SURREY, decision="passported", passported_from=KENT, valid_to=date(2027, 1, 1))
    medway = make_entry(ORIGIN, MEDWAY, decision="applied")
    entries = _logged(kent, surrey, medway)

    now = provider_status("charity:1149085", entries, on=date(2026, 1, 1))
    assert now.overall == "accredited" and now.suspended_by == ()
    assert {a.authority: a.status for a in now.authorities} == {
        KENT: "accredited",
        SURREY: "passported",
        MEDWAY: "applied",
    }

    # A suspension by any member shows to every member, and Kent's own suspension carries Surrey's passport with it.
    esx = make_entry(ORIGIN, EAST_SUSSEX, decision="suspended")
    assert provider_status("p", [*entries, LoggedEntry(leaf_index=3, entry=esx)], on=date(2026, 1, 1)).suspended_by == (
        EAST_SUSSEX,
    )
    kent_suspends = LoggedEntry(leaf_index=4, entry=make_entry(ORIGIN, KENT, decision="suspended"))
    status = provider_status("p", [*entries, kent_suspends], on=date(2026, 1, 1))
    rows = {a.authority: a for a in status.authorities}
    assert status.overall == "suspended" and status.suspended_by == (KENT,)
    assert rows[SURREY].status == "suspended" and KENT in rows[SURREY].note

    # Expiry by date: Surrey's passport ends first, then Kent's accreditation, and the passport follows it.
    later = provider_status("p", entries, on=date(2027, 6, 1))
    assert {a.authority: a.status for a in later.authorities}[SURREY] == "expired"
    latest = provider_status("p", entries, on=date(2028, 4, 2))
    assert latest.overall == "applied" and {a.status for a in latest.authorities} == {"expired", "applied"}

    # The latest decision of each authority is the one that counts, in log order, not by date.
    reinstated = LoggedEntry(leaf_index=5, entry=make_entry(ORIGIN, KENT, reference="reinstated"))
    back = provider_status("p", [*entries, kent_suspends, reinstated], on=date(2026, 1, 1))
    assert back.overall == "accredited" and {a.authority: a.status for a in back.authorities}[SURREY] == "passported"


def test_a_passport_from_an_authority_without_an_accreditation_has_lapsed() -> None:
    wsx = make_entry(ORIGIN, WEST_SUSSEX, decision="passported", passported_from=MEDWAY)
    status = provider_status("p", _logged(wsx), on=date(2026, 1, 1))
    assert status.overall == "expired" and "E06000035" in status.authorities[0].note
    withdrawn = make_entry(ORIGIN, MEDWAY, decision="withdrawn")
    status = provider_status("p", _logged(withdrawn, wsx), on=date(2026, 1, 1))
    assert [a.status for a in status.authorities] == ["withdrawn", "withdrawn"]


def test_checkpoint_text_round_trips_and_nothing_else_parses() -> None:
    cp = Checkpoint("cagnet.register/abc", 42, merkle.EMPTY_ROOT, 1_700_000_000_000)
    assert cp.body() == b"cagnet.register/abc\n42\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime 1700000000000\n"
    assert parse_checkpoint(cp.body()) == cp
    for bad in (b"", cp.body() + b"x", cp.body().replace(b"42", b"042"), cp.body().replace(b"\ntime", b"\nwhen")):
        with pytest.raises(InvalidRequest):
            parse_checkpoint(bad)


def _receipt(net: RegisterNetwork, entries: list[bytes], cosigners: tuple[str, ...]) -> dict[str, object]:
    leaves = [merkle.leaf_hash(d) for d in entries]
    manifest = network.read(net.netdir)
    coordinator = network.coordinator_identity(net.netdir)
    cp = Checkpoint(register_origin(manifest), len(leaves), merkle.root_of(leaves), 1)
    envelope = sign_checkpoint(cp, coordinator.signing_key)
    sigs = tuple(cosign(envelope, net.identity(c).signing_key) for c in cosigners)
    envelope = dsse.Envelope(envelope.payload_type, envelope.payload, envelope.signatures + sigs)
    return make_receipt(envelope, [(i, d, merkle.inclusion_proof(leaves, i)) for i, d in enumerate(entries)])


def test_a_receipt_verifies_offline_and_any_edit_is_caught(net: RegisterNetwork) -> None:
    manifest = network.read(net.netdir)
    entries = [signed(net, make_entry(net.origin, code)) for code in (KENT, MEDWAY, SURREY)]
    receipt = _receipt(net, entries, (KENT, MEDWAY, SURREY))
    checkpoint, logged = verify_receipt(receipt, manifest)
    assert checkpoint.final and checkpoint.cosigners == tuple(sorted((KENT, MEDWAY, SURREY)))
    assert [e.entry.authority for e in logged] == [KENT, MEDWAY, SURREY]

    # Two cosignatures of five members is not a quorum (three), unless the verifier says so.
    pending = _receipt(net, entries, (KENT, KENT, MEDWAY))
    with pytest.raises(InconsistentLog, match="not final: 2 of 3"):
        verify_receipt(pending, manifest)
    assert verify_receipt(pending, manifest, quorum=2)[0].final

    # An entry edited after it was logged no longer hashes to its leaf.
    edited = json.loads(json.dumps(receipt))
    entry = json.loads(base64.b64decode(edited["entries"][1]["entry"]))
    entry["payload"] = base64.b64encode(
        base64.b64decode(entry["payload"]).replace(b'"accredited"', b'"suspended"')
    ).decode()
    edited["entries"][1]["entry"] = base64.b64encode(
        json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    ).decode()
    with pytest.raises(InconsistentLog, match="inclusion proof"):
        verify_receipt(edited, manifest)
    # A wrong proof, or an entry moved to another index, fails the same way.
    moved = json.loads(json.dumps(receipt))
    moved["entries"][0]["leaf_index"] = 1
    with pytest.raises(InconsistentLog):
        verify_receipt(moved, manifest)
    # And a checkpoint the coordinator did not sign is refused before anything else.
    forged = json.loads(json.dumps(receipt))
    forged["checkpoint"]["signatures"] = forged["checkpoint"]["signatures"][1:]
    with pytest.raises(BadSignature):
        verify_receipt(forged, manifest)


def test_verify_checkpoint_counts_only_member_cosignatures(net: RegisterNetwork) -> None:
    manifest = network.read(net.netdir)
    receipt = _receipt(net, [], ())
    envelope = dsse.Envelope.from_json(receipt["checkpoint"])
    chair = dsse.add_signature(envelope, net.identity("cag-chair").signing_key)
    assert verify_checkpoint(chair, manifest).cosigners == ()

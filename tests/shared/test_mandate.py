"""The feed mandate without a network: intervals, the question it allows, slots and their
tolerance, what `open_mandate` refuses; the coordinator's settings file; and `cagnet feed
authorise`, `mandate` and `revoke` as the chair runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.settings import CoordinatorSettings
from shared import dsse
from shared.auth import request_header
from shared.errors import (
    BadSignature,
    ExpiredRequest,
    InvalidRequest,
    NotPermitted,
    UnknownIssuer,
    WrongAudience,
)
from shared.identity import Identity
from shared.mandate import (
    MANDATE_PAYLOAD_TYPE,
    FeedMandate,
    MandatedQuery,
    check_mandated_query,
    feed_queries,
    format_interval,
    make_mandate,
    open_mandate,
    parse_interval,
    query_message,
    question_of,
    sign_mandate,
)
from shared.manifest import COORDINATOR, Manifest
from shared.pb.cagnet.v1 import coordinator_pb2
from shared.serde import envelope_to_proto

START = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
HOUR = 3600


@pytest.fixture(scope="module")
def netdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    netdir = tmp_path_factory.mktemp("net") / "network"
    network.init_network(netdir, name="Test CAG")
    network.add_principal(netdir, party_id="regional-board", role="regional-board", name="Board")
    return netdir


@pytest.fixture
def manifest(netdir: Path) -> Manifest:
    return network.read(netdir)


def _chair(netdir: Path) -> Identity:
    return Identity.load(network.principal_dir(netdir, "cag-chair"))


def _mandate(manifest: Manifest, *, every_s: int = HOUR, days: int = 30) -> FeedMandate:
    return make_mandate(
        network=manifest.network,
        chair="cag-chair",
        interval_s=every_s,
        not_before=START,
        not_after=START + timedelta(days=days),
        queries=feed_queries(),
    )


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _query(
    netdir: Path, envelope: dsse.Envelope, *, slot: int, signed_at: datetime, kind: str = "supply-map"
) -> coordinator_pb2.JointQueryRequest:
    mandate = FeedMandate.model_validate_json(envelope.payload)
    header = request_header(network.coordinator_identity(netdir), audience=COORDINATOR, method="x")
    header.issued_at_ms = _ms(signed_at)
    query = query_message(mandate.query(kind), header)
    query.mandate.CopyFrom(envelope_to_proto(envelope))
    query.slot = slot
    return query


# --- intervals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("2w", 1209600)]
)
def test_intervals(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds
    assert parse_interval(format_interval(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "7", "7x", "0d", "-1d", "1.5h", "weekly"])
def test_a_bad_interval_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="is not an interval such as 7d, 24h, 30m or 90s"):
        parse_interval(text)


# --- the question -------------------------------------------------------------------------------


def test_the_question_is_every_field_of_a_joint_query_but_who_asks() -> None:
    fields = {f.name for f in coordinator_pb2.JointQueryRequest.DESCRIPTOR.fields}
    # A supply map's as_at is not a feed's question (a feed's maps are of the day they are made),
    # nor an equality cross-tab's fields (no feed asks one): left empty they ask nothing, and set
    # they are refused (below).
    not_asked = {"header", "node_deadline_ms", "mandate", "slot", "as_at", "cross_tab"}
    assert set(MandatedQuery.model_fields) == fields - not_asked
    everything = MandatedQuery(
        kind="vfm",
        by_district=True,
        client_groups=(14, 7),
        from_date="2009-04-01",
        to_date="2010-03-31",
        period="year",
        min_share_percent=40,
        service_type="floating-support",
    )
    message = query_message(everything, request_header(_identity_stub(), audience="c", method="m"))
    message.node_deadline_ms = 900  # how it is asked, not what
    assert question_of(message) == everything
    message.as_at = "2009-04-01"
    with pytest.raises(InvalidRequest):
        question_of(message)
    message.as_at = ""
    message.cross_tab.extend(["ethnicity", "sex"])
    with pytest.raises(InvalidRequest):
        question_of(message)
    assert everything.client_groups == (7, 14)  # a set: the order given does not make another question


def _identity_stub() -> Identity:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Identity("cag-chair", Ed25519PrivateKey.generate(), b"", b"", b"")


def test_a_mandate_allows_the_feeds_three_questions_and_nothing_else() -> None:
    queries = feed_queries(from_date="2009-04-01")
    assert [q.kind for q in queries] == ["supply-map", "net-flow", "kpi"]
    assert queries[0] == MandatedQuery(kind="supply-map")
    assert queries[1] == MandatedQuery(kind="net-flow", from_date="2009-04-01", period="all")
    for bad in (queries[:2], (*queries, MandatedQuery(kind="vfm")), (queries[0], queries[0], queries[2])):
        with pytest.raises(ValueError, match="one query of each kind"):
            FeedMandate(**{**_mandate_fields(), "queries": bad})
    with pytest.raises(ValueError, match="not_after must be later"):
        FeedMandate(**{**_mandate_fields(), "not_after": START})


def _mandate_fields() -> dict[str, object]:
    return {
        "network": "n",
        "chair": "cag-chair",
        "mandate_id": "0" * 32,
        "issued_at": START,
        "not_before": START,
        "not_after": START + timedelta(days=1),
        "interval_s": HOUR,
        "queries": feed_queries(),
    }


# --- opening a mandate --------------------------------------------------------------------------


def test_open_mandate(netdir: Path, manifest: Manifest) -> None:
    mandate = _mandate(manifest)
    envelope = sign_mandate(mandate, _chair(netdir))
    assert open_mandate(envelope, manifest) == (mandate, manifest.party("cag-chair"))
    coordinator = network.coordinator_identity(netdir)
    board = Identity.load(network.principal_dir(netdir, "regional-board"))
    cases: list[tuple[dsse.Envelope, type[Exception]]] = [
        # the chair's name on the coordinator's signature
        (dsse.sign(MANDATE_PAYLOAD_TYPE, mandate.payload(), coordinator.signing_key), BadSignature),
        # the coordinator's own, and a regional board's: valid signatures, not a chair
        (_signed(mandate, COORDINATOR, coordinator), NotPermitted),
        (_signed(mandate, "regional-board", board), NotPermitted),
        # a party the manifest does not list
        (_signed(mandate, "nobody", board), UnknownIssuer),
        # another network
        (sign_mandate(mandate.model_copy(update={"network": "elsewhere"}), _chair(netdir)), WrongAudience),
        # another payload type, and a payload that is not a mandate
        (dsse.sign("application/json", mandate.payload(), _chair(netdir).signing_key), InvalidRequest),
        (dsse.sign(MANDATE_PAYLOAD_TYPE, b"{}", _chair(netdir).signing_key), InvalidRequest),
    ]
    for envelope, error in cases:
        with pytest.raises(error):
            open_mandate(envelope, manifest)


def _signed(mandate: FeedMandate, chair: str, identity: Identity) -> dsse.Envelope:
    named = mandate.model_copy(update={"chair": chair})
    return dsse.sign(MANDATE_PAYLOAD_TYPE, named.payload(), identity.signing_key)


# --- slots --------------------------------------------------------------------------------------


def test_a_slot_is_accepted_in_its_window_give_or_take_the_clock_skew(netdir: Path, manifest: Manifest) -> None:
    envelope = sign_mandate(_mandate(manifest), _chair(netdir))
    slot_3 = START + timedelta(hours=3)

    def check(now: datetime, *, slot: int = 3, signed_at: datetime | None = None) -> None:
        query = _query(netdir, envelope, slot=slot, signed_at=signed_at or now)
        check_mandated_query(query, manifest, current=True, now=_ms(now))

    check(slot_3)
    check(slot_3 + timedelta(minutes=59))
    check(slot_3 - timedelta(seconds=29))  # a coordinator whose clock runs a little fast
    check(slot_3 + timedelta(hours=1, seconds=29), signed_at=slot_3 + timedelta(minutes=59))  # slow node
    for now in (slot_3 - timedelta(seconds=31), slot_3 + timedelta(hours=1, seconds=31)):
        with pytest.raises(ExpiredRequest, match="not for the current slot"):
            check(now, signed_at=slot_3)
    # Signed outside the slot it names: not run in that slot.
    with pytest.raises(ExpiredRequest, match="not signed in its slot"):
        check(slot_3, signed_at=slot_3 + timedelta(hours=2))
    # Before the first slot or after the last; before the mandate starts or after it ends.
    with pytest.raises(NotPermitted, match="outside"):
        check(START, slot=-1)
    with pytest.raises(ExpiredRequest, match="not valid yet"):
        check(START - timedelta(hours=1), slot=0)
    with pytest.raises(ExpiredRequest, match="has expired"):
        check(START + timedelta(days=31), slot=31 * 24)
    with pytest.raises(NotPermitted, match="outside"):
        check_mandated_query(
            _query(netdir, envelope, slot=30 * 24, signed_at=START + timedelta(days=30)),
            manifest,
            current=False,
        )


def test_a_short_interval_tolerates_one_slot_either_side_at_most(netdir: Path, manifest: Manifest) -> None:
    mandate = _mandate(manifest, every_s=2)
    assert mandate.tolerance_s == 2
    envelope = sign_mandate(mandate, _chair(netdir))
    at = START + timedelta(seconds=10)  # slot 5
    for slot, ok in ((3, False), (4, True), (5, True), (6, True), (7, False)):
        signed_at = START + timedelta(seconds=2 * slot)
        query = _query(netdir, envelope, slot=slot, signed_at=signed_at)
        if ok:
            check_mandated_query(query, manifest, current=True, now=_ms(at))
        else:
            with pytest.raises(ExpiredRequest):
                check_mandated_query(query, manifest, current=True, now=_ms(at))


def test_a_question_the_mandate_does_not_hold_is_refused(netdir: Path, manifest: Manifest) -> None:
    envelope = sign_mandate(_mandate(manifest), _chair(netdir))
    query = _query(netdir, envelope, slot=0, signed_at=START)
    query.client_groups.append(14)
    with pytest.raises(NotPermitted, match="not one the feed mandate allows"):
        check_mandated_query(query, manifest, current=False)
    query = _query(netdir, envelope, slot=0, signed_at=START)
    query.ClearField("mandate")
    with pytest.raises(NotPermitted):
        check_mandated_query(query, manifest, current=False)


# --- the coordinator's settings -----------------------------------------------------------------


def test_settings_from_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CoordinatorSettings.load(tmp_path).publish_every_s is None  # no file: off
    (tmp_path / "coordinator.toml").write_text('node_deadline_ms = 2500\n[feed]\npublish_every = "7d"\n')
    settings = CoordinatorSettings.load(tmp_path)
    assert (settings.publish_every_s, settings.node_deadline_ms) == (604800, 2500)
    assert settings.mandate_path(tmp_path) == tmp_path / "feed-mandate.json"
    monkeypatch.setenv("CAGNET_COORDINATOR_FEED_PUBLISH_EVERY", "24h")
    assert CoordinatorSettings.load(tmp_path).publish_every_s == 86400
    monkeypatch.setenv("CAGNET_COORDINATOR_FEED_PUBLISH_EVERY", "off")
    assert CoordinatorSettings.load(tmp_path).publish_every_s is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[feed]\npublish_every = "weekly"\n',
            "coordinator setting {path} [feed] publish_every: 'weekly' is not an interval such as 7d, 24h, 30m",
        ),
        (
            '[feed]\npublish_every = "20s"\n',
            "coordinator setting {path} [feed] publish_every: publish_every 20s is shorter than min_interval 1m",
        ),
        ('[feed]\npublish_evry = "7d"\n', "coordinator setting {path} [feed] publish_evry: not a coordinator setting"),
        ("feed = 3\n", "{path}: [feed] must be a section"),
        ("[feed\n", "{path} is not valid TOML"),
    ],
)
def test_a_bad_setting_names_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "coordinator.toml"
    path.write_text(text)
    with pytest.raises(InvalidRequest) as refused:
        CoordinatorSettings.load(tmp_path)
    assert message.format(path=path) in str(refused.value)


def test_a_bad_setting_in_the_environment_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAGNET_COORDINATOR_FEED_PUBLISH_EVERY", "7 days")
    with pytest.raises(InvalidRequest, match="coordinator setting CAGNET_COORDINATOR_FEED_PUBLISH_EVERY: '7 days'"):
        CoordinatorSettings.load(tmp_path)


def test_the_floor_is_a_setting_too(tmp_path: Path) -> None:
    (tmp_path / "coordinator.toml").write_text('[feed]\npublish_every = "2s"\nmin_interval = "1s"\n')
    assert CoordinatorSettings.load(tmp_path).publish_every_s == 2


# --- the chair's commands -----------------------------------------------------------------------


def test_authorise_show_and_revoke_from_the_command_line(tmp_path: Path) -> None:
    netdir = tmp_path / "network"
    network.init_network(netdir, name="Test CAG")
    runner = CliRunner()
    args = ["feed", "authorise", "--network", str(netdir), "--every", "7d", "--until", "2027-03-31"]
    result = runner.invoke(app, [*args, "--from", "2009-04-01"])
    assert result.exit_code == 0, result.output
    envelope = dsse.Envelope.from_json(json.loads((netdir / "feed-mandate.json").read_text()))
    mandate, chair = open_mandate(envelope, network.read(netdir))
    assert chair.id == "cag-chair" and mandate.interval_s == 7 * 86400
    assert mandate.not_after == datetime(2027, 4, 1, tzinfo=UTC)  # the whole of the last day
    assert mandate.query("kpi").from_date == "2009-04-01"
    shown = runner.invoke(app, ["feed", "mandate", "--network", str(netdir)])
    assert shown.exit_code == 0 and mandate.mandate_id in shown.output and "every 1w" in shown.output
    # Re-authorising replaces it.
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    replaced = FeedMandate.model_validate_json(
        dsse.Envelope.from_json(json.loads((netdir / "feed-mandate.json").read_text())).payload
    )
    assert replaced.mandate_id != mandate.mandate_id
    revoked = runner.invoke(app, ["feed", "revoke", "--network", str(netdir)])
    assert revoked.exit_code == 0 and f"mandate {replaced.mandate_id} revoked" in revoked.output
    assert not (netdir / "feed-mandate.json").exists()
    shown = runner.invoke(app, ["feed", "mandate", "--network", str(netdir)])
    assert "no mandate at" in shown.output


def test_authorise_refuses_a_bad_interval_or_a_non_chair(tmp_path: Path) -> None:
    netdir = tmp_path / "network"
    network.init_network(netdir, name="Test CAG")
    network.add_principal(netdir, party_id="regional-board", role="regional-board", name="Board")
    runner = CliRunner()
    bad = runner.invoke(app, ["feed", "authorise", "--network", str(netdir), "--every", "weekly"])
    assert bad.exit_code == 2 and "--every" in bad.output
    with pytest.raises(NotPermitted, match="not signed by a CAG chair"):
        from coordinator.feeds.client import authorise

        authorise(
            netdir,
            every_s=60,
            not_before=START,
            not_after=START + timedelta(days=1),
            principal="regional-board",
        )
    assert not (netdir / "feed-mandate.json").exists()


def test_the_coordinator_does_not_start_with_a_bad_setting(tmp_path: Path) -> None:
    netdir = tmp_path / "network"
    network.init_network(netdir, name="Test CAG")
    (netdir / "coordinator.toml").write_text('[feed]\npublish_every = "1 minute"\n')
    ran = subprocess.run(
        [sys.executable, "-m", "cagnet.cli", "coordinator", "serve", str(netdir), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert ran.returncode == 2
    assert "[feed] publish_every: '1 minute' is not an interval" in ran.stderr


def test_rotating_the_chairs_key_or_removing_its_role_ends_a_mandate(netdir: Path, manifest: Manifest) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared.manifest import encode_key

    envelope = sign_mandate(_mandate(manifest), _chair(netdir))
    chair = manifest.party("cag-chair")
    now = _ms(datetime.now(UTC))

    def with_chair(**changes: object) -> Manifest:
        return manifest.with_party(chair.model_copy(update=changes))

    rotated = {
        "signing_key": encode_key(Ed25519PrivateKey.generate().public_key()),
        "previous_key": chair.signing_key,
    }
    # Within the rotation's overlap the old key still signs; after it, the mandate no longer verifies.
    open_mandate(envelope, with_chair(**rotated, previous_key_until_ms=now + 60_000), now=now)
    with pytest.raises(BadSignature):
        open_mandate(envelope, with_chair(**rotated, previous_key_until_ms=now - 1), now=now)
    with pytest.raises(NotPermitted):
        open_mandate(envelope, with_chair(roles=("regional-board",)), now=now)

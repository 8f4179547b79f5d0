"""Publishing and subscribing to the sub-regional feed.

`publish` is what a CAG chair runs: it signs one joint query per figure and a publish request
around them. `authorise` signs, as the chair, a standing mandate for the coordinator's schedule to
publish the same queries once an interval; `revoke` takes it away. `subscribe` is what a regional
board runs: it asks for every snapshot after the last one it holds in order, verifies each end to
end before writing it (JSON and CSV), and on a dropped connection reconnects and resumes from what
it holds, so a snapshot is fetched, never skipped.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import grpc

from coordinator import network
from coordinator.feeds.schedule import read_mandate_file, write_mandate_file
from coordinator.feeds.snapshot import FeedSnapshot, snapshot_csv, verify_snapshot_in_chain
from coordinator.joint.client import Refused
from coordinator.settings import CoordinatorSettings
from shared import dsse
from shared.auth import request_header, sign_message
from shared.errors import BundleMismatch, CagnetError, Unavailable
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.mandate import FeedMandate, feed_queries, make_mandate, open_mandate, query_message, sign_mandate
from shared.manifest import CAG_CHAIR, COORDINATOR, REGIONAL_BOARD, ManifestSource
from shared.pb.cagnet.v1 import coordinator_pb2, coordinator_pb2_grpc
from shared.policy import PolicySource
from shared.serde import envelope_from_proto, envelope_to_proto

log = logging.getLogger(__name__)

PUBLISH_FEED = "/cagnet.v1.Coordinator/PublishFeed"
FEED = "/cagnet.v1.Coordinator/Feed"
JOINT_QUERY = "/cagnet.v1.Coordinator/JointQuery"
_SNAPSHOT_FILE = re.compile(r"^snapshot-(\d{6,})\.dsse\.json$")


def _channel(netdir: Path, identity: Identity) -> grpc.Channel:
    # The endpoint is read afresh each time: a coordinator that moved is found on reconnect.
    return secure_channel(
        network.read(netdir).coordinator_endpoint,
        peer_party_id=COORDINATOR,
        ca_pem=identity.ca_cert_pem,
        key_pem=identity.tls_key_pem,
        cert_pem=identity.tls_cert_pem,
    )


def _sources(netdir: Path) -> tuple[ManifestSource, PolicySource]:
    key = dsse.load_public_key(base64.b64decode(network.coordinator_key_b64(netdir)))
    return ManifestSource(network.manifest_path(netdir), key), PolicySource(network.policy_path(netdir), key)


def _verified(envelope: dsse.Envelope, manifests: ManifestSource) -> FeedSnapshot:
    """A snapshot checked against the keys its parties held at the manifest version it names (an
    older snapshot, fetched again after a rotation, still verifies)."""
    manifests.current()  # the chain as the file says now
    return verify_snapshot_in_chain(envelope, [m for m, _ in manifests.history])[0]


def _refused(exc: grpc.RpcError) -> Exception:
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        return Unavailable("the coordinator is not reachable")
    return Refused(exc.code(), exc.details() or "")


def publish(
    netdir: Path, *, principal: str = CAG_CHAIR, from_date: str = "", to_date: str = "", timeout_s: float = 120.0
) -> FeedSnapshot:
    """Sign the feed's joint queries as the chair, have the coordinator run them, verify the snapshot."""
    identity = network.principal_identity(netdir, principal)
    manifests, policies = _sources(netdir)
    policy_digest = policies.current().digest
    queries: list[dsse.Envelope] = []
    for question in feed_queries(from_date=from_date, to_date=to_date):
        header = request_header(identity, audience=COORDINATOR, method=JOINT_QUERY, policy_digest=policy_digest)
        queries.append(sign_message(query_message(question, header), identity))
    header = request_header(identity, audience=COORDINATOR, method=PUBLISH_FEED, policy_digest=policy_digest)
    request = coordinator_pb2.FeedPublishRequest(header=header, queries=[envelope_to_proto(q) for q in queries])
    channel = _channel(netdir, identity)
    try:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        reply = stub.PublishFeed(envelope_to_proto(sign_message(request, identity)), timeout=timeout_s)
    except grpc.RpcError as exc:
        raise _refused(exc) from None
    finally:
        channel.close()
    snapshot = _verified(envelope_from_proto(reply), manifests)
    if [e.query for e in snapshot.evidence] != [q.to_json() for q in queries]:
        raise BundleMismatch("the snapshot was not made from the queries just signed")
    return snapshot


# --- the standing mandate for the coordinator's schedule ---------------------------------------------


def mandate_path(netdir: Path) -> Path:
    """Where the coordinator's settings say the mandate lives (NETDIR/feed-mandate.json by default)."""
    return CoordinatorSettings.load(netdir).mandate_path(netdir)


def authorise(
    netdir: Path,
    *,
    every_s: int,
    not_before: datetime,
    not_after: datetime,
    principal: str = CAG_CHAIR,
    from_date: str = "",
    to_date: str = "",
) -> tuple[FeedMandate, Path]:
    """Sign, as the chair, a mandate for the feed's queries once every `every_s` seconds between
    the two times, and put it where the coordinator reads it (replacing any before it)."""
    identity = network.principal_identity(netdir, principal)
    manifests, _ = _sources(netdir)
    manifest = manifests.current()
    mandate = make_mandate(
        network=manifest.network,
        chair=identity.party_id,
        interval_s=every_s,
        not_before=not_before,
        not_after=not_after,
        queries=feed_queries(from_date=from_date, to_date=to_date),
    )
    envelope = sign_mandate(mandate, identity)
    open_mandate(envelope, manifest)  # refuse here what every node would refuse (not a chair, ...)
    path = mandate_path(netdir)
    write_mandate_file(path, envelope)
    return mandate, path


def current_mandate(netdir: Path) -> tuple[FeedMandate, Path] | None:
    """The mandate on file, verified against the network's manifest, or None."""
    path = mandate_path(netdir)
    envelope = read_mandate_file(path)
    if envelope is None:
        return None
    manifests, _ = _sources(netdir)
    return open_mandate(envelope, manifests.current())[0], path


def revoke(netdir: Path) -> tuple[FeedMandate | None, Path]:
    """Remove the mandate from the coordinator's folder; the schedule stops at its next tick.
    Returns what was there (None if nothing, or if it no longer verified)."""
    path = mandate_path(netdir)
    envelope = read_mandate_file(path)
    if envelope is None:
        return None, path
    manifests, _ = _sources(netdir)
    try:
        mandate: FeedMandate | None = open_mandate(envelope, manifests.current())[0]
    except CagnetError:
        mandate = None
    path.unlink()
    return mandate, path


# --- subscribing ------------------------------------------------------------------------------------


def held(out: Path) -> set[int]:
    """Sequence numbers of the snapshots already written to `out`."""
    if not out.is_dir():
        return set()
    return {int(m.group(1)) for p in out.iterdir() if (m := _SNAPSHOT_FILE.match(p.name))}


def next_wanted(out: Path) -> int:
    """The first sequence number not held: a hole left by a lost file is fetched again."""
    have = held(out)
    n = 1
    while n in have:
        n += 1
    return n


def write_snapshot(out: Path, envelope: dsse.Envelope, snapshot: FeedSnapshot) -> Path:
    """The signed envelope (re-verifiable), the figures as JSON, and as CSV; the envelope last, since
    its presence is what marks the snapshot as held."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"snapshot-{snapshot.sequence:06d}"
    figures = snapshot.model_dump(mode="json", exclude={"evidence"})
    stem.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    stem.with_suffix(".csv").write_text(snapshot_csv(snapshot))
    final = stem.with_suffix(".dsse.json")
    tmp = final.with_suffix(".tmp")
    tmp.write_text(json.dumps(envelope.to_json(), indent=2) + "\n")
    tmp.replace(final)
    return final


def subscribe(
    netdir: Path,
    out: Path,
    *,
    principal: str = REGIONAL_BOARD,
    follow: bool = False,
    stop: threading.Event | None = None,
    on_snapshot: Callable[[FeedSnapshot], None] | None = None,
    retry_s: float = 1.0,
    max_retries: int | None = None,
) -> list[int]:
    """Fetch every snapshot after those held in `out`, verify and write each; with `follow`, keep
    the stream open for new ones, reconnecting after a dropped connection, until `stop` is set.
    Returns the sequence numbers written."""
    identity = network.principal_identity(netdir, principal)
    manifests, policies = _sources(netdir)
    stop = stop or threading.Event()
    written: list[int] = []
    failures = 0
    while not stop.is_set():
        expected = next_wanted(out)
        header = request_header(identity, audience=COORDINATOR, method=FEED, policy_digest=policies.current().digest)
        request = coordinator_pb2.FeedRequest(header=header, from_sequence=expected, follow=follow)
        channel = _channel(netdir, identity)
        call = None
        try:
            stub = coordinator_pb2_grpc.CoordinatorStub(channel)
            call = stub.Feed(envelope_to_proto(sign_message(request, identity)))
            if follow:  # `stop` ends a stream that is waiting for the next snapshot
                threading.Thread(target=lambda c=call: (stop.wait(), c.cancel()), daemon=True).start()
            for proto in call:
                envelope = envelope_from_proto(proto)
                snapshot = _verified(envelope, manifests)
                if snapshot.sequence != expected:
                    raise BundleMismatch(f"expected snapshot {expected}, the coordinator sent {snapshot.sequence}")
                write_snapshot(out, envelope, snapshot)
                written.append(snapshot.sequence)
                failures = 0
                if on_snapshot is not None:
                    on_snapshot(snapshot)
                expected += 1  # the stream runs on in order; ones already held are written again
            if not follow:
                return written
            # The server ended the stream (its time limit): ask again from what is held.
        except grpc.RpcError as exc:
            if stop.is_set():
                break
            code = exc.code()
            if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise _refused(exc) from None
            failures += 1
            if not follow or (max_retries is not None and failures > max_retries):
                raise _refused(exc) from None
            log.info("feed connection lost (%s); resuming from snapshot %d", code.name, next_wanted(out))
            stop.wait(retry_s)
        finally:
            if call is not None:
                call.cancel()
            channel.close()
    return written

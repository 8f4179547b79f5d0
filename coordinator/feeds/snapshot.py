"""Sub-regional feeds for regional housing boards: signed snapshots of CAG-level figures only.

A snapshot is made when a CAG chair publishes: the chair signs one ordinary joint query per figure
(supply map, net flow, KPI 2), the coordinator runs each exactly as `JointQuery` does (nodes see the
chair's query on_behalf_of and apply the policy to the chair), and keeps from the verified bundles
only CAG-level figures. Or on the coordinator's schedule, under the chair's standing mandate
(`shared.mandate`): the coordinator signs the queries the mandate allows, with the mandate and the
slot attached, and the snapshot carries the mandate in place of the chair's per-query signatures.
For evidence the snapshot carries the signed queries, the coordinator's signed request to each node
and each node's signed ContributionReceipt, never a node's response: a board can check who
contributed, to which question, under which policy, without seeing one authority's figure. The
figures themselves rest on the coordinator's signature; the full bundles are kept in the feed
store, and `verify_snapshot(..., bundles=...)` recomputes the figures from them for whoever may
read them (the chair).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, create_engine, func, insert, select
from sqlalchemy.engine import Engine

from coordinator.joint.bundle import Bundle, MissingAuthority, open_contribution_request, verify_bundle
from coordinator.register import store as register_store
from shared import dsse, vocabulary
from shared.accreditation import LoggedEntry, open_entry, provider_status
from shared.auth import contribution_digest, digest, open_signed, verify_response
from shared.canonical import canonical_json
from shared.disclosure import TOTAL
from shared.errors import BadSignature, BundleMismatch, InvalidRequest, UnknownIssuer
from shared.kinds.records import OUTSIDE, UNKNOWN, JointKpi, Tally
from shared.kinds.registry import KINDS
from shared.kinds.supply import JointSupplyMap
from shared.mandate import FEED_KINDS, FeedMandate, check_mandated_query, open_mandate
from shared.manifest import COORDINATOR, Manifest
from shared.migrate import Schema, Store, ensure_current
from shared.pb.cagnet.v1 import coordinator_pb2, node_pb2
from shared.serde import count_table_from_proto, envelope_from_proto

SNAPSHOT_PAYLOAD_TYPE = "application/vnd.cagnet.v1.feed-snapshot+json"
# FEED_KINDS, the joint queries a snapshot is made of, lives in `shared.mandate`: nodes check it too.


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SupplyRow(_Model):
    """CAG supply for one client group: units (capacity, released exactly) and units per 1,000."""

    client_group: int
    name: str
    units: int
    units_per_1000: float


class FlowRow(_Model):
    """New clients arriving at CAG authorities in one client group (0: all groups): from outside
    the CAG, and moving between CAG authorities. Sums of rounded, released counts; `complete` is
    False where a suppressed cell was left out. Flows out of the CAG are not in any member's records."""

    client_group: int
    from_outside: Tally
    between_authorities: Tally


class KpiRow(_Model):
    """KPI 2 across the CAG: planned moves on from short-term services, % of departures."""

    client_group: int
    planned: Tally
    departures: Tally
    percent_planned: float | None


class ProviderCounts(_Model):
    """Providers by overall status in the accreditation register (`shared.accreditation`), on a date,
    at a tree size and root anyone reading the register can recount at."""

    on: str
    tree_size: int
    root: str  # hex
    by_status: dict[str, int]


class ReceiptContribution(_Model):
    authority: str
    request: dict[str, Any]  # DSSE JSON: the coordinator's signed request to the node
    receipt: dict[str, Any]  # DSSE JSON: the node's signed ContributionReceipt (no figures)


class Evidence(_Model):
    kind: str
    # DSSE JSON: the chair's signed JointQueryRequest, or (a scheduled snapshot) the coordinator's,
    # carrying the chair's mandate and the slot
    query: dict[str, Any]
    answered: tuple[str, ...]
    missing: tuple[MissingAuthority, ...]
    bundle_digest: str  # hex SHA-256 of the full bundle's payload, kept by the coordinator
    contributions: tuple[ReceiptContribution, ...]


class MandateEvidence(_Model):
    """What a scheduled snapshot was published under: the CAG chair's signed standing mandate and
    the slot (whole intervals since its not_before)."""

    mandate_id: str
    slot: int
    envelope: dict[str, Any]  # DSSE JSON: the chair's signed FeedMandate

    @classmethod
    def of(cls, mandate: FeedMandate, envelope: dsse.Envelope, slot: int) -> MandateEvidence:
        return cls(mandate_id=mandate.mandate_id, slot=slot, envelope=envelope.to_json())


class FeedSnapshot(_Model):
    network: str
    manifest_version: int
    sequence: int
    published_at: str
    publisher: str
    policy_digest: str
    authorities: tuple[str, ...]  # contributed to every figure
    missing: tuple[MissingAuthority, ...]  # missing from at least one figure, with the reason
    population: int
    supply: tuple[SupplyRow, ...]
    flows: tuple[FlowRow, ...]
    kpi2: tuple[KpiRow, ...]
    providers: ProviderCounts
    evidence: tuple[Evidence, ...]
    # Set on a snapshot the coordinator published on its schedule; `publisher` is then the chair
    # whose mandate it was.
    mandate: MandateEvidence | None = None

    def payload(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


class Figures(_Model):
    population: int
    supply: tuple[SupplyRow, ...]
    flows: tuple[FlowRow, ...]
    kpi2: tuple[KpiRow, ...]


# --- figures from bundles ---------------------------------------------------------------------------


def figures_from_bundles(bundles: dict[str, Bundle]) -> Figures:
    """The CAG-level figures of a snapshot: a pure function of the three verified bundles."""
    supply = bundles["supply-map"].result
    kpi = bundles["kpi"].result
    assert isinstance(supply, JointSupplyMap) and isinstance(kpi, JointKpi)
    return Figures(
        population=supply.population,
        supply=tuple(
            SupplyRow(client_group=g.client_group, name=g.name, units=g.cag_units, units_per_1000=g.cag_rate)
            for g in supply.client_groups
        ),
        flows=_cag_flows(bundles["net-flow"]),
        kpi2=tuple(
            KpiRow(
                client_group=r.client_group,
                planned=r.planned,
                departures=r.departures,
                percent_planned=r.percent_planned,
            )
            for r in kpi.rows
            if r.authority == "CAG"
        ),
    )


def _cag_flows(bundle: Bundle) -> tuple[FlowRow, ...]:
    # From the nodes' released cells, as `combine_net_flow` reads them: origin x client group.
    outside: dict[int, Tally] = defaultdict(Tally)
    within: dict[int, Tally] = defaultdict(Tally)
    for c in bundle.contributions:
        response = node_pb2.CountsResponse.FromString(dsse.Envelope.from_json(c.response).payload)
        table = count_table_from_proto(response)
        for cell in table.cells:
            origin, label = cell.key
            if origin == TOTAL or (cell.margin and label != TOTAL) or origin in (table.authority, UNKNOWN):
                continue
            group = 0 if label == TOTAL else int(label)
            if origin == OUTSIDE:
                outside[group] = outside[group].add(cell.count)
            else:
                within[group] = within[group].add(cell.count)
    groups = sorted(set(outside) | set(within), key=lambda g: (g == 0, g))
    return tuple(FlowRow(client_group=g, from_outside=outside[g], between_authorities=within[g]) for g in groups)


def provider_counts(engine: Engine, *, on: date) -> ProviderCounts:
    """Providers by overall status, from every entry in the register as it stands."""
    size, root = register_store.tree_head(engine)
    by_provider: dict[str, list[LoggedEntry]] = defaultdict(list)
    for index, data in enumerate(register_store.entries(engine, 0, size)):
        _, entry = open_entry(data)
        by_provider[entry.provider.keys[0]].append(LoggedEntry(leaf_index=index, entry=entry))
    counts: dict[str, int] = defaultdict(int)
    for key, entries in by_provider.items():
        counts[provider_status(key, entries, on=on).overall] += 1
    return ProviderCounts(on=on.isoformat(), tree_size=size, root=root.hex(), by_status=dict(sorted(counts.items())))


# --- evidence ---------------------------------------------------------------------------------------


def evidence_from_bundle(bundle: Bundle, bundle_payload: bytes, manifest: Manifest) -> Evidence:
    """The bundle without the nodes' figures: each node's receipt, checked against its response."""
    spec = KINDS[bundle.kind]
    contributions = []
    for c in bundle.contributions:
        response = spec.response_cls.FromString(dsse.Envelope.from_json(c.response).payload)
        receipt_env = envelope_from_proto(response.receipt)
        receipt = verify_response(
            receipt_env,
            node_pb2.ContributionReceipt,
            signer=manifest.party(c.authority),
            request_digest=digest(dsse.Envelope.from_json(c.request).payload),
        )
        if receipt.response_digest != contribution_digest(response):
            raise BundleMismatch("a node's receipt does not match its response")
        contributions.append(
            ReceiptContribution(authority=c.authority, request=c.request, receipt=receipt_env.to_json())
        )
    return Evidence(
        kind=bundle.kind,
        query=bundle.query,
        answered=bundle.answered,
        missing=bundle.missing,
        bundle_digest=hashlib.sha256(bundle_payload).hexdigest(),
        contributions=tuple(contributions),
    )


def build_snapshot(
    *,
    manifest: Manifest,
    sequence: int,
    publisher: str,
    policy_digest: str,
    bundles: dict[str, Bundle],
    bundle_payloads: dict[str, bytes],
    providers: ProviderCounts,
    mandate: MandateEvidence | None = None,
) -> FeedSnapshot:
    figures = figures_from_bundles(bundles)
    answered = [set(b.answered) for b in bundles.values()]
    everywhere = set.intersection(*answered)
    missing: dict[str, str] = {}
    for kind in FEED_KINDS:
        for m in bundles[kind].missing:
            missing.setdefault(m.authority, f"{kind}: {m.reason}")
        for code in sorted(set.union(*answered) - set(bundles[kind].answered)):
            missing.setdefault(code, f"{kind}: did not contribute")
    return FeedSnapshot(
        network=manifest.network,
        manifest_version=manifest.version,
        sequence=sequence,
        published_at=datetime.now(UTC).isoformat(timespec="seconds"),
        publisher=publisher,
        policy_digest=policy_digest,
        authorities=tuple(sorted(everywhere)),
        missing=tuple(MissingAuthority(authority=a, reason=r) for a, r in sorted(missing.items())),
        population=figures.population,
        supply=figures.supply,
        flows=figures.flows,
        kpi2=figures.kpi2,
        providers=providers,
        evidence=tuple(evidence_from_bundle(bundles[k], bundle_payloads[k], manifest) for k in FEED_KINDS),
        mandate=mandate,
    )


def sign_snapshot(snapshot: FeedSnapshot, key: Any) -> dsse.Envelope:
    return dsse.sign(SNAPSHOT_PAYLOAD_TYPE, snapshot.payload(), key)


# --- verification -----------------------------------------------------------------------------------


def verify_snapshot(
    envelope: dsse.Envelope, manifest: Manifest, *, bundles: Sequence[dsse.Envelope] = ()
) -> FeedSnapshot:
    """Every signature and binding a snapshot carries; raises on the first fault.

    1. the coordinator's signature, the payload type, and a well-formed snapshot;
    2. for each figure, a query signed by the publisher (a listed party), of that kind; or, for a
       scheduled snapshot, a mandate signed by the publisher, a CAG chair, for this network, and
       for each figure a query the coordinator signed in the snapshot's slot under that mandate,
       asking exactly one of the questions it allows (`shared.mandate.check_mandated_query`);
    3. for each contribution: a distinct member authority; the coordinator's request to it, for the
       kind's method, made for that query and asking its question; the node's receipt, signed by
       that authority, naming it, answering that request, under the snapshot's policy;
    4. `answered` is exactly the contributors, and `authorities` those common to every figure.
    With `bundles` (the full bundles, for a reader allowed the per-authority figures), each must
    verify, have the digest the evidence names, and the figures are recomputed from them.
    """
    coordinator = manifest.party(COORDINATOR)
    payload = dsse.verify(envelope, coordinator.public_key)
    if envelope.payload_type != SNAPSHOT_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet feed snapshot")
    try:
        snapshot = FeedSnapshot.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidRequest("the snapshot is malformed", detail=str(exc)) from None
    if tuple(e.kind for e in snapshot.evidence) != FEED_KINDS:
        raise BundleMismatch("the snapshot does not hold one piece of evidence per figure")
    publisher = manifest.party(snapshot.publisher)
    answered_sets = []
    for ev in snapshot.evidence:
        spec = KINDS[ev.kind]
        query_env = dsse.Envelope.from_json(ev.query)
        if snapshot.mandate is None:
            query = _publishers_query(query_env, publisher)
        else:
            query = _mandated_query(query_env, snapshot.mandate, publisher, manifest)
        if query.kind != ev.kind:
            raise BundleMismatch("a figure's query is not the publisher's query for that figure")
        seen: set[str] = set()
        for c in ev.contributions:
            try:
                manifest.party(c.authority)
            except UnknownIssuer:
                raise BundleMismatch("a contribution is from an authority not in the manifest") from None
            member, request_env, request = open_contribution_request(
                c.authority, c.request, spec=spec, manifest=manifest, query=query, query_env=query_env, seen=seen
            )
            receipt = verify_response(
                dsse.Envelope.from_json(c.receipt),
                node_pb2.ContributionReceipt,
                signer=member,
                request_digest=digest(request_env.payload),
            )
            if receipt.authority != c.authority:
                raise BundleMismatch("a receipt names another authority")
            if not snapshot.policy_digest == request.header.policy_digest == receipt.header.policy_digest:
                raise BundleMismatch("a contribution was not made under the snapshot's policy")
        if tuple(sorted(seen)) != ev.answered or seen & {m.authority for m in ev.missing}:
            raise BundleMismatch("`answered` does not list exactly the authorities that contributed")
        answered_sets.append(seen)
    if snapshot.authorities != tuple(sorted(set.intersection(*answered_sets))):
        raise BundleMismatch("`authorities` is not the set that contributed to every figure")
    if bundles:
        _check_bundles(snapshot, bundles, manifest)
    return snapshot


def _publishers_query(query_env: dsse.Envelope, publisher: Any) -> coordinator_pb2.JointQueryRequest:
    if not any(s.keyid == publisher.keyid for s in query_env.signatures):
        raise BadSignature("a figure's query is not signed by the publisher")
    query = open_signed(query_env, coordinator_pb2.JointQueryRequest, publisher)
    if query.header.issuer != publisher.id or query.HasField("mandate"):
        raise BundleMismatch("a figure's query is not the publisher's query for that figure")
    return query


def _mandated_query(
    query_env: dsse.Envelope, evidence: MandateEvidence, publisher: Any, manifest: Manifest
) -> coordinator_pb2.JointQueryRequest:
    """A scheduled snapshot's query: the coordinator's, under the publisher's mandate, in its slot."""
    mandate_env = dsse.Envelope.from_json(evidence.envelope)
    mandate, chair = open_mandate(mandate_env, manifest)
    if chair.id != publisher.id or mandate.mandate_id != evidence.mandate_id:
        raise BundleMismatch("the snapshot's mandate is not its publisher's")
    query = open_signed(query_env, coordinator_pb2.JointQueryRequest, manifest.party(COORDINATOR))
    if query.header.issuer != COORDINATOR or query.slot != evidence.slot:
        raise BundleMismatch("a figure's query was not made for the snapshot's slot")
    if not query.HasField("mandate") or envelope_from_proto(query.mandate) != mandate_env:
        raise BundleMismatch("a figure's query was not made under the snapshot's mandate")
    check_mandated_query(query, manifest, current=False)
    return query


def _check_bundles(snapshot: FeedSnapshot, envelopes: Sequence[dsse.Envelope], manifest: Manifest) -> None:
    by_digest = {hashlib.sha256(e.payload).hexdigest(): e for e in envelopes}
    bundles = {}
    for ev in snapshot.evidence:
        env = by_digest.get(ev.bundle_digest)
        if env is None:
            raise BundleMismatch(f"no bundle with the digest the {ev.kind} evidence names")
        bundle = verify_bundle(env, manifest)
        if bundle.query != ev.query or evidence_from_bundle(bundle, env.payload, manifest) != ev:
            raise BundleMismatch("a bundle does not match the snapshot's evidence")
        bundles[ev.kind] = bundle
    figures = figures_from_bundles(bundles)
    if figures != Figures(
        population=snapshot.population, supply=snapshot.supply, flows=snapshot.flows, kpi2=snapshot.kpi2
    ):
        raise BundleMismatch("the snapshot's figures are not what its bundles combine to")


# --- files for subscribers --------------------------------------------------------------------------


def snapshot_csv(snapshot: FeedSnapshot) -> str:
    """One row per figure: section, client group, measure, value, and whether the sum is complete."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sequence", "section", "client_group", "client_group_name", "measure", "value", "complete"])

    def name(g: int) -> str:
        return "all client groups" if g == 0 else vocabulary.CLIENT_GROUPS[g]

    s = snapshot.sequence
    w.writerow([s, "cag", "", "", "population", snapshot.population, True])
    for r in snapshot.supply:
        w.writerow([s, "supply", r.client_group, r.name, "units", r.units, True])
        w.writerow([s, "supply", r.client_group, r.name, "units_per_1000", r.units_per_1000, True])
    for f in snapshot.flows:
        for measure, t in (("from_outside_cag", f.from_outside), ("between_cag_authorities", f.between_authorities)):
            w.writerow([s, "flows", f.client_group, name(f.client_group), measure, t.count, t.complete])
    for k in snapshot.kpi2:
        w.writerow([s, "kpi2", k.client_group, name(k.client_group), "planned", k.planned.count, k.planned.complete])
        w.writerow(
            [s, "kpi2", k.client_group, name(k.client_group), "departures", k.departures.count, k.departures.complete]
        )
        pct = "" if k.percent_planned is None else k.percent_planned
        w.writerow(
            [s, "kpi2", k.client_group, name(k.client_group), "percent_planned", pct, k.percent_planned is not None]
        )
    for status, n in snapshot.providers.by_status.items():
        w.writerow([s, "providers", "", "", status, n, True])
    return buf.getvalue()


# --- the store --------------------------------------------------------------------------------------

metadata = MetaData()
_snapshots = Table(
    "feed_snapshot",
    metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("published_at", String(40), nullable=False),
    Column("envelope", Text, nullable=False),  # DSSE JSON, exactly as signed
    Column("bundles", Text, nullable=False),  # JSON list of the full bundles' DSSE JSON
)


# The feed store's migrations (coordinator/migrations/feeds), declared beside its table.
SCHEMA = Schema(
    name="feeds",
    package="coordinator.migrations.feeds",
    metadata=metadata,
    core_tables=frozenset({"feed_snapshot"}),
)

STORE = Store(title="the feed store's database", schemas=(SCHEMA,), upgrade_command="cagnet coordinator upgrade NETDIR")


def default_database_url(netdir: Path) -> str:
    """Where a coordinator keeps its feed snapshots unless `feed_database_url` says otherwise."""
    return f"sqlite:///{(netdir / 'feeds.db').resolve()}"


class FeedStore:
    """Snapshots by sequence number (SQLite file in the network folder, or any database URL), and a
    condition subscribers wait on for the next one."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        try:
            ensure_current(self.engine, STORE)  # refuses an older or newer schema (`shared.migrate`)
        except BaseException:
            self.engine.dispose()
            raise
        self._published = threading.Condition()
        self._publish_lock = threading.Lock()

    def close(self) -> None:
        with self._published:
            self._published.notify_all()
        self.engine.dispose()

    def last_sequence(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(_snapshots.c.sequence), 0))).scalar_one())

    def publish(self, make: Any) -> dsse.Envelope:
        """Store the snapshot `make(sequence)` returns as (envelope, bundle envelopes), numbered next."""
        with self._publish_lock:  # one coordinator process numbers the snapshots
            sequence = self.last_sequence() + 1
            envelope, bundles = make(sequence)
            with self.engine.begin() as conn:
                conn.execute(
                    insert(_snapshots).values(
                        sequence=sequence,
                        published_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        envelope=json.dumps(envelope.to_json()),
                        bundles=json.dumps([b.to_json() for b in bundles]),
                    )
                )
        with self._published:
            self._published.notify_all()
        return envelope

    def last_published_under(self, mandate_id: str, *, scan: int = 1000) -> float | None:
        """When (epoch seconds) the coordinator began the latest snapshot published under this
        feed mandate, looking back `scan` snapshots: when it signed the first figure's query."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_snapshots.c.envelope).order_by(_snapshots.c.sequence.desc()).limit(scan)).all()
        for row in rows:
            snapshot = FeedSnapshot.model_validate_json(dsse.Envelope.from_json(json.loads(row.envelope)).payload)
            if snapshot.mandate is not None and snapshot.mandate.mandate_id == mandate_id:
                first = dsse.Envelope.from_json(snapshot.evidence[0].query).payload
                return coordinator_pb2.JointQueryRequest.FromString(first).header.issued_at_ms / 1000
        return None

    def since(self, sequence: int, *, limit: int = 100) -> list[tuple[int, dsse.Envelope]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_snapshots.c.sequence, _snapshots.c.envelope)
                .where(_snapshots.c.sequence >= sequence)
                .order_by(_snapshots.c.sequence)
                .limit(limit)
            ).all()
        return [(int(r.sequence), dsse.Envelope.from_json(json.loads(r.envelope))) for r in rows]

    def bundles(self, sequence: int) -> list[dsse.Envelope]:
        with self.engine.connect() as conn:
            raw = conn.execute(select(_snapshots.c.bundles).where(_snapshots.c.sequence == sequence)).scalar_one()
        return [dsse.Envelope.from_json(b) for b in json.loads(raw)]

    def wait(self, after: int, timeout_s: float) -> None:
        """Return when a snapshot after `after` may exist, or after `timeout_s`."""
        with self._published:
            if self.last_sequence() <= after:
                self._published.wait(timeout_s)

    def wake(self) -> None:
        with self._published:
            self._published.notify_all()

    def stream(self, from_sequence: int, *, follow: bool, active: Any) -> Iterator[dsse.Envelope]:
        """Snapshots in order from `from_sequence`, then (following) each new one while `active()`."""
        expected = max(1, from_sequence)
        while active():
            batch = self.since(expected)
            for sequence, envelope in batch:
                if sequence != expected:  # a hole in the store is reported, never skipped
                    raise InvalidRequest(f"snapshot {expected} is missing from the coordinator's store")
                yield envelope
                expected += 1
            if batch:
                continue
            if not follow:
                return
            self.wait(expected - 1, 1.0)

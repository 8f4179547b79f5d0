"""The members' side of governance, run from a node's folder, over gRPC to the coordinator.

`sync` keeps the node's manifest chain up to date from the coordinator's Manifest RPC (one-shot
with `cagnet node sync-manifest`, and every `manifest_poll_s` seconds while `cagnet node serve`
runs). `Member` reviews, approves and proposes changes with the node's identity. Nothing the
coordinator sends is taken as it stands: a manifest counts only as the next link of the node's own
verified chain (the same rules as a new file: no rollback, no skip, a quorum of the previous
members), and a proposal's candidate only if it is exactly the change applied to the node's own
head; the node then signs the candidate it computed itself. See docs/governance.md.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from node.config import NodeConfig, load_config
from shared import dsse, governance, keys, sealing
from shared.channel import ServiceRefused, coordinator_endpoints
from shared.errors import CagnetError, NotFound, NotPermitted, Unavailable
from shared.governance import Change, Filed, Proposal, Review
from shared.governance_client import GovernanceClient, sync_manifests
from shared.identity import Identity
from shared.manifest import Governance, Manifest, ManifestSource
from shared.policy import PolicySource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Synced:
    """What one sync did: the version the node holds now and the versions it accepted."""

    version: int
    accepted: tuple[int, ...]


def node_manifests(config: NodeConfig) -> ManifestSource:
    """The node's verified chain: its kept history, then its manifest file."""
    trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
    return ManifestSource(config.manifest_path, trusted, keep=config.manifest_history)


def sync(manifests: ManifestSource, client: GovernanceClient) -> Synced:
    """Fetch the coordinator's latest manifest and take it only as the next verified link(s) of
    `manifests` (versions skipped in between are fetched by number and checked one by one).
    Raises ManifestRefused (or another VerificationError) and keeps the head on anything else."""

    return Synced(*sync_manifests(manifests, client))


def seal_to_admitted(
    manifests: ManifestSource, client: GovernanceClient, identity: Identity, linkage_key: Path
) -> list[str]:
    """Seal the network linkage key to every member a quorum has admitted that still waits for it;
    the ids sealed to. What `cagnet network seal-linkage-key` does, done by a running node itself,
    but only once the network is governed: then the verified head lists the joiner because a
    quorum of members signed it (the charter, or the join), and the sealing key is the one in the
    joiner's own signed request for exactly the signing key that head lists. While founding, the
    founding key alone lists members, so the coordinator could list a party of its own making: a
    person seals then (`network proposals` shows who waits), never a node by itself."""
    from node.answers.linkage import load_linkage_key

    head = manifests.current()
    if not head.governed:
        return []
    sealed: list[str] = []
    for envelope in client.awaiting_key():
        request = governance.open_join_request(envelope)  # the joiner's own signature, checked here
        listed = next((p for p in head.members if p.id == request.party_id), None)
        if listed is None or listed.signing_key != request.signing_key or not request.sealing_key:
            continue  # not (or not so) admitted in this node's own chain: nothing is sealed to it
        client.file_sealed_key(
            sealing.seal(
                load_linkage_key(linkage_key),
                network=head.network,
                party_id=request.party_id,
                recipient_key=request.sealing_key,
                join_request=envelope,
                sealed_by=identity.party_id,
                signing_key=identity.signing_key,
            )
        )
        sealed.append(request.party_id)
    return sealed


class ManifestPoller:
    """Runs `sync` now and then every `interval_s` seconds on a thread until stopped, logging what
    it accepts and what it refuses (a refusal keeps the version in force)."""

    def __init__(
        self,
        manifests: ManifestSource,
        identity: Callable[[], Identity],
        interval_s: float,
        *,
        endpoint: str | None = None,
        linkage_key: Path | None = None,
    ) -> None:
        # `identity` is asked each round: a node that rotated its key signs with the one in force.
        self._manifests, self._identity, self._interval = manifests, identity, interval_s
        self._endpoint = endpoint
        # With the node's linkage key: each round also seals it to members admitted since (governed only).
        self._linkage_key = linkage_key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="manifest-poller", daemon=True)
        # When a round last reached the coordinator and checked its manifest (Unix time; a metric).
        self.last_synced_at: float | None = None

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._interval)

    def run_once(self) -> Synced | None:
        try:
            # A fresh channel each round: the coordinator's endpoint is whatever the head says now.
            with GovernanceClient(
                self._identity(),
                self._manifests.current,
                endpoint=self._endpoint,
                known=coordinator_endpoints(self._manifests),
            ) as client:
                synced = sync(self._manifests, client)
                self._seal(client)
        except Unavailable as exc:
            log.info("manifest sync: %s", exc.public_message)
            return None
        except ServiceRefused as exc:
            log.warning("manifest sync: the coordinator refused (%s): %s", exc.code.name, exc.public_message)
            return None
        except CagnetError as exc:
            log.warning("manifest from the coordinator refused, keeping version %s: %s", self._head(), exc)
            return None
        self.last_synced_at = time.time()
        if synced.accepted:
            log.info("manifest versions %s accepted from the coordinator", ", ".join(map(str, synced.accepted)))
        return synced

    def _seal(self, client: GovernanceClient) -> None:
        if self._linkage_key is None or not self._linkage_key.exists():
            return  # a node still waiting for the key itself has none to seal
        try:
            for party_id in seal_to_admitted(self._manifests, client, self._identity(), self._linkage_key):
                log.info("network linkage key sealed to %s, whom the members' quorum admitted", party_id)
        except CagnetError as exc:  # the next round tries again
            log.warning("sealing the linkage key to an admitted member: %s", exc.public_message)

    def _head(self) -> int:
        return self._manifests.current().version


class Member:
    """A member authority acting through its node's folder: its identity signs, its own verified
    chain is what proposals are checked against. Use as a context manager (one channel)."""

    def __init__(self, nodedir: Path, *, endpoint: str | None = None) -> None:
        self.config = load_config(nodedir)
        self.manifests = node_manifests(self.config)
        # A rotated key the node has not switched to yet (it is not running): switch as it would.
        keys.promote_if_listed(self.config.identity_dir, self.manifests.current(), self.config.authority)
        self.identity = self.config.identity()
        self.client = GovernanceClient(
            self.identity, self.manifests.current, endpoint=endpoint, known=coordinator_endpoints(self.manifests)
        )

    @property
    def head(self) -> Manifest:
        return self.manifests.current()

    def sync(self) -> Synced:
        return sync(self.manifests, self.client)

    def review(self, filed: Filed) -> Review:
        """Check a proposal against this node's head (raises if the coordinator's candidate is not
        exactly the change applied to it)."""
        return governance.review(self.head, filed, ca_cert_pem=self.identity.ca_cert_pem)

    def proposals(self) -> list[tuple[Filed, Review | CagnetError]]:
        """Open proposals after a sync, each with this node's review or the reason it fails."""
        self.sync()
        _, found = self.client.proposals()
        return governance.review_all(self.head, found, ca_cert_pem=self.identity.ca_cert_pem)

    def find(self, proposal_id: str) -> Review:
        """Proposal `proposal_id`, reviewed (after a sync, so the head is the network's latest)."""
        self.sync()
        _, found = self.client.proposals()
        for filed in found:
            if filed.id == proposal_id:
                return self.review(filed)
        raise NotFound(
            f"no open proposal {proposal_id}: it was published, or closed because another change to the same "
            "manifest version was published first, or withdrawn (`cagnet network proposals` lists the open ones; "
            "a closed change must be proposed again)"
        )

    def approve(self, review: Review) -> Filed:
        """Sign the candidate this node computed in `review` and send the signature; a published
        version is synced into the node at once."""
        voters = governance.voters(review.base, review.proposal)
        if self.identity.party_id not in {p.id for p in voters.members}:
            raise NotPermitted(f"only a member authority may approve; {self.identity.party_id} is not one")
        signature = governance.approval(review.candidate, self.identity.signing_key)
        filed = self.client.approve(review.id, signature)
        return self._settle(filed)

    def propose(self, change: Change) -> Filed:
        """Sign `change` against this node's head (after a sync) and file it with this member's
        approval of the candidate it computed."""
        self.sync()
        head = self.head
        proposal = Proposal(
            network=head.network, applies_to=head.version, proposed_by=self.identity.party_id, change=change
        )
        candidate = governance.apply_change(head, change)  # a change that cannot apply is refused here
        signed = dsse.sign(governance.PROPOSAL_PAYLOAD_TYPE, proposal.canonical_bytes(), self.identity.signing_key)
        filed = self.client.propose(signed, approval=governance.approval(candidate, self.identity.signing_key))
        return self._settle(filed)

    def charter(self, rules: Governance | None = None) -> Filed:
        """Propose the charter, carrying the policy this node applies now (every member approves)."""
        trusted = dsse.load_public_key(base64.b64decode(self.config.coordinator_key))
        policy = PolicySource(self.config.policy_file, trusted, manifests=self.manifests).current()
        change = Change(action="charter", governance=rules or Governance(), policy=policy.source.decode("utf-8"))
        return self.propose(change)

    def sponsor_join(self, join_request: dsse.Envelope) -> Review:
        """Hand a joiner's self-signed request to the coordinator, which issues its certificate and
        files the change; returns this member's review of it (approve it to count as sponsor)."""
        governance.open_join_request(join_request)  # the joiner's own signature, before anything is sent
        self.sync()
        return self.review(self.client.sponsor_join(join_request))

    def join_requests(self) -> list[dsse.Envelope]:
        """Join requests filed over the onboarding port that wait for a sponsor (each still to be
        checked against the key it lists: `shared.governance.open_join_request`)."""
        _, _, waiting = self.client.proposals_and_joins()
        return waiting

    def awaiting_key(self) -> list[dsse.Envelope]:
        """Join requests of listed members that wait for the network linkage key."""
        return self.client.awaiting_key()

    def file_sealed(self, sealed: dsse.Envelope) -> str:
        """Hand the coordinator the linkage key this member sealed to a joiner."""
        return self.client.file_sealed_key(sealed)

    def _settle(self, filed: Filed) -> Filed:
        if filed.published:
            self.sync()
        return filed

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Member:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

"""A member's client for the Governance service on the coordinator (proto/cagnet/v1/governance.proto).

It carries signed requests and returns what the coordinator says, verified only as the
coordinator's reply: a manifest envelope must still be checked against the chain
(`ManifestSource.offer`), and a proposal reviewed against the member's own head
(`shared.governance.review`) before anyone signs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.protobuf.message import DecodeError

from shared import dsse, governance
from shared.auth import now_ms, verify_response
from shared.channel import CoordinatorChannel
from shared.errors import BadSignature, InvalidRequest
from shared.governance import Filed
from shared.identity import Identity
from shared.manifest import COORDINATOR, Manifest, ManifestSource
from shared.pb.cagnet.v1 import governance_pb2, governance_pb2_grpc
from shared.serde import envelope_from_proto, envelope_to_proto, filed_from_proto

SERVICE = "cagnet.v1.Governance"


def sync_manifests(manifests: ManifestSource, client: GovernanceClient) -> tuple[int, tuple[int, ...]]:
    """Fetch the coordinator's latest manifest and take it only as the next verified link(s) of
    `manifests` (versions skipped in between are fetched by number and checked one by one); the
    version held now and the versions accepted. Raises ManifestRefused (or another
    VerificationError) and keeps the head on anything else."""

    def fetch(version: int) -> dsse.Envelope:
        return client.manifest_envelope(version)[0]

    try:
        latest, _ = client.manifest_envelope(0)
    except BadSignature:
        return _sync_after_coordinator_rotation(manifests, client)
    added = manifests.offer(latest, fetch)
    return manifests.current().version, tuple(governance.parse_unverified(env).version for env in added)


def _sync_after_coordinator_rotation(
    manifests: ManifestSource, client: GovernanceClient
) -> tuple[int, tuple[int, ...]]:
    """The coordinator's reply does not verify under the key this chain's head lists for it: it may
    have rotated its key in a version this chain has not taken up (a kit not used since, a node that
    was off). The versions it sends carry their own signatures (the members' quorum, or the founding
    key) and are taken only as verified links, whoever delivered them; each reply is then checked
    under the key the new head lists, and refused if it does not verify there either."""
    replies: list[tuple[dsse.Envelope, bytes]] = []

    def fetch(version: int) -> dsse.Envelope:
        envelope, _, reply = client.manifest_envelope_unverified(version)
        replies.append(reply)
        return envelope

    latest = fetch(0)
    added = manifests.offer(latest, fetch)
    coordinator = manifests.current().party(COORDINATOR)
    for envelope, request_digest in replies:
        verify_response(
            envelope, governance_pb2.ManifestResponse, signer=coordinator, request_digest=request_digest, now=now_ms()
        )
    return manifests.current().version, tuple(governance.parse_unverified(env).version for env in added)


class GovernanceClient(CoordinatorChannel):
    service = SERVICE

    def __init__(
        self,
        identity: Identity,
        manifest: Callable[[], Manifest],
        *,
        endpoint: str | None = None,
        known: Sequence[str] = (),
    ) -> None:
        super().__init__(identity, manifest, endpoint=endpoint, known=known)
        self._stub = governance_pb2_grpc.GovernanceStub(self._channel)

    def manifest_envelope(self, version: int = 0) -> tuple[dsse.Envelope, int]:
        """The published envelope of `version` (0: the latest), and the latest version number."""
        reply = self._call("Manifest", governance_pb2.ManifestRequest(version=version), governance_pb2.ManifestResponse)
        return envelope_from_proto(reply.manifest), reply.latest

    def manifest_envelope_unverified(self, version: int = 0) -> tuple[dsse.Envelope, int, tuple[dsse.Envelope, bytes]]:
        """As `manifest_envelope`, with the reply not yet checked: the caller verifies the manifest
        as a link of its chain, then the reply (returned with the request's digest) under the key
        the chain's new head lists for the coordinator (`sync_manifests`)."""
        reply, request_digest = self._send("Manifest", governance_pb2.ManifestRequest(version=version))
        unverified = governance_pb2.ManifestResponse()
        try:
            unverified.ParseFromString(reply.payload)
        except DecodeError:
            raise InvalidRequest("malformed ManifestResponse payload") from None
        return envelope_from_proto(unverified.manifest), unverified.latest, (reply, request_digest)

    def proposals(self) -> tuple[int, list[Filed]]:
        """The version open proposals apply to, and the proposals (unverified)."""
        version, filed, _ = self.proposals_and_joins()
        return version, filed

    def proposals_and_joins(self) -> tuple[int, list[Filed], list[dsse.Envelope]]:
        """As `proposals`, with the join requests filed over the onboarding port that wait for a
        sponsor (unverified: `shared.governance.open_join_request` checks each)."""
        reply = self._call("Proposals", governance_pb2.ProposalsRequest(), governance_pb2.ProposalsResponse)
        joins = [envelope_from_proto(e) for e in reply.join_requests]
        return reply.version, [filed_from_proto(p) for p in reply.proposals], joins

    def awaiting_key(self) -> list[dsse.Envelope]:
        """Join requests of listed members that wait for the network linkage key (unverified:
        `shared.governance.open_join_request` checks each)."""
        reply = self._call("Proposals", governance_pb2.ProposalsRequest(), governance_pb2.ProposalsResponse)
        return [envelope_from_proto(e) for e in reply.awaiting_key]

    def file_sealed_key(self, sealed: dsse.Envelope) -> str:
        """Hand the coordinator a linkage key this member sealed to a joiner; the joiner's id."""
        request = governance_pb2.SealedKeyRequest(sealed=envelope_to_proto(sealed))
        return self._call("FileSealedKey", request, governance_pb2.SealedKeyResponse).party_id

    def propose(self, signed: dsse.Envelope, *, approval: bytes = b"") -> Filed:
        request = governance_pb2.ProposeRequest(proposal=envelope_to_proto(signed), approval=approval)
        return filed_from_proto(self._call("Propose", request, governance_pb2.ProposalResponse).proposal)

    def sponsor_join(self, join_request: dsse.Envelope) -> Filed:
        request = governance_pb2.ProposeRequest(join_request=envelope_to_proto(join_request))
        return filed_from_proto(self._call("Propose", request, governance_pb2.ProposalResponse).proposal)

    def approve(self, proposal_id: str, signature: bytes) -> Filed:
        request = governance_pb2.ApproveRequest(proposal_id=proposal_id, signature=signature)
        return filed_from_proto(self._call("Approve", request, governance_pb2.ProposalResponse).proposal)

"""The Governance gRPC service, hosted by the coordinator process beside Coordinator and Register.

The same signed-envelope interceptor and request checks as every cagnet service (issuer, audience
"coordinator", method, expiry, nonce, signature, TLS peer = signer and the certificate the
manifest lists), then a role check: any listed member authority or principal may read the
manifest; only member authorities of the current manifest may list, propose and approve. Every
call, answered or refused, is logged and written to the coordinator's audit log (`coordinator.audit`)
with who asked. The servicer converts and signs; `coordinator.governance` holds the rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from coordinator import network
from coordinator.audit import CoordinatorAudit, request_parameters
from coordinator.governance import proposals as gov
from coordinator.onboarding import invites as onboarding
from shared import dsse, governance
from shared.auth import NonceCache, Verified, response_header, sign_message
from shared.errors import CagnetError, InvalidRequest, NotFound, NotPermitted
from shared.governance import Filed
from shared.identity import Identity
from shared.interceptor import SignedEnvelopeInterceptor, current_request
from shared.manifest import CAG_CHAIR, COORDINATOR, MEMBER_AUTHORITY, REGIONAL_BOARD, ManifestSource
from shared.pb.cagnet.v1 import envelope_pb2, governance_pb2, governance_pb2_grpc
from shared.serde import envelope_from_proto, envelope_to_proto, filed_to_proto

log = logging.getLogger(__name__)

SERVICE = "cagnet.v1.Governance"
MANIFEST = f"/{SERVICE}/Manifest"
PROPOSALS = f"/{SERVICE}/Proposals"
PROPOSE = f"/{SERVICE}/Propose"
APPROVE = f"/{SERVICE}/Approve"
FILE_SEALED_KEY = f"/{SERVICE}/FileSealedKey"
METHODS: dict[str, tuple[type[Message], tuple[str, ...]]] = {
    MANIFEST: (governance_pb2.ManifestRequest, (MEMBER_AUTHORITY, CAG_CHAIR, REGIONAL_BOARD)),
    PROPOSALS: (governance_pb2.ProposalsRequest, (MEMBER_AUTHORITY,)),
    # A principal may file one thing: the rotation of its own key (`cagnet kit rotate-key`), which
    # members then approve; everything else is a member authority's (checked in Propose).
    PROPOSE: (governance_pb2.ProposeRequest, (MEMBER_AUTHORITY, CAG_CHAIR, REGIONAL_BOARD)),
    APPROVE: (governance_pb2.ApproveRequest, (MEMBER_AUTHORITY,)),
    FILE_SEALED_KEY: (governance_pb2.SealedKeyRequest, (MEMBER_AUTHORITY,)),
}


@dataclass
class GovernanceRuntime:
    netdir: Path
    identity: Identity
    manifests: ManifestSource
    nonces: NonceCache = field(default_factory=NonceCache)
    # The coordinator's audit log; `coordinator.server.create_server` puts in the one its services share.
    audit: CoordinatorAudit = field(init=False)

    def __post_init__(self) -> None:
        self.audit = CoordinatorAudit(self.netdir, self.manifests)

    def authenticate(self, method: str, envelope: dsse.Envelope, peer: str | None) -> Verified[Any]:
        return self.audit.authenticate(METHODS, method, envelope, peer, nonces=self.nonces)

    def on_reject(self, method: str, peer: str | None, error: CagnetError, verified: Verified[Any] | None) -> None:
        log.warning("governance refused %s from %s: %s", method, peer or "unknown peer", error.public_message)
        self.audit.on_reject(method, peer, error, verified)

    def manifest_envelope(self, version: int) -> tuple[dsse.Envelope, int]:
        """The published envelope of `version` (0: the latest), unchanged, and the latest version."""
        history = network.history(self.netdir)
        latest = history[-1][0].version
        for manifest, envelope in reversed(history):
            if manifest.version == (version or latest):
                return envelope, latest
        raise NotFound(f"no manifest version {version}; the latest is {latest}")

    def interceptor(self) -> SignedEnvelopeInterceptor:
        return SignedEnvelopeInterceptor((SERVICE,), self.authenticate, self.on_reject)


class GovernanceServicer(governance_pb2_grpc.GovernanceServicer):
    def __init__(self, runtime: GovernanceRuntime) -> None:
        self.rt = runtime

    def _reply(
        self,
        method: str,
        verified: Verified[Any],
        message: Message,
        outcome: dict[str, object] | None = None,
        *,
        audited: bool = True,
    ) -> envelope_pb2.Envelope:
        """Sign the response and (if `audited`) write the call, with `outcome`, to the audit log."""
        header = response_header(self.rt.identity, request_digest=verified.request_digest)
        message.header.CopyFrom(header)  # type: ignore[attr-defined]
        signed = sign_message(message, self.rt.identity)
        if audited:
            parameters = {**request_parameters(verified.message), **(outcome or {})}
            self.rt.audit.released(verified.principal, method, parameters, signed)
        return envelope_to_proto(signed)

    def _filed(self, verified: Verified[Any], method: str, filed: Filed) -> envelope_pb2.Envelope:
        state = "published" if filed.published else f"{len(filed.approvals)} of {filed.needed} approvals"
        log.info("governance: %s %s proposal %s (%s)", verified.issuer.id, method.rsplit("/", 1)[-1], filed.id, state)
        change = filed.proposal.change
        if filed.published and change.action == "rotate-key" and change.party_id == COORDINATOR:
            # This process signs with the key it started with: restarted now, it takes up the new one.
            log.warning(
                "manifest version %d lists the coordinator's new signing key: restart `cagnet coordinator serve`"
                " now; until then the bundles and feed snapshots it signs do not verify against that version",
                filed.candidate.version,
            )
        reply = governance_pb2.ProposalResponse(proposal=filed_to_proto(filed))
        return self._reply(method, verified, reply, {"proposal": filed.id, "state": state})

    def Manifest(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        envelope, latest = self.rt.manifest_envelope(verified.message.version)
        reply = governance_pb2.ManifestResponse(manifest=envelope_to_proto(envelope), latest=latest)
        # Not written when served: every node polls for it every 30 s, and a published manifest is
        # every member's already. A refused or rejected read is written like any other call.
        return self._reply(MANIFEST, verified, reply, audited=False)

    def Proposals(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        version = network.read(self.rt.netdir).version
        pending = gov.pending(self.rt.netdir)
        waiting = onboarding.awaiting_sponsor(self.rt.netdir)
        unsealed = onboarding.awaiting_key(self.rt.netdir)
        reply = governance_pb2.ProposalsResponse(
            version=version,
            proposals=[filed_to_proto(f) for f in pending],
            join_requests=[envelope_to_proto(e) for e in waiting],
            awaiting_key=[envelope_to_proto(e) for e in unsealed],
        )
        outcome = {
            "version": version,
            "open": [f.id for f in pending],
            "join_requests": len(waiting),
            "awaiting_key": len(unsealed),
        }
        return self._reply(PROPOSALS, verified, reply, outcome)

    def Propose(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        message: governance_pb2.ProposeRequest = verified.message
        caller = verified.issuer.id
        if message.HasField("join_request") == message.HasField("proposal"):
            raise InvalidRequest("a proposal, or a join request to sponsor: one of the two")
        if not verified.issuer.has_role(MEMBER_AUTHORITY):
            _require_own_rotation(verified.issuer.id, message)
        if message.HasField("join_request"):
            filed = gov.sponsor_join(self.rt.netdir, envelope_from_proto(message.join_request), sponsor=caller)
        else:
            filed = gov.file_proposal(self.rt.netdir, envelope_from_proto(message.proposal), proposer=caller)
            if message.approval:
                filed = gov.add_approval(self.rt.netdir, filed.id, caller, bytes(message.approval))
        return self._filed(verified, PROPOSE, filed)

    def Approve(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        message: governance_pb2.ApproveRequest = verified.message
        filed = gov.add_approval(self.rt.netdir, message.proposal_id, verified.issuer.id, bytes(message.signature))
        return self._filed(verified, APPROVE, filed)

    def FileSealedKey(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        message: governance_pb2.SealedKeyRequest = verified.message
        if not message.HasField("sealed"):
            raise InvalidRequest("sealed: the sealed linkage key is missing")
        party_id = onboarding.store_sealed(self.rt.netdir, verified.issuer, envelope_from_proto(message.sealed))
        log.info("governance: %s filed a sealed linkage key for %s", verified.issuer.id, party_id)
        reply = governance_pb2.SealedKeyResponse(party_id=party_id)
        return self._reply(FILE_SEALED_KEY, verified, reply, {"joiner": party_id})


def _require_own_rotation(caller: str, message: governance_pb2.ProposeRequest) -> None:
    """A principal files only the rotation of its own key, and approves nothing."""
    change = (
        governance.parse_proposal(envelope_from_proto(message.proposal)).change
        if message.HasField("proposal")
        else None
    )
    if change is None or change.action != "rotate-key" or change.party_id != caller or message.approval:
        raise NotPermitted(f"{caller} may propose only the rotation of its own key; members decide the rest")


def add_to_server(server: grpc.Server, runtime: GovernanceRuntime) -> None:
    governance_pb2_grpc.add_GovernanceServicer_to_server(GovernanceServicer(runtime), server)

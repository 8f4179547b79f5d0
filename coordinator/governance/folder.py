"""A member's governance steps taken on the coordinator's network folder itself (its operator's
machine, no server): the same steps `node.network.governance.Member` takes over gRPC, checked
against the folder's verified chain and signed with the member node's key (`cagnet network ...
--node NODEDIR --network NETDIR`)."""

from __future__ import annotations

from pathlib import Path

from coordinator import network
from coordinator.governance import proposals as gov
from coordinator.onboarding import invites as onboarding
from shared import dsse, governance
from shared.errors import CagnetError
from shared.governance import Change, Filed, Review
from shared.identity import Identity
from shared.manifest import Governance, Manifest


class FolderMember:
    """A member's steps on the coordinator's network folder: checked against the folder's verified
    chain, signed with the member node's key."""

    def __init__(self, netdir: Path, nodedir: Path) -> None:
        self.netdir = netdir
        self.identity = Identity.load(nodedir / "identity")

    @property
    def head(self) -> Manifest:
        return network.read(self.netdir)

    def propose(self, change: Change) -> Filed:
        return gov.propose(self.netdir, change, self.identity)

    def charter(self, rules: Governance | None = None) -> Filed:
        return gov.charter(self.netdir, self.identity, rules)

    def sponsor_join(self, join_request: dsse.Envelope) -> Review:
        return self._review(gov.sponsor_join(self.netdir, join_request, self.identity.party_id))

    def proposals(self) -> list[tuple[Filed, Review | CagnetError]]:
        return governance.review_all(self.head, gov.pending(self.netdir), ca_cert_pem=self.identity.ca_cert_pem)

    def find(self, proposal_id: str) -> Review:
        return self._review(gov.status(self.netdir, proposal_id))

    def approve(self, review: Review) -> Filed:
        signature = governance.approval(review.candidate, self.identity.signing_key)
        return gov.add_approval(self.netdir, review.id, self.identity.party_id, signature)

    def _review(self, filed: Filed) -> Review:
        return governance.review(self.head, filed, ca_cert_pem=self.identity.ca_cert_pem)

    def join_requests(self) -> list[dsse.Envelope]:
        return onboarding.awaiting_sponsor(self.netdir)

    def awaiting_key(self) -> list[dsse.Envelope]:
        return onboarding.awaiting_key(self.netdir)

    def file_sealed(self, sealed: dsse.Envelope) -> str:
        return onboarding.store_sealed(self.netdir, self.head.party(self.identity.party_id), sealed)

    def close(self) -> None:
        pass

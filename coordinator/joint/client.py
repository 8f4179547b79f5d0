"""A principal's client for the coordinator: sign a joint query as (say) the CAG chair, send it
over mTLS, and verify the bundle that comes back before anyone reads a figure from it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from coordinator import network
from coordinator.joint.bundle import Bundle, verify_bundle
from shared import dsse
from shared.auth import request_header, sign_message
from shared.channel import coordinator_endpoints, unreachable
from shared.errors import CagnetError, InvalidRequest, Unavailable
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR, ManifestSource
from shared.pb.cagnet.v1 import coordinator_pb2, coordinator_pb2_grpc
from shared.policy import PolicySource
from shared.serde import envelope_from_proto, envelope_to_proto

JOINT_QUERY = "/cagnet.v1.Coordinator/JointQuery"


class Refused(CagnetError):
    """The coordinator refused the query: its gRPC status and its message (a rule, never data)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message or code.name.lower().replace("_", " "))
        self.code = code


@dataclass(frozen=True)
class Asker:
    """Who asks, and the verified manifest and policy the answers are checked against."""

    identity: Identity
    manifests: ManifestSource
    policies: PolicySource


# How a member node's folder becomes an Asker (`cagnet query ... --node NODEDIR`, as that
# authority's officer): node/ reads its own folder and coordinator/ may not import node/, so the
# `cagnet` command line, which imports both, passes one in (cagnet/cli/common.py).
MemberAsker = Callable[[Path], Asker]


def _folder_asker(folder: Path, principal: str, member_asker: MemberAsker | None) -> Asker:
    """A network folder (as `principal`), a principal's kit (refreshed first) or a member node's folder."""
    if (folder / "node.toml").exists():
        if member_asker is None:
            raise InvalidRequest(f"{folder} is a node folder: ask from the `cagnet` command line")
        return member_asker(folder)
    if network.kit_principal(folder) is not None:
        from coordinator import kit

        kit.refresh(folder)
    identity = network.principal_identity(folder, principal)
    key = dsse.load_public_key(base64.b64decode(network.coordinator_key_b64(folder)))
    manifests = ManifestSource(network.manifest_path(folder), key)
    return Asker(identity, manifests, PolicySource(network.policy_path(folder), key, manifests=manifests))


def folder_asker(folder: Path, *, principal: str = "", member_asker: MemberAsker | None = None) -> Asker:
    """Who asks from `folder` (a network folder, a kit or a member node's folder), with the verified
    manifest and policy it holds: what a client shows of its network before asking anything."""
    return _folder_asker(folder, principal, member_asker)


class CoordinatorClient:
    """One mTLS channel to the coordinator, reused across queries (the handshake is paid once).
    `netdir` is a network folder, a principal's kit, or a member node's folder (docs/onboarding.md),
    which `member_asker` turns into an Asker."""

    def __init__(
        self,
        netdir: Path,
        *,
        principal: str = "",
        endpoint: str | None = None,
        member_asker: MemberAsker | None = None,
    ) -> None:
        self.netdir = netdir
        asker = _folder_asker(netdir, principal, member_asker)
        self.identity = asker.identity
        # The head's address, then those earlier versions listed (the coordinator may have moved).
        self._targets = [endpoint] if endpoint else list(coordinator_endpoints(asker.manifests))
        if not self._targets:
            self._targets = [asker.manifests.current().coordinator_endpoint]
        self.target = self._targets[0]
        self._open(self.target)
        # The manifest and policy as the files now say: re-read and re-verified whenever a file
        # changes (a member admitted since this client started must verify too), not on every query.
        self._sources = (asker.manifests, asker.policies)

    def _open(self, target: str) -> None:
        self.target = target
        self._channel = secure_channel(
            target,
            peer_party_id=COORDINATOR,
            ca_pem=self.identity.ca_cert_pem,
            key_pem=self.identity.tls_key_pem,
            cert_pem=self.identity.tls_cert_pem,
        )
        self._stub = coordinator_pb2_grpc.CoordinatorStub(self._channel)

    def _current(self) -> tuple[ManifestSource, PolicySource]:
        return self._sources

    def query(
        self,
        *,
        kind: str,
        by_district: bool = False,
        client_groups: Sequence[int] = (),
        node_deadline_ms: int = 0,
        timeout_s: float = 60.0,
        from_date: str = "",
        to_date: str = "",
        period: str = "",
        min_share_percent: int = 0,
        service_type: str = "",
        as_at: str = "",
        cross_tab: Sequence[str] = (),
    ) -> tuple[Bundle, dsse.Envelope]:
        # Ask under the policy this principal has: a coordinator or node on another one refuses.
        manifests, policies = self._current()
        policy_digest = policies.current().digest
        request = coordinator_pb2.JointQueryRequest(
            kind=kind,
            by_district=by_district,
            node_deadline_ms=node_deadline_ms,
            client_groups=sorted(set(client_groups)),
            from_date=from_date,
            to_date=to_date,
            period=period,
            min_share_percent=min_share_percent,
            service_type=service_type,
            as_at=as_at,
            cross_tab=list(cross_tab),
        )
        tried: list[str] = []
        while True:
            # Signed afresh for each address the coordinator may be at: a new nonce each time.
            header = request_header(
                self.identity, audience=COORDINATOR, method=JOINT_QUERY, policy_digest=policy_digest
            )
            request.header.CopyFrom(header)
            envelope = sign_message(request, self.identity)
            try:
                reply = self._stub.JointQuery(envelope_to_proto(envelope), timeout=timeout_s)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise Refused(exc.code(), exc.details() or "") from None
                tried.append(self.target)
                following = [t for t in self._targets if t not in tried]
                if not following:
                    raise Unavailable(unreachable("the coordinator", tried)) from None
                self._channel.close()
                self._open(following[0])
        bundle_envelope = envelope_from_proto(reply)
        return verify_bundle(bundle_envelope, manifests.current(), sent=envelope), bundle_envelope

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()


def joint_query(
    netdir: Path,
    *,
    kind: str,
    principal: str = "",
    by_district: bool = False,
    client_groups: Sequence[int] = (),
    node_deadline_ms: int = 0,
    endpoint: str | None = None,
    timeout_s: float = 60.0,
    from_date: str = "",
    to_date: str = "",
    period: str = "",
    min_share_percent: int = 0,
    service_type: str = "",
    as_at: str = "",
    member_asker: MemberAsker | None = None,
    cross_tab: Sequence[str] = (),
) -> tuple[Bundle, dsse.Envelope]:
    """One query on a fresh channel (what a CLI invocation does)."""
    with CoordinatorClient(netdir, principal=principal, endpoint=endpoint, member_asker=member_asker) as client:
        return client.query(
            kind=kind,
            by_district=by_district,
            client_groups=client_groups,
            node_deadline_ms=node_deadline_ms,
            timeout_s=timeout_s,
            from_date=from_date,
            to_date=to_date,
            period=period,
            min_share_percent=min_share_percent,
            service_type=service_type,
            as_at=as_at,
            cross_tab=cross_tab,
        )

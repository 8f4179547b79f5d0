"""The coordinator's `Relay` service: a node that only dials out attaches here. The stream's first
frame must be the node's signed hello (fresh, addressed to the coordinator for Attach, signed with
the manifest key of the member authority whose certificate the TLS peer presented); the node is
then listed as attached, and the fan-out sends it its requests on the stream until it goes away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import grpc

from coordinator.audit import CoordinatorAudit
from coordinator.relay.attached import AttachedNodes, Attachment
from shared.auth import NonceCache, require_role, verify_request
from shared.errors import CagnetError, InvalidRequest
from shared.interceptor import peer_fingerprint, peer_party_id
from shared.manifest import COORDINATOR, MEMBER_AUTHORITY, ManifestSource, Party
from shared.pb.cagnet.v1 import relay_pb2, relay_pb2_grpc
from shared.relay import ATTACH
from shared.serde import envelope_from_proto

log = logging.getLogger(__name__)


class RelayServicer(relay_pb2_grpc.RelayServicer):
    def __init__(
        self, attached: AttachedNodes, manifests: ManifestSource, nonces: NonceCache, audit: CoordinatorAudit
    ) -> None:
        self.attached = attached
        self.manifests = manifests
        self.nonces = nonces
        self.audit = audit

    def Attach(
        self, request_iterator: Iterator[relay_pb2.NodeFrame], context: grpc.ServicerContext
    ) -> Iterator[relay_pb2.CoordinatorFrame]:
        peer: str | None = None
        try:
            peer = peer_party_id(context)
            party = self._hello(next(request_iterator, None), peer, peer_fingerprint(context))
        except CagnetError as exc:
            log.info("refused a relay attachment from %s: %s", peer or "unknown peer", exc)
            self.audit.on_reject(ATTACH, peer, exc, None)
            context.abort(exc.code, exc.public_message)
        authority = party.id
        if not party.dials_out:
            log.warning(
                "node %s attached over the relay, but the manifest lists it as listening: it is asked at %s",
                authority,
                party.endpoint,
            )
        attachment = Attachment(authority)
        context.add_callback(attachment.close)  # the node went away: stop sending, fail what it owes
        self.attached.attach(attachment)
        # The answers come back on another thread while this one sends the requests.
        reader = threading.Thread(target=_read, args=(request_iterator, attachment), name=f"relay-{authority}")
        reader.daemon = True
        reader.start()
        manifest = self.manifests.current()
        # Logged, not audited: attaching releases nothing (a refused attachment is audited above),
        # and each request later sent on the stream is audited by the node that answers it.
        log.info("node %s attached over the relay", authority)
        try:
            yield relay_pb2.CoordinatorFrame(attached=relay_pb2.Attached(manifest_version=manifest.version))
            yield from attachment.frames()
        finally:
            attachment.close()
            self.attached.detach(attachment)
            log.info("node %s detached from the relay", authority)

    def _hello(self, frame: relay_pb2.NodeFrame | None, peer: str | None, fingerprint: str | None) -> Party:
        """The attaching member authority, if its hello verifies like any signed request: its
        signer is the TLS peer with the certificate the manifest lists, fresh, never seen before."""
        if frame is None or frame.WhichOneof("frame") != "hello":
            raise InvalidRequest("a relay stream opens with the node's signed hello")
        verified = verify_request(
            envelope_from_proto(frame.hello),
            relay_pb2.AttachRequest,
            manifest=self.manifests.current(),
            audience=COORDINATOR,
            method=ATTACH,
            nonces=self.nonces,
            peer_party_id=peer,
            peer_fingerprint=fingerprint,
        )
        require_role(verified.issuer, (MEMBER_AUTHORITY,), ATTACH)
        return verified.issuer


def _read(frames: Iterator[relay_pb2.NodeFrame], attachment: Attachment) -> None:
    try:
        for frame in frames:
            if frame.WhichOneof("frame") == "answer":
                attachment.answered(frame.answer)
    except grpc.RpcError:
        pass  # the stream ended under us: close() below fails what was still awaited
    except Exception:
        log.exception("relay stream from %s", attachment.authority)
    finally:
        attachment.close()


def add_to_server(server: grpc.Server, servicer: RelayServicer) -> None:
    relay_pb2_grpc.add_RelayServicer_to_server(servicer, server)

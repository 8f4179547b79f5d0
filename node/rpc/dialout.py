"""A node that accepts no inbound connection: it dials the coordinator over mTLS, attaches with a
signed hello, and answers on that one stream every request the coordinator relays to it. Each
request goes through exactly the listening server's path (`node.rpc.server`): the same
authentication, answer, release gate, signing and audit, so the signed answer is exactly the one
the listening transport would carry. A dropped stream is dialled again with a backoff capped
at one second, so a restarted coordinator is answered again within about a second (a refused
attachment is tried again only every REFUSED_WAIT_S).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc

from node.answers.kinds import ANSWERS
from shared.errors import CagnetError
from shared.interceptor import SignedEnvelopeInterceptor, secure_channel
from shared.manifest import COORDINATOR
from shared.pb.cagnet.v1 import relay_pb2, relay_pb2_grpc
from shared.relay import KEEPALIVE_OPTIONS, hello
from shared.serde import envelope_to_proto

if TYPE_CHECKING:  # the server builds a DialOut from its own parts (`node.rpc.server.create_dial_out`)
    from node.rpc.server import NodeRuntime, NodeServicer

log = logging.getLogger(__name__)

# The first retry comes soon (a coordinator restarting is back in well under a second); the wait
# doubles to at most BACKOFF_MAX_S, so a coordinator that was down for an hour is still answered
# within about a second of listening again. Jitter keeps a network of nodes from dialling in step.
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 1.0
# A coordinator that refused the attachment (this node is not a member any more, or its keys are
# not the ones listed) is asked again only this often: each refusal is a row in its audit log.
REFUSED_WAIT_S = 30.0
# The statuses a coordinator refuses an attachment with, rather than being away.
REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)


class DialOut:
    """The node's side of the relay: one thread holds the stream to the coordinator (and dials it
    again when it drops); a pool of `max_workers` answers the requests that arrive on it."""

    def __init__(
        self,
        runtime: NodeRuntime,
        servicer: NodeServicer,
        checks: SignedEnvelopeInterceptor,
        *,
        endpoint: str | None = None,
        max_workers: int = 8,
    ) -> None:
        self.rt = runtime
        self._servicer = servicer
        # The listening server's own interceptor: the same status, log and audit of who was refused.
        self._checks = checks
        self._endpoint = endpoint  # None: the coordinator's endpoint in the manifest in force
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="relay-answer")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None  # the stream in use, to cancel on stop
        self._thread = threading.Thread(target=self._run, name="dial-out", daemon=True)
        self.attached = threading.Event()  # set while the coordinator has accepted the stream
        self.attachments = 0  # how many times it has (a restart of either side adds one)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close the stream and stop dialling; answers being worked out finish first."""
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        delay = BACKOFF_START_S
        last = ""  # the last failure logged: an outage is one line, not one a second
        while not self._stop.is_set():
            before = self.attachments
            failure, refused = "", False
            try:
                self._attach_once()
                failure = "the coordinator ended the stream"
            except grpc.RpcError as exc:
                failure, refused = f"{exc.code().name} ({exc.details()})", exc.code() in REFUSALS
            except CagnetError as exc:
                failure = exc.public_message
            except Exception:
                log.exception("relay to the coordinator failed")
            self.attached.clear()
            if self.attachments != before:
                delay, last = BACKOFF_START_S, ""  # it was attached: the first retry comes soon again
            if refused:
                delay = REFUSED_WAIT_S
            if failure and failure != last and not self._stop.is_set():
                log.warning("relay to the coordinator: %s; dialling again in %.1f s at most", failure, delay)
                last = failure
            if self._stop.wait(delay * random.uniform(0.75, 1.0)):
                break
            delay = BACKOFF_START_S if refused else min(delay * 2, BACKOFF_MAX_S)

    def _attach_once(self) -> None:
        """Dial, attach, and answer until the stream ends."""
        identity = self.rt.identity  # the key in force now (a rotation is followed at the next attach)
        target = self._endpoint or self.rt.manifests.current().coordinator_endpoint
        outbox: queue.SimpleQueue[relay_pb2.NodeFrame | None] = queue.SimpleQueue()
        outbox.put(relay_pb2.NodeFrame(hello=envelope_to_proto(hello(identity))))

        def frames() -> Iterator[relay_pb2.NodeFrame]:
            while (frame := outbox.get()) is not None:
                yield frame

        # A new channel each time: the coordinator may have moved to the endpoint a newer manifest lists.
        channel = secure_channel(
            target,
            peer_party_id=COORDINATOR,
            ca_pem=identity.ca_cert_pem,
            key_pem=identity.tls_key_pem,
            cert_pem=identity.tls_cert_pem,
            options=KEEPALIVE_OPTIONS,
        )
        try:
            call = relay_pb2_grpc.RelayStub(channel).Attach(frames())
            with self._lock:
                self._call = call
                if self._stop.is_set():
                    call.cancel()
            for frame in call:
                which = frame.WhichOneof("frame")
                if which == "attached":
                    self.attachments += 1
                    self.attached.set()
                    version = frame.attached.manifest_version
                    log.info("attached to the coordinator at %s (manifest version %d)", target, version)
                elif which == "call":
                    self._pool.submit(self._answer, frame.call, outbox)
        finally:
            outbox.put(None)  # ends the frames the channel is sending
            with self._lock:
                self._call = None
            channel.close()

    def _answer(self, call: relay_pb2.RelayCall, outbox: queue.SimpleQueue[relay_pb2.NodeFrame | None]) -> None:
        method = call.method
        if method not in ANSWERS:
            response, code, details = None, grpc.StatusCode.UNIMPLEMENTED, "unknown method"
        else:
            # The stream's other end is the coordinator: the channel accepted only its certificate.
            response, code, details = self._checks.relayed(
                method, call.request, peer=COORDINATOR, inner=lambda verified: self._servicer.answer(method, verified)
            )
        answer = relay_pb2.RelayAnswer(id=call.id, status_code=code.value[0], status_message=details)
        if response is not None:
            answer.response.CopyFrom(response)
        outbox.put(relay_pb2.NodeFrame(answer=answer))

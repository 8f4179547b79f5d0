"""The nodes attached over the relay, and each one's stream: the fan-out hands a signed request to
a node's attachment and gets a future of its answer; the relay servicer sends the requests down the
stream and settles the futures as the answers come back, by correlation id.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError

from shared.errors import Unavailable
from shared.pb.cagnet.v1 import envelope_pb2, relay_pb2


def _not_attached() -> Unavailable:
    # The node's stream is gone (or was replaced) before it answered: reported as unreachable.
    return Unavailable("the node is not attached")


class Attachment:
    """One node's stream: requests waiting to be sent, and the answers still awaited."""

    def __init__(self, authority: str) -> None:
        self.authority = authority
        self._outbox: queue.SimpleQueue[relay_pb2.CoordinatorFrame | None] = queue.SimpleQueue()
        self._pending: dict[int, Future[relay_pb2.RelayAnswer]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    def ask(self, method: str, request: envelope_pb2.Envelope, timeout_s: float) -> Future[relay_pb2.RelayAnswer]:
        """Send `request` for `method` to the node; the future holds its answer, or Unavailable.
        Cancel the future to stop waiting (the fan-out does at its deadline)."""
        future: Future[relay_pb2.RelayAnswer] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(_not_attached())
                return future
            call_id = next(self._ids)
            self._pending[call_id] = future
        future.add_done_callback(lambda _: self._forget(call_id))
        call = relay_pb2.RelayCall(id=call_id, method=method, timeout_ms=max(1, int(timeout_s * 1000)))
        call.request.CopyFrom(request)
        self._outbox.put(relay_pb2.CoordinatorFrame(call=call))
        return future

    def _forget(self, call_id: int) -> None:
        with self._lock:
            self._pending.pop(call_id, None)

    def answered(self, answer: relay_pb2.RelayAnswer) -> None:
        """An answer from the node: settles the request it names (one nobody awaits is dropped)."""
        with self._lock:
            future = self._pending.pop(answer.id, None)
        if future is not None:
            with contextlib.suppress(InvalidStateError):  # the fan-out stopped waiting at that moment
                future.set_result(answer)

    def close(self) -> None:
        """The stream ended: every awaited answer fails as Unavailable, and the sender stops."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            with contextlib.suppress(InvalidStateError):
                future.set_exception(_not_attached())
        self._outbox.put(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def frames(self) -> Iterator[relay_pb2.CoordinatorFrame]:
        """The frames to send, until the attachment closes."""
        while (frame := self._outbox.get()) is not None:
            yield frame


class AttachedNodes:
    """Which member nodes are attached now, one stream each: a node that attaches again (after a
    restart, or a dropped connection the coordinator has not noticed yet) replaces its old stream."""

    def __init__(self) -> None:
        self._by_authority: dict[str, Attachment] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._watchers: list[Callable[[str, bool], None]] = []

    def watch(self, watcher: Callable[[str, bool], None]) -> None:
        """Call `watcher(authority, attached)` whenever a node attaches or its stream goes (under
        the registry's lock, so calls come in the order of the changes)."""
        with self._lock:
            self._watchers.append(watcher)

    def attach(self, attachment: Attachment) -> None:
        with self._lock:
            earlier = self._by_authority.get(attachment.authority)
            self._by_authority[attachment.authority] = attachment
            self._changed.notify_all()
            for watcher in self._watchers:
                watcher(attachment.authority, True)
        if earlier is not None:
            earlier.close()

    def detach(self, attachment: Attachment) -> None:
        with self._lock:
            if self._by_authority.get(attachment.authority) is attachment:
                del self._by_authority[attachment.authority]
                self._changed.notify_all()
                for watcher in self._watchers:
                    watcher(attachment.authority, False)

    def close_all(self) -> None:
        """End every stream (the coordinator is stopping): the nodes dial again, and find it back."""
        with self._lock:
            attachments = list(self._by_authority.values())
        for attachment in attachments:
            attachment.close()

    def get(self, authority: str) -> Attachment | None:
        with self._lock:
            return self._by_authority.get(authority)

    def authorities(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._by_authority)

    def wait_for(self, authorities: set[str] | frozenset[str], timeout_s: float) -> bool:
        """Until every one of `authorities` is attached (True), or `timeout_s` passes (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: set(authorities) <= set(self._by_authority), timeout_s)

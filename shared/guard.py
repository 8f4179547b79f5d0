"""What every cagnet server checks before it tries a signature: the size of a message, that it
parses, how many signatures its envelope carries and (on the onboarding port, which anyone can
reach) how often one client address calls; and how the calls refused here are kept: counted in
the server's metrics, one log line each, and one audit row per client address per minute.

Verifying an Ed25519 signature costs about 50 µs: an envelope with 55,000 bogus ones would cost
a server seconds of CPU for one call, so the cheap checks come first (docs/operations.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

from shared.errors import CagnetError, InvalidRequest, RateLimited, rule_of
from shared.metrics import note_refusal

log = logging.getLogger(__name__)

MAX_SIGNATURES = 4
"""Signatures a request envelope may carry: one signer, with room for a key in rotation. Nested
envelopes (a proposal's approvals, a manifest's members) are checked by their own verifiers."""
ONBOARDING_MAX_MESSAGE = 64 * 1024
"""The onboarding port's largest request: a join request with its certificate request is ~3 KiB."""
MAX_MESSAGE = 4 * 1024 * 1024
"""Every mTLS server's largest request (gRPC's default, made explicit: a governance proposal
carrying a manifest of many members is the largest cagnet sends)."""


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Options every cagnet server is made with: one server per port (gRPC otherwise sets
    SO_REUSEPORT, so a second server on a busy port starts and the two share its calls without a
    word), and the largest request it reads."""
    return [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", max_message_bytes)]


def client_address(context: grpc.ServicerContext) -> str:
    """The caller's IP address, without its port: "ipv4:127.0.0.1:53122" -> "127.0.0.1"."""
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


class TokenBucket:
    """A token bucket per client address: `burst` calls at once, then `rate` a second."""

    _MAX_ADDRESSES = 10_000

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when counted)
        self._lock = threading.Lock()

    def allow(self, address: str) -> bool:
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(address, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[address] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self._MAX_ADDRESSES:
                # Drop the buckets that have refilled: forgetting them changes nothing.
                full = [a for a, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst]
                for a in full:
                    del self._buckets[a]
            return allowed


@dataclass
class _Minute:
    minute: int  # minutes since the epoch
    rules: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)


Write = Callable[[str, dict[str, object], str], None]  # (address, parameters, decision)


class RefusalSummary:
    """Calls refused before their caller was known, one audit row per client address per minute
    (when that minute is over, or when the server stops) rather than one each: an anonymous
    client can then make the log grow by a row a minute, not by a row a call."""

    def __init__(self, write: Write, *, clock: Callable[[], float] = time.time) -> None:
        self._write, self._clock = write, clock
        self._open: dict[str, _Minute] = {}
        self._lock = threading.Lock()

    def note(self, address: str, method: str, error: BaseException) -> None:
        now = self._clock()
        self.flush(now=now)
        with self._lock:
            current = self._open.setdefault(address, _Minute(int(now // 60)))
            current.rules[rule_of(error)] += 1
            current.methods[method.rsplit("/", 1)[-1]] += 1

    def flush(self, *, now: float | None = None, everything: bool = False) -> int:
        """Write a row for every minute that is over (every minute at all, with `everything`);
        the number of rows written."""
        minute = int((self._clock() if now is None else now) // 60)
        with self._lock:
            done = {a: m for a, m in self._open.items() if everything or m.minute < minute}
            for address in done:
                del self._open[address]
        for address, m in sorted(done.items()):
            total = sum(m.rules.values())
            if not total:
                continue
            start = datetime.fromtimestamp(m.minute * 60, UTC)
            parameters: dict[str, object] = {
                "minute": start.strftime("%Y-%m-%dT%H:%MZ"),
                "calls": total,
                "rules": dict(sorted(m.rules.items())),
                "methods": dict(sorted(m.methods.items())),
            }
            try:
                self._write(address, parameters, f"rejected: {total} unauthenticated call(s) in one minute")
            except Exception:
                log.exception("could not write a summary of refused calls to the audit log")
        return len(done)


_MALFORMED = object()


class RequestGuard(grpc.ServerInterceptor):
    """The cheap checks, on every call to a service under `prefixes`, before the servicer or the
    signed-envelope interceptor sees it. Install it right after `CallObserver`."""

    def __init__(
        self,
        prefixes: tuple[str, ...] = ("/cagnet.",),
        *,
        limiter: TokenBucket | None = None,
        summary: RefusalSummary | None = None,
    ) -> None:
        self._prefixes = prefixes
        self.limiter = limiter
        self.summary = summary

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefixes):
            return handler
        deserializer = _tolerant(method, handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def refusal(self, method: str, request: Any, context: grpc.ServicerContext) -> CagnetError | None:
        """The reason to refuse this call before anything else is done with it, or None."""
        if self.limiter is not None and not self.limiter.allow(client_address(context)):
            return RateLimited()
        if request is _MALFORMED:
            return InvalidRequest("malformed request: the body is not the message this method takes")
        signatures = getattr(request, "signatures", None)
        if signatures is not None and len(signatures) > MAX_SIGNATURES:
            return InvalidRequest(f"an envelope carries at most {MAX_SIGNATURES} signatures")
        return None

    def refuse(self, method: str, error: CagnetError, context: grpc.ServicerContext) -> None:
        """Count, log (one line) and summarise a call refused before its caller is known, and abort it."""
        address = client_address(context)
        note_refusal(error, None)
        log.info("refused %s from %s before authentication: %s", method, address, error.public_message)
        if self.summary is not None:
            self.summary.note(address, method, error)
        context.abort(error.code, error.public_message)

    def _unary(self, method: str, inner: Any) -> Any:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            error = self.refusal(method, request, context)
            if error is not None:
                self.refuse(method, error, context)
            return inner(request, context)

        return behaviour

    def _stream(self, method: str, inner: Any) -> Any:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            error = self.refusal(method, request, context)
            if error is not None:
                self.refuse(method, error, context)
            yield from inner(request, context)

        return behaviour


def _tolerant(method: str, deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, but a body that does not parse becomes a marker the guard refuses with one
    log line, rather than gRPC's own "Exception deserializing request!" and a traceback."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:
            log.warning("malformed request to %s: %d bytes that do not parse", method, len(data))
            return _MALFORMED

    return parse

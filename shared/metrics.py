"""Operational metrics and the per-call log line of a cagnet server (node or coordinator).

`CallObserver` is the outermost gRPC interceptor: it times every call to a cagnet service and, when
the call ends, counts it by method and outcome, counts a refusal by its rule (which the signed-
envelope interceptor reports through `note_refusal`), and writes one log line with the method,
principal, outcome, rule and duration. Each server has its own `ServerMetrics` registry (never the
process-global one), served on a separate plain-HTTP listener that is off unless `metrics_listen`
is set, and then only on a loopback address.

Labels are method names, rule names, query kinds and authority codes only: never a query's
parameters, nor a figure, count or client group, so a scrape discloses nothing a release would not.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from shared.errors import InvalidRequest, rule_of
from shared.logs import fields

log = logging.getLogger("cagnet.calls")

# Seconds: a node answers in milliseconds, a joint query waits up to the node deadline (5 s by default).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MISSING_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50)
_PREFIX = "/cagnet."
# Every other status is a typed refusal (shared/errors.py).
_OUTCOMES = {
    grpc.StatusCode.OK: "ok",
    grpc.StatusCode.INTERNAL: "error",
    grpc.StatusCode.UNKNOWN: "error",
    grpc.StatusCode.CANCELLED: "cancelled",
}


@dataclass
class _Call:
    method: str
    principal: str | None = None
    peer: str | None = None  # the TLS client certificate's party id, known even when the envelope fails
    rule: str | None = None


_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("cagnet_observed_call", default=None)


def note_principal(party_id: str) -> None:
    """The verified principal of the call being served (for its log line)."""
    call = _call.get()
    if call is not None:
        call.principal = party_id


def note_refusal(error: BaseException, peer: str | None) -> None:
    """The error a call is being refused with, counted and logged under its rule (`rule_of`), and
    the TLS peer it came from."""
    call = _call.get()
    if call is not None:
        call.rule = rule_of(error)
        call.peer = peer


def missing_reason(reason: str) -> str:
    """A missing node's reason (coordinator.fanout) as one of a few fixed names."""
    if reason.startswith("no answer within the deadline"):
        return "deadline"
    if reason == "unreachable":
        return "unreachable"
    if reason.startswith("refused ("):
        return "refused"
    return "unverified"


class _Readings(Collector):
    """Gauges read when scraped (the audit log's length, the manifest version): no bookkeeping on
    the request path, and a reading that fails is left out of that scrape rather than failing it."""

    def __init__(self) -> None:
        self._readings: list[tuple[str, str, Callable[[], float | None]]] = []

    def add(self, name: str, documentation: str, read: Callable[[], float | None]) -> None:
        self._readings.append((name, documentation, read))

    def collect(self) -> Iterable[Metric]:
        for name, documentation, read in self._readings:
            try:
                value = read()
            except Exception:
                log.warning("metric %s could not be read", name, exc_info=True)
                continue
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=value)


class ServerMetrics:
    """One server's metrics, on a registry of its own."""

    def __init__(self, role: str, party: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        info = Gauge(
            "cagnet_server_info",
            "The server's role and party id (always 1).",
            ["role", "party"],
            registry=self.registry,
        )
        info.labels(role=role, party=party).set(1)
        self.requests = Counter(
            "cagnet_requests",
            "Calls to a cagnet service, by method, outcome (ok, refused, error, cancelled) and gRPC status code.",
            ["method", "outcome", "code"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "cagnet_refusals",
            "Refused calls by method and the rule they were refused under (never their parameters).",
            ["method", "rule"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cagnet_request_duration_seconds",
            "Time to answer or refuse a call, by method (for a feed: the whole stream).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.joint_queries = Counter(
            "cagnet_joint_queries",
            "Joint queries fanned out to the member nodes, by kind (coordinator).",
            ["kind"],
            registry=self.registry,
        )
        self.missing_nodes = Histogram(
            "cagnet_joint_query_missing_nodes",
            "Member nodes missing from a joint query's answer, per query, by kind (coordinator).",
            ["kind"],
            buckets=MISSING_BUCKETS,
            registry=self.registry,
        )
        self.node_missing = Counter(
            "cagnet_node_missing",
            "Times a member node was missing from a joint query, by authority and reason "
            "(deadline, unreachable, refused, unverified) (coordinator).",
            ["authority", "reason"],
            registry=self.registry,
        )
        self._readings = _Readings()
        self.registry.register(self._readings)

    def reading(self, name: str, documentation: str, read: Callable[[], float | None]) -> None:
        """A gauge whose value `read()` gives at each scrape (None: leave it out)."""
        self._readings.add(name, documentation, read)

    def fanned_out(self, kind: str, *, missing: Iterable[tuple[str, str]]) -> None:
        """A joint query of `kind` (one of the coordinator's kinds) reached the nodes; `missing` is
        each missing authority with its reason."""
        gone = list(missing)
        self.joint_queries.labels(kind=kind).inc()
        self.missing_nodes.labels(kind=kind).observe(len(gone))
        for authority, reason in gone:
            self.node_missing.labels(authority=authority, reason=missing_reason(reason)).inc()

    def finished(self, call: _Call, code: grpc.StatusCode, seconds: float) -> None:
        outcome = _OUTCOMES.get(code, "refused")
        method = call.method
        self.requests.labels(method=method, outcome=outcome, code=code.name).inc()
        self.latency.labels(method=method).observe(seconds)
        rule = None
        if outcome == "refused":
            rule = call.rule or code.name.lower()
            self.refusals.labels(method=method, rule=rule).inc()
        log.info(
            "%s from %s: %s%s in %.1f ms",
            method,
            call.principal or call.peer or "an unidentified peer",
            outcome,
            f" ({rule})" if rule else "",
            seconds * 1000,
            extra=fields(
                method=method,
                principal=call.principal,
                peer=call.peer,
                outcome=outcome,
                code=code.name,
                rule=rule,
                duration_ms=round(seconds * 1000, 3),
            ),
        )


def _code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.INTERNAL if failed else grpc.StatusCode.OK


class CallObserver(grpc.ServerInterceptor):
    """The outermost interceptor: observes every call to a cagnet service (health checks pass)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(_PREFIX):
            return handler
        name = method.removeprefix("/")
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(name, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(name, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, method: str, inner: Any) -> Any:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(method)
            token = _call.set(call)
            started = time.perf_counter()
            failed = True
            try:
                response = inner(request, context)
                failed = False
                return response
            finally:
                _call.reset(token)
                self._metrics.finished(call, _code(context, failed), time.perf_counter() - started)

        return behaviour

    def _stream(self, method: str, inner: Any) -> Any:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(method)
            # gRPC iterates the generator on one worker thread, so the variable holds throughout.
            token = _call.set(call)
            started = time.perf_counter()
            code: grpc.StatusCode | None = None
            try:
                yield from inner(request, context)
            except GeneratorExit:
                code = grpc.StatusCode.CANCELLED  # the subscriber went away: not a failure of ours
                raise
            except BaseException:
                code = _code(context, failed=True)
                raise
            finally:
                with contextlib.suppress(ValueError):  # a stream closed from another context
                    _call.reset(token)
                if code is None:
                    code = _code(context, failed=False)
                self._metrics.finished(call, code, time.perf_counter() - started)

        return behaviour


def parse_listen(value: str, *, setting: str) -> tuple[str, int]:
    """`metrics_listen` as (host, port): "PORT" (on 127.0.0.1), "HOST:PORT" or "[::1]:PORT". The
    listener is plain HTTP with no authentication, so only a loopback host is accepted: a
    Prometheus elsewhere scrapes through a proxy or tunnel that the operator secures."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.removeprefix("[").removesuffix("]")
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidRequest(f"{setting}: expected HOST:PORT or PORT, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise InvalidRequest(f"{setting}: port {port} is out of range")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InvalidRequest(
                f"{setting}: the metrics listener serves plain HTTP and binds only to a loopback address "
                f"(127.0.0.1, ::1 or localhost), not {host!r}"
            )
    return host, port


class MetricsListener:
    """The plain-HTTP /metrics endpoint of one server's registry, on its own thread."""

    def __init__(self, metrics: ServerMetrics, host: str, port: int) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        self.port: int = self._httpd.server_port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_metrics(metrics: ServerMetrics, listen: str, *, setting: str = "metrics_listen") -> MetricsListener:
    host, port = parse_listen(listen, setting=setting)
    listener = MetricsListener(metrics, host, port)
    logging.getLogger(__name__).info("metrics on http://%s:%d/metrics", host, listener.port)
    return listener

"""Benchmark: the joint supply-map query over six nodes with mTLS and signatures, against the floor.

Six node processes and a coordinator process run on loopback, as in the demo. The client keeps
one channel open and runs the query N times. Three floors run on the same machine:
  - plain round trip: one unsigned, insecure unary call carrying a node-sized payload;
  - plain fan-out: the same shape as the joint query (client -> relay -> six servers in parallel)
    with unsigned, insecure calls and canned payloads: what the topology costs with no security
    and no database;
  - plain joint query: the same query through the same code the real servers call, on the same
    six stores, over insecure gRPC with nothing signed or verified. Bench-only servers (below; the
    production servers have no insecure mode) call the node's `Releaser.supply_map`, its serde
    and its audit append (`node.service.record`), and the coordinator's fan-out pattern, serde and
    `combine_supply_maps`; the client parses the combined result. Left out, and so what the gap to
    the real query measures: mTLS, request headers with nonces and expiry, every signature made
    and checked, and the bundle (the signed contributions and the client re-checking them and
    recomputing the result);
  - the same plain joint query over mTLS: the same bench-only servers with the network's own TLS
    keys and certificates (the coordinator's, each node's, the chair's), so that the gap splits
    into what the channel costs and what the signed envelopes and the bundle cost.
The real and the plain joint queries run side by side on the same stores and are asked in turn, one
of each, so that whatever else the machine is doing weighs on all alike; their ratio is the figure.
Prints p50/p95 for each and the ratios. Run: .venv/bin/python bench/joint_query.py [--queries N]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo import build_network, free_port, processes, spawn, wait_healthy  # noqa: E402
from coordinator import network  # noqa: E402
from coordinator.joint.client import CoordinatorClient  # noqa: E402
from shared import dsse  # noqa: E402
from shared.auth import request_header, sign_message  # noqa: E402
from shared.identity import Identity  # noqa: E402
from shared.interceptor import secure_aio_channel, secure_channel, server_credentials  # noqa: E402
from shared.manifest import COORDINATOR  # noqa: E402
from shared.pb.cagnet.v1 import coordinator_pb2, node_pb2, node_pb2_grpc  # noqa: E402
from shared.serde import envelope_to_proto  # noqa: E402

METHOD = "/bench.Plain/Call"


def _identity(b: bytes) -> bytes:
    return b


def _plain_server(port: int, payload_size: int, fanout: list[int]) -> None:
    """A plain insecure server; with `fanout` it relays each call to those servers in parallel."""
    payload = b"x" * payload_size
    channels = [grpc.insecure_channel(f"127.0.0.1:{p}") for p in fanout]
    calls = [ch.unary_unary(METHOD, request_serializer=_identity, response_deserializer=_identity) for ch in channels]
    # Blocking calls on a pool of threads: the topology's floor, whatever the coordinator uses.
    pool = futures.ThreadPoolExecutor(max_workers=32)

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        if not calls:
            return payload
        pending = [pool.submit(c, request, timeout=5, wait_for_ready=True) for c in calls]
        return b"".join(f.result() for f in pending)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.unary_unary_rpc_method_handler(handle, request_deserializer=_identity, response_serializer=_identity)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Plain", {"Call": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


PLAIN_SUPPLY_MAP = "/bench.PlainNode/SupplyMap"
PLAIN_JOINT_QUERY = "/bench.PlainCoordinator/JointQuery"
BENCH_PRINCIPAL = "bench-plain"


def _plain_node(port: int, nodedir: str, tls: bool = False) -> None:
    """A bench-only node: the real release path, serde and audit append, nothing signed; insecure,
    or with `tls` over mTLS with the node's own TLS identity."""
    from node.answers import service
    from node.config import load_config
    from node.release import Releaser, load_rounding_secret
    from node.store import open_store
    from shared import dsse
    from shared.pb.cagnet.v1 import envelope_pb2
    from shared.policy import PolicySource
    from shared.serde import supply_map_to_proto

    config = load_config(Path(nodedir))
    policies = PolicySource(config.policy_file, dsse.load_public_key(base64.b64decode(config.coordinator_key)))
    engine = open_store(config.database_url)
    releaser = Releaser(engine, config.authority, load_rounding_secret(config.rounding_key_path))

    def handle(request: node_pb2.SupplyMapRequest, context: grpc.ServicerContext) -> node_pb2.SupplyMapResponse:
        by_district, groups = bool(request.by_district), sorted(set(request.client_groups))
        policy = policies.current()
        supply = releaser.supply_map(policy, roles=("cag-chair",), by_district=by_district, client_groups=groups)
        reply = supply_map_to_proto(supply, envelope_pb2.ResponseHeader(policy_digest=policy.digest))
        service.record(
            engine,
            principal=None,
            principal_id=BENCH_PRINCIPAL,
            via="",
            method=PLAIN_SUPPLY_MAP,
            parameters={"by_district": by_district, "client_groups": groups},
            decision="released",
            released=reply.SerializeToString(deterministic=True),
            policy_digest=policy.digest,
        )
        return reply

    handler = grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=node_pb2.SupplyMapRequest.FromString,
        response_serializer=lambda m: m.SerializeToString(deterministic=True),
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.PlainNode", {"SupplyMap": handler}),))
    _listen(server, port, Identity.load(config.identity_dir) if tls else None)
    server.start()
    server.wait_for_termination()


def _listen(server: grpc.Server, port: int, identity: Identity | None) -> None:
    if identity is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        credentials = server_credentials(identity.ca_cert_pem, identity.tls_key_pem, identity.tls_cert_pem)
        server.add_secure_port(f"127.0.0.1:{port}", credentials)


def _plain_coordinator(port: int, nodes: list[tuple[int, str]], netdir: str | None = None) -> None:
    """A bench-only coordinator: the real fan-out's pattern (asynchronous calls on one event loop),
    the real serde and the registry's combine; insecure, or with `netdir` over mTLS with the
    coordinator's TLS identity (the nodes' (port, authority) pairs name whom each channel expects)."""
    import asyncio
    import threading

    from shared.kinds.registry import KINDS

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    identity = network.coordinator_identity(Path(netdir)) if netdir else None

    def channel(port: int, authority: str) -> grpc.aio.Channel:
        if identity is None:
            return grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return secure_aio_channel(
            f"127.0.0.1:{port}",
            peer_party_id=authority,
            ca_pem=identity.ca_cert_pem,
            key_pem=identity.tls_key_pem,
            cert_pem=identity.tls_cert_pem,
        )

    async def channels() -> list[Any]:
        return [
            channel(port, authority).unary_unary(
                PLAIN_SUPPLY_MAP,
                request_serializer=lambda m: m.SerializeToString(deterministic=True),
                response_deserializer=node_pb2.SupplyMapResponse.FromString,
            )
            for port, authority in nodes
        ]

    calls = asyncio.run_coroutine_threadsafe(channels(), loop).result()

    async def ask_all(request: node_pb2.SupplyMapRequest) -> list[Any]:
        return await asyncio.gather(*(call(request, timeout=5) for call in calls))

    def handle(request: coordinator_pb2.JointQueryRequest, context: grpc.ServicerContext) -> bytes:
        forwarded = node_pb2.SupplyMapRequest(
            by_district=request.by_district, client_groups=sorted(set(request.client_groups))
        )
        responses = asyncio.run_coroutine_threadsafe(ask_all(forwarded), loop).result()
        return KINDS["supply-map"].combine(responses, request).model_dump_json().encode()

    handler = grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=coordinator_pb2.JointQueryRequest.FromString, response_serializer=_identity
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.PlainCoordinator", {"JointQuery": handler}),)
    )
    _listen(server, port, identity)
    server.start()
    server.wait_for_termination()


@contextmanager
def _plain_joint(nodes: dict[str, Path], netdir: Path | None = None) -> Iterator[Callable[[], None]]:
    """The bench-only plain node and coordinator processes on the same stores; yields one query.
    With `netdir`, every hop is mTLS with the network's own TLS identities (the chair's here)."""
    from shared.kinds.supply import JointSupplyMap

    ctx = mp.get_context("spawn")
    node_ports = [free_port() for _ in nodes]
    front = free_port()
    tls = netdir is not None
    procs = [
        ctx.Process(target=_plain_node, args=(port, str(nodedir), tls), daemon=True)
        for port, nodedir in zip(node_ports, nodes.values(), strict=True)
    ]
    pairs = list(zip(node_ports, nodes, strict=True))
    procs.append(ctx.Process(target=_plain_coordinator, args=(front, pairs, str(netdir) if tls else None), daemon=True))
    for p in procs:
        p.start()
    try:
        if netdir is None:
            channel = grpc.insecure_channel(f"127.0.0.1:{front}")
        else:
            chair = Identity.load(network.principal_dir(netdir, "cag-chair"))
            channel = secure_channel(
                f"127.0.0.1:{front}",
                peer_party_id=COORDINATOR,
                ca_pem=chair.ca_cert_pem,
                key_pem=chair.tls_key_pem,
                cert_pem=chair.tls_cert_pem,
            )
        grpc.channel_ready_future(channel).result(timeout=600)  # seven processes start on a busy machine
        call = channel.unary_unary(
            PLAIN_JOINT_QUERY,
            request_serializer=lambda m: m.SerializeToString(deterministic=True),
            response_deserializer=_identity,
        )

        def query() -> None:
            result = JointSupplyMap.model_validate_json(
                call(coordinator_pb2.JointQueryRequest(kind="supply-map"), timeout=30)
            )
            assert len(result.authorities) == len(nodes)

        # The front answering says nothing of the six behind it: ask until all of them answer.
        deadline = time.monotonic() + 600
        while True:
            try:
                query()
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield query
    finally:
        for p in procs:
            p.terminate()


def _interleaved(calls: list[Callable[[], None]], n: int) -> list[list[float]]:
    """Each call in turn, n rounds (after a warm-up), so that the machine's load falls on all alike."""
    for _ in range(max(5, n // 10)):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(n):
        for call, times in zip(calls, samples, strict=True):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
    return samples


def _time_calls(call, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(max(5, n // 10)):
        call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def _plain(n: int, payload_size: int, *, relay: bool) -> list[float]:
    ctx = mp.get_context("spawn")
    leaves = [free_port() for _ in range(6)] if relay else []
    front = free_port()
    procs = [ctx.Process(target=_plain_server, args=(p, payload_size, []), daemon=True) for p in leaves]
    procs.append(ctx.Process(target=_plain_server, args=(front, payload_size, leaves), daemon=True))
    for p in procs:
        p.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{front}")
        grpc.channel_ready_future(channel).result(timeout=600)  # seven processes start on a busy machine
        call = channel.unary_unary(METHOD, request_serializer=_identity, response_deserializer=_identity)
        return _time_calls(lambda: call(b"q" * 200, timeout=10, wait_for_ready=True), n)
    finally:
        for p in procs:
            p.terminate()


def _direct_call(netdir: Path, code: str):  # type: ignore[no-untyped-def]
    """The chair asking one node directly: one signed, audited, disclosure-controlled round trip."""
    chair = Identity.load(network.principal_dir(netdir, "cag-chair"))
    party = network.read(netdir).party(code)
    channel = secure_channel(
        party.endpoint,
        peer_party_id=code,
        ca_pem=chair.ca_cert_pem,
        key_pem=chair.tls_key_pem,
        cert_pem=chair.tls_cert_pem,
    )
    stub = node_pb2_grpc.NodeStub(channel)

    def call() -> None:
        header = request_header(chair, audience=code, method="/cagnet.v1.Node/SupplyMap")
        stub.SupplyMap(envelope_to_proto(sign_message(node_pb2.SupplyMapRequest(header=header), chair)), timeout=10)

    return call


def _signature_cost(bundle: Any, envelope: dsse.Envelope, manifest: Any, key: Any) -> tuple[int, int, float, str]:
    """The Ed25519 work one joint query over `bundle`'s n nodes does, timed on this machine with
    its own bytes: 2n+2 signatures (the query; the coordinator's n requests and its bundle; the n
    answers) and 4n+2 verifications (the coordinator checks the query and the n answers; each node
    the coordinator's request and the principal's query; the client the bundle and the n answers).
    Returns the counts, the CPU in ms (every process's, not the critical path's) and a detail."""
    n = len(bundle.contributions)
    contribution = bundle.contributions[0]
    answer = dsse.Envelope.from_json(contribution.response)
    request = dsse.Envelope.from_json(contribution.request)
    public = manifest.party(contribution.authority).public_key

    def each(call: Callable[[], object], runs: int = 300) -> float:
        for _ in range(20):
            call()
        started = time.perf_counter()
        for _ in range(runs):
            call()
        return (time.perf_counter() - started) / runs * 1000

    verify = each(lambda: dsse.verify(answer, public))
    sign = each(lambda: dsse.sign(request.payload_type, request.payload, key))
    sign_bundle = each(lambda: dsse.sign(envelope.payload_type, envelope.payload, key))
    signatures, verifications = 2 * n + 2, 4 * n + 2
    cpu = (signatures - 1) * sign + sign_bundle + verifications * verify
    detail = (
        f"one verification {verify * 1000:.0f} µs, one signature {sign * 1000:.0f} µs, "
        f"the bundle's {sign_bundle * 1000:.0f} µs"
    )
    return signatures, verifications, cpu, detail


def _pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-") as tmp:
        root = Path(tmp)
        console.print("building six nodes with synthetic data ...")
        netdir, nodes = build_network(root, Console(quiet=True), dial_out=())  # every node listens, as measured before
        manifest = network.read(netdir)
        coordinator = network.coordinator_identity(netdir)
        logdir = root / "logs"
        logdir.mkdir()
        with processes(logdir) as running:
            for code, nodedir in nodes.items():
                running[code] = spawn(["node", "serve", str(nodedir)], logdir / f"{code}.log")
            running[COORDINATOR] = spawn(["coordinator", "serve", str(netdir)], logdir / "coordinator.log")
            for party in manifest.members:
                wait_healthy(party.endpoint, party.id, coordinator, timeout_s=600)
            wait_healthy(manifest.coordinator_endpoint, COORDINATOR, coordinator, timeout_s=600)
            with (
                CoordinatorClient(netdir) as client,
                _plain_joint(nodes) as plain_query,
                _plain_joint(nodes, netdir) as tls_query,
            ):
                bundle, envelope = client.query(kind="supply-map")
                assert len(bundle.answered) == 6, bundle.missing
                signatures = _signature_cost(bundle, envelope, manifest, coordinator.signing_key)
                node_payload = max(len(c.response["payload"]) * 3 // 4 for c in bundle.contributions)
                console.print("the real joint query, the plain one and the plain one over mTLS in turn ...")
                joint, plain_joint, tls_joint = _interleaved(
                    [lambda: client.query(kind="supply-map"), plain_query, tls_query], args.queries
                )
            single = _time_calls(_direct_call(netdir, "E10000016"), args.queries)
        # Printed now, so that a floor failing to start below does not lose the measurement.
        console.print(
            f"cagnet joint query p50 {_pct(joint, 50):.2f} ms, plain joint query {_pct(plain_joint, 50):.2f} ms: "
            f"{_pct(joint, 50) / _pct(plain_joint, 50):.2f}x the same query unsigned (asked in turn); "
            f"plain over mTLS {_pct(tls_joint, 50):.2f} ms"
        )
        console.print("running the plain floors ...")
    floor = _plain(args.queries, node_payload, relay=False)
    fan = _plain(args.queries, node_payload, relay=True)

    table = Table(title=f"Joint supply-map query, six nodes, {args.queries} queries (ms)")
    for col in ("measurement", "p50", "p95", "p50 ratio to plain round trip", "p50 ratio to plain fan-out"):
        table.add_column(col, justify="right" if col != "measurement" else "left")
    p50_floor, p50_fan = _pct(floor, 50), _pct(fan, 50)
    for name, s in [
        ("plain round trip (floor)", floor),
        ("plain fan-out, six servers", fan),
        ("plain joint query (same code and stores, no TLS, nothing signed)", plain_joint),
        ("plain joint query over mTLS (nothing signed)", tls_joint),
        ("one node's signed supply map, asked directly (Kent)", single),
        ("cagnet joint query (mTLS + signatures + DB)", joint),
    ]:
        table.add_row(
            name,
            f"{_pct(s, 50):.2f}",
            f"{_pct(s, 95):.2f}",
            f"{_pct(s, 50) / p50_floor:.1f}x",
            f"{_pct(s, 50) / p50_fan:.1f}x",
        )
    console.print(table)
    console.print(
        f"node response payload ~{node_payload:,} bytes; bundle {len(envelope.payload):,} bytes; "
        f"target: joint query within 3x of the floor -> {_pct(joint, 50) / p50_floor:.1f}x; "
        f"security's share of the joint query (p50, real minus plain joint query): "
        f"{_pct(joint, 50) - _pct(plain_joint, 50):.2f} ms, "
        f"the real joint query at {_pct(joint, 50) / _pct(plain_joint, 50):.2f}x the same query unsigned; "
        f"of that share, mTLS {_pct(tls_joint, 50) - _pct(plain_joint, 50):.2f} ms and the signed envelopes, "
        f"nonces and bundle {_pct(joint, 50) - _pct(tls_joint, 50):.2f} ms"
    )
    made, checked, cpu, detail = signatures
    console.print(
        f"the cost of the signatures: {made} made and {checked} checked a query, {cpu:.2f} ms of CPU in all "
        f"({detail}; spread over the processes, not all on the critical path); security's share is "
        f"{(_pct(joint, 50) - _pct(plain_joint, 50)) / cpu:.1f}x that"
    )


if __name__ == "__main__":
    main()

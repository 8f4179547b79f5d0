"""Building a real network in a temporary folder for tests: a CA, a coordinator and N nodes,
each node a real gRPC server on port 0 with mTLS and its own SQLite store full of synthetic data.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cagnet.demo import join_founding_member
from coordinator import network
from coordinator.server import CoordinatorRuntime
from coordinator.server import create_server as create_coordinator
from node.client_records import load_person_key
from node.config import load_config
from node.rpc.dialout import DialOut
from node.rpc.server import NodeRuntime, create_dial_out
from node.rpc.server import create_server as create_node
from node.synthetic.supply import load as load_synthetic
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR
from shared.pb.cagnet.v1 import node_pb2_grpc

# Kent, Medway, Brighton & Hove: a county with twelve districts and two unitaries.
THREE = ("E10000016", "E06000035", "E06000043")


@dataclass
class LiveNetwork:
    netdir: Path
    nodedirs: dict[str, Path]
    runtimes: dict[str, NodeRuntime] = field(default_factory=dict)
    servers: dict[str, grpc.Server] = field(default_factory=dict)
    coordinator: CoordinatorRuntime | None = None
    # The nodes that dial out (`node.rpc.dialout`): no server of their own.
    dial_outs: dict[str, DialOut] = field(default_factory=dict)

    def stop_node(self, code: str) -> None:
        if code in self.dial_outs:
            self.dial_outs.pop(code).stop()
            self.runtimes[code].release_serving()
            # The coordinator hears of the stream's end a moment later: wait for it, so that a test
            # goes on from a coordinator that knows the node is gone.
            deadline = time.monotonic() + 20
            while self.coordinator is not None and code in self.coordinator.clients.attached.authorities():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the coordinator still lists {code} as attached after its node stopped")
                time.sleep(0.01)
            return
        self.servers.pop(code).stop(grace=None).wait()
        if code in self.runtimes:
            self.runtimes[code].release_serving()  # as `cagnet node serve` does when it stops

    def wait_attached(self, timeout_s: float = 20.0) -> None:
        """Until the coordinator has every running dial-out node attached (raises if it has not)."""
        assert self.coordinator is not None, "start the coordinator first"
        if not self.coordinator.clients.attached.wait_for(set(self.dial_outs), timeout_s):
            missing = set(self.dial_outs) - self.coordinator.clients.attached.authorities()
            raise TimeoutError(f"dial-out nodes {sorted(missing)} did not attach within {timeout_s:.0f} s")


def make_network(
    root: Path,
    codes: tuple[str, ...] = THREE,
    *,
    seed: int = 7,
    clients: int | None = None,
    database_urls: dict[str, str] | None = None,
    dial_out: tuple[str, ...] = (),
) -> LiveNetwork:
    """`codes` as founding members, each loaded with synthetic data (`clients` client records each,
    default the realistic volume), sharing repeat movers with one another. Each node's store is
    SQLite in its folder unless `database_urls` names another (an empty PostgreSQL database). The
    nodes in `dial_out` open no port: they attach to the coordinator over the relay.

    An all-SQLite network is built once per test process for each set of arguments and copied into
    `root`: the suite asks for the same few networks dozens of times, and making one (keys,
    charter, synthetic records, the standard table set's first edition) costs seconds a node. Each
    copy is a network of its own on disk; only its keys are the same as the other copies'."""
    if database_urls:
        return _build_network(root, codes, seed=seed, clients=clients, database_urls=database_urls, dial_out=dial_out)
    key = (codes, seed, clients, dial_out)
    template = _templates.get(key)
    if template is None:
        template = Path(tempfile.mkdtemp(prefix="cagnet-test-network-"))
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        built = _build_network(template, codes, seed=seed, clients=clients, database_urls=None, dial_out=dial_out)
        for nodedir in built.nodedirs.values():
            # Opening a node protects its standard table set and keeps the edition in its store,
            # so that every copy starts with a lookup rather than a protection.
            NodeRuntime.open(load_config(nodedir)).engine.dispose()
        _templates[key] = template
    shutil.copytree(template, root, dirs_exist_ok=True)
    for config in root.glob("*/node.toml"):
        # A node's configuration names its manifest and store by absolute path.
        config.write_text(config.read_text().replace(str(template), str(root)))
    return LiveNetwork(root / "network", {code: root / code for code in codes})


_templates: dict[tuple[object, ...], Path] = {}


def _build_network(
    root: Path,
    codes: tuple[str, ...],
    *,
    seed: int,
    clients: int | None,
    database_urls: dict[str, str] | None,
    dial_out: tuple[str, ...],
) -> LiveNetwork:
    netdir = root / "network"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    register = network.read_register(netdir)
    nodedirs = {}
    linkage_key: bytes | None = None  # the first node makes the network linkage key; the rest get a copy
    for i, code in enumerate(codes):
        nodedir = root / code
        linkage_key = join_founding_member(
            netdir,
            nodedir,
            authority=code,
            endpoint="127.0.0.1:0",
            linkage_key=linkage_key,
            transport="dial-out" if code in dial_out else "listen",
        )
        nodedirs[code] = nodedir
        if database_urls and code in database_urls:
            _use_store(nodedir, database_urls[code])
        runtime = NodeRuntime.open(load_config(nodedir))
        person_key = load_person_key(runtime.config.person_key_path)
        load_synthetic(
            runtime.engine,
            authority_code=code,
            seed=seed + i,
            person_key=person_key,
            clients=clients,
            register=register,
            members=codes,
        )
        runtime.engine.dispose()
    return LiveNetwork(netdir, nodedirs)


def _use_store(nodedir: Path, url: str) -> None:
    config = nodedir / "node.toml"
    lines = [
        f"database_url = {json.dumps(url)}" if line.startswith("database_url =") else line
        for line in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")


def node_channel(net: LiveNetwork, identity: Identity, code: str) -> grpc.Channel:
    """An mTLS channel to `code`'s node as `identity` (at the endpoint the manifest lists now)."""
    return secure_channel(
        network.read(net.netdir).party(code).endpoint,
        peer_party_id=code,
        ca_pem=identity.ca_cert_pem,
        key_pem=identity.tls_key_pem,
        cert_pem=identity.tls_cert_pem,
    )


def node_stub(net: LiveNetwork, identity: Identity, code: str) -> node_pb2_grpc.NodeStub:
    return node_pb2_grpc.NodeStub(node_channel(net, identity, code))


def start_node(net: LiveNetwork, code: str) -> None:
    """Serve `code`'s node on port 0 and list its real port in the manifest; or, a dial-out node,
    start dialling the coordinator (`LiveNetwork.wait_attached` waits for it to be attached)."""
    config = load_config(net.nodedirs[code])
    runtime = NodeRuntime.open(config)
    if config.transport == "dial-out":
        net.runtimes[code], net.dial_outs[code] = runtime, create_dial_out(runtime)
        return
    server, port = create_node(runtime, address="127.0.0.1:0")
    net.runtimes[code], net.servers[code] = runtime, server
    network.set_endpoint(net.netdir, code, f"127.0.0.1:{port}")


def start_coordinator(net: LiveNetwork) -> None:
    """Serve the coordinator on port 0 and list its real port in the manifest."""
    coordinator = CoordinatorRuntime.open(net.netdir)
    server, port = create_coordinator(coordinator, address="127.0.0.1:0")
    net.coordinator, net.servers[COORDINATOR] = coordinator, server
    network.set_endpoint(net.netdir, COORDINATOR, f"127.0.0.1:{port}")


def start_onboarding(net: LiveNetwork) -> str:
    """Serve the coordinator's onboarding port (TLS, no client certificate) on port 0, sharing the
    running coordinator's audit log and nonces; returns its HOST:PORT."""
    from coordinator.governance.server import GovernanceRuntime
    from coordinator.onboarding.server import create_server as create_onboarding

    assert net.coordinator is not None, "start the coordinator first"
    coordinator = net.coordinator
    runtime = GovernanceRuntime(net.netdir, coordinator.identity, coordinator.manifests, nonces=coordinator.nonces)
    runtime.audit = coordinator.audit
    server, port = create_onboarding(runtime, address="127.0.0.1:0")
    net.servers["onboarding"] = server
    return f"127.0.0.1:{port}"


def stop_all(net: LiveNetwork) -> None:
    for server in net.servers.values():
        server.stop(grace=None).wait()
    for dial_out in net.dial_outs.values():
        dial_out.stop()
    if net.coordinator is not None:
        net.coordinator.close()
    for runtime in net.runtimes.values():
        runtime.release_serving()
        runtime.engine.dispose()


@contextmanager
def running(net: LiveNetwork) -> Iterator[LiveNetwork]:
    """Start every node and the coordinator on port 0 and list their real ports in the manifest."""
    try:
        for code in net.nodedirs:
            start_node(net, code)
        start_coordinator(net)
        net.wait_attached()
        yield net
    finally:
        stop_all(net)

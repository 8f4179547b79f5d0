"""`cagnet demo`: a CAG on one machine (its members in `cagnet/demo.toml`), founded by invite as on
separate machines: each member's node and each person's kit makes its keys in a folder of its own,
and only invite codes leave the coordinator's folder (`found_by_invite`). Six nodes and a
coordinator run as separate processes on loopback with mTLS and signatures on. The members adopt
a charter (from then on only a quorum of them changes the manifest); the CAG chair runs a joint
supply map from its kit, saves and verifies the bundle, and the other joint analyses; a member
rotates its key by quorum; then one node is stopped to show what a partial answer looks like.
After the charter, an outsider the coordinator could not add on its own joins over the wire from a
folder of its own: an invite, a member's sponsorship and a quorum, then its own node process.
Everything is cleaned up afterwards unless --keep names a folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console

from cagnet.cli.analyses import render_equality, render_outcomes
from cagnet.cli.common import stdout_console
from cagnet.cli.funding import render_fair_shares, render_grant, render_spend
from cagnet.cli.governance import filed_join, seal_for
from cagnet.cli.providers import render_common_providers, render_vfm
from cagnet.cli.query import render_supply_map
from cagnet.cli.records import render_kpi, render_movement, render_net_flow, render_non_local, render_repeat_movers
from cagnet.cli.returns import render_kpi1, render_occupied_cost, render_unmet_demand, render_utilisation
from cagnet.demo.register import run_register_demo
from cagnet.demo.scenario import DEMO
from coordinator import network
from coordinator.governance import proposals as gov
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import Refused, joint_query
from coordinator.onboarding import invites as coordinator_onboarding
from coordinator.onboarding import person
from node.client_records import load_person_key
from node.config import complete_join, init_node, load_config
from node.network import onboarding as joining
from node.network.governance import Member, node_manifests, sync
from node.store import ensure_authority, open_store
from node.synthetic.supply import load as load_synthetic
from shared import governance, keys, pki
from shared.authorities import register_of, shipped_register
from shared.channel import coordinator_endpoints
from shared.errors import CagnetError, Unavailable
from shared.governance import Change, Filed
from shared.governance_client import GovernanceClient
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.invite import decode
from shared.kinds.supply import JointSupplyMap
from shared.manifest import COORDINATOR, encode_key
from shared.onboarding_client import fetch_network_ca
from shared.relay import attached_service

READY_TIMEOUT_S = 60


def _name(code: str) -> str:
    return shipped_register().authority(code).name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    target: str, party_id: str, identity: Identity, *, service: str = "", timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Poll the standard health service over mTLS until the server says SERVING (for `service`:
    the coordinator says so of a dial-out node once it is attached)."""
    deadline = time.monotonic() + timeout_s
    with secure_channel(
        target,
        peer_party_id=party_id,
        ca_pem=identity.ca_cert_pem,
        key_pem=identity.tls_key_pem,
        cert_pem=identity.tls_cert_pem,
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{party_id} at {target} did not become healthy within {timeout_s:.0f} s")
            time.sleep(0.1)


def join_founding_member(
    netdir: Path,
    nodedir: Path,
    *,
    authority: str,
    endpoint: str,
    linkage_key: bytes | None,
    transport: Literal["listen", "dial-out"] = "listen",
) -> bytes:
    """`cagnet node init` for a network still being set up: make the node, admit it, install its
    certificate. The first member makes the linkage key (`linkage_key` None); pass the returned key
    to the next, so that every member holds the same one. A "dial-out" node opens no port."""
    request = init_node(
        nodedir,
        authority=authority,
        endpoint=endpoint,
        manifest_path=network.manifest_path(netdir),
        linkage_key=linkage_key,
        transport=transport,
    )
    cert, ca_cert, _ = network.admit(netdir, request)
    complete_join(
        nodedir,
        cert_pem=pki.cert_pem(cert),
        ca_pem=pki.cert_pem(ca_cert),
        coordinator_key=network.coordinator_key_b64(netdir),
    )
    return (nodedir / "identity" / "linkage.key").read_bytes()


def build_network(
    root: Path, console: Console, *, seed: int = 1, dial_out: Collection[str] | None = None
) -> tuple[Path, dict[str, Path]]:
    """The network folder and six node folders with synthetic data, ports chosen free on loopback,
    made the one-machine way (`node init --network`, the chair's keys in the network folder): for
    the benchmarks, which measure queries, not founding; `cagnet demo` founds by invite
    (`found_by_invite`). The members in `dial_out` (default: the demo's) open no port and attach
    to the coordinator."""
    dialling = DEMO["dial_out"] if dial_out is None else dial_out
    netdir = root / "network"
    network.init_network(netdir, name=DEMO["name"], coordinator_endpoint=f"127.0.0.1:{free_port()}")
    register = network.read_register(netdir)
    nodes: dict[str, Path] = {}
    linkage_key: bytes | None = None  # the first node makes the network linkage key; the rest get a copy
    for i, code in enumerate(DEMO["members"]):
        nodedir = root / "nodes" / code
        linkage_key = join_founding_member(
            netdir,
            nodedir,
            authority=code,
            endpoint=f"127.0.0.1:{free_port()}",
            linkage_key=linkage_key,
            transport="dial-out" if code in dialling else "listen",
        )
        config = load_config(nodedir)
        engine = open_store(config.database_url)
        ensure_authority(engine, authority_code=code, register=register)
        person_key = load_person_key(config.person_key_path)
        load_synthetic(
            engine,
            authority_code=code,
            seed=seed + i,
            person_key=person_key,
            register=register,
            members=DEMO["members"],
        )
        engine.dispose()
        reached = "dials out" if config.transport == "dial-out" else config.endpoint
        console.print(f"  node {register.authority(code).name:<16} {code}  {reached:<15}  synthetic data loaded")
        nodes[code] = nodedir
    # The need and grant figures, signed into the manifest before the charter (then a proposal).
    reference = resources.files("cagnet").joinpath(DEMO["reference"]).read_text(encoding="utf-8")
    network.set_reference(netdir, reference, source=DEMO["reference"])
    # Listed while the network is still being set up; once chartered, a new principal is a proposal.
    network.add_principal(netdir, party_id="regional-board", role="regional-board", name=DEMO["regional_board"])
    return netdir, nodes


# The people the demo's network lists, each joining by invite with keys made in its own kit:
# (principal id, role, name). Their ids are their roles, so each kit asks as the role it holds.
PEOPLE = (("cag-chair", "cag-chair", "CAG chair"), ("regional-board", "regional-board", DEMO["regional_board"]))


def _wait_onboarding(onboarding: str, netdir: Path) -> None:
    """Until the coordinator's onboarding port answers (it opens just after the mTLS port)."""
    fingerprint = network.read(netdir).ca_fingerprint
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            fetch_network_ca(onboarding, fingerprint, timeout_s=1)
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def sync_members(nodes: Mapping[str, Path]) -> None:
    """What `cagnet node sync-manifest NODEDIR` does, in each member's folder: take the versions
    the coordinator publishes as the next links of that node's own chain. A running node reads the
    version from its folder on its next request (`node serve` also polls every manifest_poll_s
    seconds; the demo does not wait for that). Unlike the command, no rotated key is switched to
    here: the running node does that itself."""
    for nodedir in nodes.values():
        config = load_config(nodedir)
        manifests = node_manifests(config)
        with GovernanceClient(config.identity(), manifests.current, known=coordinator_endpoints(manifests)) as client:
            sync(manifests, client)


def found_by_invite(
    root: Path,
    console: Console,
    running: dict[str, subprocess.Popen[bytes]],
    logdir: Path,
    *,
    seed: int = 1,
) -> tuple[Path, dict[str, Path], dict[str, Path], str]:
    """Found the demo's network as on separate machines (docs/onboarding.md, "Founding by invite"):
    the operator's folder holds the CA and the coordinator's keys only; each founding member makes
    its keys in a folder of its own with `node join --invite`, the operator admits it (`network
    admit`), the first founder makes the network linkage key and seals it to the others
    (`seal-linkage-key`); the CAG chair and the regional board make theirs in kits of their own
    (`kit join --invite`). Only invite codes cross from the operator's folder to anyone else's.
    Starts the coordinator (its process in `running`); returns the network folder, the node
    folders, the people's kits by principal id and the onboarding port."""
    netdir = root / "network"
    endpoint = f"127.0.0.1:{free_port()}"
    network.init_network(netdir, name=DEMO["name"], coordinator_endpoint=endpoint, chair=False)
    onboarding = f"127.0.0.1:{free_port()}"
    running[COORDINATOR] = spawn(
        ["coordinator", "serve", str(netdir), "--onboarding", onboarding], logdir / "coordinator.log"
    )
    with console.status("starting the coordinator (mTLS port, and an onboarding port for the invites)"):
        wait_healthy(endpoint, COORDINATOR, network.coordinator_identity(netdir))
        _wait_onboarding(onboarding, netdir)

    nodes: dict[str, Path] = {}
    for i, code in enumerate(DEMO["members"]):
        invite = coordinator_onboarding.create_invite(netdir, endpoint=onboarding, authority=code).encode()
        nodedir = root / "nodes" / code  # the member's own folder: only the invite code reaches it
        transport: Literal["listen", "dial-out"] = "dial-out" if code in DEMO["dial_out"] else "listen"
        pending, _ = joining.start(
            nodedir, invite=decode(invite), authority=code, endpoint=f"127.0.0.1:{free_port()}", transport=transport
        )
        if nodes:  # the first founder made the linkage key on its own node; it seals a copy to each after it
            first = next(iter(nodes.values()))
            with Member(first) as member:
                seal_for(member, first, filed_join(member, code))
        coordinator_onboarding.admit_founding(netdir, code)
        if not joining.collect(pending, poll_s=0.2, timeout_s=60):
            raise TimeoutError(f"{_name(code)} was not admitted within 60 s")
        config = load_config(nodedir)
        register = register_of(node_manifests(config).current())
        engine = open_store(config.database_url)
        ensure_authority(engine, authority_code=code, register=register)
        load_synthetic(
            engine,
            authority_code=code,
            seed=seed + i,
            person_key=load_person_key(config.person_key_path),
            register=register,
            members=DEMO["members"],
        )
        engine.dispose()
        reached = "dials out" if config.transport == "dial-out" else config.endpoint
        how = "makes the linkage key" if not nodes else "opens the sealed key"
        console.print(
            f"  node {register.authority(code).name:<16} {code}  {reached:<15}  joined by invite, {how};"
            " synthetic data loaded"
        )
        nodes[code] = nodedir

    kits: dict[str, Path] = {}
    for principal, role, name in PEOPLE:
        invite = coordinator_onboarding.create_invite(
            netdir, endpoint=onboarding, principal=principal, role=role, name=name
        ).encode()
        kit = root / "people" / principal  # the person's own folder: its keys are made here
        asked, _ = person.start(kit, invite=decode(invite))
        coordinator_onboarding.admit_founding(netdir, principal)
        if not person.collect(asked, poll_s=0.2, timeout_s=60):
            raise TimeoutError(f"{name} was not admitted within 60 s")
        console.print(f"  kit  {name:<26} {role}: keys made in its own folder, joined by invite")
        kits[principal] = kit
    # The need and grant figures, signed into the manifest before the charter (then a proposal).
    reference = resources.files("cagnet").joinpath(DEMO["reference"]).read_text(encoding="utf-8")
    network.set_reference(netdir, reference, source=DEMO["reference"])
    sync_members(nodes)  # each founder takes the versions listed after it joined
    return netdir, nodes, kits, onboarding


@contextmanager
def processes(logdir: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        yield running
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in running.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "cagnet", *args], stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy()
        )


def _show_refusals(console: Console, netdir: Path, *, client_groups: list[int]) -> None:
    try:
        bundle, _ = joint_query(netdir, kind="supply-map", client_groups=client_groups)
    except Refused as exc:
        console.print(f"  [red]refused by the coordinator[/]: {exc.public_message}")
        return
    console.print(f"  answered: {', '.join(_name(a) for a in bundle.answered) or 'none'}")
    for m in bundle.missing:
        console.print(f"  [yellow]{_name(m.authority)}'s node[/]: {m.reason}")


def _show_movement(console: Console, netdir: Path, root: Path) -> None:
    """The CAG's client-record questions, each a signed joint query like the supply map."""
    console.rule("Where clients come from, and who carries the cost (client records, 2008-10)")
    with console.status("CAG chair: movement, net flows, KPI 2, non-local services, repeat movers"):
        movement, envelope = joint_query(netdir, kind="movement", period="all")
        net_flow, _ = joint_query(netdir, kind="net-flow", period="all")
        kpi, _ = joint_query(netdir, kind="kpi", period="all")
        non_local, _ = joint_query(netdir, kind="non-local-services", period="all", min_share_percent=50)
        repeat, _ = joint_query(netdir, kind="repeat-movers", period="all")
    render_movement(movement, console)
    render_net_flow(net_flow, console)
    render_kpi(kpi, console)
    render_non_local(non_local, console)
    render_repeat_movers(repeat, console)
    saved = root / "movement.bundle.json"
    bundle_mod.save(saved, envelope, network_dir=netdir)
    bundle_mod.verify_bundle(bundle_mod.load(saved)[0], network.read(netdir))
    console.print(f"[green]movement bundle verified offline[/] ({saved.name}); no record left any node")


def _show_outcomes_and_equality(console: Console, netdir: Path) -> None:
    """Whether people were helped, and who the services reach: outcomes and the equality profile."""
    console.rule("Were people helped, and who do the services reach? (client records, 2008-10)")
    # The first question of a records edition protects a stack of tables at each node, on a laptop
    # shared by seven nodes: give it longer than the default 5 s (the answers are then remembered).
    wait = 20_000
    with console.status("CAG chair: short-term outcomes, the equality profile, age band x sex"):
        outcomes, _ = joint_query(netdir, kind="outcomes", period="all", node_deadline_ms=wait)
        profile, _ = joint_query(netdir, kind="equality", period="all", node_deadline_ms=wait)
        cross, _ = joint_query(
            netdir, kind="equality", period="all", cross_tab=("age_band", "sex"), node_deadline_ms=wait
        )
    render_outcomes(outcomes, console)
    render_equality(profile, console)
    render_equality(cross, console)


def _show_returns(console: Console, netdir: Path) -> None:
    """KPI 1 and occupancy, from the services' quarterly returns, beside the supply map's units."""
    console.rule("Outcomes and utilisation from the quarterly returns (2009-10)")
    with console.status("CAG chair: KPI 1, occupancy, waiting lists and the supply map's units"):
        kpi1, _ = joint_query(netdir, kind="kpi1", from_date="2009-04-01", to_date="2010-03-31")
        utilisation, _ = joint_query(netdir, kind="utilisation", from_date="2009-04-01", to_date="2010-03-31")
        demand, _ = joint_query(netdir, kind="unmet-demand", from_date="2009-04-01", to_date="2010-03-31")
        supply, _ = joint_query(netdir, kind="supply-map")
    render_kpi1(kpi1, console)
    render_utilisation(utilisation, console, supply.result if isinstance(supply.result, JointSupplyMap) else None)
    render_unmet_demand(demand, console)


def _show_funding(console: Console, netdir: Path) -> None:
    """The money questions: designated services' intake shares, spend beside the SP grant, and a
    projected grant. The grant is the network's signed reference data (cagnet/demo-reference.csv)."""
    from shared import dsse
    from shared.grant import grant_and_spend, parse_grant_changes
    from shared.kinds.returns import JointUtilisation, occupied_unit_costs
    from shared.kinds.spend import JointSpend
    from shared.pb.cagnet.v1 import node_pb2
    from shared.reference import reference_of
    from shared.serde import supply_map_from_proto

    console.rule("Who pays for what: fair shares, spend and the SP grant (2009-10)")
    reference = reference_of(network.read(netdir))
    with console.status("CAG chair: designated services' intake shares, spend per unit and per client, the grant"):
        shares, _ = joint_query(netdir, kind="fair-shares", period="all")
        spend, _ = joint_query(netdir, kind="spend", period="all", from_date="2009-04-01", to_date="2010-03-31")
        # The same year's occupancy (each node repeats the answer it gave above), for the cost per
        # occupied unit beside the cost per unit.
        utilisation, _ = joint_query(netdir, kind="utilisation", from_date="2009-04-01", to_date="2010-03-31")
        supply, _ = joint_query(netdir, kind="supply-map")
    render_fair_shares(shares, console)
    render_spend(spend, console, reference)
    assert isinstance(spend.result, JointSpend) and isinstance(utilisation.result, JointUtilisation)
    render_occupied_cost(occupied_unit_costs(spend.result, utilisation.result), console)
    assert isinstance(supply.result, JointSupplyMap)
    # Each node's released map, from its signed contribution, as `cagnet query grant` reads them.
    maps = [
        supply_map_from_proto(node_pb2.SupplyMapResponse.FromString(dsse.Envelope.from_json(c.response).payload))
        for c in supply.contributions
    ]
    # A projected cut of 10% for every authority: which client groups' spend per 1,000 would fall
    # below the CAG's lower quartile.
    changes = parse_grant_changes(["-10"], supply.answered)
    render_grant(grant_and_spend(supply.result, maps, reference, year=2009, changes=changes), console)


def _show_providers(console: Console, netdir: Path, root: Path) -> None:
    """Common providers (never one authority's own) and VFM benchmarks (never anyone's prices)."""
    console.rule("Providers common to two or more authorities, and value-for-money benchmarks")
    with console.status("CAG chair: common providers (tokens, then reveals on signed evidence)"):
        common, _ = joint_query(netdir, kind="common-providers")
    render_common_providers(common, console)
    with console.status("CAG chair: unit-cost benchmarks from masked histograms"):
        benchmarks, envelope = joint_query(netdir, kind="vfm")
    render_vfm(benchmarks, console)
    saved = root / "vfm.bundle.json"
    bundle_mod.save(saved, envelope, network_dir=netdir)
    console.print(
        f"[dim]The coordinator saw only the CAG-wide sum of {len(benchmarks.answered)} masked histograms; "
        "each authority can place "
        f"its own services against it with `cagnet node vfm-position NODEDIR --bundle {saved.name}`.[/]"
    )


def _approve_over_grpc(nodedir: Path, proposal_id: str) -> Filed:
    """What a member's SP team does with `cagnet network approve ID --node NODEDIR`: fetch the
    proposal from the coordinator, recompute the candidate from the node's own chain, sign it."""
    with Member(nodedir) as member:
        return member.approve(member.find(proposal_id))


def _charter(console: Console, netdir: Path, nodes: dict[str, Path]) -> None:
    console.rule("Governance: the six members take charge of the network")
    first, *others = nodes.values()
    with Member(first) as member:
        filed = member.charter()
    for nodedir in others:
        filed = _approve_over_grpc(nodedir, filed.id)
    sync_members(nodes)
    manifest = network.read(netdir)
    rules = manifest.governance
    assert filed.published and rules is not None
    console.print(
        f"[green]charter adopted[/]: manifest version {manifest.version}, signed by all "
        f"{len(filed.approvals)} member authorities over signed gRPC, each after checking it against "
        f"its own chain; from now on a change needs {rules.required(len(manifest.members), loosens=False)} "
        f"of {len(manifest.members)} (a looser policy: all), and the coordinator's key counts for nothing"
    )
    console.print(
        "[dim]Each node takes a published version as the next link of its own chain: `cagnet node serve`"
        " asks every 30 s; here each member runs `cagnet node sync-manifest` at once.[/]"
    )
    outsider = DEMO["outsider"]
    rogue = manifest.party(next(iter(nodes))).model_copy(update={"id": outsider, "name": _name(outsider)})
    coordinator = network.coordinator_identity(netdir)
    attempt = gov.propose(netdir, Change(action="add-member", party=rogue), coordinator)
    try:
        gov.add_approval(
            netdir, attempt.id, COORDINATOR, governance.approval(attempt.candidate, coordinator.signing_key)
        )
    except CagnetError as exc:
        console.print(f"coordinator tries to add a member on its own: [red]refused[/] — {exc.public_message}")


def _join_outsider(
    console: Console,
    netdir: Path,
    chair: Path,
    nodes: dict[str, Path],
    running: dict[str, subprocess.Popen[bytes]],
    *,
    onboarding_port: str,
    machine: Path,
    logdir: Path,
) -> None:
    """What docs/onboarding.md walks through, with the calls `cagnet network invite`, `cagnet node
    join`, `propose-join` and `approve` make; the joiner's folder is outside the network's tree and
    nothing is copied into it by hand. Adds the joiner to `nodes` and its process to `running`."""
    code = DEMO["outsider"]
    name = _name(code)
    console.rule(f"{name} joins from its own machine")
    invite = coordinator_onboarding.create_invite(netdir, endpoint=onboarding_port, authority=code).encode()
    console.print(f"coordinator's operator: invite for {code}, one line of {len(invite)} characters")
    nodedir = machine / code  # outside the network's tree: only the invite code reaches it
    endpoint = f"127.0.0.1:{free_port()}"
    with console.status(f"{name}: `cagnet node join` (checks the CA the invite pins, verifies the chain)"):
        pending, _ = joining.start(nodedir, invite=decode(invite), authority=code, endpoint=endpoint)
    console.print(f"{name} runs `cagnet node join` in {machine.name}/{code}: request filed")

    sponsor, *others = nodes
    members = len(nodes)
    with Member(nodes[sponsor]) as member:
        envelope = filed_join(member, code)
        filed = member.approve(member.sponsor_join(envelope))
        seal_for(member, nodes[sponsor], envelope)
    console.print(f"{_name(sponsor)} sponsors it: proposal {filed.id}, linkage key sealed to {name}")
    for other in others:
        if filed.published:
            break
        filed = _approve_over_grpc(nodes[other], filed.id)
    console.print(
        f"approved by {', '.join(_name(a) for a in filed.approvals)} "
        f"({len(filed.approvals)} of {members}): manifest version {filed.candidate.version}"
    )
    sync_members(nodes)
    if not joining.collect(pending, poll_s=0.2, timeout_s=60):
        raise TimeoutError(f"{name} was not admitted within 60 s")
    linkage_key = (nodes[sponsor] / "identity" / "linkage.key").read_bytes()
    opened = (nodedir / "identity" / "linkage.key").read_bytes() == linkage_key
    console.print(
        f"{name} collects its certificate and "
        + ("opens the sealed linkage key" if opened else "[red]holds a linkage key not the members'[/]")
    )
    with console.status(f"{name}: `cagnet node synth`, then `cagnet node serve`"):
        done = subprocess.run(
            [sys.executable, "-m", "cagnet", "node", "synth", str(nodedir), "--seed", str(members + 1)],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"`cagnet node synth` failed for {name}: {done.stderr.strip()}")
        running[code] = spawn(["node", "serve", str(nodedir)], logdir / f"{code}.log")
        nodes[code] = nodedir
        wait_healthy(endpoint, code, network.coordinator_identity(netdir))
    bundle, _ = joint_query(chair, kind="supply-map")
    console.print(f"[green]{name}'s node is up[/]; the next joint supply map answered for {len(bundle.answered)}:")
    console.print(f"  {', '.join(_name(a) for a in bundle.answered)}")


def _rotate_key(console: Console, netdir: Path, chair: Path, nodes: dict[str, Path], code: str) -> None:
    name = _name(code)
    console.rule(f"{name} rotates its signing key; a quorum of members approves")
    identity_dir = nodes[code] / "identity"
    new = keys.next_key(identity_dir)
    until = datetime.now(UTC) + timedelta(days=7)
    change = Change(
        action="rotate-key",
        party_id=code,
        signing_key=encode_key(new.public_key()),
        overlap_until_ms=int(until.timestamp() * 1000),
    )
    with Member(nodes[code]) as member:
        filed = member.propose(change)
    for other in (c for c in nodes if c != code):
        if filed.published:
            break
        filed = _approve_over_grpc(nodes[other], filed.id)
    console.print(
        f"proposal {filed.id} approved by {', '.join(filed.approvals)} "
        f"({len(filed.approvals)} of {len(network.read(netdir).members)}): manifest version {filed.candidate.version}"
    )
    sync_members(nodes)  # the rotating node switches to its new key itself once its chain lists it
    bundle, _ = joint_query(chair, kind="supply-map")
    answered = code in bundle.answered and Identity.load(identity_dir).keyid == network.read(netdir).party(code).keyid
    console.print(
        f"[green]{name}'s node switched to its new key by itself[/] and answered the next joint query"
        if answered
        else f"[red]{name}'s node did not answer with its new key[/]"
    )


def _show_feed_and_report(console: Console, netdir: Path, board: Path, root: Path, *, keep: bool) -> None:
    from coordinator import kit
    from coordinator.feeds.client import publish, subscribe
    from coordinator.report import write_report

    for folder in (netdir, board):  # what `cagnet feed ... --kit KIT` does first: the kit's chain brought up to date
        kit.refresh(folder)

    console.rule("The regional housing board's feed, and the chair's report")
    with console.status("CAG chair: publishing a feed snapshot (supply, flows, KPI 2, accreditation)"):
        publish(netdir)
    written = subscribe(board, root / "feed")  # from the board's own kit
    snapshot = json.loads((root / "feed" / f"snapshot-{written[-1]:06d}.json").read_text())
    console.print(
        f"[green]regional board received snapshot {written[-1]}[/], verified end to end "
        f"(node receipts, no authority's own figures): {len(snapshot['supply'])} client groups, "
        f"{len(snapshot['authorities'])} authorities"
    )
    # Outlives the demo's temporary folder, so it can be opened afterwards.
    out = (root if keep else Path(tempfile.gettempdir())) / "cagnet-demo-report.html"
    with console.status("CAG chair: building the report (supply, flows, net import, VFM, accreditation)"):
        write_report(netdir, out)
    console.print(f"[green]report written[/]: {out}")


def run_demo(*, as_json: bool = False, keep: Path | None = None) -> int:
    console = stdout_console(stderr=as_json)  # piped, its tables whole (the CAG column was cut at 80)
    root = keep or Path(tempfile.mkdtemp(prefix="cagnet-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        console.rule(f"cagnet demo: {DEMO['title']}")
        console.print(
            "Founding the network by invite: the coordinator's operator makes the CA and its own keys; six"
            " authorities and two people each make their keys in a folder of their own, and only an invite"
            " code reaches each:"
        )
        logdir = root / "logs"
        logdir.mkdir(exist_ok=True)
        with processes(logdir) as running:
            netdir, nodes, kits, onboarding_port = found_by_invite(root, console, running, logdir)
            chair = kits["cag-chair"]  # the CAG chair asks the joint questions from its own kit
            manifest = network.read(netdir)
            coordinator = network.coordinator_identity(netdir)
            for code, nodedir in nodes.items():
                running[code] = spawn(["node", "serve", str(nodedir)], logdir / f"{code}.log")
            with console.status("starting six nodes (mTLS, client certificates required)"):
                for party in manifest.members:
                    if not party.dials_out:
                        wait_healthy(party.endpoint, party.id, coordinator)
                for party in manifest.members:
                    if party.dials_out:  # no port of its own: the coordinator says once it is attached
                        wait_healthy(
                            manifest.coordinator_endpoint, COORDINATOR, coordinator, service=attached_service(party.id)
                        )
            dialling = [_name(p.id) for p in manifest.members if p.dials_out]
            console.print(f"[green]all seven processes up[/]; logs in {logdir}")
            console.print(
                f"{' and '.join(dialling)} open no port: each node holds an mTLS connection to the"
                " coordinator and is asked on it (dial-out)"
            )
            _charter(console, netdir, nodes)
            _join_outsider(
                console,
                netdir,
                chair,
                nodes,
                running,
                onboarding_port=onboarding_port,
                machine=root / "elsewhere",
                logdir=logdir,
            )

            with console.status(f"CAG chair: joint supply map across {len(nodes)} authorities"):
                bundle, envelope = joint_query(chair, kind="supply-map")
            saved = root / "supply-map.bundle.json"
            bundle_mod.save(saved, envelope, network_dir=chair)
            if as_json:
                print(json.dumps(bundle.model_dump(mode="json"), indent=2))
            else:
                render_supply_map(bundle, console)
            verified = bundle_mod.verify_bundle(bundle_mod.load(saved)[0], network.read(chair))
            console.print(
                f"[green]bundle verified offline[/]: {len(verified.contributions)} node signatures, "
                f"result recomputed from the contributions ({saved.name})"
            )

            console.rule("Disclosure control: what the nodes refuse, and why")
            console.print("CAG chair asks for refugees' services alone (client group 17):")
            _show_refusals(console, chair, client_groups=[17])
            console.print(
                "CAG chair asks for client groups 1-13 only, after the full map "
                "(the difference would single out the few services for groups 14-21):"
            )
            _show_refusals(console, chair, client_groups=list(range(1, 14)))
            console.print(
                "[dim]Each refusal is in that node's audit log (`cagnet node audit show NODEDIR`), "
                "with who asked and the rule, never the figures.[/]"
            )
            run_register_demo(console, chair, nodes, root / "register")

            _show_movement(console, chair, root)
            _show_outcomes_and_equality(console, chair)
            _show_returns(console, chair)
            _show_funding(console, chair)
            _show_providers(console, chair, root)
            _show_feed_and_report(console, chair, kits["regional-board"], root, keep=keep is not None)

            _rotate_key(console, netdir, chair, nodes, DEMO["rotates_key"])

            stopped = DEMO["stopped"]
            console.rule(f"Stopping {_name(stopped)}'s node: the query still answers")
            running[stopped].terminate()
            running[stopped].wait(timeout=10)
            with console.status("CAG chair: joint supply map with one node down (1 s per-node deadline)"):
                partial, _ = joint_query(chair, kind="supply-map", node_deadline_ms=1000)
            console.print(f"answered: {', '.join(partial.answered)}")
            for m in partial.missing:
                console.print(f"[yellow]missing[/]: {m.authority} ({_name(m.authority)}) — {m.reason}")
        console.rule("done")
        if keep:
            console.print(f"network kept in {root}")
        return 0
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)

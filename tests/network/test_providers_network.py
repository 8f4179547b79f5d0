"""Common providers and VFM benchmarks through a real network: four nodes with synthetic supply and
a coordinator on port 0, mTLS and signed envelopes. A provider working for one authority reaches
no one; a node reveals only on signed evidence; no single contract can be recovered from a
benchmark or from the difference of two; a missing node fails a benchmark rather than skewing it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import Refused, joint_query
from node.answers import vfm as node_vfm
from node.answers.providers import local_providers
from node.store import Contract
from shared import dsse, vfm
from shared.auth import request_header, sign_message
from shared.errors import BundleMismatch
from shared.identity import Identity
from shared.kinds.providers import CommonProviders, VfmBenchmarks
from shared.manifest import COORDINATOR
from shared.pb.cagnet.v1 import coordinator_pb2, node_pb2, node_pb2_grpc
from shared.policy import default_policy
from shared.serde import envelope_from_proto, envelope_to_proto
from tests.netutil import LiveNetwork, make_network, node_channel, running

KENT, MEDWAY, BRIGHTON, SURREY = "E10000016", "E06000035", "E06000043", "E10000030"
FOUR = (KENT, MEDWAY, BRIGHTON, SURREY)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    return make_network(tmp_path_factory.mktemp("net"), FOUR)


@pytest.fixture
def net(built: LiveNetwork) -> Iterator[LiveNetwork]:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as live:
        yield live


def _truth(net: LiveNetwork) -> set[tuple[str, str]]:
    """From inside the nodes (as only a test may): (authority, name) of every provider sharing an
    identifier key with a provider at another authority."""
    holders: dict[str, set[str]] = {}
    found = {code: local_providers(rt.engine, authority_code=code) for code, rt in net.runtimes.items()}
    for code, providers in found.items():
        for p in providers:
            for key in p.keys:
                holders.setdefault(key, set()).add(code)
    return {(code, p.name) for code, ps in found.items() for p in ps if any(len(holders[k]) >= 2 for k in p.keys)}


def test_common_providers_are_found_across_spellings_and_verify_offline(net: LiveNetwork, tmp_path: Path) -> None:
    bundle, envelope = joint_query(net.netdir, kind="common-providers")
    result = bundle.result
    assert isinstance(result, CommonProviders)
    assert bundle.answered == tuple(sorted(FOUR)) and not bundle.missing
    found = {(a.authority, a.name) for p in result.providers for a in p.authorities}
    assert found == _truth(net)
    assert all(len({a.authority for a in p.authorities}) >= 2 for p in result.providers)
    # Regional providers spelt differently by each authority are joined into one.
    look_ahead = next(p for p in result.providers if p.charity_number == "254101")
    assert len({a.name for a in look_ahead.authorities}) >= 2
    for p in result.providers:
        many = len({a.authority for a in p.authorities}) >= 3
        assert p.joint_review_candidate == (many or any(a.designated for a in p.authorities))
    # The bundle carries reveals, never a token list.
    for c in bundle.contributions:
        assert dsse.Envelope.from_json(c.response).payload_type.endswith("RevealResponse+proto")
    saved = tmp_path / "common.json"
    bundle_mod.save(saved, envelope, network_dir=net.netdir)
    bundle_mod.verify_bundle(bundle_mod.load(saved)[0], network.read(net.netdir))
    doc = json.loads(bundle.payload())
    doc["result"]["providers"] = doc["result"]["providers"][1:]
    coordinator = Identity.load(net.netdir / "coordinator")
    forged = dsse.sign(bundle_mod.BUNDLE_PAYLOAD_TYPE, json.dumps(doc).encode(), coordinator.signing_key)
    with pytest.raises(BundleMismatch):
        bundle_mod.verify_bundle(forged, network.read(net.netdir))


def test_a_provider_of_one_authority_reaches_no_result_log_or_file(
    net: LiveNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    common = {name for _, name in _truth(net)}
    alone = [p.name for p in local_providers(net.runtimes[MEDWAY].engine, authority_code=MEDWAY)]
    alone = [n for n in alone if n not in common]
    assert alone, "every authority has local providers of its own"
    with caplog.at_level(logging.DEBUG):
        bundle, envelope = joint_query(net.netdir, kind="common-providers")
    shown = bundle.payload().decode() + json.dumps(envelope.to_json())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    stored = b"".join(f.read_bytes() for f in net.netdir.rglob("*") if f.is_file())
    for name in alone:
        assert name not in shown and name not in logged
        assert name.encode() not in stored


def _as_coordinator(net: LiveNetwork, *, kind: str) -> tuple[dsse.Envelope, Identity]:
    """A chair's signed query, and the coordinator's identity to forward it with."""
    chair = Identity.load(network.principal_dir(net.netdir, "cag-chair"))
    coordinator = Identity.load(net.netdir / COORDINATOR)
    query = coordinator_pb2.JointQueryRequest(
        header=request_header(chair, audience=COORDINATOR, method="/cagnet.v1.Coordinator/JointQuery"), kind=kind
    )
    return sign_message(query, chair), coordinator


def _call(net: LiveNetwork, code: str, rpc: str, request: dsse.Envelope, identity: Identity) -> dsse.Envelope:
    with node_channel(net, identity, code) as channel:
        reply = getattr(node_pb2_grpc.NodeStub(channel), rpc)(envelope_to_proto(request), timeout=10)
    return envelope_from_proto(reply)


def test_a_node_reveals_nothing_without_another_members_signed_evidence(net: LiveNetwork) -> None:
    query, coordinator = _as_coordinator(net, kind="common-providers")

    def header(method: str) -> Any:
        return request_header(coordinator, audience=KENT, method=f"/cagnet.v1.Node/{method}", on_behalf_of=query)

    tokens_reply = _call(
        net,
        KENT,
        "ProviderTokens",
        sign_message(node_pb2.ProvidersQuery(header=header("ProviderTokens")), coordinator),
        coordinator,
    )
    tokens = node_pb2.ProviderTokensResponse.FromString(tokens_reply.payload)
    assert len(tokens.tokens) > 10
    # Ask for everything, with Kent's own commitment as the only "evidence": one member is not enough.
    request = node_pb2.RevealRequest(header=header("RevealProviders"), tokens=tokens.tokens)
    request.commitments.append(tokens.commitment)
    reply = _call(net, KENT, "RevealProviders", sign_message(request, coordinator), coordinator)
    assert list(node_pb2.RevealResponse.FromString(reply.payload).providers) == []
    # Each round answers a principal's query once.
    again = node_pb2.RevealRequest(header=header("RevealProviders"), tokens=tokens.tokens[:1])
    with pytest.raises(grpc.RpcError) as caught:
        _call(net, KENT, "RevealProviders", sign_message(again, coordinator), coordinator)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_common_providers_are_answered_only_to_the_coordinator(net: LiveNetwork) -> None:
    chair = Identity.load(network.principal_dir(net.netdir, "cag-chair"))
    header = request_header(chair, audience=KENT, method="/cagnet.v1.Node/ProviderTokens")
    with pytest.raises(grpc.RpcError) as caught:
        _call(net, KENT, "ProviderTokens", sign_message(node_pb2.ProvidersQuery(header=header), chair), chair)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- value for money -------------------------------------------------------------------------------


def _plain_total(net: LiveNetwork, selected: tuple[vfm.Cell, ...]) -> list[int]:
    total = [0] * vfm.vector_length(selected)
    for code, rt in net.runtimes.items():
        costs = node_vfm.unit_costs(rt.engine, authority_code=code)
        for i, v in enumerate(vfm.cell_vector(selected, [(u.cell, u.cost) for u in costs])):
            total[i] += v
    return total


def test_vfm_is_the_benchmark_of_the_true_histograms_and_releases_only_protected_cells(
    net: LiveNetwork, tmp_path: Path
) -> None:
    bundle, envelope = joint_query(net.netdir, kind="vfm")
    result = bundle.result
    assert isinstance(result, VfmBenchmarks)
    selected = vfm.cells((), "")
    rule = default_policy().rule("vfm")
    assert result.cells == vfm.benchmark(selected, _plain_total(net, selected), rule)
    released = [c for c in result.cells if c.median is not None]
    assert len(released) >= 10
    for c in released:
        assert (c.authorities or 0) >= 3 and (c.services or 0) >= 5 and not c.suppressed
        assert c.lower_quartile is not None and c.upper_quartile is not None
        assert c.lower_quartile <= c.median <= c.upper_quartile
    assert any(c.suppressed.startswith("minimum") for c in result.cells)
    fs = [c for c in released if c.service_type == "floating-support"]
    assert fs and all(14 <= (c.median or 0) <= 21 for c in fs), "floating support is £16-19 an hour"
    for c in bundle.contributions:
        assert dsse.Envelope.from_json(c.response).payload_type.endswith("VfmReceipt+proto")
    saved = tmp_path / "vfm.json"
    bundle_mod.save(saved, envelope, network_dir=net.netdir)
    bundle_mod.verify_bundle(bundle_mod.load(saved)[0], network.read(net.netdir))
    # Where Kent's own services sit, worked out on Kent's node from the saved bundle.
    run = CliRunner().invoke(app, ["node", "vfm-position", str(net.nodedirs[KENT]), "--bundle", str(saved), "--json"])
    assert run.exit_code == 0, run.output
    rows = json.loads(run.output)
    assert rows and {r["quarter"] for r in rows} <= {
        "lowest quarter",
        "second quarter",
        "third quarter",
        "highest quarter",
    }
    assert all(r["from_median"] == r["unit_cost"] - r["cag_median"] for r in rows)


def test_a_single_contract_cannot_be_recovered_from_a_benchmark(net: LiveNetwork) -> None:
    before, _ = joint_query(net.netdir, kind="vfm", client_groups=[12])
    assert isinstance(before.result, VfmBenchmarks)
    cell = next(c for c in before.result.cells if c.median is not None)
    engine = net.runtimes[MEDWAY].engine
    costs = [u for u in node_vfm.unit_costs(engine, authority_code=MEDWAY) if u.cell == (12, cell.service_type)]
    assert costs, "Medway contributes to the cell"
    target = costs[0]
    # Move Medway's price for that one service anywhere inside its 10% bin: no benchmark can tell.
    i = vfm.cost_bin(target.cost)
    lo, hi = vfm.COST_EDGES[i], vfm.COST_EDGES[i + 1]
    elsewhere = lo + (hi - lo) * (0.75 if target.cost < (lo + hi) / 2 else 0.25)
    value = _latest_contract(engine, target.service_ref)
    factor = Decimal(str(elsewhere / target.cost))
    try:
        _set_contract(engine, value[0], (value[1] * factor).quantize(Decimal("0.01")))
        moved = [u for u in node_vfm.unit_costs(engine, authority_code=MEDWAY) if u.service_ref == target.service_ref]
        assert moved[0].cost != target.cost and vfm.cost_bin(moved[0].cost) == i
        after, _ = joint_query(net.netdir, kind="vfm", client_groups=[12])
    finally:
        _set_contract(engine, value[0], value[1])
    assert after.result == before.result


def _latest_contract(engine: Engine, service_ref: str) -> tuple[int, Decimal]:
    from node.store import Service

    s, c = Service.__table__, Contract.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.c.id, c.c.annual_value, c.c.start_date, c.c.contract_ref)
            .join(s, s.c.id == c.c.service_id)
            .where(s.c.service_ref == service_ref)
        ).all()
    latest = max(rows, key=lambda r: (r.start_date, r.contract_ref))
    return latest.id, Decimal(latest.annual_value)


def _set_contract(engine: Engine, contract_id: int, value: Decimal) -> None:
    table = Contract.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == contract_id).values(annual_value=value))


def test_two_benchmarks_differ_only_by_whole_protected_cells(net: LiveNetwork) -> None:
    full, _ = joint_query(net.netdir, kind="vfm")
    one_group, _ = joint_query(net.netdir, kind="vfm", client_groups=[7])
    one_type, _ = joint_query(net.netdir, kind="vfm", service_type="floating-support")
    assert isinstance(full.result, VfmBenchmarks)
    assert isinstance(one_group.result, VfmBenchmarks) and isinstance(one_type.result, VfmBenchmarks)
    assert one_group.result.cells == tuple(c for c in full.result.cells if c.client_group == 7)
    assert one_type.result.cells == tuple(c for c in full.result.cells if c.service_type == "floating-support")


def test_a_benchmark_without_one_authority_is_refused(net: LiveNetwork) -> None:
    query, coordinator = _as_coordinator(net, kind="vfm")
    header = request_header(coordinator, audience=KENT, method="/cagnet.v1.Node/Vfm", on_behalf_of=query)
    request = node_pb2.VfmQuery(header=header, participants=[KENT, MEDWAY, SURREY])  # Brighton left out
    with pytest.raises(grpc.RpcError) as caught:
        _call(net, KENT, "Vfm", sign_message(request, coordinator), coordinator)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "every member" in (caught.value.details() or "")


def test_a_missing_node_fails_the_benchmark_naming_it(net: LiveNetwork) -> None:
    net.stop_node(BRIGHTON)
    with pytest.raises(Refused) as refused:
        joint_query(net.netdir, kind="vfm", node_deadline_ms=10_000)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "secure aggregation" in refused.value.public_message
    assert BRIGHTON in refused.value.public_message and "unreachable" in refused.value.public_message

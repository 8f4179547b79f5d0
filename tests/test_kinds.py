"""The registry of joint query kinds agrees with the proto's `Node` service, the node's servicer,
the coordinator's protocols and the default policy, both ways: a kind declared in one and not the
others fails here rather than at a node."""

from __future__ import annotations

from node.answers.kinds import ANSWERS, DESCRIBE
from node.answers.service import CAPABILITIES
from node.rpc.server import COORDINATOR_ONLY, FORWARDED_KIND, METHODS
from shared.kinds.registry import AGGREGATE_KINDS, FEED, FEED_KINDS, KINDS, NODE_METHOD_PREFIX, PLAN_KINDS, Protocol
from shared.mandate import feed_queries
from shared.pb.cagnet.v1 import node_pb2
from shared.policy import default_policy

NODE = node_pb2.DESCRIPTOR.services_by_name["Node"]


def test_every_node_rpc_answers_a_declared_kind_and_every_declared_rpc_is_in_the_proto() -> None:
    in_proto = {NODE_METHOD_PREFIX + m.name for m in NODE.methods} - {NODE_METHOD_PREFIX + "Describe"}
    declared = {method for spec in KINDS.values() for method in spec.methods}
    assert declared == in_proto
    assert set(FORWARDED_KIND) == declared
    assert set(METHODS) == declared | {NODE_METHOD_PREFIX + "Describe"}


def test_the_node_answers_every_declared_method_and_nothing_else() -> None:
    declared = {method for spec in KINDS.values() for method in spec.methods}
    assert set(ANSWERS) == declared | {DESCRIBE}
    assert set(ANSWERS) == set(METHODS)


def test_declared_messages_are_the_node_package_s() -> None:
    for spec in KINDS.values():
        for cls in (spec.request_cls, spec.response_cls, spec.receipt_cls, spec.first_request_cls):
            assert cls is None or cls.DESCRIPTOR.file is node_pb2.DESCRIPTOR, spec.kind


def test_describe_advertises_every_kind() -> None:
    assert tuple(KINDS) == CAPABILITIES
    assert {"supply-map", "movement", "net-flow", "kpi", "non-local-services"} < set(CAPABILITIES)
    assert {"repeat-movers", "common-providers", "vfm", "plan"} < set(CAPABILITIES)


def test_coordinator_only_kinds_are_the_linkage_and_masked_ones() -> None:
    only = {spec.kind for spec in KINDS.values() if spec.coordinator_only}
    assert only == {"repeat-movers", "common-providers", "vfm"}
    assert {FORWARDED_KIND[m] for m in COORDINATOR_ONLY} == only
    # Every kind whose answer the principal may not see is carried in bundles as a receipt or reveal.
    for spec in KINDS.values():
        if spec.protocol in (Protocol.LINKED_COUNT, Protocol.MASKED_SUM):
            assert spec.receipt_cls is not None and spec.coordinator_only


def test_the_default_policy_has_a_rule_for_exactly_the_kinds_that_declare_one() -> None:
    assert set(default_policy().aggregates) == set(AGGREGATE_KINDS)
    assert FEED in AGGREGATE_KINDS and FEED not in KINDS


def test_derived_lists_keep_their_order() -> None:
    # The order is what the feed snapshot and the plan list; it is part of what they sign.
    assert FEED_KINDS == ("supply-map", "net-flow", "kpi")
    # New kinds only ever join at the end, so a plan made earlier lists its kinds in the same order.
    assert PLAN_KINDS[:5] == ("movement", "net-flow", "kpi", "non-local-services", "repeat-movers")
    assert "fair-shares" in PLAN_KINDS[5:]
    assert {"outcomes", "equality"} <= set(PLAN_KINDS[5:])
    assert PLAN_KINDS[-3:] == ("kpi1", "utilisation", "unmet-demand")
    assert [q.kind for q in feed_queries()] == list(FEED_KINDS)
    assert [q.period for q in feed_queries()] == ["", "all", "all"]


def test_only_kinds_the_bundle_can_recompute_have_a_combine() -> None:
    for spec in KINDS.values():
        assert (spec.combiner is None) == (spec.protocol in (Protocol.LINKED_COUNT, Protocol.MASKED_SUM))

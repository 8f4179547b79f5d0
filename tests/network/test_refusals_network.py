"""Refusals that say the real reason, through a real two-member network (port 0, mTLS): a kind
whose minimum of authorities the network cannot reach is refused naming that minimum before any
node is asked, value for money included (not "the masks cancel only when every member answers")."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from coordinator import network
from coordinator.joint.client import Refused, joint_query
from shared.policy import PolicySource
from tests.netutil import LiveNetwork, make_network, running

MEDWAY, BRIGHTON = "E06000035", "E06000043"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    return make_network(tmp_path_factory.mktemp("two"), (MEDWAY, BRIGHTON), clients=1500)


@pytest.fixture
def net(built: LiveNetwork) -> Iterator[LiveNetwork]:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as live:
        yield live


def _minimum(net: LiveNetwork, kind: str) -> int:
    key = network.root_key(net.netdir)
    return PolicySource(network.policy_path(net.netdir), key).current().rule(kind).min_authorities


@pytest.mark.parametrize("kind", ["vfm", "kpi"])
def test_a_kind_the_network_is_too_small_for_names_its_minimum_first(net: LiveNetwork, kind: str) -> None:
    needed = _minimum(net, kind)
    assert needed > 2  # the network policy's rule, which this network of two cannot meet
    with pytest.raises(Refused) as refused:
        joint_query(net.netdir, kind=kind, period="all" if kind == "kpi" else "")
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.public_message == (
        f"minimum authorities: a joint {kind} figure needs at least {needed} authorities,"
        " and this network has 2 members"
    )


def test_a_kind_the_network_can_answer_is_still_answered(net: LiveNetwork) -> None:
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert bundle.answered == (MEDWAY, BRIGHTON)

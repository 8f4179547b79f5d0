"""The pieces of common providers and VFM that need no network: masks that cancel only in the full
sum, the participant-set ledger, and the node's queries on both database backends."""

from __future__ import annotations

import pytest

from node.answers import vfm as node_vfm
from node.answers.providers import local_providers, provider_tokens
from node.ledger import SqlReleaseStore
from node.store import ensure_authority, open_store
from node.synthetic.supply import load
from shared import vfm
from shared.errors import DisclosureRefused
from shared.policy import default_policy

A, B, C, D, E = "E10000016", "E06000035", "E06000043", "E10000030", "E10000032"
KEY = bytes(range(32))


def test_masks_cancel_only_over_every_participant() -> None:
    participants = [A, B, C]
    plain = {p: [i, 0, 3 * i, 1] for i, p in enumerate(participants, start=1)}
    masked = {
        p: node_vfm.masked_vector(plain[p], me=p, participants=participants, key=KEY, analysis=b"n" * 16)
        for p in participants
    }
    total = [sum(v[i] for v in masked.values()) % vfm.MODULUS for i in range(4)]
    assert total == [sum(v[i] for v in plain.values()) for i in range(4)]
    for p in participants:
        assert all(v > 2**32 for v in masked[p]), "one node's masked vector alone looks like noise"
    partial = [(masked[A][i] + masked[B][i]) % vfm.MODULUS for i in range(4)]
    assert partial != [plain[A][i] + plain[B][i] for i in range(4)]


def test_participant_sets_differing_by_fewer_than_the_minimum_are_refused(database_url: str) -> None:
    engine = open_store(database_url)
    ledger = SqlReleaseStore(engine)
    rule = default_policy().rule("vfm")
    cells = vfm.cells([7], "floating-support")
    node_vfm.check_participants(ledger, cells, [A, B, C, D], rule)
    node_vfm.check_participants(ledger, cells, [A, B, C, D], rule)  # the same set again is fine
    for differs_by_one_or_two in ([A, B, C], [A, B, C, D, E], [A, B, C, E]):
        with pytest.raises(DisclosureRefused, match="differencing"):
            node_vfm.check_participants(ledger, cells, differs_by_one_or_two, rule)
    node_vfm.check_participants(ledger, vfm.cells([8], ""), [A, B, C], rule)  # another cell: no history
    engine.dispose()


def test_unit_costs_and_provider_identities_on_each_backend(database_url: str) -> None:
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=B)
    load(engine, authority_code=B, seed=3)
    costs = node_vfm.unit_costs(engine, authority_code=B)
    assert len(costs) > 50 and all(u.cost > 0 for u in costs)
    fs = [u.cost for u in costs if u.service_type == "floating-support"]
    assert fs and all(15 <= c <= 20 for c in fs), "floating support is £16-19 an hour"
    providers = local_providers(engine, authority_code=B)
    assert providers and all(p.services >= 1 for p in providers)
    tokens = provider_tokens(providers, key=KEY, analysis=b"x" * 16)
    assert list(tokens.tokens) == sorted(set(tokens.tokens))
    assert set(tokens.providers) == set(range(len(providers)))
    other = provider_tokens(providers, key=KEY, analysis=b"y" * 16)
    assert not set(tokens.tokens) & set(other.tokens), "tokens from two analyses cannot be joined"
    engine.dispose()

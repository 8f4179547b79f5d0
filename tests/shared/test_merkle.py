"""RFC 6962 Merkle trees: the published test vectors, and properties over many tree shapes.

The vectors are the Certificate Transparency reference leaves, roots, inclusion and consistency
proofs (RFC 6962 test data, as in transparency-dev/merkle's testonly package).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import merkle
from shared.errors import InconsistentLog

LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, proof)
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]  # fmt: skip
# (first size, second size, proof)
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
]  # fmt: skip
HASHES = [merkle.leaf_hash(d) for d in LEAVES]


def test_roots_match_rfc6962_for_every_size() -> None:
    assert merkle.EMPTY_ROOT.hex() == ROOTS[0]
    for size in range(len(LEAVES) + 1):
        assert merkle.root_of(HASHES[:size]).hex() == ROOTS[size]


def test_prefixes_are_rfc6962s() -> None:
    assert merkle.leaf_hash(b"").hex() == ROOTS[1]
    assert merkle.node_hash(HASHES[0], HASHES[1]).hex() == ROOTS[2]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    assert [p.hex() for p in merkle.inclusion_proof(HASHES, index, size)] == proof
    merkle.verify_inclusion(HASHES[index], index, size, [bytes.fromhex(p) for p in proof], bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_vectors(first: int, second: int, proof: list[str]) -> None:
    assert [p.hex() for p in merkle.consistency_proof(HASHES, first, second)] == proof
    merkle.verify_consistency(
        first, second, bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second]), [bytes.fromhex(p) for p in proof]
    )


def test_the_split_is_the_largest_power_of_two_below() -> None:
    assert [merkle.split_point(n) for n in (2, 3, 4, 5, 8, 9, 1000)] == [1, 2, 2, 4, 4, 8, 512]


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _corruptions(proof: list[bytes]) -> list[list[bytes]]:
    """Wrong proofs in the ways the reference verifier tests use: a flipped bit, a hash dropped,
    a hash added at either end, two swapped."""
    wrong = []
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        wrong.append(flipped)
    if proof:
        wrong.append(proof[:-1])
        wrong.append(proof[1:])
    wrong.append([*proof, merkle.EMPTY_ROOT])
    wrong.append([merkle.EMPTY_ROOT, *proof])
    if len(proof) > 1 and proof[0] != proof[1]:
        wrong.append([proof[1], proof[0], *proof[2:]])
    return wrong


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_every_inclusion_proof_verifies_and_no_corruption_does(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    root = merkle.root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(leaves, index)
    merkle.verify_inclusion(leaves[index], index, size, proof, root)
    for wrong in _corruptions(proof):
        with pytest.raises(InconsistentLog):
            merkle.verify_inclusion(leaves[index], index, size, wrong, root)
    other = (index + 1) % size
    if other != index:
        with pytest.raises(InconsistentLog):
            merkle.verify_inclusion(leaves[other], index, size, proof, root)
        with pytest.raises(InconsistentLog):
            merkle.verify_inclusion(leaves[index], other, size, proof, root)
    # (A wrong size may give the same path shape, e.g. leaf 0 of 3 and of 4: the checkpoint's
    # signature binds the size to the root, so the verifier takes the size from the checkpoint.)
    with pytest.raises(InconsistentLog):
        merkle.verify_inclusion(leaves[index], size, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(second=st.integers(1, 300), data=st.data())
def test_every_consistency_proof_verifies_and_no_corruption_does(second: int, data: st.DataObject) -> None:
    leaves = _leaves(second)
    first = data.draw(st.integers(1, second))
    first_root, second_root = merkle.root_of(leaves[:first]), merkle.root_of(leaves)
    proof = merkle.consistency_proof(leaves, first, second)
    merkle.verify_consistency(first, second, first_root, second_root, proof)
    if first == second:
        return
    for wrong in _corruptions(proof):
        with pytest.raises(InconsistentLog):
            merkle.verify_consistency(first, second, first_root, second_root, wrong)
    with pytest.raises(InconsistentLog):
        merkle.verify_consistency(first, second, second_root, first_root, proof)
    # A fork: the same first tree, a different leaf after it.
    forked = [*leaves[:first], merkle.leaf_hash(b"forged"), *leaves[first + 1 :]]
    with pytest.raises(InconsistentLog):
        merkle.verify_consistency(first, second, first_root, merkle.root_of(forked), proof)
    # A rewritten history: the old tree differs in one leaf.
    if first > 1:
        rewritten = merkle.root_of([merkle.leaf_hash(b"rewritten"), *leaves[1:first]])
        with pytest.raises(InconsistentLog):
            merkle.verify_consistency(first, second, rewritten, second_root, proof)


def test_consistency_edge_cases() -> None:
    root = merkle.root_of(_leaves(3))
    merkle.verify_consistency(0, 3, merkle.EMPTY_ROOT, root, [])  # anything extends the empty tree
    with pytest.raises(InconsistentLog):
        merkle.verify_consistency(3, 2, root, root, [])  # a log cannot shrink
    with pytest.raises(InconsistentLog):
        merkle.verify_consistency(3, 3, root, merkle.EMPTY_ROOT, [])  # two roots for one size
    with pytest.raises(InconsistentLog):
        merkle.verify_consistency(2, 3, root, root, [])  # an empty proof between different sizes
    with pytest.raises(InconsistentLog):
        merkle.verify_consistency(2, 3, root, root, [b"short"])


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 300), extra=st.integers(0, 40))
def test_a_frontier_gives_the_root_and_carries_on(size: int, extra: int) -> None:
    leaves = _leaves(size + extra)
    frontier = merkle.Frontier()
    for h in leaves[:size]:
        frontier.append(h)
    assert frontier.root() == merkle.root_of(leaves[:size])
    resumed = merkle.Frontier(frontier.size, frontier.hashes)
    for h in leaves[size:]:
        resumed.append(h)
    assert resumed.root() == merkle.root_of(leaves)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(1, 500), data=st.data())
def test_proof_ranges_fold_from_aligned_blocks(size: int, data: st.DataObject) -> None:
    """What a store does: fetch only complete aligned subtrees and fold them into each proof hash."""
    leaves = _leaves(size)

    def block(level: int, index: int) -> bytes:
        lo = index << level
        assert lo + (1 << level) <= size, "a block must be a complete subtree inside the tree"
        return merkle.root_of(leaves[lo : lo + (1 << level)])

    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(0, size))
    stored = [merkle.range_hash(lo, hi, block) for lo, hi in merkle.inclusion_ranges(index, size)]
    assert stored == merkle.inclusion_proof(leaves, index)
    stored = [merkle.range_hash(lo, hi, block) for lo, hi in merkle.consistency_ranges(first, size)]
    assert stored == merkle.consistency_proof(leaves, first, size)

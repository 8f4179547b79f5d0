"""RFC 6962 Merkle trees (SHA-256): leaf and node hashes, proofs, and their verification.

Exactly as RFC 6962 section 2.1 and RFC 9162 section 2.1 define them, so any standard verifier
can check what this log hands out: a leaf hash is SHA-256(0x00 || entry bytes), an interior node
SHA-256(0x01 || left || right), a tree of n > 1 leaves splits at the largest power of two below n,
and the empty tree's hash is SHA-256 of nothing. Verification raises InconsistentLog; it never
returns False.

A proof is a list of subtree hashes. `inclusion_ranges` and `consistency_ranges` say which
subtrees (as leaf ranges [lo, hi)) a proof holds, in order, so a store can fetch exactly those;
`aligned_blocks` splits such a range into the complete subtrees a store keeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from shared.errors import InconsistentLog

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "aligned_blocks",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_inclusion",
    "root_of",
    "split_point",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): where RFC 6962 splits a tree of n leaves."""
    if n < 2:
        raise ValueError(f"a tree of {n} leaves does not split")
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (the reference definition; O(n))."""
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes make up PATH(index, D[0:size]), in proof order (leaf upwards)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes make up PROOF(first, D[0:second]) (RFC 6962 2.1.2), in proof order."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, whole = 0, second, True
    while first != hi:
        k = split_point(hi - lo)
        if first <= lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, whole = lo + k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def aligned_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) as complete aligned subtrees (level, index): leaves [index << level, (index + 1) << level).

    Every range in a proof folds from these, right to left (`range_hash`).
    """
    blocks = []
    while lo < hi:
        level = (lo & -lo).bit_length() - 1 if lo else (hi - lo).bit_length() - 1
        while (1 << level) > hi - lo:
            level -= 1
        blocks.append((level, lo >> level))
        lo += 1 << level
    return blocks


def range_hash(lo: int, hi: int, block: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[lo:hi]) for a range that appears in a proof, from the hashes of its aligned blocks."""
    hashes = [block(level, index) for level, index in aligned_blocks(lo, hi)]
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """PATH(index, D[0:size]) from the leaf hashes (the reference; a store uses `inclusion_ranges`)."""
    size = len(leaf_hashes) if size is None else size
    return [root_of(leaf_hashes[lo:hi]) for lo, hi in inclusion_ranges(index, size)]


def consistency_proof(leaf_hashes: Sequence[bytes], first: int, second: int | None = None) -> list[bytes]:
    second = len(leaf_hashes) if second is None else second
    return [root_of(leaf_hashes[lo:hi]) for lo, hi in consistency_ranges(first, second)]


def _checked(proof: Iterable[bytes]) -> list[bytes]:
    path = [bytes(p) for p in proof]
    if any(len(p) != HASH_SIZE for p in path):
        raise InconsistentLog("a proof hash is not 32 bytes")
    return path


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Iterable[bytes]) -> bytes:
    """The root that `proof` puts leaf hash `leaf` at `index` under (RFC 9162 2.1.3.2)."""
    path = _checked(proof)
    if not 0 <= index < size:
        raise InconsistentLog("the leaf index is outside the tree")
    if len(leaf) != HASH_SIZE:
        raise InconsistentLog("the leaf hash is not 32 bytes")
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in path:
        if sn == 0:
            raise InconsistentLog("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise InconsistentLog("the inclusion proof is too short")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Iterable[bytes], root: bytes) -> None:
    """Raises InconsistentLog unless `proof` shows leaf hash `leaf` at `index` in the tree `root`."""
    if root_from_inclusion(leaf, index, size, proof) != root:
        raise InconsistentLog("the inclusion proof does not lead to the checkpoint's root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Iterable[bytes]) -> None:
    """Raises InconsistentLog unless the tree `second_root` of `second` leaves extends the tree
    `first_root` of `first` leaves (RFC 9162 2.1.4.2)."""
    path = _checked(proof)
    if not 0 <= first <= second:
        raise InconsistentLog("a log cannot shrink")
    if first == second:
        if path or first_root != second_root:
            raise InconsistentLog("two checkpoints of one size with different roots")
        return
    if first == 0:
        if path:
            raise InconsistentLog("the consistency proof from the empty tree must be empty")
        return
    if not path:
        raise InconsistentLog("the consistency proof is empty")
    if first & (first - 1) == 0:
        path = [first_root, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InconsistentLog("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != first_root or sr != second_root:
        raise InconsistentLog("the new checkpoint is not consistent with the earlier one")


class Frontier:
    """The hashes of the complete subtrees covering leaves [0, size): a tree's right edge.

    Enough to append leaves and compute the new root without the leaves before (O(log n)); a
    witness keeps one to recompute a checkpoint's root from the entries added since its last.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count() or any(len(h) != HASH_SIZE for h in hashes):
            raise InconsistentLog("a frontier needs one 32-byte hash per set bit of its size")
        self.size = size
        self.hashes = [bytes(h) for h in hashes]

    def append(self, leaf: bytes) -> None:
        current, level = bytes(leaf), 0
        while (self.size >> level) & 1:
            current = node_hash(self.hashes.pop(), current)
            level += 1
        self.hashes.append(current)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            result = node_hash(h, result)
        return result

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

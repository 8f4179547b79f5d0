"""What node and coordinator agree on about linkage tokens: the digest a node's receipt attests,
and the check value that shows two nodes hold the same network linkage key (see node/answers/linkage.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from shared import merkle

__all__ = ["key_check", "token_root", "tokens_digest"]

_CHECK_CONTEXT = b"cagnet/linkage-key-check/v1"


def key_check(key: bytes) -> str:
    """A value that shows two nodes hold the same key, and nothing about the key."""
    return hmac.new(key, _CHECK_CONTEXT, hashlib.sha256).hexdigest()[:16]


def tokens_digest(tokens: Sequence[bytes], masks: Sequence[int]) -> bytes:
    """SHA-256 over the tokens and their client-group masks exactly as sent."""
    h = hashlib.sha256()
    for token, mask in zip(tokens, masks, strict=True):
        h.update(len(token).to_bytes(1, "big") + token)
        h.update(mask.to_bytes(4, "big"))
    return h.digest()


def token_root(tokens: Sequence[bytes]) -> bytes:
    """The RFC 6962 root over sorted provider tokens, each token a leaf: what a node's signed
    commitment holds, so that one token can later be proved without showing the others."""
    return merkle.root_of([merkle.leaf_hash(t) for t in tokens])

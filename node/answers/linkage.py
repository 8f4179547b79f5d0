"""Per-analysis linkage tokens: how a node lets the coordinator count people who appear at two or
more authorities without anyone learning who they are.

Each node unseals its stored person hashes (`node.client_records`) in memory and derives, for one
analysis, token = HMAC-SHA256(network linkage key, context || analysis id || person hash), cut to
16 bytes. The linkage key is the same at every node and never held by the coordinator; the
analysis id is the principal's signed query nonce, so tokens from two analyses cannot be joined.
The threat model is in docs/movement.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from sqlalchemy.engine import Engine

from node.answers.movement import Question, linkage_persons
from node.client_records import PersonSealer
from shared.errors import InvalidRequest, NotFound
from shared.linkage import key_check, tokens_digest

__all__ = ["LINKAGE_KEY_BYTES", "install_linkage_key", "key_check", "load_linkage_key", "tokens", "tokens_digest"]


LINKAGE_KEY_BYTES = 32
TOKEN_BYTES = 16
_TOKEN_CONTEXT = b"cagnet/repeat-movers/v1\x00"


def install_linkage_key(path: Path, key: bytes | None) -> None:
    """Install the network linkage key the members hold, or (first member) make a new one."""
    if key is not None and len(key) != LINKAGE_KEY_BYTES:
        raise InvalidRequest(f"a linkage key is {LINKAGE_KEY_BYTES} random bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key if key is not None else secrets.token_bytes(LINKAGE_KEY_BYTES))
    path.chmod(0o600)


def load_linkage_key(path: Path) -> bytes:
    if not path.exists():
        raise NotFound("this node holds no network linkage key", detail=f"no file at {path}")
    key = path.read_bytes()
    if len(key) != LINKAGE_KEY_BYTES:
        raise InvalidRequest(f"{path} is not a linkage key ({LINKAGE_KEY_BYTES} random bytes expected)")
    return key


def tokens(
    engine: Engine, *, sealer: PersonSealer, key: bytes, analysis: bytes, question: Question
) -> tuple[list[bytes], list[int]]:
    """Sorted tokens, one per distinct person with a record started in the period, and for each a
    bit mask of the primary client groups (bit g for group g) of that person's records here."""
    masks: dict[bytes, int] = {}
    for sealed, group in linkage_persons(engine, question=question):
        masks[sealed] = masks.get(sealed, 0) | (1 << group)
    prefix = _TOKEN_CONTEXT + len(analysis).to_bytes(2, "big") + analysis
    by_token: dict[bytes, int] = {}
    for sealed, mask in masks.items():
        token = hmac.new(key, prefix + sealer.unseal(sealed), hashlib.sha256).digest()[:TOKEN_BYTES]
        by_token[token] = by_token.get(token, 0) | mask
    ordered = sorted(by_token)
    return ordered, [by_token[t] for t in ordered]

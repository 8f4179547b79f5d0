"""Common providers at the node: per-analysis provider tokens, the Merkle commitment other nodes
are shown as evidence, and the reveal of a provider only once enough members have proved they
hold it too. The protocol and its threat model are in docs/providers.md.

token = HMAC-SHA256(network linkage key, context || analysis || identifier key)[:16], for every
identifier key (`shared.provider_identity.identifier_keys`) of every provider with a service here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from node.store import DistrictRow, Provider, Service
from shared import merkle
from shared.errors import CagnetError, InvalidRequest
from shared.linkage import token_root
from shared.provider_identity import identifier_keys

__all__ = [
    "LocalProvider",
    "Proven",
    "ProviderTokens",
    "holders_of",
    "local_providers",
    "provider_tokens",
    "token_root",
]

log = logging.getLogger(__name__)

TOKEN_BYTES = 16
_TOKEN_CONTEXT = b"cagnet/common-providers/v1\x00"


@dataclass(frozen=True)
class LocalProvider:
    """A provider with at least one service at this authority, and what the reveal says of it."""

    name: str
    national_provider_id: str
    charity_number: str
    company_number: str
    keys: tuple[str, ...]
    services: int
    units: int
    designated: bool


@dataclass(frozen=True)
class ProviderTokens:
    tokens: tuple[bytes, ...]  # sorted, distinct
    providers: tuple[int, ...]  # for each token, the per-analysis index of its provider
    by_provider: tuple[LocalProvider, ...]  # indexed by that index


def local_providers(engine: Engine, *, authority_code: str) -> list[LocalProvider]:
    """Every provider running a service in this authority, with its services, units and whether
    any is designated. A provider whose stored identity cannot be keyed is left out, and logged."""
    p, s, d = Provider.__table__, Service.__table__, DistrictRow.__table__  # type: ignore[attr-defined]
    query = (
        select(
            p.c.id,
            p.c.name,
            p.c.national_provider_id,
            p.c.charity_number,
            p.c.company_number,
            func.count(s.c.id),
            func.sum(s.c.units),
            func.max(case((s.c.designated, 1), else_=0)),
        )
        .join(s, s.c.provider_id == p.c.id)
        .join(d, d.c.code == s.c.district_code)
        .where(d.c.authority_code == authority_code)
        .group_by(p.c.id, p.c.name, p.c.national_provider_id, p.c.charity_number, p.c.company_number)
    )
    found = []
    with engine.connect() as conn:
        for _, name, npi, charity, company, services, units, designated in conn.execute(query):
            try:
                keys = identifier_keys(
                    name=name, national_provider_id=npi, charity_number=charity, company_number=company
                )
            except ValueError:
                log.warning("a provider with no usable identity was left out of common providers")
                continue
            found.append(
                LocalProvider(
                    name, npi or "", charity or "", company or "", keys, services, int(units), bool(designated)
                )
            )
    return found


def _token(key: bytes, analysis: bytes, identifier: str) -> bytes:
    prefix = _TOKEN_CONTEXT + len(analysis).to_bytes(2, "big") + analysis
    return hmac.new(key, prefix + identifier.encode(), hashlib.sha256).digest()[:TOKEN_BYTES]


def provider_tokens(providers: Sequence[LocalProvider], *, key: bytes, analysis: bytes) -> ProviderTokens:
    """Tokens for one analysis. Providers are numbered in the order of their smallest token, so the
    numbering says nothing about the store; two providers here sharing a key share its token (the
    token is then listed once, for the first of them)."""
    per_provider = [sorted({_token(key, analysis, k) for k in p.keys}) for p in providers]
    order = sorted(range(len(providers)), key=lambda i: per_provider[i][0])
    owner: dict[bytes, int] = {}
    for index, i in enumerate(order):
        for token in per_provider[i]:
            owner.setdefault(token, index)
    tokens = tuple(sorted(owner))
    return ProviderTokens(tokens, tuple(owner[t] for t in tokens), tuple(providers[i] for i in order))


@dataclass(frozen=True)
class Proven:
    """One piece of evidence, already checked: `holder` signed a commitment whose tree holds `token`."""

    holder: str
    token: bytes


def holders_of(
    asked: Iterable[bytes],
    evidence: Iterable[tuple[bytes, int, int, Sequence[bytes]]],
    commitments: Sequence[Callable[[], tuple[str, int, bytes]]],
    *,
    me: str,
    mine: frozenset[bytes],
) -> dict[bytes, set[str]]:
    """For each asked token this node holds: the distinct members proved to hold it, itself included.

    `evidence` items are (token, commitment index, leaf index, proof); `commitments[i]()` checks
    commitment i (signature, analysis, key) and returns (holder, size, root), raising if it does not
    verify. Evidence that does not verify is an error, not something to skip: the coordinator
    either forwards what the nodes signed or is misbehaving."""
    holders: dict[bytes, set[str]] = {}
    for token in asked:
        if token not in mine:
            raise InvalidRequest("asked to reveal a token this node did not send")
        holders[token] = {me}
    opened: dict[int, tuple[str, int, bytes]] = {}
    for token, which, index, proof in evidence:
        if token not in holders:
            raise InvalidRequest("evidence for a token that was not asked for")
        if which >= len(commitments):
            raise InvalidRequest("evidence names a commitment the request does not carry")
        if which not in opened:
            opened[which] = commitments[which]()
        holder, size, root = opened[which]
        try:
            merkle.verify_inclusion(merkle.leaf_hash(token), index, size, proof, root)
        except CagnetError:
            raise InvalidRequest("a token's evidence does not verify against its holder's commitment") from None
        holders[token].add(holder)
    return holders

"""The release path for a node's aggregates: nothing leaves a node any other way.

For each request: the network policy's role check, the client-group filter's query-set
restriction, the release ledger (which refuses differencing against earlier releases, or repeats
the earlier figures when the same question's answer has moved by too little to show), then
suppression, secondary suppression and consistent rounding of counts, and the dominance and p%
rules for money, all from `shared.disclosure`. The caller signs what comes back and audits it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from node.ledger import SqlReleaseStore, keep_answer, last_answer
from node.store import data_version
from node.supply import CellKey, RawCell, RawSupply, contract_values, supply_map
from shared import vocabulary
from shared.disclosure import (
    TOTAL,
    MagnitudeCell,
    MagnitudeTable,
    ReleasedCell,
    ReleasedTable,
    ReleaseLedger,
    Table,
    protect_counts,
    protect_magnitudes,
    require_min_records,
)
from shared.errors import DisclosureRefused, InvalidRequest
from shared.models import SupplyCell, SupplyMap
from shared.policy import AggregateRule, Policy

__all__ = ["SUPPLY_MAP", "Releaser", "load_rounding_secret"]

SUPPLY_MAP = "supply-map"
DESIGNATED = "supply-map/designated-services"  # the ledger's kind for designated-service counts
ROUNDING_SECRET_BYTES = 32
# The ledger keeps every supply map at its finest grain, so that any two can be compared.
_LEDGER_DIMENSIONS = ("client_group", "service_type", "district")


def load_rounding_secret(path: Path) -> bytes:
    """The node's rounding key, made on first use. It never leaves the node: with it, anyone
    could tell which way each count was rounded."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(ROUNDING_SECRET_BYTES))
        path.chmod(0o600)
    secret = path.read_bytes()
    if len(secret) < ROUNDING_SECRET_BYTES:
        raise InvalidRequest(f"{path} is not a rounding key ({ROUNDING_SECRET_BYTES} random bytes expected)")
    return secret


@dataclass
class Releaser:
    """A node's gate: its store, its rounding key and its release ledger."""

    engine: Engine
    authority: str
    secret: bytes

    def __post_init__(self) -> None:
        self.ledger = ReleaseLedger(SqlReleaseStore(self.engine))
        self._lock = threading.Lock()
        # The last answer to each question, with the data version and policy it was made from. The
        # same question over the same records and policy has the same answer (rounding is keyed,
        # and the ledger would repeat itself), so it need not be worked out again.
        self._answers: dict[tuple[str, str], tuple[tuple[object, ...], SupplyMap]] = {}

    def supply_map(
        self, policy: Policy, *, roles: Iterable[str], by_district: bool, client_groups: Sequence[int] = ()
    ) -> SupplyMap:
        rule = policy.require_any_role(SUPPLY_MAP, tuple(roles))
        groups = _checked_groups(client_groups)
        signature = _signature({"kind": SUPPLY_MAP, "by_district": by_district, "client_groups": list(groups)})
        # One release at a time: two racing queries must not both pass the differencing check.
        with self._lock:
            version = data_version(self.engine)
            cached = self._answers.get((policy.digest, signature))
            if cached is not None and cached[0] == version:
                return cached[1]
            answer = self._supply_map(rule, policy.digest, signature, by_district=by_district, groups=groups)
            self._answers[(policy.digest, signature)] = (version, answer)
            return answer

    def _supply_map(
        self, rule: AggregateRule, policy_digest: str, signature: str, *, by_district: bool, groups: tuple[int, ...]
    ) -> SupplyMap:
        finest = supply_map(self.engine, authority_code=self.authority, by_district=True, client_groups=groups)
        if groups:
            # Query-set restriction, at the strictest threshold of the groups selected.
            strictest = max(groups, key=rule.threshold_for)
            require_min_records(sum(c.services for c in finest.cells), rule, client_group=strictest)
        # Both counts go through the ledger, each as its own kind: either one moving by a handful
        # since an earlier answer would show those few services.
        counts_now: dict[tuple[str, ...], int] = {_ledger_key(c.key): c.services for c in finest.cells}
        designated_now: dict[tuple[str, ...], int] = {_ledger_key(c.key): c.designated_services for c in finest.cells}
        counts = self.ledger.admit(SUPPLY_MAP, signature, _LEDGER_DIMENSIONS, counts_now, rule)
        designated_counts = self.ledger.admit(DESIGNATED, signature, _LEDGER_DIMENSIONS, designated_now, rule)
        if dict(counts) != counts_now or dict(designated_counts) != designated_now:
            # The records have moved by too little to show: the earlier answer, exactly as it left.
            earlier = last_answer(self.engine, kind=SUPPLY_MAP, query_signature=signature, policy_digest=policy_digest)
            if earlier is None:
                raise DisclosureRefused(
                    "differencing: the answer would differ from an earlier release by too few people"
                )
            return SupplyMap.model_validate_json(earlier)
        answer = self._protect(rule, finest, by_district=by_district, groups=groups)
        keep_answer(
            self.engine,
            kind=SUPPLY_MAP,
            query_signature=signature,
            policy_digest=policy_digest,
            answer=answer.model_dump_json(),
        )
        return answer

    def _protect(
        self, rule: AggregateRule, finest: RawSupply, *, by_district: bool, groups: tuple[int, ...]
    ) -> SupplyMap:

        # The finest grain is the by-district map itself; only the plain map needs its own query.
        raw = (
            finest
            if by_district
            else supply_map(self.engine, authority_code=self.authority, by_district=False, client_groups=groups)
        )
        population = finest.population
        dims = ("client_group", "service_type", "district") if by_district else ("client_group", "service_type")

        def key_of(key: CellKey) -> tuple[str, ...]:
            return (str(key[0]), key[1], key[2]) if by_district else (str(key[0]), key[1])

        services = {key_of(c.key): c.services for c in raw.cells}
        designated = {key_of(c.key): c.designated_services for c in raw.cells}
        money = contract_values(
            self.engine, authority_code=self.authority, by_district=by_district, client_groups=groups
        )

        # A total over client groups takes the strictest threshold of the groups a filter kept: a
        # refuges-only map's total is as sensitive as its cells.
        margin_group = max(groups, key=rule.threshold_for) if groups else None

        def group_of(key: tuple[str, ...]) -> int | None:
            return int(key[0]) if key[0] != TOTAL else margin_group

        released_services = protect_counts(Table.of(dims, services), rule, secret=self.secret, group_of=group_of)
        released_designated = protect_counts(Table.of(dims, designated), rule, secret=self.secret, group_of=group_of)
        released_money = protect_magnitudes(
            MagnitudeTable(dims, tuple(MagnitudeCell(key_of(k), v) for k, v in sorted(money.items()))), rule
        )
        figures = _Figures(released_services, released_designated, released_money)

        cells = tuple(
            figures.cell(key_of(c.key), c.client_group, c.service_type, c.district, c.unit_type, [c]) for c in raw.cells
        )
        blank = (TOTAL,) * (len(dims) - 1)
        by_group: dict[int, list[RawCell]] = {}
        for c in raw.cells:
            by_group.setdefault(c.client_group, []).append(c)
        group_totals = tuple(
            figures.cell((str(g), *blank), g, "", "", "", members) for g, members in sorted(by_group.items())
        )
        total = figures.cell((TOTAL, *blank), 0, "", "", "", list(raw.cells))
        return SupplyMap(
            authority=self.authority,
            population=population,
            by_district=by_district,
            client_groups=groups,
            cells=cells,
            client_group_totals=group_totals,
            total=total,
        )


@dataclass(frozen=True)
class _Figures:
    services: ReleasedTable
    designated: ReleasedTable
    money: ReleasedTable

    def cell(
        self,
        key: tuple[str, ...],
        client_group: int,
        service_type: str,
        district: str,
        unit_type: str,
        members: Sequence[RawCell],
    ) -> SupplyCell:
        suppressed: list[str] = []

        def take(name: str, table: ReleasedTable) -> int | None:
            released = _get(table, key)
            if released is None:
                return 0  # no such cell (no contracts, say): a true zero
            if released.suppressed:
                suppressed.append(f"{name}: {released.rule.value}")
            return released.value

        return SupplyCell(
            client_group=client_group,
            service_type=service_type,
            district=district,
            unit_type=unit_type,
            services=take("services", self.services),
            # Capacity, not people: released exactly.
            units=sum(c.units for c in members),
            designated_services=take("designated_services", self.designated),
            designated_units=sum(c.designated_units for c in members),
            contracted_hours=round(sum(c.contracted_hours for c in members), 2),
            annual_value=take("annual_value", self.money),
            suppressed=tuple(suppressed),
        )


def _get(table: ReleasedTable, key: tuple[str, ...]) -> ReleasedCell | None:
    try:
        return table[key]
    except KeyError:
        return None


def _checked_groups(client_groups: Sequence[int]) -> tuple[int, ...]:
    groups = tuple(sorted(set(client_groups)))
    for group in groups:
        if group not in vocabulary.CLIENT_GROUPS:
            raise InvalidRequest("client_groups: each must be an SP client group code, 1 to 21")
    return groups


def _ledger_key(key: CellKey) -> tuple[str, str, str]:
    return (str(key[0]), key[1], key[2])


def _signature(query: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

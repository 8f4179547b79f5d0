"""The release path for a node's aggregates: nothing leaves a node any other way.

For each request: the network policy's role check, the client-group filter's query-set
restriction, the release ledger (which refuses differencing against earlier releases, or repeats
the earlier figures when the same question's answer has moved by too little to show), then
suppression, secondary suppression and consistent rounding of counts, and the dominance and p%
rules for money, all from `shared.disclosure`. The caller signs what comes back and audits it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from node.answers import movement
from node.answers.movement import Question
from node.answers.supply import CellKey, RawCell, RawSupply, contract_values, supply_map
from node.answers.vfm import check_participants
from node.ledger import SqlReleaseStore, keep_answer, last_answer
from node.store import data_version
from shared import vocabulary
from shared.authorities import Register, shipped_register
from shared.canonical import canonical_json
from shared.disclosure import (
    SHARE_GRID,
    TOTAL,
    MagnitudeCell,
    MagnitudeTable,
    ReleasedCell,
    ReleasedTable,
    ReleaseLedger,
    Table,
    intake_band,
    load_secret,
    protect_counts,
    protect_magnitudes,
    require_min_records,
    share_band,
)
from shared.errors import CagnetError, DisclosureRefused, InvalidRequest, NotPermitted
from shared.kinds.registry import PLAN_KINDS
from shared.models import (
    CountCell,
    CountTable,
    NodePlan,
    NonLocalService,
    NonLocalServices,
    PlannedQuestion,
    SupplyCell,
    SupplyMap,
)
from shared.policy import AggregateRule, Policy
from shared.vfm import Cell

__all__ = [
    "KPI",
    "MOVEMENT",
    "NET_FLOW",
    "NON_LOCAL_SERVICES",
    "SUPPLY_MAP",
    "Releaser",
    "load_rounding_secret",
]

SUPPLY_MAP = "supply-map"
MOVEMENT = "movement"
NET_FLOW = "net-flow"
KPI = "kpi"
NON_LOCAL_SERVICES = "non-local-services"
DESIGNATED = "supply-map/designated-services"  # the ledger's kind for designated-service counts
_Answer = TypeVar("_Answer", bound=BaseModel)
# The ledger keeps every supply map at its finest grain, so that any two can be compared.
_LEDGER_DIMENSIONS = ("client_group", "service_type", "district")


@dataclass
class Releaser:
    """A node's gate: its store, its rounding key and its release ledger."""

    engine: Engine
    authority: str
    secret: bytes
    # The network's member authorities now (from the verified manifest): origins among them are
    # shown by code, others by region. Without it, only this authority's own code is.
    members: Callable[[], frozenset[str]] = frozenset
    # The network's authority register now, which places each origin (default: the shipped list).
    register: Callable[[], Register] = shipped_register

    def __post_init__(self) -> None:
        self.ledger = ReleaseLedger(SqlReleaseStore(self.engine))
        self._lock = threading.Lock()
        # The last answer to each question, with the data version and policy it was made from. The
        # same question over the same records and policy has the same answer (rounding is keyed,
        # and the ledger would repeat itself), so it need not be worked out again.
        self._answers: dict[tuple[str, str], tuple[tuple[object, ...], Any]] = {}
        # The true counts at the ledger's grain that each client-record kind is released from; the
        # gate below (`_through_ledger`, `_admitted`, `plan`) reads them here and names no kind.
        self._sources: dict[str, Callable[[Question], tuple[Mapping[Any, int], tuple[str, ...]]]] = {
            MOVEMENT: self._new_clients,
            NET_FLOW: self._new_clients,
            KPI: self._departures,
            NON_LOCAL_SERVICES: self._intake,
        }

    def forget_answers(self) -> None:
        """Drop remembered answers: the authority's population or districts changed in the register."""
        with self._lock:
            self._answers.clear()

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

    def admit_participants(self, rule: AggregateRule, selected: Sequence[Cell], participants: Sequence[str]) -> None:
        """The VFM participant-set check (`node.vfm.check_participants`), one release at a time."""
        with self._lock:
            check_participants(self.ledger, selected, participants, rule)

    # --- client records ------------------------------------------------------------------------

    def movement(self, policy: Policy, *, roles: Iterable[str], question: Question) -> CountTable:
        """New clients by origin x client group x period (financial year, quarter or all)."""
        return self._counts(
            policy,
            kind=MOVEMENT,
            roles=roles,
            question=question,
            dims=("origin", "client_group", "period"),
            project=lambda k: (k[0], k[1], movement.period_of(k[2], question.period)),
        )

    def net_flow(self, policy: Policy, *, roles: Iterable[str], question: Question) -> CountTable:
        """New clients over the whole period by origin class (each CAG authority, "outside" the
        CAG, "unknown") x client group: what net imports and exports are worked out from."""
        cag = self.members() | {self.authority}
        return self._counts(
            policy,
            kind=NET_FLOW,
            roles=roles,
            question=question,
            dims=("origin", "client_group"),
            project=lambda k: (movement.origin_class(k[0], cag), k[1]),
        )

    def kpi(self, policy: Policy, *, roles: Iterable[str], question: Question) -> CountTable:
        """Departures from short-term services by client group x planned/unplanned (KPI 2)."""
        return self._counts(
            policy,
            kind=KPI,
            roles=roles,
            question=question,
            dims=("client_group", "departure"),
            project=lambda k: (k[0], k[1]),
        )

    def _counts(
        self,
        policy: Policy,
        *,
        kind: str,
        roles: Iterable[str],
        question: Question,
        dims: tuple[str, ...],
        project: Callable[[tuple[str, ...]], tuple[str, ...]],
    ) -> CountTable:
        """One path for every count table from client records: role, query-set restriction,
        the ledger at the finest grain (months), then suppression and rounding at the grain asked."""
        rule = policy.require_any_role(kind, tuple(roles))
        return self._through_ledger(
            policy,
            rule,
            kind=kind,
            question=question,
            describe=lambda raw: self._protect_counts(
                rule, kind, raw, dims, project, asked_groups=question.client_groups, question=question
            ),
            parse=CountTable.model_validate_json,
        )

    def _through_ledger(
        self,
        policy: Policy,
        rule: AggregateRule,
        *,
        kind: str,
        question: Question,
        describe: Callable[[Mapping[tuple[str, ...], int]], _Answer],
        parse: Callable[[str], _Answer],
    ) -> _Answer:
        """Every answer about client records: the query-set restriction, the release ledger at the
        finest grain, then `describe` (the protected answer) kept for a repeat of the question."""
        asked = question.as_asked()
        signature = _signature({"kind": kind, **asked.model_dump(mode="json")})
        with self._lock:
            # Origins are classed by membership, so a new member makes a new answer.
            version = (*data_version(self.engine), *movement.records_version(self.engine), *sorted(self.members()))
            cached = self._answers.get((policy.digest, signature))
            if cached is not None and cached[0] == version:
                answer: _Answer = cached[1]
                return answer
            raw = self._admitted(policy, rule, kind, question, signature, record=True)
            if raw is None:
                earlier = last_answer(self.engine, kind=kind, query_signature=signature, policy_digest=policy.digest)
                if earlier is None:  # `_admitted` has just found it; refuse rather than guess
                    raise DisclosureRefused(
                        "differencing: the answer would differ from an earlier release by too few people"
                    )
                answer = parse(earlier)
            else:
                answer = describe(raw)
                keep_answer(
                    self.engine,
                    kind=kind,
                    query_signature=signature,
                    policy_digest=policy.digest,
                    answer=answer.model_dump_json(),
                )
            self._answers[(policy.digest, signature)] = (version, answer)
            return answer

    def _new_clients(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        # Origins among the members by code, others by region, as the network's register places them.
        counts = movement.new_clients(
            self.engine,
            authority_code=self.authority,
            question=question,
            members=self.members(),
            register=self.register(),
        )
        return counts, ("origin", "client_group", "month")

    def _departures(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        return movement.departures(self.engine, question=question), ("client_group", "departure", "month")

    def _intake(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        counts = movement.intake_by_month(
            self.engine, authority_code=self.authority, question=question, register=self.register()
        )
        return counts, ("client_group", "service", "origin", "month")

    def _finest(self, kind: str, question: Question) -> tuple[dict[tuple[str, ...], int], tuple[str, ...]]:
        """A records question's true counts at the grain the ledger keeps (calendar months)."""
        source = self._sources.get(kind)
        if source is None:
            raise InvalidRequest(f"no release ledger for {kind!r}")
        counts, dims = source(question)
        return {tuple(str(part) for part in key): n for key, n in counts.items()}, dims

    def _admitted(
        self, policy: Policy, rule: AggregateRule, kind: str, question: Question, signature: str, *, record: bool
    ) -> dict[tuple[str, ...], int] | None:
        """The query-set restriction and the ledger, under the lock: the true counts to describe,
        or None when the earlier answer to this question stands (it is then kept under this
        policy); DisclosureRefused otherwise. With `record=False` the ledger is left as it was."""
        raw, finest_dims = self._finest(kind, question)
        groups = question.client_groups
        if groups:
            strictest = max(groups, key=rule.threshold_for)
            require_min_records(sum(raw.values()), rule, client_group=strictest)
        admitted = self.ledger.admit(kind, signature, finest_dims, raw, rule, record=record)
        if dict(admitted) == raw:
            return raw
        if last_answer(self.engine, kind=kind, query_signature=signature, policy_digest=policy.digest) is None:
            raise DisclosureRefused("differencing: the answer would differ from an earlier release by too few people")
        return None

    # --- "would you answer?" -------------------------------------------------------------------

    def plan(self, policy: Policy, *, roles: Iterable[str], question: Question) -> NodePlan:
        """Whether this node would answer each standard question over the question's span now:
        every financial year and quarter wholly inside it, for every client group and for each
        group of its filter on its own, of each client-record kind. Exactly the checks a release
        makes (role, query-set restriction, release ledger), with nothing recorded and no figure
        in the answer: only answerable, or the rule's public message."""
        roles = tuple(roles)
        planned = []
        for start, end, grain in movement.standard_periods(question):
            for groups in [(), *((g,) for g in question.client_groups)]:
                asked = Question(start, end, grain, groups, question.min_share_percent)
                for kind in PLAN_KINDS:
                    try:
                        needs = policy.rule(kind).min_authorities
                    except CagnetError:
                        needs = 1
                    planned.append(
                        PlannedQuestion(
                            kind=kind,
                            from_date=start.isoformat(),
                            to_date=end.isoformat(),
                            period=grain,
                            client_groups=groups,
                            refused=self._would_refuse(policy, roles, kind, asked),
                            min_authorities=needs,
                        )
                    )
        return NodePlan(authority=self.authority, questions=tuple(planned))

    def _would_refuse(self, policy: Policy, roles: tuple[str, ...], kind: str, question: Question) -> str:
        try:
            rule = policy.require_any_role(kind, roles)
            if kind not in self._sources:
                return ""  # no ledger at the node (repeat movers): the coordinator protects each count
            signature = _signature({"kind": kind, **question.as_asked().model_dump(mode="json")})
            with self._lock:
                self._admitted(policy, rule, kind, question, signature, record=False)
        except (DisclosureRefused, NotPermitted) as exc:
            return exc.public_message
        return ""

    def _protect_counts(
        self,
        rule: AggregateRule,
        kind: str,
        raw: Mapping[tuple[str, ...], int],
        dims: tuple[str, ...],
        project: Callable[[tuple[str, ...]], tuple[str, ...]],
        *,
        asked_groups: tuple[int, ...],
        question: Question,
    ) -> CountTable:
        table: dict[tuple[str, ...], int] = {}
        for key, n in raw.items():
            out = project(key)
            table[out] = table.get(out, 0) + n
        position = dims.index("client_group")
        # A total over client groups takes the strictest threshold of the groups a filter kept.
        margin_group = max(asked_groups, key=rule.threshold_for) if asked_groups else None

        def group_of(key: tuple[str, ...]) -> int | None:
            return int(key[position]) if key[position] != TOTAL else margin_group

        released = protect_counts(Table.of(dims, table), rule, secret=self.secret, group_of=group_of)
        return CountTable(
            authority=self.authority,
            kind=kind,
            dimensions=dims,
            cells=tuple(
                CountCell(
                    key=c.key,
                    count=c.value,
                    suppressed="" if c.value is not None else c.rule.value,
                    margin=c.margin,
                )
                for c in released.cells
            ),
            question=question.as_asked(),
        )

    def non_local_services(self, policy: Policy, *, roles: Iterable[str], question: Question) -> NonLocalServices:
        """Services whose share of intake from outside the authority is at least the question's
        share, a value on the share grid. Through the release ledger like every count (each
        service's intake by origin and month), then described in bands only: intake in bands
        above the group's threshold (coarser for domestic violence and refugees), share by the
        grid. A service whose intake, known intake or non-local intake is within its group's
        threshold is not described at all, only counted; a refuge's name and district are never
        released (domestic violence services are shared at authority level)."""
        rule = policy.require_any_role(NON_LOCAL_SERVICES, tuple(roles))
        return self._through_ledger(
            policy,
            rule,
            kind=NON_LOCAL_SERVICES,
            question=question,
            describe=lambda _raw: self._describe_services(rule, question),
            parse=NonLocalServices.model_validate_json,
        )

    def _describe_services(self, rule: AggregateRule, question: Question) -> NonLocalServices:
        services = []
        too_small = 0
        intake = movement.service_intake(
            self.engine, authority_code=self.authority, question=question, register=self.register()
        )
        for s in intake:
            known = s.intake - s.unknown
            threshold = rule.threshold_for(s.client_group)
            band = intake_band(s.intake, rule, client_group=s.client_group)
            if band is None or known <= threshold or s.non_local <= threshold:
                # Counted whatever share was asked, so that the count says nothing about a share.
                if known == 0 or 100 * s.non_local >= SHARE_GRID[0] * known:
                    too_small += 1
                continue
            if 100 * s.non_local < question.min_share_percent * known:
                continue
            protected = s.client_group == vocabulary.DOMESTIC_VIOLENCE
            services.append(
                NonLocalService(
                    # A refuge's provider ("Lewes Women's Aid") can say where it is as plainly as its name.
                    provider="(withheld)" if protected else s.provider,
                    name="(withheld: DV service)" if protected else s.name,
                    service_type=s.service_type,
                    client_group=s.client_group,
                    district="" if protected else s.district,
                    designated=s.designated,
                    intake_band=band,
                    share_band=share_band(s.non_local, known),
                )
            )
        return NonLocalServices(
            authority=self.authority, services=tuple(services), too_small=too_small, question=question.as_asked()
        )

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
    return hashlib.sha256(canonical_json(query)).hexdigest()


def load_rounding_secret(path: Path) -> bytes:
    """The node's rounding key, made on first use. It never leaves the node: with it, anyone
    could tell which way each count was rounded."""
    return load_secret(path)

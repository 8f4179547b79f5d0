"""The release path for a node's aggregates: nothing leaves a node any other way.

For each request: the network policy's role check, the client-group filter's query-set
restriction, the release ledger (which refuses differencing against earlier releases, or repeats
the earlier figures when the same question's answer has moved by too little to show), then
suppression, secondary suppression and consistent rounding of counts, and the dominance and p%
rules for money, all from `shared.disclosure`. The caller signs what comes back and audits it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from node import analyses, stamps
from node.answers import equality, fair_shares, movement, outcomes, spend
from node.answers import returns as quarterly
from node.answers.movement import Question
from node.answers.supply import CellKey, RawCell, RawSupply, contract_values, supply_map
from node.answers.vfm import check_participants
from node.editions import keep_edition, latest_edition, load_edition
from node.fair_shares import describe_fair_shares
from node.grid import (
    SPAN,
    Block,
    BlockCell,
    Dimension,
    FinancialYear,
    block_from_state,
    block_state,
    grid_span,
    protect_block,
    protect_span,
)
from node.ledger import SqlReleaseStore, keep_answer, last_answer
from node.spend import describe_spend
from node.store import data_version
from shared import places, vocabulary
from shared.authorities import Register, shipped_register
from shared.canonical import canonical_json
from shared.disclosure import (
    SHARE_GRID,
    TOTAL,
    MagnitudeCell,
    MagnitudeTable,
    Release,
    ReleasedCell,
    ReleasedTable,
    ReleaseLedger,
    Table,
    intake_band,
    isolates_few,
    load_secret,
    protect_counts,
    protect_magnitudes,
    require_dimensions,
    require_min_records,
    share_band,
)
from shared.errors import CagnetError, DisclosureRefused, InvalidRequest, NotPermitted
from shared.kinds.equality import DIMENSIONS as PROFILE_FIELDS
from shared.kinds.fair_shares import FairShares
from shared.kinds.outcomes import DEPARTURE
from shared.kinds.outcomes import MEASURES as OUTCOME_MEASURES
from shared.kinds.outcomes import VALUES as OUTCOME_VALUES
from shared.kinds.registry import PLAN_KINDS
from shared.kinds.returns import REFUSED, WAITING
from shared.kinds.spend import Spend
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
from shared.policy import AggregateRule, Policy, StandardGrid
from shared.vfm import Cell

__all__ = [
    "EQUALITY",
    "FAIR_SHARES",
    "KPI",
    "KPI1",
    "MOVEMENT",
    "NET_FLOW",
    "NON_LOCAL_SERVICES",
    "OUTCOMES",
    "SPEND",
    "SUPPLY_MAP",
    "UNMET_DEMAND",
    "UTILISATION",
    "Releaser",
    "load_rounding_secret",
]

SUPPLY_MAP = "supply-map"
MOVEMENT = "movement"
NET_FLOW = "net-flow"
KPI = "kpi"
NON_LOCAL_SERVICES = "non-local-services"
FAIR_SHARES = "fair-shares"
SPEND = "spend"
OUTCOMES = "outcomes"
EQUALITY = "equality"
KPI1 = "kpi1"
UTILISATION = "utilisation"
UNMET_DEMAND = "unmet-demand"
DESIGNATED = "supply-map/designated-services"  # the ledger's kind for designated-service counts
# The standard table set's extension point for count kinds. Each kind on the grid is answered from
# one protected block family; kinds that count the same people share a family (net flows are
# new clients by origin class, so they read movement's block). A family is built in
# `Releaser._protect_year` (its finest cells, which end in the month, become the block's atoms
# (quarter, first dimension, second dimension) with each dimension's totals, and the client group's
# position), and a kind's table is laid out from its family's block in `_grid_count_table`. A new
# count kind adds itself here, to `shared.policy.GRID_KINDS`, to `Releaser._sources` (its finest
# cells), and, if it counts other people, a family of its own in those two places. Outcomes' family
# is a stack of tables over the same departures (planned/unplanned, then each outcome domain), so
# when outcomes are on the grid KPI 2 is read from it (`_family_of`): its cells are outcomes'
# departure cells, protected once with every table that shares them. The equality profile counts
# movement's new clients once in each equality field, so its tables are "field:category" rows of
# movement's block, each field's total equal to movement's all-origins cell (`_equal_of`). Unmet
# demand (people waiting, referrals refused: each service's occupancy return) is a family of its
# own, client group x "measure:service type", with a total for each measure and none across them.
GRID_FAMILY: dict[str, str] = {
    MOVEMENT: MOVEMENT,
    NET_FLOW: MOVEMENT,
    KPI: KPI,
    OUTCOMES: OUTCOMES,
    KPI1: KPI1,
    EQUALITY: MOVEMENT,
    UNMET_DEMAND: UNMET_DEMAND,
}
# The families whose first dimension is the client group (movement's is the origin).
_GROUP_FIRST = frozenset({KPI, KPI1, OUTCOMES, UNMET_DEMAND})
# Where each family's quarters are closed: client records by their last import, the services'
# quarterly returns by theirs (KPI 1's, occupancy's).
_CLOSED_BY = {KPI1: KPI1, UNMET_DEMAND: UNMET_DEMAND}
_Answer = TypeVar("_Answer", bound=BaseModel)
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _one_edition(method: _Method) -> _Method:
    """One answer reads one records edition (`Releaser.pinned`), whoever calls it: the node's
    servicer, the CLI, the console or a test asking the gate directly."""

    @functools.wraps(method)
    def wrapper(self: Releaser, *args: Any, **kwargs: Any) -> Any:
        with self.pinned():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


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
        self._store = SqlReleaseStore(self.engine)
        self.ledger = ReleaseLedger(self._store)
        self._lock = threading.Lock()
        # The last answer to each question, with the data version and policy it was made from. The
        # same question over the same records and policy has the same answer (rounding is keyed,
        # and the ledger would repeat itself), so it need not be worked out again.
        self._answers: dict[tuple[str, str], tuple[tuple[object, ...], Any]] = {}
        # The true counts at the ledger's grain that each client-record kind is released from; the
        # gate below (`_through_ledger`, `_admitted`, `plan`) reads them here and names no kind.
        # The standard table set: each grid year's true cells per kind, and each family's
        # protected block, for the records edition (and policy) they were made from.
        self._grid_cells: dict[tuple[str, str, int], tuple[tuple[object, ...], dict[tuple[str, ...], int] | None]] = {}
        self._blocks: dict[tuple[str, str, int], tuple[tuple[object, ...], Block | None]] = {}
        self._grid_raws: dict[tuple[str, str], tuple[tuple[object, ...], Any]] = {}
        # The last import (of client records, of KPI 1 returns), per edition.
        self._imported: dict[str, tuple[tuple[object, ...], date | None]] = {}
        self._published: tuple[str, tuple[object, ...]] | None = None  # policy and edition in the ledger
        self._previous: dict[tuple[str, int], Block] = {}  # the last kept edition's blocks, while building
        self._building: tuple[object, ...] | None = None  # the edition being built
        self._pinned = threading.local()  # the edition one answer reads (`pinned`), per thread
        self._releases: dict[str, list[Release]] = {}
        self._pending: list[tuple[str, str, tuple[str, ...], Mapping[tuple[str, ...], int], datetime]] = []
        self._publishing = False
        # Outcomes' and the equality profile's counts over all the records, per edition (a plan).
        self._outcome_months = analyses.MonthlyCounts(lambda q: outcomes.outcome_counts(self.engine, question=q))
        self._profile_months = analyses.MonthlyCounts(lambda q: equality.profile_counts(self.engine, question=q))
        self._sources: dict[str, Callable[[Question], tuple[Mapping[Any, int], tuple[str, ...]]]] = {
            MOVEMENT: self._new_clients,
            NET_FLOW: self._new_clients,
            KPI: self._departures,
            NON_LOCAL_SERVICES: self._intake,
            FAIR_SHARES: self._designated_intake,
            SPEND: self._spend_clients,
            OUTCOMES: lambda q: (self._outcome_months(q, self._edition()), analyses.OUTCOME_DIMENSIONS),
            EQUALITY: lambda q: (self._profile_months(q, self._edition()), analyses.PROFILE_DIMENSIONS),
            # The services' quarterly returns, released and ledgered as the client-record kinds are.
            KPI1: self._kpi1_returns,
            UTILISATION: self._occupancy_returns,
            UNMET_DEMAND: self._demand_returns,
        }

    def forget_answers(self) -> None:
        """Drop remembered answers: the authority's population or districts changed in the register."""
        with self._lock:
            self._answers.clear()
            # The standard table set is read back from the store: its published quarters keep the
            # places their origins had when they closed.
            self._grid_cells.clear()
            self._grid_raws.clear()
            self._blocks.clear()
            self._published = None

    def supply_map(
        self,
        policy: Policy,
        *,
        roles: Iterable[str],
        by_district: bool,
        client_groups: Sequence[int] = (),
        as_at: date | None = None,
    ) -> SupplyMap:
        """The supply map as released; as at `as_at` (default: today, as the store stands)."""
        rule = policy.require_any_role(SUPPLY_MAP, tuple(roles))
        groups = _checked_groups(client_groups)
        question: dict[str, object] = {"kind": SUPPLY_MAP, "by_district": by_district, "client_groups": list(groups)}
        if as_at is not None:
            # Each day asked is its own question in the ledger; a map without a day keeps the
            # signature it always had, so its ledger history carries on.
            question["as_at"] = as_at.isoformat()
        signature = _signature(question)
        # One release at a time: two racing queries must not both pass the differencing check.
        with self._lock:
            # The supply's part of the edition this answer reads (`pinned`), or read now.
            pinned: tuple[object, ...] | None = getattr(self._pinned, "edition", None)
            version = pinned[:1] if pinned is not None else data_version(self.engine)
            cached = self._answers.get((policy.digest, signature))
            if cached is not None and cached[0] == version:
                return cached[1]
            answer = self._supply_map(
                rule, policy.digest, signature, by_district=by_district, groups=groups, as_at=as_at
            )
            self._answers[(policy.digest, signature)] = (version, answer)
            return answer

    def admit_participants(self, rule: AggregateRule, selected: Sequence[Cell], participants: Sequence[str]) -> None:
        """The VFM participant-set check (`node.vfm.check_participants`), one release at a time."""
        with self._lock:
            check_participants(self.ledger, selected, participants, rule)

    # --- client records ------------------------------------------------------------------------

    @_one_edition
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

    @_one_edition
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

    @_one_edition
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

    @_one_edition
    def kpi1(self, policy: Policy, *, roles: Iterable[str], question: Question) -> CountTable:
        """Long-term services' users by client group x maintaining independent living (KPI 1),
        summed over the quarterly returns inside the question's span."""
        return self._counts(
            policy,
            kind=KPI1,
            roles=roles,
            question=question,
            dims=("client_group", "living"),
            project=lambda k: (k[0], k[1]),
        )

    @_one_edition
    def utilisation(self, policy: Policy, *, roles: Iterable[str], question: Question) -> CountTable:
        """Units occupied and void by client group x service type x state, summed over the
        quarterly occupancy returns inside the question's span."""
        return self._counts(
            policy,
            kind=UTILISATION,
            roles=roles,
            question=question,
            dims=("client_group", "service_type", "state"),
            project=lambda k: (k[0], k[1], k[2]),
        )

    @_one_edition
    def unmet_demand(self, policy: Policy, *, roles: Iterable[str], question: Question) -> CountTable:
        """People waiting at the quarters' ends and referrals refused, by client group x service
        type x measure, summed over the quarterly occupancy returns inside the question's span: a
        table of people, apart from occupancy's units, so that no total mixes the two."""
        return self._counts(
            policy,
            kind=UNMET_DEMAND,
            roles=roles,
            question=question,
            dims=("client_group", "service_type", "measure"),
            project=lambda k: (k[0], k[1], k[2]),
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
        with self._lock:
            from_grid = self._grid_table(policy, rule, kind, question)
        if from_grid is not None:
            return from_grid
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

    # --- the standard table set ----------------------------------------------------------------

    def _edition(self) -> tuple[object, ...]:
        """The records edition: the supply's write stamp and the client records' (`node.stamps`). Not the
        members or the register: a new member relabels origins, and a published quarter keeps the
        labels it closed with (closed periods), so it makes no new edition to protect while a
        question waits; quarters closing later are classed by the members then."""
        if self._building is not None:
            return self._building  # read once for the whole build, which holds the lock
        pinned: tuple[object, ...] | None = getattr(self._pinned, "edition", None)
        if pinned is not None:
            return pinned
        return stamps.edition(self.engine)

    def edition(self) -> tuple[object, ...]:
        """The store's edition this answer reads (`pinned`), or as it is now outside an answer."""
        pinned: tuple[object, ...] | None = getattr(self._pinned, "edition", None)
        return pinned if pinned is not None else stamps.edition(self.engine)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """One answer, one records edition: the store's write stamps are read once for the whole
        answer rather than at each quarter of each year a grid answer looks at. (When the edition
        was a fingerprint worked out from the tables, each read was a query over seven tables, the
        larger part of a grid answer's time on PostgreSQL; now it is one read of two short rows.)"""
        if getattr(self._pinned, "edition", None) is not None:
            yield  # an answer within an answer keeps the outer one's edition
            return
        self._pinned.edition = stamps.edition(self.engine)
        try:
            yield
        finally:
            self._pinned.edition = None

    def _grid_of(self, policy: Policy, kind: str) -> StandardGrid | None:
        grid = policy.grid
        return grid if grid is not None and kind in grid.kinds else None

    def _grid_quarter_cells(
        self, policy: Policy, rule: AggregateRule, kind: str, year: FinancialYear, index: int
    ) -> dict[tuple[str, ...], int] | None:
        """The true cells (at the ledger's grain) a grid quarter of `kind` is published from in
        this edition, kept in the release ledger as a standing release so that every question off
        the grid is compared with the whole grid, asked or not. None: not published (the quarter
        has not closed, or publishing it would difference against an earlier release off the grid).

        Closed periods: a quarter is published once it ended before the records were last
        imported, and then keeps its figures; late records replace them only when every change
        the ledger can see is larger than the threshold (a revision, recorded in the ledger)."""
        edition = self._edition()
        cached = self._grid_cells.get((policy.digest, kind, year.year * 10 + index))
        if cached is not None and cached[0] == edition:
            return cached[1]
        first, last, label = year.quarters()[index]
        # Client records close a quarter by their last import; KPI 1 and unmet demand by their
        # returns' last import (KPI 1's, occupancy's).
        source = _CLOSED_BY.get(kind, MOVEMENT)
        if self._imported.get(source, ((), None))[0] != edition:
            last_import = {
                KPI1: quarterly.last_kpi1_import,
                UNMET_DEMAND: quarterly.last_occupancy_import,
            }.get(source, movement.last_import)
            self._imported[source] = (edition, last_import(self.engine))
        imported = self._imported[source][1]
        cells: dict[tuple[str, ...], int] | None = None
        if imported is not None and last < imported:
            cells = self._publish_quarter(policy, rule, kind, first, last, label)
        self._grid_cells[(policy.digest, kind, year.year * 10 + index)] = (edition, cells)
        return cells

    def _grid_raw(self, policy: Policy, kind: str) -> tuple[dict[str, dict[tuple[str, ...], int]], tuple[str, ...]]:
        """The true cells of every grid quarter of `kind` now, from one query over the grid's span."""
        edition = self._edition()
        cached = self._grid_raws.get((policy.digest, kind))
        if cached is not None and cached[0] == edition:
            return cached[1]
        grid = policy.grid
        assert grid is not None
        start, end = FinancialYear(grid.first_year).start, FinancialYear(grid.last_year).end
        raw, dims = self._finest(kind, Question(start, end, "quarter", (), 50))
        by_quarter: dict[str, dict[tuple[str, ...], int]] = {}
        for key, n in raw.items():
            by_quarter.setdefault(_quarter_of(key[-1]), {})[key] = n
        self._grid_raws[(policy.digest, kind)] = (edition, (by_quarter, dims))
        return by_quarter, dims

    def _publish_quarter(
        self, policy: Policy, rule: AggregateRule, kind: str, first: date, last: date, label: str
    ) -> dict[tuple[str, ...], int] | None:
        grid = policy.grid
        assert grid is not None
        by_quarter, dims = self._grid_raw(policy, kind)
        raw = by_quarter.get(label, {})
        signature = _grid_signature(kind, label)
        ours = {
            _grid_signature(kind, q)
            for y in range(grid.first_year, grid.last_year + 1)
            for _a, _b, q in FinancialYear(y).quarters()
        }
        releases = self._releases.get(kind)
        if releases is None:
            releases = self._releases[kind] = list(self.ledger.previous(kind))
        earlier = None
        for release in releases:
            if release.query_signature == signature and release.dimensions == dims:
                earlier = release
        if earlier is not None and (dict(earlier.cells) == raw or isolates_few(earlier, dims, raw, rule)):
            return dict(earlier.cells)  # unchanged, or changed by too few to show: the edition stands
        if any(r.query_signature not in ours and isolates_few(r, dims, raw, rule) for r in releases):
            return dict(earlier.cells) if earlier is not None else None  # it would difference a release
        at = datetime.now(UTC)
        self._pending.append((kind, signature, dims, raw, at))  # written at the end of the publication
        if not self._publishing:
            self._store.record_all(self._pending)
            self._pending = []
        releases.append(Release(signature, dims, MappingProxyType(dict(raw)), at))
        return raw

    def _year_cells(
        self, policy: Policy, kind: str, year: FinancialYear
    ) -> tuple[dict[tuple[str, ...], int] | None, ...]:
        rule = policy.rule(kind)
        return tuple(self._grid_quarter_cells(policy, rule, kind, year, i) for i in range(4))

    @_one_edition
    def prepare_grid(self, policy: Policy) -> bool:
        """Protect the standard table set for the records as they are now, and keep it as an
        edition in the store (or read it back, when this edition is kept already): called when
        the records change (after an import, at node start), so that a grid question is a lookup.
        False when the policy has no standard table set."""
        if policy.grid is None:
            return False
        with self._lock:
            self._edition_ready(policy, policy.grid)
        return True

    def _publish_grid(self, policy: Policy, kind: str) -> None:
        """The current edition of the standard table set, before anything off the grid is compared
        with it: read from the store, or made now (`_edition_ready`)."""
        grid = self._grid_of(policy, kind)
        if grid is not None:
            self._edition_ready(policy, grid)

    def _edition_ready(self, policy: Policy, grid: StandardGrid) -> None:
        """Make the current edition's grid ready under the lock: in memory already, kept in the
        store (by an import, or before a restart), or published and protected now and kept."""
        edition = self._edition()
        published = (policy.digest, edition)
        if self._published == published:
            return  # this edition's grid is in the ledger already
        key = self._edition_key(edition)
        kept = load_edition(self.engine, policy_digest=policy.digest, edition=key)
        if kept is not None:
            self._restore(policy.digest, edition, json.loads(kept))
            self._published = published
            return
        self._building = edition
        try:
            self._publish_quarters(policy, grid)
            self._published = published
            latest = latest_edition(self.engine, policy_digest=policy.digest)
            if latest is not None:
                self._previous = {(f, y): block_from_state(b) for f, y, b in json.loads(latest)["blocks"]}
            for kind in grid.kinds:
                if kind in GRID_FAMILY:
                    for year in range(grid.first_year, grid.last_year + 1):
                        self._block(policy, kind, FinancialYear(year))
                    self._span_block(policy, kind)
        finally:
            self._previous, self._building = {}, None
        keep_edition(
            self.engine,
            policy_digest=policy.digest,
            edition=key,
            state=canonical_json(self._state(policy.digest, edition)).decode("utf-8"),
        )

    def _edition_key(self, edition: tuple[object, ...]) -> str:
        """The edition's name in the store: a digest of the records' write stamps (`node.stamps`)."""
        return hashlib.sha256(canonical_json([str(part) for part in edition])).hexdigest()

    def _state(self, digest: str, edition: tuple[object, ...]) -> dict[str, object]:
        """This edition's grid as JSON values: each quarter's published true cells (None: not
        published) and each protected block."""
        quarters = [
            [kind, at // 10, at % 10, None if cells is None else [[*k, n] for k, n in sorted(cells.items())]]
            for (policy, kind, at), (made, cells) in sorted(self._grid_cells.items())
            if policy == digest and made == edition
        ]
        blocks = [
            [family, year, block_state(block)]
            for (policy, family, year), (made, block) in sorted(self._blocks.items())
            if policy == digest and made == edition and block is not None
        ]
        return {"quarters": quarters, "blocks": blocks}

    def _restore(self, digest: str, edition: tuple[object, ...], state: Mapping[str, Any]) -> None:
        for kind, year, index, cells in state["quarters"]:
            restored = None if cells is None else {tuple(c[:-1]): int(c[-1]) for c in cells}
            self._grid_cells[(digest, kind, year * 10 + index)] = (edition, restored)
        for family, year, block in state["blocks"]:
            self._blocks[(digest, family, year)] = (edition, block_from_state(block))

    def _publish_quarters(self, policy: Policy, grid: StandardGrid) -> None:
        """Put every closed grid quarter in the ledger before anything off the grid is compared
        with it: of every kind at once, so that asking one kind (or a plan) never records another
        kind's quarters later, and a plan leaves the ledger as it was."""
        self._releases = {}  # each kind's releases, read once for the whole publication
        self._pending, self._publishing = [], True
        try:
            for each in grid.kinds:
                if each in self._sources:
                    for year in range(grid.first_year, grid.last_year + 1):
                        self._year_cells(policy, each, FinancialYear(year))
            self._store.record_all(self._pending)
        except BaseException:
            self._grid_cells.clear()  # nothing was written: publish again next time
            raise
        finally:
            self._releases, self._pending, self._publishing = {}, [], False

    def _block(self, policy: Policy, kind: str, year: FinancialYear) -> Block | None:
        """The protected block a grid question of `kind` is answered from (None: withheld)."""
        family = _family_of(policy, kind)
        edition = self._edition()
        self._publish_grid(policy, kind)
        mine = self._year_cells(policy, kind, year)
        if kind == EQUALITY:
            ours = self._year_cells(policy, MOVEMENT, year)
            if [c is None for c in ours] != [c is None for c in mine]:
                # The profile's published quarters are not movement's: off the grid this edition.
                return None
        elif family != kind:
            theirs = self._year_cells(policy, family, year)
            if _as_kind(kind, family, theirs) != mine:
                # Net flow's (or KPI 2's) published quarters are not its family's: off the grid this edition.
                return None
        mine = self._family_cells(policy, family, year)
        cached = self._blocks.get((policy.digest, family, year.year))
        if cached is not None and cached[0] == edition:
            return cached[1]
        rule = policy.rule(family)
        # The edition before: in memory, else the last one kept in the store.
        earlier = cached[1] if cached is not None else self._previous.get((family, year.year))
        if earlier is None and family == OUTCOMES and (KPI, year.year) in self._previous:
            # KPI 2 had a block of its own before outcomes joined the grid: its suppressions stand.
            earlier = _kpi_as_outcomes(self._previous[(KPI, year.year)])
        if earlier is None:
            # After a restart: the year's first edition, if a quarter has been revised since.
            firsts = self._first_editions(family, year)
            if family == MOVEMENT and EQUALITY in (policy.grid.kinds if policy.grid else ()):
                profile = self._first_editions(EQUALITY, year)
                firsts = tuple(None if f is None else {**f, **(p or {})} for f, p in zip(firsts, profile, strict=True))
            if any(f is not None and f != m for f, m in zip(firsts, mine, strict=True)):
                earlier = self._protect_year(rule, family, year, firsts, None)
        block = self._protect_year(rule, family, year, mine, earlier)
        self._blocks[(policy.digest, family, year.year)] = (edition, block)
        return block

    def _family_cells(
        self, policy: Policy, family: str, year: FinancialYear
    ) -> tuple[dict[tuple[str, ...], int] | None, ...]:
        """A family's published true cells per quarter: movement's with the equality profile's
        (keyed by four parts, movement's by three) when the profile is on the grid."""
        cells = self._year_cells(policy, family, year)
        grid = policy.grid
        if family != MOVEMENT or grid is None or EQUALITY not in grid.kinds:
            return cells
        profile = self._year_cells(policy, EQUALITY, year)
        return tuple(None if c is None else {**c, **(p or {})} for c, p in zip(cells, profile, strict=True))

    def _grid_signatures(self, policy: Policy, kind: str) -> frozenset[str]:
        """The ledger signatures of every grid quarter of `kind`."""
        grid = policy.grid
        if grid is None:
            return frozenset()
        years = range(grid.first_year, grid.last_year + 1)
        return frozenset(_grid_signature(kind, q) for y in years for _a, _b, q in FinancialYear(y).quarters())

    def _span_block(self, policy: Policy, kind: str) -> Block | None:
        """Every grid year's cells and the cells over all of them (None until every year has
        closed): what a question over the whole records is answered from, when they lie inside
        the grid's years."""
        grid = policy.grid
        assert grid is not None
        family = _family_of(policy, kind)
        blocks = [self._block(policy, kind, FinancialYear(y)) for y in range(grid.first_year, grid.last_year + 1)]
        years = [b for b in blocks if b is not None and b.year is not None and b.year.label in b.periods]
        if len(years) != len(blocks):
            return None
        edition = self._edition()
        cached = self._blocks.get((policy.digest, family, 0))
        if cached is not None and cached[0] == edition:
            return cached[1]
        at = 0 if family in _GROUP_FIRST else 1
        groups = sorted({g for b in years for g in b.dimensions[at].leaves}, key=int)
        span = protect_span(
            years,
            group_position=0 if family in _GROUP_FIRST else 1,
            rule=policy.rule(family),
            secret=self.secret,
            equal=_equal_of(family, groups),
        )
        merged = Block(
            None,
            span.periods,
            {k: v for b in [*years, span] for k, v in b.released.items()},
            {k: v for b in [*years, span] for k, v in b.true.items()},
            span.dimensions,
        )
        self._blocks[(policy.digest, family, 0)] = (edition, merged)
        return merged

    def _first_editions(self, kind: str, year: FinancialYear) -> tuple[dict[tuple[str, ...], int] | None, ...]:
        firsts: dict[str, dict[tuple[str, ...], int]] = {}
        signatures = {_grid_signature(kind, q): q for _a, _b, q in year.quarters()}
        for release in self.ledger.previous(kind):
            label = signatures.get(release.query_signature)
            if label is not None and label not in firsts:
                firsts[label] = dict(release.cells)
        return tuple(firsts.get(q) for _a, _b, q in year.quarters())

    def _protect_year(
        self,
        rule: AggregateRule,
        family: str,
        year: FinancialYear,
        quarters: Sequence[Mapping[tuple[str, ...], int] | None],
        earlier: Block | None,
    ) -> Block:
        published = [q for (_a, _b, q), cells in zip(year.quarters(), quarters, strict=True) if cells is not None]
        cells = {k: v for part in quarters if part is not None for k, v in part.items()}
        atoms: dict[BlockCell, int] = {}
        if family == OUTCOMES:
            # One block of every outcomes table: client group x "measure:value", each measure's
            # total the departures (so every table's total for a group is one figure).
            for (group, measure, value, month), n in cells.items():
                key = (_quarter_of(month), group, f"{measure}:{value}")
                atoms[key] = atoms.get(key, 0) + n
            groups, dims = _by_measure(atoms, OUTCOME_MEASURES)
            return protect_block(
                year,
                atoms,
                dims,
                group_position=0,
                rule=rule,
                secret=self.secret,
                published=published,
                earlier=earlier,
                equal=_equal_of(family, groups),
                people=_kpi_people,
            )
        if family == UNMET_DEMAND:
            # Client group x "measure:service type": each measure's total over the service types,
            # and no total across the measures (a stock of people waiting and a flow of refusals).
            for (group, service_type, measure, quarter), n in cells.items():
                key = (_quarter_of(quarter), group, f"{measure}:{service_type}")
                atoms[key] = atoms.get(key, 0) + n
            _groups, dims = _by_measure(atoms, DEMAND_MEASURES)
            return protect_block(
                year, atoms, dims, group_position=0, rule=rule, secret=self.secret, published=published, earlier=earlier
            )
        if family in (KPI, KPI1):
            for (group, value, last), n in cells.items():
                key = (_quarter_of(last), group, value)
                atoms[key] = atoms.get(key, 0) + n
            groups = sorted({k[1] for k in atoms}, key=int)
            values = sorted({k[2] for k in atoms})
            dims = (
                Dimension("client_group", tuple(groups), {TOTAL: frozenset(groups)}),
                Dimension("departure" if family == KPI else "living", tuple(values), {TOTAL: frozenset(values)}),
            )
            return protect_block(
                year, atoms, dims, group_position=0, rule=rule, secret=self.secret, published=published, earlier=earlier
            )
        fields: dict[str, set[str]] = {}
        for finest, n in cells.items():
            if len(finest) == 4:
                # An equality profile cell (group, field, category, month): a "field:category" row.
                group, name, category, month = finest
                origin = f"{name}:{category}"
                fields.setdefault(name, set()).add(origin)
            else:
                origin, group, month = finest
            at = (movement.period_of(month, "quarter"), origin, group)
            atoms[at] = atoms.get(at, 0) + n
        cag = self.members() | {self.authority}
        profile = {leaf for leaves in fields.values() for leaf in leaves}
        origins = sorted({k[1] for k in atoms} - profile)
        groups = sorted({k[2] for k in atoms}, key=int)
        outside = frozenset(o for o in origins if movement.origin_class(o, cag) == movement.OUTSIDE)
        totals = {
            TOTAL: frozenset(origins),
            **({movement.OUTSIDE: outside} if outside else {}),
            **{name: frozenset(leaves) for name, leaves in sorted(fields.items())},
        }
        dims = (
            Dimension("origin", (*origins, *sorted(profile)), totals),
            Dimension("client_group", tuple(groups), {TOTAL: frozenset(groups)}),
        )
        return protect_block(
            year,
            atoms,
            dims,
            group_position=1,
            rule=rule,
            secret=self.secret,
            published=published,
            earlier=earlier,
            equal=_equal_of(family, groups) if fields else (),
        )

    def _grid_table(self, policy: Policy, rule: AggregateRule, kind: str, question: Question) -> CountTable | None:
        """A grid question's table from its year's protected block, the same every time it is
        asked; None when the question is off the grid (or its year withheld). Called under the lock."""
        grid = self._grid_of(policy, kind)
        if grid is None or kind not in GRID_FAMILY:
            return None
        family = _family_of(policy, kind)
        span: tuple[FinancialYear | None, str] | None = grid_span(grid, question)
        span = span or self._same_as_grid(policy, kind, question)
        if span is None:
            return None
        year, label = span
        block = self._block(policy, kind, year) if year is not None else self._span_block(policy, kind)
        if block is None or label not in block.periods:
            return None
        group = question.client_groups[0] if question.client_groups else None
        chosen = str(group) if group is not None else TOTAL
        if group is not None:
            # The query-set restriction, as for any question: a filter on a handful is refused.
            first, second = (chosen, _ALL_OF.get(family, TOTAL)) if family in _GROUP_FIRST else (TOTAL, chosen)
            # Unmet demand has no total across its measures: the group's people over both, as off the grid.
            seconds = DEMAND_MEASURES if family == UNMET_DEMAND else (second,)
            require_min_records(sum(block.true.get((label, first, s), 0) for s in seconds), rule, client_group=group)
        years = [FinancialYear(y) for y in range(grid.first_year, grid.last_year + 1)]
        return _grid_count_table(
            self.authority, kind, family, block, label, question, chosen, self.members() | {self.authority}, years
        )

    def _same_as_grid(self, policy: Policy, kind: str, question: Question) -> tuple[FinancialYear | None, str] | None:
        """The grid period a question off the grid counts exactly the same people as (its other
        months are empty: the whole records, a half year whose second quarter has no records
        yet), so that it gets the grid's figures and not a second protection of the same counts."""
        grid = policy.grid
        if grid is None or len(question.client_groups) > 1:
            return None
        raw, dims = self._finest(kind, question)
        raw = {k: v for k, v in raw.items() if v}
        months = {k[-1] for k in raw}
        years = {int(_quarter_of(m)[:4]) for m in months}  # the financial year each month or quarter is in
        if not years or not grid.first_year <= min(years) <= max(years) <= grid.last_year:
            return None
        if len(years) > 1:
            every = {
                k: v
                for y in range(grid.first_year, grid.last_year + 1)
                for part in self._year_cells(policy, kind, FinancialYear(y))
                for k, v in (part or {}).items()
            }
            complete = all(
                part is not None
                for y in range(grid.first_year, grid.last_year + 1)
                for part in self._year_cells(policy, kind, FinancialYear(y))
            )
            if question.client_groups:
                position = dims.index("client_group")
                every = {k: v for k, v in every.items() if k[position] == str(question.client_groups[0])}
            same = self._same_people(dims, {k: v for k, v in every.items() if v}, raw)
            return (None, SPAN) if complete and same else None
        year = FinancialYear(min(years))
        quarters = {_quarter_of(m) for m in months}
        label = min(quarters) if len(quarters) == 1 else year.label
        published: dict[tuple[str, ...], int] = {}
        for (_a, _b, quarter), cells in zip(year.quarters(), self._year_cells(policy, kind, year), strict=True):
            if label in (quarter, year.label):
                if cells is None:
                    return None
                published.update(cells)
        if question.client_groups:
            position = dims.index("client_group")
            published = {k: v for k, v in published.items() if k[position] == str(question.client_groups[0])}
        return (year, label) if self._same_people(dims, {k: v for k, v in published.items() if v}, raw) else None

    def _same_people(
        self, dims: tuple[str, ...], published: Mapping[tuple[str, ...], int], raw: Mapping[tuple[str, ...], int]
    ) -> bool:
        """Whether published cells count exactly the people `raw` does. A published quarter keeps
        the origins as they were classed when it closed: an authority that joined the network since
        is its region there, and its code in `raw`, so both are compared by region."""
        if published == raw:
            return True
        if "origin" not in dims:
            return False
        return self._by_region(dims, published) == self._by_region(dims, raw)

    def _by_region(self, dims: tuple[str, ...], cells: Mapping[tuple[str, ...], int]) -> dict[tuple[str, ...], int]:
        at, register = dims.index("origin"), self.register()
        out: dict[tuple[str, ...], int] = {}
        for key, n in cells.items():
            origin = key[at]
            if origin in register:
                origin = places.region_of(origin, register)
            shown = (*key[:at], origin, *key[at + 1 :])
            out[shown] = out.get(shown, 0) + n
        return out

    def _through_ledger(
        self,
        policy: Policy,
        rule: AggregateRule,
        *,
        kind: str,
        question: Question,
        describe: Callable[[Mapping[tuple[str, ...], int]], _Answer],
        parse: Callable[[str], _Answer],
        asked_also: Mapping[str, object] | None = None,
        on_grid: bool = False,
    ) -> _Answer:
        """Every answer about client records: the query-set restriction, the release ledger at the
        finest grain, then `describe` (the protected answer) kept for a repeat of the question.
        `asked_also`: what else the question asks (an equality cross-tab's dimensions), part of
        its signature; the true counts admitted are the kind's as for the plain question.
        `on_grid`: the question is a grid question whose counts the answer shows as the grid's
        figures (a cross-tab's margins), so they are not compared with the grid's own quarters."""
        asked = question.as_asked()
        signature = _signature({"kind": kind, **asked.model_dump(mode="json"), **(asked_also or {})})
        with self._lock:
            # Origins are classed by membership, so a new member makes a new answer.
            version = (*stamps.edition(self.engine), *sorted(self.members()))
            cached = self._answers.get((policy.digest, signature))
            if cached is not None and cached[0] == version:
                answer: _Answer = cached[1]
                return answer
            ignore = self._grid_signatures(policy, kind) if on_grid else frozenset()
            raw = self._admitted(policy, rule, kind, question, signature, record=True, ignore=ignore)
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

    def _designated_intake(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        counts = fair_shares.designated_intake_by_month(
            self.engine, question=question, members=self.members() | {self.authority}, register=self.register()
        )
        return counts, ("client_group", "service", "origin", "month")

    def _spend_clients(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        return spend.clients_by_month(self.engine, question=question), ("client_group", "service_type", "month")

    def _kpi1_returns(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        return quarterly.kpi1_counts(self.engine, question=question), ("client_group", "living", "quarter")

    def _occupancy_returns(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        counts = quarterly.occupancy_counts(self.engine, question=question)
        return counts, ("client_group", "service_type", "state", "quarter")

    def _demand_returns(self, question: Question) -> tuple[Mapping[Any, int], tuple[str, ...]]:
        counts = quarterly.demand_counts(self.engine, question=question)
        return counts, ("client_group", "service_type", "measure", "quarter")

    def _finest(self, kind: str, question: Question) -> tuple[dict[tuple[str, ...], int], tuple[str, ...]]:
        """A records question's true counts at the grain the ledger keeps (calendar months)."""
        source = self._sources.get(kind)
        if source is None:
            raise InvalidRequest(f"no release ledger for {kind!r}")
        counts, dims = source(question)
        return {tuple(str(part) for part in key): n for key, n in counts.items()}, dims

    def _admitted(
        self,
        policy: Policy,
        rule: AggregateRule,
        kind: str,
        question: Question,
        signature: str,
        *,
        record: bool,
        ignore: frozenset[str] = frozenset(),
    ) -> dict[tuple[str, ...], int] | None:
        """The query-set restriction and the ledger, under the lock: the true counts to describe,
        or None when the earlier answer to this question stands (it is then kept under this
        policy); DisclosureRefused otherwise. With `record=False` the ledger is left as it was."""
        self._publish_grid(policy, kind)
        raw, finest_dims = self._finest(kind, question)
        groups = question.client_groups
        if groups:
            strictest = max(groups, key=rule.threshold_for)
            require_min_records(sum(raw.values()), rule, client_group=strictest)
        admitted = self.ledger.admit(kind, signature, finest_dims, raw, rule, record=record, ignore=ignore)
        if dict(admitted) == raw:
            return raw
        if last_answer(self.engine, kind=kind, query_signature=signature, policy_digest=policy.digest) is None:
            raise DisclosureRefused("differencing: the answer would differ from an earlier release by too few people")
        return None

    # --- "would you answer?" -------------------------------------------------------------------

    @_one_edition
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
                if kind != NON_LOCAL_SERVICES and self._grid_table(policy, rule, kind, question) is not None:
                    return ""  # a grid question: answered every time
                if kind == NON_LOCAL_SERVICES and self._grid_services(policy, kind, question):
                    return ""
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

    @_one_edition
    def outcomes(self, policy: Policy, *, roles: Iterable[str], question: Question) -> CountTable:
        """Departures from short-term services by client group x measure x value: planned or
        unplanned, and each outcome domain's need achieved, not achieved or not applicable. The
        departure cells are KPI 2's released figures for the same question."""
        rule = policy.require_any_role(OUTCOMES, tuple(roles))
        require_dimensions(3, rule)
        with self._lock:
            from_grid = self._grid_table(policy, rule, OUTCOMES, question)
        if from_grid is not None:
            return from_grid

        def describe(raw: Mapping[tuple[str, ...], int]) -> CountTable:
            return analyses.outcomes_table(
                self.authority,
                raw,
                question,
                rule=rule,
                secret=self.secret,
                kpi=self._kpi_beside(policy, raw, question),
            )

        return self._through_ledger(
            policy, rule, kind=OUTCOMES, question=question, describe=describe, parse=CountTable.model_validate_json
        )

    def _kpi_beside(self, policy: Policy, raw: Mapping[tuple[str, ...], int], question: Question) -> CountTable | None:
        """KPI 2's table for the same question as its answer would release it (None: the policy
        has no KPI rule). Called under the lock."""
        try:
            rule = policy.rule(KPI)
        except CagnetError:
            return None
        on_grid = self._grid_table(policy, rule, KPI, question)
        if on_grid is not None:
            return on_grid
        return self._protect_counts(
            rule,
            KPI,
            analyses.departures_of(raw),
            ("client_group", "departure"),
            lambda k: (k[0], k[1]),
            asked_groups=question.client_groups,
            question=question,
        )

    @_one_edition
    def equality(
        self, policy: Policy, *, roles: Iterable[str], question: Question, cross_tab: tuple[str, ...] = ()
    ) -> CountTable:
        """The equality profile (new client records by client group x dimension x category), or
        with `cross_tab` (two dimensions, checked) their cross-tab, whose margins are the profile's.
        Both go through the ledger as the profile's counts, so each is compared with every other."""
        rule = policy.require_any_role(EQUALITY, tuple(roles))
        margins: CountTable | None = None
        if cross_tab:
            rows, columns = cross_tab
            require_dimensions(2, rule)
            with self._lock:
                # A grid question's profile is the grid's: the cross-tab's margins are its figures.
                margins = self._grid_table(policy, rule, EQUALITY, question)

            def describe(raw: Mapping[tuple[str, ...], int]) -> CountTable:
                atoms = equality.cross_tab_counts(self.engine, question=question, rows=rows, columns=columns)
                return analyses.cross_tab_table(
                    self.authority,
                    raw,
                    atoms,
                    question,
                    rows=rows,
                    columns=columns,
                    rule=rule,
                    secret=self.secret,
                    margins=margins,
                )
        else:
            require_dimensions(3, rule)
            with self._lock:
                from_grid = self._grid_table(policy, rule, EQUALITY, question)
            if from_grid is not None:
                return from_grid

            def describe(raw: Mapping[tuple[str, ...], int]) -> CountTable:
                return analyses.profile_table(self.authority, raw, question, rule=rule, secret=self.secret)

        return self._through_ledger(
            policy,
            rule,
            kind=EQUALITY,
            question=question,
            describe=describe,
            parse=CountTable.model_validate_json,
            asked_also={"cross_tab": list(cross_tab)} if cross_tab else None,
            on_grid=margins is not None,
        )

    @_one_edition
    def non_local_services(self, policy: Policy, *, roles: Iterable[str], question: Question) -> NonLocalServices:
        """Services whose share of intake from outside the authority is at least the question's
        share, a value on the share grid. Through the release ledger like every count (each
        service's intake by origin and month), then described in bands only: intake in bands
        above the group's threshold (coarser for domestic violence and refugees), share by the
        grid. A service whose intake, known intake or non-local intake is within its group's
        threshold is not described at all, only counted; a refuge's name and district are never
        released (domestic violence services are shared at authority level)."""
        rule = policy.require_any_role(NON_LOCAL_SERVICES, tuple(roles))
        with self._lock:
            if self._grid_services(policy, NON_LOCAL_SERVICES, question):
                if question.client_groups:
                    group = question.client_groups[0]
                    raw, _dims = self._finest(NON_LOCAL_SERVICES, question)
                    require_min_records(sum(raw.values()), rule, client_group=group)
                return self._describe_services(rule, question)
        return self._through_ledger(
            policy,
            rule,
            kind=NON_LOCAL_SERVICES,
            question=question,
            describe=lambda _raw: self._describe_services(rule, question),
            parse=NonLocalServices.model_validate_json,
        )

    @_one_edition
    def fair_shares(self, policy: Policy, *, roles: Iterable[str], question: Question) -> FairShares:
        """The designated services this authority hosts, and each member's share of each one's
        intake in bands (`node.fair_shares`). Through the release ledger like every count (each
        service's intake by origin and month), so asking again over a slightly moved period
        cannot isolate the few people between the two answers."""
        rule = policy.require_any_role(FAIR_SHARES, tuple(roles))
        members = self.members() | {self.authority}
        return self._through_ledger(
            policy,
            rule,
            kind=FAIR_SHARES,
            question=question,
            describe=lambda raw: describe_fair_shares(
                rule,
                authority=self.authority,
                services=fair_shares.designated_services(self.engine, question=question),
                intake=raw,
                members=members,
                question=question.as_asked(),
            ),
            parse=FairShares.model_validate_json,
        )

    @_one_edition
    def spend(self, policy: Policy, *, roles: Iterable[str], question: Question) -> Spend:
        """Contract value a year, capacity and new clients by client group and service type
        (`node.spend`): the new clients through the release ledger like every count, the money
        by the money rules, as the services and contracts stood on the period's last day."""
        rule = policy.require_any_role(SPEND, tuple(roles))
        day = question.to_date or date.today()
        groups = question.client_groups

        def describe(raw: Mapping[tuple[str, ...], int]) -> Spend:
            return describe_spend(
                rule,
                authority=self.authority,
                secret=self.secret,
                supply=supply_map(
                    self.engine, authority_code=self.authority, by_district=False, client_groups=groups, as_at=day
                ),
                money=contract_values(
                    self.engine, authority_code=self.authority, by_district=False, client_groups=groups, as_at=day
                ),
                clients=raw,
                groups=groups,
                question=question.as_asked(),
            )

        return self._through_ledger(
            policy, rule, kind=SPEND, question=question, describe=describe, parse=Spend.model_validate_json
        )

    def _grid_services(self, policy: Policy, kind: str, question: Question) -> bool:
        """Whether a non-local services question is on the grid and each quarter it covers is
        published from the records as they are (its answer, in bands only, is then the same
        every time it is asked)."""
        grid = self._grid_of(policy, kind)
        if grid is None:
            return False
        span = grid_span(grid, question)
        self._publish_grid(policy, kind)
        if span is None:
            # Dates off the grid that count exactly the people of a grid period (the whole
            # records, inside the grid's years): the same published cells, the same answer.
            return self._same_as_grid(policy, kind, question) is not None
        year, label = span
        published = self._year_cells(policy, kind, year)
        for (first, last, quarter), cells in zip(year.quarters(), published, strict=True):
            if label in (quarter, year.label):
                raw, _dims = self._finest(kind, Question(first, last, "quarter", (), 50))
                if cells is None or cells != raw:
                    return False
        return True

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
        self,
        rule: AggregateRule,
        policy_digest: str,
        signature: str,
        *,
        by_district: bool,
        groups: tuple[int, ...],
        as_at: date | None,
    ) -> SupplyMap:
        finest = supply_map(
            self.engine, authority_code=self.authority, by_district=True, client_groups=groups, as_at=as_at
        )
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
        answer = self._protect(rule, finest, by_district=by_district, groups=groups, as_at=as_at)
        keep_answer(
            self.engine,
            kind=SUPPLY_MAP,
            query_signature=signature,
            policy_digest=policy_digest,
            answer=answer.model_dump_json(),
        )
        return answer

    def _protect(
        self,
        rule: AggregateRule,
        finest: RawSupply,
        *,
        by_district: bool,
        groups: tuple[int, ...],
        as_at: date | None = None,
    ) -> SupplyMap:

        # The finest grain is the by-district map itself; only the plain map needs its own query.
        raw = (
            finest
            if by_district
            else supply_map(
                self.engine, authority_code=self.authority, by_district=False, client_groups=groups, as_at=as_at
            )
        )
        population = finest.population
        dims = ("client_group", "service_type", "district") if by_district else ("client_group", "service_type")

        def key_of(key: CellKey) -> tuple[str, ...]:
            return (str(key[0]), key[1], key[2]) if by_district else (str(key[0]), key[1])

        services = {key_of(c.key): c.services for c in raw.cells}
        designated = {key_of(c.key): c.designated_services for c in raw.cells}
        money = contract_values(
            self.engine, authority_code=self.authority, by_district=by_district, client_groups=groups, as_at=as_at
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


def _grid_signature(kind: str, quarter: str) -> str:
    return _signature({"kind": kind, "grid": quarter})


def _grid_count_table(
    authority: str,
    kind: str,
    family: str,
    block: Block,
    label: str,
    question: Question,
    chosen: str,
    cag: frozenset[str],
    years: Sequence[FinancialYear],
) -> CountTable:
    """A grid question's table, laid out as `protect_counts` lays out the same question (the
    interior, each row's total, each column's total, the grand total), every figure the block's."""
    true = block.true
    # (table key, block cell) of the interior, rows, columns and grand total.
    interior: list[tuple[tuple[str, ...], BlockCell]] = []
    rows_of: list[tuple[tuple[str, ...], BlockCell]] = []
    cols_of: list[tuple[tuple[str, ...], BlockCell]] = []
    if kind == OUTCOMES:
        return _grid_outcomes_table(authority, block, label, question, chosen)
    if kind == UNMET_DEMAND:
        return _grid_demand_table(authority, block, label, question, chosen)
    if kind in (KPI, KPI1):
        # KPI 2 read from outcomes' block: its departures are the "departure:..." cells there.
        prefix, whole = (f"{DEPARTURE}:", DEPARTURE) if family == OUTCOMES else ("", TOTAL)
        dims: tuple[str, ...] = ("client_group", "departure" if kind == KPI else "living")
        groups = [chosen] if chosen != TOTAL else sorted({c[1] for c in true if c[1] != TOTAL}, key=int)
        rows = [g for g in groups if true.get((label, g, whole), 0)]
        cols = sorted(
            {
                c[2][len(prefix) :]
                for c in true
                if c[2] != whole and c[2].startswith(prefix) and c[2] != TOTAL and true.get((label, chosen, c[2]), 0)
            }
        )
        interior = [((g, d), (label, g, prefix + d)) for g in rows for d in cols]
        rows_of = [((g, TOTAL), (label, g, whole)) for g in rows]
        cols_of = [((TOTAL, d), (label, chosen, prefix + d)) for d in cols]
        grand: BlockCell = (label, chosen, whole)
    elif kind == EQUALITY:
        return _grid_profile_table(authority, block, label, question, chosen)
    else:
        origins = block.dimensions[0].totals.get(TOTAL, frozenset())
        leaves = sorted({c[1] for c in true if c[1] in origins})
        groups = [chosen] if chosen != TOTAL else sorted({c[2] for c in true if c[2] != TOTAL}, key=int)
        grand = (label, TOTAL, chosen)
        if kind == NET_FLOW:
            dims = ("origin", "client_group")
            classes = [o for o in leaves if movement.origin_class(o, cag) != movement.OUTSIDE]
            classes += [movement.OUTSIDE] if true.get((label, movement.OUTSIDE, TOTAL), 0) else []
            rows = [o for o in classes if true.get((label, o, chosen), 0)]
            cols = [g for g in groups if true.get((label, TOTAL, g), 0)]
            interior = [((o, g), (label, o, g)) for o in rows for g in cols]
            rows_of = [((o, TOTAL), (label, o, chosen)) for o in rows]
            cols_of = [((TOTAL, g), (label, TOTAL, g)) for g in cols]
        else:
            dims = ("origin", "client_group", "period")
            if label == SPAN:
                periods = {
                    "year": [(y.label, y.label) for y in years],
                    "quarter": [(q, q) for y in years for _a, _b, q in y.quarters()],
                }.get(question.period, [("all", SPAN)])
            elif question.period == "quarter" and block.year is not None and label == block.year.label:
                periods = [(q, q) for _a, _b, q in block.year.quarters()]
            else:
                year_label = years[0].label if block.year is None else block.year.label
                shown = {"all": "all", "year": year_label}.get(question.period, label)
                periods = [(shown, label)]
            rows = [o for o in leaves if true.get((label, o, chosen), 0)]
            columns = [(g, shown, at) for g in groups for shown, at in periods if true.get((at, TOTAL, g), 0)]
            interior = [((o, g, shown), (at, o, g)) for o in rows for g, shown, at in columns]
            rows_of = [((o, TOTAL, TOTAL), (label, o, chosen)) for o in rows]
            cols_of = [((TOTAL, g, shown), (at, TOTAL, g)) for g, shown, at in columns]
    cells = []
    for key, cell in [*interior, *rows_of, *cols_of]:
        count, why = block.figure(cell)
        cells.append(CountCell(key=key, count=count, suppressed=why, margin=TOTAL in key))
    count, why = block.figure(grand)
    cells.append(CountCell(key=(TOTAL,) * len(dims), count=count, suppressed=why, margin=True))
    return CountTable(authority=authority, kind=kind, dimensions=dims, cells=tuple(cells), question=question.as_asked())


def _grid_outcomes_table(authority: str, block: Block, label: str, question: Question, chosen: str) -> CountTable:
    """An outcomes grid question's table, laid out as `analyses.outcomes_table` lays out the same
    question (each client group and the total, each measure's values and its total)."""
    true = block.true
    groups = [chosen] if chosen != TOTAL else sorted({c[1] for c in true if c[1] != TOTAL}, key=int)
    groups = [g for g in groups if true.get((label, g, DEPARTURE), 0)]
    cells = []
    for x in [*groups, TOTAL] if groups else []:
        row = chosen if x == TOTAL else x
        for measure in OUTCOME_MEASURES:
            for value in [*OUTCOME_VALUES[measure], TOTAL]:
                count, why = block.figure((label, row, measure if value == TOTAL else f"{measure}:{value}"))
                cells.append(
                    CountCell(key=(x, measure, value), count=count, suppressed=why, margin=TOTAL in (x, value))
                )
    return CountTable(
        authority=authority,
        kind=OUTCOMES,
        dimensions=("client_group", "measure", "value"),
        cells=tuple(cells),
        question=question.as_asked(),
    )


def _grid_demand_table(authority: str, block: Block, label: str, question: Question, chosen: str) -> CountTable:
    """An unmet-demand grid question's table: each client group and service type's people waiting
    and referrals refused, each measure's totals over the groups and the types, and no total across
    the two measures (they are never added together)."""
    true = block.true
    groups = [chosen] if chosen != TOTAL else sorted({c[1] for c in true if c[1] != TOTAL}, key=int)
    groups = [g for g in groups if any(true.get((label, g, m), 0) for m in DEMAND_MEASURES)]
    types = sorted(
        {
            c[2].split(":", 1)[1]
            for c in true
            if c[0] == label and c[1] == chosen and ":" in c[2] and true[c] and c[2].split(":", 1)[0] in DEMAND_MEASURES
        }
    )
    cells = []
    for x in [*groups, TOTAL] if groups else []:
        row = chosen if x == TOTAL else x
        for service_type in [*types, TOTAL]:
            for measure in DEMAND_MEASURES:
                at = measure if service_type == TOTAL else f"{measure}:{service_type}"
                count, why = block.figure((label, row, at))
                key = (x, service_type, measure)
                cells.append(CountCell(key=key, count=count, suppressed=why, margin=TOTAL in key))
    return CountTable(
        authority=authority,
        kind=UNMET_DEMAND,
        dimensions=("client_group", "service_type", "measure"),
        cells=tuple(cells),
        question=question.as_asked(),
    )


def _grid_profile_table(authority: str, block: Block, label: str, question: Question, chosen: str) -> CountTable:
    """An equality profile grid question's table, laid out as `analyses.profile_table` lays out the
    same question (each client group and the total, each field's categories and its total), from
    the "field:category" rows of movement's block."""
    true = block.true
    groups = [chosen] if chosen != TOTAL else sorted({c[2] for c in true if c[2] != TOTAL}, key=int)
    groups = [g for g in groups if true.get((label, TOTAL, g), 0)]
    present: dict[str, list[str]] = {}
    for name in PROFILE_FIELDS:
        leaves = {c[1] for c in true if c[0] == label and c[2] == chosen and c[1].startswith(name + ":") and true[c]}
        if leaves:
            present[name] = sorted(leaf.split(":", 1)[1] for leaf in leaves)
    cells = []
    for x in [*groups, TOTAL] if groups else []:
        row = chosen if x == TOTAL else x
        for name, shown in present.items():
            for value in [*shown, TOTAL]:
                count, why = block.figure((label, name if value == TOTAL else f"{name}:{value}", row))
                cells.append(CountCell(key=(x, name, value), count=count, suppressed=why, margin=TOTAL in (x, value)))
    return CountTable(
        authority=authority,
        kind=EQUALITY,
        dimensions=("client_group", "dimension", "category"),
        cells=tuple(cells),
        question=question.as_asked(),
    )


# Unmet demand's measures, each a table of its own in the block (never added together).
DEMAND_MEASURES = (WAITING, REFUSED)
# The cell of a group-first family that holds all of a group's people (outcomes: its departures).
_ALL_OF = {OUTCOMES: DEPARTURE}


def _family_of(policy: Policy, kind: str) -> str:
    """The block family a grid kind is answered from under this policy."""
    grid = policy.grid
    if kind == KPI and grid is not None and OUTCOMES in grid.kinds:
        return OUTCOMES
    return GRID_FAMILY[kind]


def _as_kind(
    kind: str, family: str, cells: Sequence[Mapping[tuple[str, ...], int] | None]
) -> tuple[Mapping[tuple[str, ...], int] | None, ...]:
    """A family's published quarters as `kind` counts them (KPI 2: outcomes' departure cells)."""
    if kind == KPI and family == OUTCOMES:
        return tuple(None if c is None else analyses.departures_of(c) for c in cells)
    return tuple(cells)


def _by_measure(
    atoms: Mapping[BlockCell, int], measures: Sequence[str]
) -> tuple[list[str], tuple[Dimension, Dimension]]:
    """The client groups of `atoms` keyed (quarter, group, "measure:leaf"), and the block's two
    dimensions: client group with its total, and every "measure:leaf" with each measure's total
    over its own leaves (a measure with no leaf has none)."""
    groups = sorted({k[1] for k in atoms}, key=int)
    leaves = sorted({k[2] for k in atoms})
    tables = {m: frozenset(v for v in leaves if v.startswith(m + ":")) for m in measures}
    return groups, (
        Dimension("client_group", tuple(groups), {TOTAL: frozenset(groups)}),
        Dimension("measure", tuple(leaves), {m: v for m, v in tables.items() if v}),
    )


def _equal_of(family: str, groups: Sequence[str]) -> list[list[tuple[str, str]]]:
    """The cells of a family's block that count the same people: each outcomes table's total for
    a client group (departure first: its figure, KPI 2's, is the one shown); each equality field's
    total for a client group and movement's all-origins cell (movement's first: its figure shown)."""
    if family == MOVEMENT:
        return [[(TOTAL, y), *((name, y) for name in PROFILE_FIELDS)] for y in [*groups, TOTAL]]
    if family != OUTCOMES:
        return []
    return [[(x, m) for m in OUTCOME_MEASURES] for x in [*groups, TOTAL]]


def _kpi_people(atom: BlockCell) -> BlockCell:
    """An outcomes atom as rounding keys it: a departure atom as KPI 2's own block named it, so
    KPI 2's figures are the ones its block of its own showed."""
    quarter, group, leaf = atom
    measure, value = leaf.split(":", 1)
    return (quarter, group, value) if measure == DEPARTURE else atom


def _kpi_as_outcomes(block: Block) -> Block:
    """KPI 2's block of its own in outcomes' cell names: the earlier edition for outcomes' first."""

    def named(cell: BlockCell) -> BlockCell:
        period, group, departure = cell
        return (period, group, DEPARTURE if departure == TOTAL else f"{DEPARTURE}:{departure}")

    return Block(
        block.year,
        block.periods,
        {named(c): v for c, v in block.released.items()},
        {named(c): n for c, n in block.true.items()},
        block.dimensions,
    )


def _quarter_of(last: str) -> str:
    """The quarter label of a finest key's last part: a month ("2009-05"), or a quarter already
    (the services' quarterly returns)."""
    return last if " Q" in last else movement.period_of(last, "quarter")


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

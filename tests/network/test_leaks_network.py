"""Attacks an analyst with a legitimate role tried on a three-authority network to recover small
domestic-violence counts (issue 15), played through real nodes and a coordinator: repeat movers
filtered to group 14, and the non-local services list bisected on its share threshold.

Each attack is what the analyst did; each assertion is that it no longer recovers a count the
policy protects. The network is built once for the module, with a few more DV clients imported
through the node's own importer where the synthetic records hold too few for the attack.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import grpc
import pytest
from sqlmodel import Session, col, select

from coordinator import network
from coordinator.joint.client import Refused, joint_query
from node.client_records import ClientRecord, PersonSealer, load_person_key
from node.config import load_config
from node.imports.records import import_client_records
from node.ledger import ReleaseRow
from node.store import Service, open_store
from shared import audit
from shared.auth import request_header, sign_message
from shared.kinds.records import HostedService, JointNonLocalServices, JointPlan, RepeatMovers
from shared.kinds.registry import PLAN_KINDS
from shared.pb.cagnet.v1 import node_pb2, node_pb2_grpc
from shared.policy import default_policy
from shared.serde import envelope_to_proto
from shared.vocabulary import DOMESTIC_VIOLENCE
from tests.netutil import THREE, LiveNetwork, make_network, node_channel, running

KENT, MEDWAY, BRIGHTON = THREE
RULE = default_policy().rule("repeat-movers")
DV_THRESHOLD = RULE.threshold_for(DOMESTIC_VIOLENCE)  # 10 under the default policy
FY_START, FY_END = date(2009, 4, 1), date(2010, 3, 31)

_COLUMNS = [
    "record_ref",
    "service_ref",
    "start_date",
    "client_group",
    "age_band",
    "sex",
    "ethnicity",
    "economic_status",
    "referral_source",
    "accommodation_before",
    "previous_authority",
    "surname",
    "first_initial",
    "date_of_birth",
]


def _dv_service(nodedir: Path) -> str:
    engine = open_store(load_config(nodedir).database_url)
    try:
        with Session(engine) as session:
            refs = session.exec(
                select(Service.service_ref)
                .where(col(Service.client_group) == DOMESTIC_VIOLENCE)
                .order_by(col(Service.service_ref))
            ).all()
    finally:
        engine.dispose()
    assert refs, "every synthetic authority commissions a refuge"
    return refs[0]


def _import(nodedir: Path, rows: list[dict[str, str]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    config = load_config(nodedir)
    engine = open_store(config.database_url)
    try:
        import_client_records(engine, path=path, sealer=PersonSealer(load_person_key(config.person_key_path)))
    finally:
        engine.dispose()


def _true_dv_movers(net: LiveNetwork) -> int:
    """From inside the nodes (as only a test may): women with a group-14 record started in the
    financial year at two or more authorities."""
    holders: Counter[bytes] = Counter()
    for nodedir in net.nodedirs.values():
        config = load_config(nodedir)
        sealer = PersonSealer(load_person_key(config.person_key_path))
        engine = open_store(config.database_url)
        with Session(engine) as session:
            sealed = session.exec(
                select(ClientRecord.person)
                .where(col(ClientRecord.client_group) == DOMESTIC_VIOLENCE)
                .where(col(ClientRecord.start_date) >= FY_START)
                .where(col(ClientRecord.start_date) <= FY_END)
            ).all()
        engine.dispose()
        holders.update({sealer.unseal(p) for p in sealed})
    return sum(1 for n in holders.values() if n >= 2)


def _add_dv_movers(net: LiveNetwork, tmp: Path, n: int) -> None:
    """`n` women who left a Kent refuge for a Medway one within the year: a record at each."""
    kent_rows, medway_rows = [], []
    for i in range(n):
        person = {
            "surname": f"Attack{chr(65 + i)}son",
            "first_initial": "J",
            "date_of_birth": (date(1975, 2, 1) + timedelta(days=97 * i)).isoformat(),
            "sex": "female",
        }
        common = {
            "client_group": str(DOMESTIC_VIOLENCE),
            "age_band": "25-34" if i % 2 else "35-44",
            "ethnicity": "A",
            "economic_status": "not-seeking-work",
            "referral_source": "police",
            **person,
        }
        first = FY_START + timedelta(days=20 + 11 * i)
        kent_rows.append(
            {
                **common,
                "record_ref": f"LEAK-K-{i:03d}",
                "service_ref": _dv_service(net.nodedirs[KENT]),
                "start_date": first.isoformat(),
                "accommodation_before": "living-with-family-or-friends",
                "previous_authority": KENT,
            }
        )
        medway_rows.append(
            {
                **common,
                "record_ref": f"LEAK-M-{i:03d}",
                "service_ref": _dv_service(net.nodedirs[MEDWAY]),
                "start_date": (first + timedelta(days=40)).isoformat(),
                "accommodation_before": "refuge",
                "previous_authority": KENT,
            }
        )
    _import(net.nodedirs[KENT], kent_rows, tmp / "kent-dv.csv")
    _import(net.nodedirs[MEDWAY], medway_rows, tmp / "medway-dv.csv")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    net = make_network(tmp_path_factory.mktemp("net"))
    # The attack needs a DV-only count between the general threshold and the DV one.
    already = _true_dv_movers(net)
    assert already < 9
    _add_dv_movers(net, tmp_path_factory.mktemp("csv"), 9 - already)
    assert _true_dv_movers(net) == 9
    return net


@pytest.fixture
def net(built: LiveNetwork) -> Iterable[LiveNetwork]:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as live:
        yield live


# --- leak 1: a total that covers only DV clients -----------------------------------------------


def test_repeat_movers_total_of_dv_only_clients_is_protected_at_the_dv_threshold(net: LiveNetwork) -> None:
    """The analyst asked for repeat movers in group 14 for one financial year: the group-14 cell
    was suppressed, but the total (the same nine women) was released as 10 under the general
    threshold. A total takes the strictest threshold of the groups it covers."""
    bundle, _ = joint_query(
        net.netdir,
        kind="repeat-movers",
        client_groups=[DOMESTIC_VIOLENCE],
        from_date=FY_START.isoformat(),
        to_date=FY_END.isoformat(),
    )
    result = bundle.result
    assert isinstance(result, RepeatMovers)
    assert result.by_client_group[DOMESTIC_VIOLENCE] is None, "nine women: the group cell is suppressed"
    assert result.people is None, "the total is the same nine women and must not be released"
    assert "total: group-threshold" in result.suppressed


# --- leak 2: bisecting the share threshold of non-local services ------------------------------------


Signature = tuple[str, str, str, str, bool]


def _signature(h: HostedService) -> Signature:
    s = h.service
    return (h.authority, s.service_type, s.intake_band, s.share_band, s.designated)


def _band(text: str) -> tuple[int, int | None]:
    low, _, high = text.partition("-")
    return int(low.rstrip("+")), (int(high) if high else None)


def _pinned(ask: Callable[[int], JointNonLocalServices | None]) -> list[tuple[Signature, list[int]]]:
    """The analyst's attack: ask for every share threshold 1..100 (a refused one tells nothing),
    find where each DV service drops out of the list (its exact share, to the percent), and set
    that against its intake band: the non-local counts it can still be. Returns the services whose
    non-local count is narrowed to three values or fewer, one of them a small count."""
    listed: dict[int, Counter[Signature]] = {}
    for share in range(1, 101):
        answer = ask(share)
        if answer is not None:
            listed[share] = Counter(
                _signature(h) for h in answer.services if h.service.client_group == DOMESTIC_VIOLENCE
            )
    pinned = []
    asked = sorted(listed)
    for below, above in pairwise(asked):
        dropped = listed[below] - listed[above]
        for signature in dropped.elements():
            low_share, high_share = below, above  # share in [below, above) percent
            intake_low, intake_high = _band(signature[2])
            high = intake_high if intake_high is not None else 4 * intake_low
            candidates = sorted(
                {
                    non_local
                    for known in range(DV_THRESHOLD + 1, high + 1)  # a listed service's known intake is above it
                    for non_local in range(known + 1)
                    if low_share * known <= 100 * non_local < high_share * known
                }
            )
            if candidates and len(candidates) <= 3 and candidates[0] <= DV_THRESHOLD:
                pinned.append((signature, candidates))
    return pinned


def test_non_local_services_share_cannot_be_bisected_to_pin_a_dv_count(net: LiveNetwork) -> None:
    """The analyst asked for the non-local services list with every `--min-share` from 1 to 100:
    where a DV service leaves the list is its exact share, which with its intake band left three
    or fewer possible non-local counts, some of them 1 or 2. Shares are now asked and released
    on a fixed grid only, and a free threshold is refused."""
    quarter = {"from_date": "2009-07-01", "to_date": "2009-09-30"}

    def ask(share: int) -> JointNonLocalServices | None:
        try:
            bundle, _ = joint_query(
                net.netdir,
                kind="non-local-services",
                client_groups=[DOMESTIC_VIOLENCE],
                min_share_percent=share,
                **quarter,
            )
        except Refused as refused:
            assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "min_share_percent" in refused.public_message
            return None
        assert isinstance(bundle.result, JointNonLocalServices)
        return bundle.result

    assert _pinned(ask) == []


# --- refusals name the rule the nodes applied ------------------------------------------------------


def test_a_refusal_names_differencing_and_no_figures(net: LiveNetwork) -> None:
    """A quarter, then the same quarter and one more day: at every node the day adds a handful of
    people, so each node refuses as differencing. The analyst is told that, at the top level,
    rather than "minimum authorities", and the message holds no figure."""
    quarter = {"from_date": "2008-07-01", "to_date": "2008-09-30", "period": "quarter"}
    joint_query(net.netdir, kind="movement", **quarter)
    with pytest.raises(Refused) as refused:
        joint_query(net.netdir, kind="movement", **{**quarter, "to_date": "2008-10-01"})
    message = refused.value.public_message
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert message.startswith("differencing:"), message
    assert all(code in message for code in THREE)
    # Its only numbers are authority codes and how many authorities answered of how many needed.
    assert message.endswith("so too few answered: 0 of 3 authorities answered and the figure needs at least 1")
    counted = message.removesuffix("0 of 3 authorities answered and the figure needs at least 1")
    assert not re.search(r"\d", re.sub(r"E\d{8}", "", counted)), message


# --- "would you answer?" -----------------------------------------------------------------------------


def _ledger_rows(net: LiveNetwork) -> dict[str, int]:
    counts = {}
    for code, nodedir in net.nodedirs.items():
        engine = open_store(load_config(nodedir).database_url)
        with Session(engine) as session:
            counts[code] = len(session.exec(select(ReleaseRow.id)).all())
        engine.dispose()
    return counts


def test_a_plan_says_what_would_be_answered_without_releasing_or_recording(net: LiveNetwork) -> None:
    """After the financial year, a plan over it says which standard questions the nodes would
    still answer and why not the others; it holds no figure, leaves every ledger as it was, is
    audited at each node, and agrees with what asking then does."""
    year = {"from_date": "2008-04-01", "to_date": "2009-03-31"}
    joint_query(net.netdir, kind="kpi", period="year", **year)
    before = _ledger_rows(net)
    # A generous node deadline: the test is about what a plan releases, not how fast it is.
    bundle, _ = joint_query(net.netdir, kind="plan", client_groups=[DOMESTIC_VIOLENCE], node_deadline_ms=20000, **year)
    plan = bundle.result
    assert isinstance(plan, JointPlan) and plan.authorities == tuple(sorted(THREE))
    assert _ledger_rows(net) == before
    rows = {(r.kind, r.period, r.from_date, r.client_groups): r for r in plan.rows}
    # Every planned kind, the year and its quarters, all groups and group 14.
    assert len(rows) == len(plan.rows) == len(PLAN_KINDS) * 5 * 2
    asked_again = rows[("kpi", "year", "2008-04-01", ())]
    assert asked_again.answered and not asked_again.refused_at  # the same question gets the same answer
    refused = [r for r in plan.rows if not r.answered]
    assert refused, "a quarter of a year already released differs from it by a few people somewhere"
    for row in plan.rows:
        for rule in row.refused_at.values():
            assert rule.split(":")[0] in {"differencing", "query-set restriction"}
            assert not re.search(r"\d", rule), rule
    # What the plan says is what asking does.
    first_refused = refused[0]
    with pytest.raises(Refused) as refusal:
        joint_query(
            net.netdir,
            kind=first_refused.kind,
            from_date=first_refused.from_date,
            to_date=first_refused.to_date,
            period=first_refused.period,
            client_groups=list(first_refused.client_groups),
        )
    assert refusal.value.public_message.split(":")[0] == next(iter(first_refused.refused_at.values())).split(":")[0]
    engine = open_store(load_config(net.nodedirs[KENT]).database_url)
    try:
        entries = audit.entries(engine)
    finally:
        engine.dispose()
    planned = [e for e in entries if e.method == "/cagnet.v1.Node/Plan"]
    assert planned and planned[-1].decision == "released" and planned[-1].principal == "cag-chair"


def test_a_plan_is_refused_to_the_coordinator_on_its_own_account(net: LiveNetwork) -> None:
    coordinator = network.coordinator_identity(net.netdir)
    header = request_header(coordinator, audience=KENT, method="/cagnet.v1.Node/Plan")
    request = sign_message(
        node_pb2.RecordsQuery(header=header, from_date="2008-04-01", to_date="2009-03-31"), coordinator
    )
    with node_channel(net, coordinator, KENT) as channel, pytest.raises(grpc.RpcError) as caught:
        node_pb2_grpc.NodeStub(channel).Plan(envelope_to_proto(request), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

"""Spend's release rules on their own: contract values by the money rules (a cell one provider
dominates, or with too few contracts, is withheld, and so is anything that would give it away),
new clients like every count (small ones suppressed, domestic violence at its stricter threshold,
others rounded), capacity exact; and the joint figures built only from whole parts."""

from __future__ import annotations

from node.answers.supply import RawCell, RawSupply
from node.spend import describe_spend
from shared.kinds.spend import Spend, combine_spend
from shared.models import RecordsQuestion
from shared.policy import default_policy

RULE = default_policy().rule("spend")
SECRET = b"k" * 32
HOSTEL, FLOATING = "accommodation-based", "floating-support"


def _release(money: dict[tuple[int, str, str], dict[str, float]], clients: dict[tuple[str, str, str], int]) -> Spend:
    supply = RawSupply(
        "E10000016",
        1_400_000,
        False,
        (
            RawCell(7, HOSTEL, "", "bed-spaces", 6, 120),
            RawCell(7, FLOATING, "", "households", 4, 300),
            RawCell(14, HOSTEL, "", "bed-spaces", 3, 40),
        ),
    )
    return describe_spend(
        RULE,
        authority="E10000016",
        secret=SECRET,
        supply=supply,
        money=money,
        clients=clients,
        groups=(),
        question=RecordsQuestion(from_date="2009-04-01", to_date="2010-03-31"),
    )


def test_money_is_released_only_where_no_provider_dominates() -> None:
    even = {f"p{i}": 200_000.0 for i in range(4)}
    dominated = {"big": 900_000.0, "small1": 20_000.0, "small2": 20_000.0, "small3": 20_000.0}
    spread = {f"f{i}": 150_000.0 for i in range(5)}
    released = _release(
        {(7, HOSTEL, ""): even, (7, FLOATING, ""): spread, (14, HOSTEL, ""): dominated},
        {("7", HOSTEL, "2009-05"): 60, ("7", FLOATING, "2009-06"): 41, ("14", HOSTEL, "2009-07"): 9},
    )
    cells = {(c.client_group, c.service_type): c for c in released.cells}
    refuge, total, homeless = cells[(14, HOSTEL)], cells[(0, "")], cells[(7, "")]
    assert refuge.annual_value is None and "annual_value: dominance" in refuge.suppressed  # one provider: 90%+
    assert refuge.clients is None  # nine, within domestic violence's threshold of 10
    assert cells[(14, "")].annual_value is None and cells[(14, "")].clients is None
    # Nor can it be worked out as the total less the other groups.
    assert total.annual_value is None or homeless.annual_value is None
    assert total.clients is None or homeless.clients is None
    truths = {(7, HOSTEL): 800_000, (7, FLOATING): 750_000}
    for key, value in truths.items():
        assert cells[key].annual_value in (None, value)  # money is to the pound or withheld
    assert any(cells[key].annual_value == value for key, value in truths.items())
    for key, true in {(7, HOSTEL): 60, (7, FLOATING): 41}.items():
        assert cells[key].clients is None or abs(cells[key].clients - true) < 5  # type: ignore[operator]
    assert refuge.units == 40 and total.units == 460  # capacity, exact


def test_joint_ratios_come_only_from_whole_parts() -> None:
    even = {f"p{i}": 200_000.0 for i in range(4)}
    spread = {f"f{i}": 150_000.0 for i in range(5)}
    dominated = {"big": 900_000.0, "small1": 20_000.0, "small2": 20_000.0, "small3": 20_000.0}
    clients = {("7", HOSTEL, "2009-05"): 60, ("7", FLOATING, "2009-06"): 45, ("14", HOSTEL, "2009-07"): 30}
    whole = _release({(7, HOSTEL, ""): even, (7, FLOATING, ""): spread}, clients)
    rows = {(r.authority, r.client_group, r.service_type): r for r in combine_spend([whole]).rows}
    hostel = rows[("E10000016", 7, HOSTEL)]
    assert hostel.per_unit_week == round(800_000 / (120 * 52), 2)
    assert hostel.per_client == round(800_000 / 60, 2) and not hostel.withheld
    assert rows[("", 7, HOSTEL)].per_client == hostel.per_client  # one authority: the CAG figure is its own
    partial = _release({(7, HOSTEL, ""): even, (7, FLOATING, ""): spread, (14, HOSTEL, ""): dominated}, clients)
    joint = combine_spend([whole.model_copy(update={"authority": "E06000035"}), partial])
    for row in joint.rows:
        parts_whole = row.annual_value is not None and row.clients is not None
        assert (row.per_client is not None) == (parts_whole and bool(row.clients)), row
        assert bool(row.withheld) == (not parts_whole), row
    refuge = next(r for r in joint.rows if (r.authority, r.client_group, r.service_type) == ("", 14, HOSTEL))
    assert refuge.annual_value is None and refuge.withheld == "withheld at E10000016"

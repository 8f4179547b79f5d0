"""The console's question forms come from the kinds registry: each kind's options are the fields
of its node message that a principal signs, a new kind gets a form with no page code, and a bad
value is refused naming its field before anything is asked."""

from __future__ import annotations

import pytest

from cagnet.console.forms import askable_kinds, fields_of, parse_question, plan_question
from shared.errors import InvalidRequest
from shared.kinds.registry import KINDS, PLAN, JointKind
from shared.pb.cagnet.v1 import coordinator_pb2, node_pb2

SIGNED_OPTIONS = set(coordinator_pb2.JointQueryRequest.DESCRIPTOR.fields_by_name) - {
    "header",
    "kind",
    "node_deadline_ms",
    "mandate",
    "slot",
}


def test_every_kind_but_the_plan_can_be_asked_with_options_it_signs() -> None:
    kinds = [spec.kind for spec in askable_kinds()]
    assert kinds == [k for k in KINDS if k != PLAN]
    for spec in askable_kinds():
        names = {f.name for f in fields_of(spec)}
        assert names <= SIGNED_OPTIONS, spec.kind
        assert not names & set(spec.filled_in), spec.kind  # the coordinator's part of a round is not asked
    assert {f.name for f in fields_of(KINDS["supply-map"])} == {"by_district", "client_groups", "as_at"}
    assert {f.name for f in fields_of(KINDS["vfm"])} == {"client_groups", "service_type"}
    assert fields_of(KINDS["common-providers"]) == []
    widgets = {f.name: f.widget for f in fields_of(KINDS["movement"])}
    assert widgets["from_date"] == "date" and widgets["client_groups"] == "multiselect"
    assert widgets["period"] == "select"


def test_a_kind_added_to_the_registry_gets_its_form(monkeypatch: pytest.MonkeyPatch) -> None:
    added = JointKind("homelessness-acceptances", "Acceptances", node_pb2.RecordsQuery, node_pb2.CountsResponse)
    monkeypatch.setitem(KINDS, added.kind, added)
    assert added in askable_kinds()
    assert [f.name for f in fields_of(added)] == [
        "from_date",
        "to_date",
        "period",
        "client_groups",
        "min_share_percent",
    ]


def test_a_submitted_form_becomes_the_question_the_cli_would_sign() -> None:
    movement = KINDS["movement"]
    question = parse_question(
        movement,
        {"from_date": "2009-04-01", "to_date": "2010-03-31", "period": "quarter"},
        {"client_groups": ["7", "3"]},
    )
    assert question == {
        "from_date": "2009-04-01",
        "to_date": "2010-03-31",
        "period": "quarter",
        "client_groups": [3, 7],
        "min_share_percent": 0,  # as `cagnet query movement` sends it
    }
    assert parse_question(KINDS["supply-map"], {"by_district": "on"}, {})["by_district"] is True
    assert parse_question(KINDS["supply-map"], {}, {})["by_district"] is False


@pytest.mark.parametrize(
    ("form", "lists", "named"),
    [
        ({"from_date": "1 April 2009"}, {}, "from date"),
        ({"period": "decade"}, {}, "period"),
        ({}, {"client_groups": ["older people"]}, "client groups"),
        ({"min_share_percent": "half"}, {}, "min share percent"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(form: dict[str, str], lists: dict[str, list[str]], named: str) -> None:
    with pytest.raises(InvalidRequest, match=named):
        parse_question(KINDS["non-local-services"], form, lists)


def test_a_plan_needs_both_days_and_asks_no_grain() -> None:
    with pytest.raises(InvalidRequest, match="first and last day"):
        plan_question({"from_date": "2009-04-01"}, {})
    question = plan_question({"from_date": "2009-04-01", "to_date": "2010-03-31"}, {"client_groups": ["14"]})
    assert question == {"from_date": "2009-04-01", "to_date": "2010-03-31", "client_groups": [14]}

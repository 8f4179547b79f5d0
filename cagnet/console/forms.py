"""The console's question forms, built from the kinds registry: a kind's options are the fields
of the message its nodes are asked with that a principal's `JointQueryRequest` also carries
(dates, period, client groups, share, service type, day), less what the coordinator fills in.
A kind added to `shared/kinds/registry.py` gets its form with no page code; a field's widget
comes from its protobuf type, and a list of choices from the vocabulary a field of that name
takes (client groups, service types, periods, the share grid).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from shared import vocabulary
from shared.disclosure import SHARE_GRID
from shared.errors import InvalidRequest
from shared.kinds.equality import DIMENSION_NAMES
from shared.kinds.registry import DEFAULT_MIN_SHARE, KINDS, PLAN, JointKind
from shared.pb.cagnet.v1 import coordinator_pb2

__all__ = ["Field", "askable_kinds", "fields_of", "parse_question"]

# What the principal signs in a joint query besides the kind; the header, the deadline and the
# feed's mandate and slot are not questions a person asks.
_QUESTION_FIELDS = {
    f.name: f
    for f in coordinator_pb2.JointQueryRequest.DESCRIPTOR.fields
    if f.name not in ("header", "kind", "node_deadline_ms", "mandate", "slot")
}

# Choices for a field of this name, whichever kind asks it: (value, label).
_CHOICES: dict[str, list[tuple[str, str]]] = {
    "client_groups": [(str(g), f"{g} {name}") for g, name in sorted(vocabulary.CLIENT_GROUPS.items())],
    "service_type": [("", "every service type")] + [(t.value, t.value) for t in vocabulary.ServiceType],
    "period": [("all", "the whole period"), ("year", "each financial year"), ("quarter", "each financial quarter")],
    # 0 is what the command line sends unless --min-share is given: the nodes read it as 50%.
    "min_share_percent": [("0", f"at least {DEFAULT_MIN_SHARE}% from outside (the default)")]
    + [(str(v), f"at least {v}% from outside") for v in SHARE_GRID],
    "cross_tab": list(DIMENSION_NAMES.items()),
}
_DEFAULTS = {"min_share_percent": "0", "period": "all"}
_HELP = {
    "from_date": "first day of the period (empty: all records)",
    "to_date": "last day of the period (empty: all records)",
    "as_at": "the services running on this day, as they stood (empty: today)",
    "by_district": "break down by district as well",
    "client_groups": "only these SP client groups (none chosen: every group)",
    "min_share_percent": "non-local services only: the smallest share of a service's intake from outside its authority",
    "period": "the whole period, or a column for each financial year or quarter in it",
    "cross_tab": "equality only: two fields to cross-tabulate (none chosen: the profile)",
}


@dataclass(frozen=True)
class Field:
    """One input of a question form."""

    name: str
    label: str
    widget: str  # "checkbox", "date", "select", "multiselect", "number", "text"
    choices: tuple[tuple[str, str], ...] = ()
    default: str = ""
    help: str = ""


def _widget(name: str, descriptor: FieldDescriptor) -> str:
    repeated = descriptor.is_repeated
    if name in _CHOICES:
        return "multiselect" if repeated else "select"
    if descriptor.type == FieldDescriptor.TYPE_BOOL:
        return "checkbox"
    if name.endswith("_date") or name == "as_at":
        return "date"
    if descriptor.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        return "text" if repeated else "number"
    return "text"


def fields_of(spec: JointKind) -> list[Field]:
    """The options of a kind's question, in the order its node message declares them."""
    message = spec.first_request_cls or spec.request_cls
    fields = []
    for descriptor in message.DESCRIPTOR.fields:
        name = descriptor.name
        if name not in _QUESTION_FIELDS or name in spec.filled_in:
            continue
        fields.append(
            Field(
                name=name,
                label=name.replace("_", " "),
                widget=_widget(name, _QUESTION_FIELDS[name]),
                choices=tuple(_CHOICES.get(name, ())),
                default=_DEFAULTS.get(name, ""),
                help=_HELP.get(name, ""),
            )
        )
    return fields


def askable_kinds() -> list[JointKind]:
    """Every joint query a person may ask, in the registry's order (the plan has its own page)."""
    return [spec for spec in KINDS.values() if spec.kind != PLAN]


def parse_question(spec: JointKind, form: Mapping[str, Any], lists: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """A submitted form as keyword arguments of `CoordinatorClient.query`; a bad value is refused
    naming its field, before anything is asked."""
    question: dict[str, Any] = {}
    for field in fields_of(spec):
        descriptor = _QUESTION_FIELDS[field.name]
        raw = form.get(field.name) or field.default
        if field.widget == "checkbox":
            question[field.name] = raw in ("on", "true", "1")
        elif field.widget in ("multiselect", "text") and descriptor.is_repeated:
            values = [v for item in lists.get(field.name, ()) for v in str(item).replace(",", " ").split()]
            if descriptor.type == FieldDescriptor.TYPE_STRING:
                # A list of words (an equality cross-tab's fields): each one of the field's choices.
                allowed = {v for v, _ in field.choices}
                if allowed and not set(values) <= allowed:
                    raise InvalidRequest(f"{field.label}: each one of {', '.join(sorted(allowed))}")
                question[field.name] = sorted(set(values))
                continue
            try:
                question[field.name] = sorted({int(v) for v in values})
            except ValueError:
                raise InvalidRequest(f"{field.label}: whole numbers only") from None
        elif field.widget == "date":
            if raw:
                try:
                    date.fromisoformat(str(raw))
                except ValueError:
                    raise InvalidRequest(f"{field.label}: not a day in the form YYYY-MM-DD: {raw!r}") from None
            question[field.name] = str(raw)
        elif descriptor.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            try:
                question[field.name] = int(raw or 0)
            except ValueError:
                raise InvalidRequest(f"{field.label}: a whole number, not {raw!r}") from None
        else:
            value = str(raw)
            allowed = {v for v, _ in field.choices}
            if allowed and value not in allowed:
                raise InvalidRequest(f"{field.label}: one of {', '.join(sorted(a for a in allowed if a))}")
            question[field.name] = value
    return question


def plan_question(form: Mapping[str, Any], lists: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The plan's question: a span of days (required) and client groups to plan alone."""
    question = parse_question(KINDS[PLAN], form, lists)
    if not question.get("from_date") or not question.get("to_date"):
        raise InvalidRequest("a plan needs the first and last day of the span")
    question.pop("period", None)  # the plan covers each financial year and quarter in the span
    question.pop("min_share_percent", None)
    return question

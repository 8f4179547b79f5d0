"""Spend per unit and per client: each authority's contract value a year, capacity and new clients
by client group and service type, as its node released them, and the combine into per-authority
and CAG figures (a pure function of the nodes' answers, so anyone holding a bundle recomputes it).
A ratio is given only when both of its parts were released whole; a CAG figure only when every
authority's part was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import places
from shared.models import RecordsQuestion
from shared.pb.cagnet.v1 import envelope_pb2, node_pb2

__all__ = ["JointSpend", "Spend", "SpendCell", "SpendRow", "combine_spend", "spend_from_proto", "spend_to_proto"]

WEEKS = 52


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpendCell(_Model):
    """One client group x service type at one authority (0 / "" in a total over it)."""

    client_group: int = Field(ge=0, le=21)
    service_type: str = ""
    units: int = Field(ge=0, default=0)
    annual_value: int | None = None  # None: withheld by the money rules
    clients: int | None = None  # None: suppressed
    suppressed: tuple[str, ...] = ()


class Spend(_Model):
    """One node's answer."""

    authority: str
    population: int
    cells: tuple[SpendCell, ...] = ()
    client_groups: tuple[int, ...] = ()
    question: RecordsQuestion = RecordsQuestion()


def spend_to_proto(released: Spend, header: envelope_pb2.ResponseHeader) -> node_pb2.SpendResponse:
    return node_pb2.SpendResponse(
        header=header,
        authority=released.authority,
        population=released.population,
        cells=[node_pb2.SpendCell(**c.model_dump()) for c in released.cells],
        from_date=released.question.from_date,
        to_date=released.question.to_date,
        client_groups=released.client_groups,
    )


def spend_from_proto(message: node_pb2.SpendResponse) -> Spend:
    return Spend(
        authority=message.authority,
        population=message.population,
        cells=tuple(
            SpendCell(
                client_group=c.client_group,
                service_type=c.service_type,
                units=c.units,
                annual_value=c.annual_value if c.HasField("annual_value") else None,
                clients=c.clients if c.HasField("clients") else None,
                suppressed=tuple(c.suppressed),
            )
            for c in message.cells
        ),
        client_groups=tuple(message.client_groups),
        question=RecordsQuestion(from_date=message.from_date, to_date=message.to_date),
    )


class SpendRow(_Model):
    """One client group x service type (0 / "" for a total) at one authority, or across the CAG
    (authority "")."""

    authority: str
    client_group: int
    service_type: str
    units: int
    annual_value: int | None
    clients: int | None
    per_unit_week: float | None  # £ a unit a week
    per_client: float | None  # £ a new client in the period
    withheld: str = ""  # why a figure is missing


class JointSpend(_Model):
    kind: Literal["spend"] = "spend"
    authorities: tuple[str, ...]
    names: dict[str, str]
    populations: dict[str, int]
    period: str = ""
    rows: tuple[SpendRow, ...]  # each authority's, then the CAG's (authority "")


def _ratio(value: int | None, base: int | None) -> float | None:
    return round(value / base, 2) if value is not None and base else None


def _row(authority: str, group: int, stype: str, cells: Sequence[SpendCell], why: str = "") -> SpendRow:
    values = [c.annual_value for c in cells]
    clients = [c.clients for c in cells]
    units = sum(c.units for c in cells)
    value = None if any(v is None for v in values) else sum(v for v in values if v is not None)
    count = None if any(n is None for n in clients) else sum(n for n in clients if n is not None)
    reasons = [why] if why else sorted({s for c in cells for s in c.suppressed})
    return SpendRow(
        authority=authority,
        client_group=group,
        service_type=stype,
        units=units,
        annual_value=value,
        clients=count,
        per_unit_week=_ratio(value, units * WEEKS),
        per_client=_ratio(value, count),
        withheld="; ".join(reasons) if value is None or count is None else "",
    )


def _name(code: str) -> str:
    try:
        return places.place_name(code)
    except KeyError:
        return code


def combine_spend(answers: Sequence[Spend], *, period: str = "") -> JointSpend:
    answers = sorted(answers, key=lambda a: a.authority)
    rows = [_row(a.authority, c.client_group, c.service_type, [c]) for a in answers for c in a.cells]
    by_key: dict[tuple[int, str], list[tuple[str, SpendCell]]] = {}
    for a in answers:
        for c in a.cells:
            by_key.setdefault((c.client_group, c.service_type), []).append((a.authority, c))
    for (group, stype), held in sorted(by_key.items()):
        short = [code for code, c in held if c.annual_value is None or c.clients is None]
        why = f"withheld at {', '.join(short)}" if short else ""
        rows.append(_row("", group, stype, [c for _code, c in held], why))
    return JointSpend(
        authorities=tuple(a.authority for a in answers),
        names={a.authority: _name(a.authority) for a in answers},
        populations={a.authority: a.population for a in answers},
        period=period,
        rows=tuple(rows),
    )

"""The one place protobuf messages become domain models and back (`x_to_proto` / `x_from_proto`).
Protobuf types go no further than the servicers and the clients that call them.
"""

from __future__ import annotations

import functools

from shared import dsse
from shared.governance import Filed
from shared.models import (
    CountCell,
    CountTable,
    NodeDescription,
    NodePlan,
    NonLocalService,
    NonLocalServices,
    PlannedQuestion,
    RecordsQuestion,
    SupplyCell,
    SupplyMap,
)
from shared.pb.cagnet.v1 import envelope_pb2, governance_pb2, node_pb2


def envelope_to_proto(envelope: dsse.Envelope) -> envelope_pb2.Envelope:
    return envelope_pb2.Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=[envelope_pb2.Signature(keyid=s.keyid, sig=s.sig) for s in envelope.signatures],
    )


def envelope_from_proto(message: envelope_pb2.Envelope) -> dsse.Envelope:
    return dsse.Envelope(
        payload_type=message.payload_type,
        payload=message.payload,
        signatures=tuple(dsse.Signature(keyid=s.keyid, sig=s.sig) for s in message.signatures),
    )


def filed_to_proto(filed: Filed) -> governance_pb2.OpenProposal:
    return governance_pb2.OpenProposal(
        id=filed.id,
        proposal=envelope_to_proto(filed.signed),
        candidate=envelope_to_proto(filed.envelope),
        approvals=filed.approvals,
        needed=filed.needed,
        published=filed.published,
        certificate=filed.certificate,
        join_request=envelope_to_proto(filed.join_request) if filed.join_request is not None else None,
        sponsor=filed.sponsor,
    )


def filed_from_proto(message: governance_pb2.OpenProposal) -> Filed:
    """A proposal as the coordinator reports it: nothing in it is verified yet (see governance.review)."""
    return Filed(
        id=message.id,
        signed=envelope_from_proto(message.proposal),
        envelope=envelope_from_proto(message.candidate),
        approvals=tuple(message.approvals),
        needed=message.needed,
        published=message.published,
        certificate=bytes(message.certificate),
        join_request=envelope_from_proto(message.join_request) if message.HasField("join_request") else None,
        sponsor=message.sponsor,
    )


def supply_cell_to_proto(cell: SupplyCell) -> node_pb2.SupplyCell:
    # Absent optional fields are how a suppressed figure travels; None must not become 0, and a
    # None passed to a message constructor leaves the field unset (no model_dump: this runs per cell).
    return node_pb2.SupplyCell(
        client_group=cell.client_group,
        service_type=cell.service_type,
        district=cell.district,
        unit_type=cell.unit_type,
        services=cell.services,
        units=cell.units,
        designated_services=cell.designated_services,
        designated_units=cell.designated_units,
        contracted_hours=cell.contracted_hours,
        annual_value=cell.annual_value,
        suppressed=cell.suppressed,
    )


def supply_cell_from_proto(c: node_pb2.SupplyCell) -> SupplyCell:
    return SupplyCell.model_validate(_supply_cell_fields(c))


def _supply_cell_fields(c: node_pb2.SupplyCell) -> dict[str, object]:
    return {
        "client_group": c.client_group,
        "service_type": c.service_type,
        "district": c.district,
        "unit_type": c.unit_type,
        "services": c.services if c.HasField("services") else None,
        "units": c.units,
        "designated_services": c.designated_services if c.HasField("designated_services") else None,
        "designated_units": c.designated_units,
        "contracted_hours": c.contracted_hours,
        "annual_value": c.annual_value if c.HasField("annual_value") else None,
        "suppressed": tuple(c.suppressed),
    }


def supply_map_to_proto(supply: SupplyMap, header: envelope_pb2.ResponseHeader) -> node_pb2.SupplyMapResponse:
    return node_pb2.SupplyMapResponse(
        header=header,
        authority=supply.authority,
        population=supply.population,
        by_district=supply.by_district,
        client_groups=list(supply.client_groups),
        cells=[supply_cell_to_proto(c) for c in supply.cells],
        client_group_totals=[supply_cell_to_proto(c) for c in supply.client_group_totals],
        total=supply_cell_to_proto(supply.total),
    )


def supply_map_from_proto(message: node_pb2.SupplyMapResponse) -> SupplyMap:
    return supply_map_from_body(supply_map_body(message))


def supply_map_body(message: node_pb2.SupplyMapResponse) -> bytes:
    """The map alone, as bytes: everything but the header and the receipt, which are new with every
    answer while the figures are not (a node repeats its answer while its records stand, and the
    coordinator and the client each see it every query)."""
    body = node_pb2.SupplyMapResponse()
    body.CopyFrom(message)
    body.ClearField("header")
    body.ClearField("receipt")
    return body.SerializeToString(deterministic=True)


# Each distinct map is validated once, keyed on its exact bytes (immutable: the same bytes are the
# same map); room for every upper-tier authority's map in a network of all of them.
@functools.lru_cache(maxsize=1024)
def supply_map_from_body(body: bytes) -> SupplyMap:
    message = node_pb2.SupplyMapResponse.FromString(body)
    # One validation of the whole map (pydantic validates the nested cells in one pass), not one
    # model constructor call per cell.
    return SupplyMap.model_validate(
        {
            "authority": message.authority,
            "population": message.population,
            "by_district": message.by_district,
            "client_groups": tuple(message.client_groups),
            "cells": [_supply_cell_fields(c) for c in message.cells],
            "client_group_totals": [_supply_cell_fields(c) for c in message.client_group_totals],
            "total": _supply_cell_fields(message.total),
        }
    )


def description_to_proto(
    description: NodeDescription, header: envelope_pb2.ResponseHeader
) -> node_pb2.DescribeResponse:
    return node_pb2.DescribeResponse(
        header=header,
        authority=description.authority,
        name=description.name,
        population=description.population,
        districts=[node_pb2.District(code=c, name=n) for c, n in description.districts],
        capabilities=list(description.capabilities),
        key_fingerprint=description.key_fingerprint,
        software_version=description.software_version,
    )


def description_from_proto(message: node_pb2.DescribeResponse) -> NodeDescription:
    return NodeDescription(
        authority=message.authority,
        name=message.name,
        population=message.population,
        districts=tuple((d.code, d.name) for d in message.districts),
        capabilities=tuple(message.capabilities),
        key_fingerprint=message.key_fingerprint,
        software_version=message.software_version,
    )


def count_table_to_proto(table: CountTable, header: envelope_pb2.ResponseHeader) -> node_pb2.CountsResponse:
    q = table.question
    return node_pb2.CountsResponse(
        header=header,
        authority=table.authority,
        kind=table.kind,
        dimensions=list(table.dimensions),
        cells=[
            node_pb2.CountCell(key=list(c.key), count=c.count, suppressed=c.suppressed, margin=c.margin)
            if c.count is not None
            else node_pb2.CountCell(key=list(c.key), suppressed=c.suppressed, margin=c.margin)
            for c in table.cells
        ],
        from_date=q.from_date,
        to_date=q.to_date,
        period=q.period,
        client_groups=list(q.client_groups),
    )


def count_table_from_proto(message: node_pb2.CountsResponse) -> CountTable:
    return CountTable(
        authority=message.authority,
        kind=message.kind,
        dimensions=tuple(message.dimensions),
        cells=tuple(
            CountCell(
                key=tuple(c.key),
                count=c.count if c.HasField("count") else None,
                suppressed=c.suppressed,
                margin=c.margin,
            )
            for c in message.cells
        ),
        question=RecordsQuestion(
            from_date=message.from_date,
            to_date=message.to_date,
            period=message.period,
            client_groups=tuple(message.client_groups),
        ),
    )


def non_local_services_to_proto(
    released: NonLocalServices, header: envelope_pb2.ResponseHeader
) -> node_pb2.NonLocalServicesResponse:
    return node_pb2.NonLocalServicesResponse(
        header=header,
        authority=released.authority,
        services=[node_pb2.NonLocalService(**s.model_dump()) for s in released.services],
        too_small=released.too_small,
        from_date=released.question.from_date,
        to_date=released.question.to_date,
        min_share_percent=released.question.min_share_percent,
    )


def non_local_services_from_proto(message: node_pb2.NonLocalServicesResponse) -> NonLocalServices:
    return NonLocalServices(
        authority=message.authority,
        services=tuple(
            NonLocalService(
                provider=s.provider,
                name=s.name,
                service_type=s.service_type,
                client_group=s.client_group,
                district=s.district,
                designated=s.designated,
                intake_band=s.intake_band,
                share_band=s.share_band,
            )
            for s in message.services
        ),
        too_small=message.too_small,
        question=RecordsQuestion(
            from_date=message.from_date, to_date=message.to_date, min_share_percent=message.min_share_percent
        ),
    )


def plan_to_proto(plan: NodePlan, header: envelope_pb2.ResponseHeader) -> node_pb2.PlanResponse:
    return node_pb2.PlanResponse(
        header=header,
        authority=plan.authority,
        questions=[node_pb2.PlannedQuestion(**q.model_dump()) for q in plan.questions],
    )


def plan_from_proto(message: node_pb2.PlanResponse) -> NodePlan:
    return NodePlan(
        authority=message.authority,
        questions=tuple(
            PlannedQuestion(
                kind=q.kind,
                from_date=q.from_date,
                to_date=q.to_date,
                period=q.period,
                client_groups=tuple(q.client_groups),
                refused=q.refused,
                min_authorities=q.min_authorities,
            )
            for q in message.questions
        ),
    )


def records_question_from_proto(message: node_pb2.RecordsQuery) -> RecordsQuestion:
    """The question as asked (unchecked: the node checks dates, period and groups)."""
    return RecordsQuestion(
        from_date=message.from_date,
        to_date=message.to_date,
        period=message.period or "year",
        client_groups=tuple(sorted(set(message.client_groups))),
        min_share_percent=message.min_share_percent,
    )

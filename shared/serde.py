"""The one place protobuf messages become domain models and back (`x_to_proto` / `x_from_proto`).
Protobuf types go no further than the servicers and the clients that call them.
"""

from __future__ import annotations

from shared import dsse
from shared.models import NodeDescription, SupplyCell, SupplyMap
from shared.pb.cagnet.v1 import envelope_pb2, node_pb2


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


def supply_cell_to_proto(cell: SupplyCell) -> node_pb2.SupplyCell:
    # Absent optional fields are how a suppressed figure travels; None must not become 0.
    return node_pb2.SupplyCell(**{k: v for k, v in cell.model_dump().items() if v is not None})


def supply_cell_from_proto(c: node_pb2.SupplyCell) -> SupplyCell:
    return SupplyCell(
        client_group=c.client_group,
        service_type=c.service_type,
        district=c.district,
        unit_type=c.unit_type,
        services=c.services if c.HasField("services") else None,
        units=c.units,
        designated_services=c.designated_services if c.HasField("designated_services") else None,
        designated_units=c.designated_units,
        contracted_hours=c.contracted_hours,
        annual_value=c.annual_value if c.HasField("annual_value") else None,
        suppressed=tuple(c.suppressed),
    )


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
    return SupplyMap(
        authority=message.authority,
        population=message.population,
        by_district=message.by_district,
        client_groups=tuple(message.client_groups),
        cells=tuple(supply_cell_from_proto(c) for c in message.cells),
        client_group_totals=tuple(supply_cell_from_proto(c) for c in message.client_group_totals),
        total=supply_cell_from_proto(message.total),
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

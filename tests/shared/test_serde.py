"""The protobuf conversions: a suppressed figure (None) travels as an absent field, never as 0."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.models import SupplyCell, SupplyMap
from shared.pb.cagnet.v1 import envelope_pb2
from shared.serde import supply_cell_to_proto, supply_map_from_proto, supply_map_to_proto


def _cell(**kw: object) -> SupplyCell:
    base: dict[str, object] = {
        "client_group": 3,
        "service_type": "accommodation-based",
        "district": "E07000105",
        "unit_type": "bed",
        "services": 10,
        "units": 42,
        "designated_services": 0,
        "designated_units": 0,
        "contracted_hours": 12.5,
        "annual_value": 0,
        "suppressed": (),
    }
    return SupplyCell.model_validate({**base, **kw})


def test_suppressed_figures_are_absent_and_zeros_are_present() -> None:
    suppressed = supply_cell_to_proto(
        _cell(services=None, designated_services=None, annual_value=None, suppressed=("services: threshold",))
    )
    assert not suppressed.HasField("services")
    assert not suppressed.HasField("designated_services")
    assert not suppressed.HasField("annual_value")
    zeros = supply_cell_to_proto(_cell(services=0))
    assert zeros.HasField("services") and zeros.services == 0
    assert zeros.HasField("designated_services") and zeros.HasField("annual_value")


def test_supply_map_round_trips_exactly() -> None:
    cells = (_cell(), _cell(client_group=4, services=None, annual_value=None, suppressed=("a", "b")))
    supply = SupplyMap(
        authority="E10000016",
        population=1_500_000,
        by_district=True,
        client_groups=(3, 4),
        cells=cells,
        client_group_totals=cells,
        total=_cell(client_group=0, service_type="", district="", unit_type="", services=None),
    )
    message = supply_map_to_proto(supply, envelope_pb2.ResponseHeader(responder="E10000016"))
    again = supply_map_from_proto(type(message).FromString(message.SerializeToString()))
    assert again == supply


def test_the_same_figures_under_another_header_give_the_same_map_and_a_bad_one_always_fails() -> None:
    supply = SupplyMap(authority="E10000016", population=1000, cells=(_cell(),), total=_cell(client_group=0))
    first = supply_map_to_proto(supply, envelope_pb2.ResponseHeader(responder="E10000016", request_digest=b"a"))
    second = supply_map_to_proto(supply, envelope_pb2.ResponseHeader(responder="E10000016", request_digest=b"b"))
    assert supply_map_from_proto(first) == supply_map_from_proto(second) == supply
    bad = type(first)()
    bad.CopyFrom(first)
    bad.cells[0].units = -1  # a negative capacity is refused, however often it is asked
    for _ in range(2):
        with pytest.raises(ValidationError):
            supply_map_from_proto(bad)

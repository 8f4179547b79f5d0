"""Typed domain models that cross the node/coordinator boundary (converted to and from protobuf
only in `shared.serde`), and the joint result bundle that a CAG chair saves and verifies.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SupplyCell(_Model):
    """Supply for one client group x service type (x district) at one authority, as released.

    A total has client_group 0, service_type "" or district "" for what it sums over. `None` means
    suppressed by the network policy; `suppressed` says which rule applied to which figure.
    Units, designated units and hours are capacity, not people, and are released exactly.
    """

    client_group: int = Field(ge=0, le=21)
    service_type: str = ""
    district: str = ""
    unit_type: str = ""
    services: int | None = Field(ge=0, default=None)
    units: int = Field(ge=0, default=0)
    designated_services: int | None = Field(ge=0, default=None)
    designated_units: int = Field(ge=0, default=0)
    contracted_hours: float = Field(ge=0, default=0.0)
    annual_value: int | None = Field(ge=0, default=None)
    suppressed: tuple[str, ...] = ()


class SupplyMap(_Model):
    """One authority's supply map, as its node releases it: cells, client-group totals and the total."""

    authority: str
    population: int
    by_district: bool = False
    client_groups: tuple[int, ...] = ()  # the filter applied; empty: every group
    cells: tuple[SupplyCell, ...] = ()
    client_group_totals: tuple[SupplyCell, ...] = ()
    total: SupplyCell = SupplyCell(client_group=0)


class NodeDescription(_Model):
    authority: str
    name: str
    population: int
    districts: tuple[tuple[str, str], ...] = ()
    capabilities: tuple[str, ...] = ()
    key_fingerprint: str
    software_version: str


class JoinRequest(_Model):
    """What a new node hands to the network to be admitted: public halves only."""

    party_id: str
    name: str
    endpoint: str
    population: int
    signing_key: str  # base64 raw Ed25519 public key
    tls_public_key_pem: str

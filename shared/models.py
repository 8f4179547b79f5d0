"""Typed domain models that cross the node/coordinator boundary (converted to and from protobuf
only in `shared.serde`), and the joint result bundle that a CAG chair saves and verifies.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SupplyCell(_Model):
    """Services and units for one client group x service type (x district) at one authority."""

    client_group: int = Field(ge=1, le=21)
    service_type: str
    district: str = ""
    unit_type: str
    services: int = Field(ge=0)
    units: int = Field(ge=0)
    designated_services: int = Field(ge=0, default=0)
    designated_units: int = Field(ge=0, default=0)
    contracted_hours: float = Field(ge=0, default=0.0)


class SupplyMap(_Model):
    """One authority's supply map, as its node releases it."""

    authority: str
    population: int
    by_district: bool = False
    cells: tuple[SupplyCell, ...] = ()


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

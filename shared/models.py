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


class CountCell(_Model):
    """One cell of a released count table: `None` is suppressed, and `suppressed` names the rule.
    A margin carries "*" for each dimension it sums over."""

    key: tuple[str, ...]
    count: int | None = Field(ge=0, default=None)
    suppressed: str = ""
    margin: bool = False


class RecordsQuestion(_Model):
    """A question about client records, as a node read it (dates ISO, inclusive; "" unbounded)."""

    from_date: str = ""
    to_date: str = ""
    period: str = "year"
    client_groups: tuple[int, ...] = ()
    min_share_percent: int = 0


class CountTable(_Model):
    """A count table one authority's node released: movement, net flow or KPI 2."""

    authority: str
    kind: str
    dimensions: tuple[str, ...]
    cells: tuple[CountCell, ...] = ()
    question: RecordsQuestion = RecordsQuestion()

    def value(self, *key: str) -> int | None:
        """The released count at `key`; 0 for a cell the table does not hold (nobody there)."""
        for cell in self.cells:
            if cell.key == key:
                return cell.count
        return 0


class NonLocalService(_Model):
    """A service whose intake is mostly non-local, described in bands only."""

    provider: str
    name: str
    service_type: str
    client_group: int = Field(ge=1, le=21)
    district: str = ""
    designated: bool = False
    intake_band: str
    share_band: str


class PlannedQuestion(_Model):
    """A standard question and whether one node would answer it now ("" if so, else the rule)."""

    kind: str
    from_date: str
    to_date: str
    period: str
    client_groups: tuple[int, ...] = ()
    refused: str = ""
    min_authorities: int = Field(ge=1, default=1)


class NodePlan(_Model):
    """One node's answer to "would you answer?": no figure, only answerable or the rule."""

    authority: str
    questions: tuple[PlannedQuestion, ...] = ()


class NonLocalServices(_Model):
    authority: str
    services: tuple[NonLocalService, ...] = ()
    too_small: int = Field(ge=0, default=0)
    question: RecordsQuestion = RecordsQuestion()


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
    # base64 raw X25519 public key a sponsoring member seals the network linkage key to (a join
    # over the wire, docs/onboarding.md); "" when the key was handed over some other way.
    sealing_key: str = ""
    # A person joining with an invite (`cagnet kit join`): the principal role it is invited to
    # hold (cag-chair, regional-board); "" for a member authority's node. Left out of the signed
    # bytes when "", so a node's request is signed exactly as before.
    role: str = ""

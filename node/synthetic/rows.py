"""What the synthetic generators make: plain records, one per row of the importers' CSV files, and
the prefix an authority puts on its references. Apart from `node.synthetic.supply` so that the
client generator (`node.synthetic.clients`) uses them while the supply's `load` uses the client
generator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.authorities import Authority

# Words left out of the initials an authority's SP system puts on its references.
_JOINERS = frozenset({"and", "upon", "on", "of", "the", "with", "in", "&"})


def ref_prefix(info: Authority) -> str:
    """The prefix an authority's SP system puts on its own references, from its name: a county
    council's initials and CC ("North Yorkshire" -> "NYCC"), else its initials ("Telford and
    Wrekin" -> "TW") or, for a one-word name, its first three letters ("Medway" -> "MED")."""
    words = [w for w in info.name.replace("-", " ").replace(".", "").split() if w.lower() not in _JOINERS]
    initials = "".join(w[0] for w in words).upper()
    if info.kind == "county":
        return initials + "CC"
    return initials if len(words) > 1 else info.name[:3].upper()


# ---------------------------------------------------------------------------------------------
# What is generated: plain records, one per CSV row.


@dataclass(frozen=True)
class ProviderRecord:
    provider_ref: str
    name: str
    national_provider_id: str | None
    charity_number: str | None
    company_number: str | None


@dataclass(frozen=True)
class ServiceRecord:
    service_ref: str
    provider_ref: str
    name: str
    district: str  # the district's GSS code, or its name in county exports
    service_type: str
    client_group: int
    units: int
    unit_type: str
    contracted_hours: float | None
    designated: bool
    term: str


@dataclass(frozen=True)
class ContractRecord:
    contract_ref: str
    service_ref: str
    annual_value: Decimal
    start_date: date
    end_date: date


@dataclass(frozen=True)
class SyntheticSupply:
    authority_code: str
    seed: int
    providers: tuple[ProviderRecord, ...]
    services: tuple[ServiceRecord, ...]
    contracts: tuple[ContractRecord, ...]

"""Client records and short-term outcomes, as a node stores them: no person's identity, ever.

A client record is made when a client starts a service; an outcome when they leave a short-term
one. The person fields an SP system exports for linkage (surname, first initial, date of birth,
sex) are never stored. At import they become `person_hash` (SHA-256 of the normalised fields), and
that hash is stored only sealed under the node's own key, with deterministic AES-SIV: the same
person gets the same stored value within one node (local linkage still works), the stored value
is useless without the key, and only the node can unseal it again to derive per-analysis linkage
tokens under the network linkage key (see `node.linkage` and docs/movement.md).

    client_record  id PK, record_ref UNIQUE, service_id -> service, start_date, client_group 1-21,
                   secondary_groups ("4,9" or ""), age_band, sex, ethnicity, economic_status,
                   referral_source, accommodation_before, previous_authority (GSS code, NULL when
                   unknown), person (sealed person hash, 48 bytes; NULL when the return
                   lacks a linkage field: such a record is counted, never linked)
    outcome        id PK, client_record_id UNIQUE -> client_record, end_date, departure
                   (planned/unplanned), five outcome needs each identified/achieved/not-applicable
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import unicodedata
from datetime import date, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from sqlalchemy import CheckConstraint, Index, LargeBinary
from sqlmodel import Field, SQLModel

from node.columns import UtcDateTime, utcnow
from shared.errors import InvalidRequest

__all__ = [
    "ACCOMMODATION_BEFORE",
    "AGE_BANDS",
    "DEPARTURES",
    "ECONOMIC_STATUSES",
    "ETHNICITIES",
    "OUTCOME_DOMAINS",
    "OUTCOME_NEEDS",
    "REFERRAL_SOURCES",
    "SEXES",
    "ClientRecord",
    "Outcome",
    "PersonSealer",
    "load_person_key",
    "person_hash",
    "person_hash_text",
]

# The SP client record's age bands.
AGE_BANDS = ("16-17", "18-24", "25-34", "35-44", "45-54", "55-59", "60-64", "65-74", "75-84", "85+")
SEXES = ("female", "male")
# 2001 census ethnic categories, by their NHS letter codes; Z is "not stated".
ETHNICITIES: dict[str, str] = {
    "A": "White: British",
    "B": "White: Irish",
    "C": "White: any other White background",
    "D": "Mixed: White and Black Caribbean",
    "E": "Mixed: White and Black African",
    "F": "Mixed: White and Asian",
    "G": "Mixed: any other mixed background",
    "H": "Asian or Asian British: Indian",
    "J": "Asian or Asian British: Pakistani",
    "K": "Asian or Asian British: Bangladeshi",
    "L": "Asian or Asian British: any other Asian background",
    "M": "Black or Black British: Caribbean",
    "N": "Black or Black British: African",
    "P": "Black or Black British: any other Black background",
    "R": "Chinese",
    "S": "any other ethnic group",
    "Z": "not stated",
}
ECONOMIC_STATUSES = (
    "full-time-work",
    "part-time-work",
    "government-training",
    "jobseeker",
    "retired",
    "not-seeking-work",
    "full-time-student",
    "long-term-sick-or-disabled",
    "other-adult",
)
REFERRAL_SOURCES = (
    "self",
    "family-or-friend",
    "social-services",
    "housing-department",
    "health-service",
    "probation",
    "police",
    "voluntary-agency",
    "other",
)
ACCOMMODATION_BEFORE = (
    "rough-sleeping",
    "living-with-family-or-friends",
    "owner-occupier",
    "private-rented",
    "council-tenant",
    "housing-association-tenant",
    "supported-housing",
    "hostel",
    "refuge",
    "bed-and-breakfast",
    "prison",
    "hospital",
    "other",
)
DEPARTURES = ("planned", "unplanned")
# The SP short-term outcomes framework's five headings; each need is identified (and not
# achieved), achieved, or not applicable (left out of the denominator).
OUTCOME_DOMAINS = ("economic_wellbeing", "enjoy_and_achieve", "be_healthy", "stay_safe", "positive_contribution")
OUTCOME_NEEDS = ("identified", "achieved", "not-applicable")

PERSON_KEY_BYTES = 64  # AES-256-SIV
SEALED_PERSON_BYTES = 48  # SIV tag (16) + SHA-256 (32)


class ClientRecord(SQLModel, table=True):
    """One client starting one service."""

    __tablename__ = "client_record"
    __table_args__ = (
        CheckConstraint("client_group BETWEEN 1 AND 21", name="ck_client_record_group"),
        # The movement and KPI queries group by these; the index covers them so a node reads no rows.
        Index("ix_client_record_movement", "start_date", "client_group", "previous_authority"),
    )

    id: int | None = Field(default=None, primary_key=True)
    record_ref: str = Field(unique=True, max_length=64)
    service_id: int = Field(foreign_key="service.id", index=True)
    start_date: date
    client_group: int
    secondary_groups: str = Field(default="", max_length=64)
    age_band: str = Field(max_length=5)
    sex: str = Field(max_length=6)
    ethnicity: str = Field(max_length=1)
    economic_status: str = Field(max_length=30)
    referral_source: str = Field(max_length=30)
    accommodation_before: str = Field(max_length=40)
    previous_authority: str | None = Field(default=None, max_length=9)
    # NULL for a record without all three linkage fields: counted in every figure, never linked.
    person: bytes | None = Field(default=None, sa_type=LargeBinary, index=True, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    # Indexed (schema revision 0002) so that `node.answers.movement.last_import` finds the newest
    # change without reading the table.
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False, index=True)


class Outcome(SQLModel, table=True):
    """A client's departure from a short-term service."""

    __tablename__ = "outcome"
    __table_args__ = (
        CheckConstraint("departure IN ('planned', 'unplanned')", name="ck_outcome_departure"),
        *(
            CheckConstraint(f"{d} IN ('identified', 'achieved', 'not-applicable')", name=f"ck_outcome_{d}")
            for d in OUTCOME_DOMAINS
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    client_record_id: int = Field(foreign_key="client_record.id", unique=True)
    end_date: date = Field(index=True)
    departure: str = Field(max_length=9)
    economic_wellbeing: str = Field(max_length=14)
    enjoy_and_achieve: str = Field(max_length=14)
    be_healthy: str = Field(max_length=14)
    stay_safe: str = Field(max_length=14)
    positive_contribution: str = Field(max_length=14)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    # Indexed (schema revision 0002) so that `node.answers.movement.last_import` finds the newest
    # change without reading the table.
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False, index=True)


# Cached: an import of a million records sees a few thousand surnames, and this is most of the hash's cost.
@functools.lru_cache(maxsize=1 << 16)
@functools.lru_cache(maxsize=1 << 16)
def _normalised(value: str) -> str:
    # Accents, case and spacing differ between SP systems' exports of the same person. Remembered
    # (bounded): a million records hold a few thousand surnames, and this was a tenth of an import.
    decomposed = unicodedata.normalize("NFKD", value)
    letters = "".join(ch for ch in decomposed if ch.isalnum())
    return letters.casefold()


def person_hash(*, surname: str, first_initial: str, date_of_birth: date, sex: str) -> bytes:
    """SHA-256 of the normalised linkage fields: the same person from two authorities' exports
    gives the same hash. Never stored or sent: it is sealed at once, and only tokens leave."""
    return person_hash_text(surname, first_initial, date_of_birth.isoformat(), sex)


def person_hash_text(surname: str, first_initial: str, date_of_birth: str, sex: str) -> bytes:
    """`person_hash` for a date of birth already checked and written YYYY-MM-DD, as the importer
    holds it: the same bytes, without making a date object per row."""
    fields = "\x1f".join(
        (_normalised(surname), _normalised(first_initial)[:1], date_of_birth, sex.strip().casefold()[:1])
    )
    return hashlib.sha256(fields.encode()).digest()


class PersonSealer:
    """Seals and unseals person hashes under the node's own key (deterministic AES-SIV)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != PERSON_KEY_BYTES:
            raise InvalidRequest(f"a person key is {PERSON_KEY_BYTES} random bytes")
        self._siv = AESSIV(key)

    def seal(self, hashed: bytes) -> bytes:
        return self._siv.encrypt(hashed, None)

    def unseal(self, sealed: bytes) -> bytes:
        return self._siv.decrypt(sealed, None)


def load_person_key(path: Path) -> bytes:
    """The node's person key, made on first use. It never leaves the node: with it and a stolen
    database, anyone could test guesses of who is in the records."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(PERSON_KEY_BYTES))
        path.chmod(0o600)
    key = path.read_bytes()
    if len(key) != PERSON_KEY_BYTES:
        raise InvalidRequest(f"{path} is not a person key ({PERSON_KEY_BYTES} random bytes expected)")
    return key

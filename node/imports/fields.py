"""Every column of every import file, with what it holds and the values it accepts, in one place.

The import templates (node.imports.template), the suggested mapping profiles (node.imports.suggest)
and the generated reference page docs/import-fields.md (scripts/gen_import_fields.py) all read
this, so what they say is what the importers accept.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.client_records import (
    ACCOMMODATION_BEFORE,
    AGE_BANDS,
    DEPARTURES,
    ECONOMIC_STATUSES,
    ETHNICITIES,
    OUTCOME_DOMAINS,
    OUTCOME_NEEDS,
    REFERRAL_SOURCES,
    SEXES,
)
from node.imports.records import COLUMNS as RECORD_COLUMNS
from node.imports.returns import COLUMNS as RETURN_COLUMNS
from node.imports.returns import MAX_PEOPLE, USERS_PER_UNIT
from node.imports.supply import COLUMNS as SUPPLY_COLUMNS
from node.imports.supply import MAX_ANNUAL_VALUE, MAX_HOURS, MAX_UNITS
from shared.vocabulary import CLIENT_GROUPS, UNIT_TYPE_FOR, ServiceType, Term, UnitType

__all__ = ["COLUMNS", "FIELDS", "KINDS", "Field", "fields_of", "vocabulary"]

COLUMNS = {**SUPPLY_COLUMNS, **RECORD_COLUMNS, **RETURN_COLUMNS}
KINDS = tuple(COLUMNS)


@dataclass(frozen=True)
class Field:
    name: str
    about: str  # what the column holds, in a line
    values: tuple[tuple[str, str], ...] = ()  # (value to write, what it means) for a fixed list
    synonyms: tuple[str, ...] = ()  # headers SP systems export it under, for a suggested profile


_UNIT_ABOUT = {
    UnitType.BED_SPACES: "bed-spaces or flats (accommodation-based services)",
    UnitType.HOUSEHOLDS: "households supported at one time (floating support, outreach, resettlement)",
    UnitType.DWELLINGS: "connected dwellings (community alarms)",
    UnitType.CASES_PER_YEAR: "cases a year (home improvement agencies)",
}
_CLIENT_GROUP_VALUES = tuple((str(code), name) for code, name in CLIENT_GROUPS.items())
_NEED_VALUES = (
    ("identified", "a need identified and not met"),
    ("achieved", "a need identified and met"),
    ("not-applicable", "no such need (left out of the denominator)"),
)


def _numbered(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((value, f"or {i}") for i, value in enumerate(values, start=1))


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field(
            "provider_ref",
            "your own reference for the provider, up to 64 characters",
            (),
            ("provider id", "provider reference", "provider code", "provider no"),
        ),
        Field("name", "the name, up to 200 characters", (), ("provider name", "service name", "name")),
        Field("national_provider_id", "the provider's national SP id, if it has one", (), ("npid", "national id")),
        Field(
            "charity_number",
            "Charity Commission number (6 or 7 digits)",
            (),
            ("charity no", "registered charity number"),
        ),
        Field(
            "company_number",
            "Companies House number (8 characters; lost leading zeros are restored)",
            (),
            ("company no", "company registration number"),
        ),
        Field(
            "service_ref",
            "your own reference for the service, up to 64 characters",
            (),
            ("service id", "service reference", "service code", "service no"),
        ),
        Field(
            "district",
            "where the service is: a district of this authority, by name or GSS code",
            (),
            ("district", "location", "area", "district council"),
        ),
        Field(
            "service_type",
            "the kind of service; it fixes the unit type (below)",
            tuple((t.value, f"counted in {UNIT_TYPE_FOR[t].value}") for t in ServiceType),
            ("service type", "type of service", "service category"),
        ),
        Field(
            "client_group",
            "the primary SP client group, by code or name",
            _CLIENT_GROUP_VALUES,
            ("primary client group", "client group", "main client group"),
        ),
        Field(
            "units",
            f"capacity in the service's unit type, a whole number from 0 to {MAX_UNITS:,}",
            (),
            ("units", "capacity", "no of units", "number of units"),
        ),
        Field(
            "unit_type",
            "may be left out: it must be the one the service type counts",
            tuple((u.value, _UNIT_ABOUT[u]) for u in UnitType),
            ("unit type", "unit of measure"),
        ),
        Field(
            "contracted_hours",
            f"support hours a week, more than 0 and at most {MAX_HOURS:,.0f}; required for floating-support",
            (),
            ("contracted hours", "hours per week", "weekly hours"),
        ),
        Field(
            "designated",
            "a cross-authority designated service",
            (("yes", "true, y or 1 too"), ("no", "false, n or 0 too")),
            ("designated", "cross authority", "designated service"),
        ),
        Field(
            "term",
            "short-term (28 days to 2 years) or long-term (over 2 years)",
            (
                (Term.SHORT.value, "28 days to 2 years; 'Short term' too"),
                (Term.LONG.value, "over 2 years; 'Long term' too"),
            ),
            ("term", "short or long term", "service term"),
        ),
        Field(
            "contract_ref",
            "your own reference for the contract, up to 64 characters",
            (),
            ("contract id", "contract reference", "contract no"),
        ),
        Field(
            "annual_value",
            f"£ a year, at most 2 decimals ('£' and commas allowed), at most £{MAX_ANNUAL_VALUE:,}",
            (),
            ("annual value", "contract value", "annual contract value", "value"),
        ),
        Field(
            "start_date",
            "a date: YYYY-MM-DD, dd/mm/yyyy, d-mmm-yy or an Excel date",
            (),
            ("start date", "date started", "contract start"),
        ),
        Field(
            "end_date",
            "a date, not before the start date",
            (),
            ("end date", "date ended", "contract end", "departure date"),
        ),
        Field(
            "changed_on",
            "services: the day a changed service's new figures took effect (default: the day of the import);"
            " the version it replaces is kept up to the day before",
            (),
            ("changed on", "date changed", "effective date", "effective from"),
        ),
        Field(
            "record_ref",
            "your own reference for the client record, up to 64 characters",
            (),
            ("record id", "client record id", "cr ref", "record no"),
        ),
        Field(
            "secondary_groups",
            "other client groups, codes separated by ';' or ','",
            (),
            ("secondary client groups", "secondary groups", "other client groups"),
        ),
        Field(
            "age_band",
            "an SP age band, or the age in years",
            tuple((b, "") for b in AGE_BANDS),
            ("age", "age band", "age group"),
        ),
        Field("sex", "female or male (F / M)", tuple((s, "") for s in SEXES), ("sex", "gender")),
        Field(
            "ethnicity",
            "2001 census category: letter code or description",
            tuple(ETHNICITIES.items()),
            ("ethnicity", "ethnic origin", "ethnic group"),
        ),
        Field(
            "economic_status",
            "by name, or its number in this list (cagnet's order, not checked against the national form)",
            _numbered(ECONOMIC_STATUSES),
            ("economic status", "employment status"),
        ),
        Field(
            "referral_source",
            "by name, or its number in this list (cagnet's order, not checked against the national form)",
            _numbered(REFERRAL_SOURCES),
            ("referral source", "referred by", "source of referral"),
        ),
        Field(
            "accommodation_before",
            "by name, or its number in this list (cagnet's order, not checked against the national form)",
            _numbered(ACCOMMODATION_BEFORE),
            ("accommodation before", "previous accommodation", "prior accommodation"),
        ),
        Field(
            "previous_authority",
            "where the client lived before: an English authority or listed district, by GSS code or name; "
            "blank or 'unknown' when not known",
            (),
            ("previous authority", "previous la", "la lived in before", "previous local authority"),
        ),
        Field(
            "surname",
            "linkage only, never stored; may be blank (the record is then never linked)",
            (),
            ("surname", "last name", "family name"),
        ),
        Field(
            "first_initial",
            "linkage only, never stored; may be blank",
            (),
            ("first initial", "initial", "forename", "first name"),
        ),
        Field("date_of_birth", "linkage only, never stored; may be blank", (), ("date of birth", "dob", "birth date")),
        Field(
            "departure",
            "how the client left",
            tuple((d, "") for d in DEPARTURES),
            ("departure", "type of departure", "planned move"),
        ),
        *(
            Field(domain, f"outcome: {domain.replace('_', ' ')}", _NEED_VALUES, (domain.replace("_", " "),))
            for domain in OUTCOME_DOMAINS
        ),
        # The quarterly returns (node.imports.returns).
        Field(
            "quarter",
            "the financial-year quarter the return is for: 2009-10 Q1 is April to June 2009 (2009/10 Q1 too)",
            (),
            ("quarter", "period", "return period", "reporting quarter"),
        ),
        Field(
            "service_users",
            f"KPI 1: service users in the quarter, a whole number from 0, at most {USERS_PER_UNIT} per unit",
            (),
            ("service users", "number of service users", "total service users"),
        ),
        Field(
            "maintaining",
            "KPI 1: of them, service users supported to establish and maintain independent living",
            (),
            ("maintaining independent living", "maintained independence", "kpi1 numerator"),
        ),
        Field(
            "units_occupied",
            "units occupied at the quarter's end; with voids, at most the service's units",
            (),
            ("units occupied", "occupied units", "occupied"),
        ),
        Field("voids", "units empty and available at the quarter's end", (), ("voids", "void units", "empty units")),
        Field(
            "waiting_list",
            f"people waiting for the service at the quarter's end, at most {MAX_PEOPLE:,}",
            (),
            ("waiting list", "people waiting", "waiting"),
        ),
        Field(
            "referrals_refused",
            f"referrals the service refused in the quarter, at most {MAX_PEOPLE:,}",
            (),
            ("referrals refused", "refused referrals", "refusals"),
        ),
    )
}
assert all(n in OUTCOME_NEEDS for n, _ in _NEED_VALUES)


def fields_of(kind: str) -> list[tuple[Field, bool]]:
    """The fields of one kind of file, in order, each with whether it is required."""
    columns = COLUMNS[kind]
    return [(FIELDS[name], name not in columns.optional) for name in columns.all]


def vocabulary(name: str) -> tuple[tuple[str, str], ...]:
    """The fixed list of a field's values (empty for free text and numbers)."""
    return FIELDS[name].values

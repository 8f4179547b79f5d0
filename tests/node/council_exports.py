"""Realistic synthetic exports from a county's SP system, as an SP team has them on disk.

Headers as the system writes them ("Service ID", "Primary Client Group", "DOB"), client groups and
categories as text, dates as dd/mm/yyyy (or real Excel dates in a workbook), districts and
previous authorities by name, "Y"/"N" flags, "Long term", a Comments column: what a mapping
profile (node.imports.mapping) exists for. Everything is made from a seed, for Kent's districts.
"""

from __future__ import annotations

import csv
import random
import re
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

KENT = "E10000016"
KENT_DISTRICTS = ("Ashford", "Canterbury", "Dartford", "Dover", "Maidstone", "Swale", "Thanet", "Tunbridge Wells")

PROVIDER_HEADERS = ["Provider Ref", "Provider Name", "Charity No.", "Company No.", "Comments"]
SERVICE_HEADERS = [
    "Service ID",
    "Provider Ref",
    "Service Name",
    "District",
    "Service Type",
    "Primary Client Group",
    "No. of Units",
    "Unit Type",
    "Contracted Hours",
    "Cross Authority",
    "Short or Long Term",
]
CONTRACT_HEADERS = ["Contract No", "Service ID", "Annual Value", "Start Date", "End Date"]
RECORD_HEADERS = [
    "CR Ref",
    "Service ID",
    "Date Started",
    "Primary Client Group",
    "Age",
    "Sex",
    "Ethnic Origin",
    "Economic Status",
    "Referred By",
    "Accommodation Before",
    "Previous LA",
    "Surname",
    "Initial",
    "DOB",
]

# (export's service type, unit type, client groups, units range, hours a unit a week or None)
_SERVICE_KINDS = [
    ("Sheltered Housing", "Bed Spaces", ("Older people with support needs", "Frail elderly"), (20, 60), None),
    ("Hostel", "Bed Spaces", ("Single homeless with support needs", "Young people at risk"), (12, 40), None),
    ("Refuge", "Bed Spaces", ("Women at risk of domestic violence",), (5, 12), None),
    (
        "Floating Support",
        "Households",
        ("People with mental health problems", "Offenders or people at risk of offending"),
        (20, 80),
        2.3,
    ),
    ("Community Alarm", "Dwellings", ("Older people with support needs",), (400, 2500), None),
]
PROFILE = """\
source = "Kent SP system export"
date_formats = ["dd/mm/yyyy", "excel-serial"]
ignore = ["Comments"]

[columns]
"Provider Ref" = "provider_ref"
"Provider Name" = "name"
"Charity No." = "charity_number"
"Company No." = "company_number"
"Service ID" = "service_ref"
"Service Name" = "name"
"No. of Units" = "units"
"Primary Client Group" = "client_group"
"Cross Authority" = "designated"
"Short or Long Term" = "term"
"Contract No" = "contract_ref"
"CR Ref" = "record_ref"
"Date Started" = "start_date"
"Age" = "age_band"
"Ethnic Origin" = "ethnicity"
"Referred By" = "referral_source"
"Previous LA" = "previous_authority"
"Initial" = "first_initial"
"DOB" = "date_of_birth"

[values.service_type]
"Sheltered Housing" = "accommodation-based"
"Hostel" = "accommodation-based"
"Refuge" = "accommodation-based"

[values.referral_source]
"Self referral" = "self"
"Housing Dept" = "housing-department"
"""
_SURNAMES = ("Smith", "Jones", "Taylor", "Brown", "O'Brien", "Patel", "Wilson", "Hughes", "Khan", "Evans")
_ETHNICITY = ("White: British", "White: Irish", "Asian or Asian British: Indian", "Black or Black British: African")
_ECONOMIC = ("Retired", "Jobseeker", "Long-term sick or disabled", "Part-time work")
_REFERRED = ("Self referral", "Housing Dept", "Probation", "Social Services")
_ACCOMMODATION = ("Rough sleeping", "Living with family or friends", "Private rented", "Hostel")
_PREVIOUS = ("Maidstone", "Medway", "Canterbury", "E09000022", "", "unknown", "Brighton & Hove")


@dataclass
class Export:
    """One export: the rows as the system wrote them (text cells; dates as `date` in workbooks)."""

    headers: list[str]
    rows: list[list[Any]]

    def csv(self, path: Path, *, encoding: str = "utf-8-sig") -> Path:
        with path.open("w", encoding=encoding, newline="") as f:
            writer = csv.writer(f, lineterminator="\r\n")
            writer.writerow(self.headers)
            writer.writerows([[_as_text(v) for v in row] for row in self.rows])
        return path

    def xlsx(self, path: Path, *, sheet: str = "Export", before: tuple[str, ...] = ()) -> Path:
        from openpyxl import Workbook

        book = Workbook()
        first = book.active
        assert first is not None
        for name in before:  # sheets an export puts before the data (a cover sheet)
            book.create_sheet(name, 0).append(["Kent County Council, Supporting People team"])
        first.title = sheet
        first.append(self.headers)
        for row in self.rows:
            first.append(row)
        book.save(path)
        return path


def _as_text(value: Any) -> str:
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return "" if value is None else str(value)


def providers(n: int = 6, seed: int = 1) -> Export:
    rng = random.Random(seed)
    names = ["Porchlight", "Home Group Ltd", "Canterbury Women's Aid", "Golding Homes", "Look Ahead", "Riverside"]
    rows = []
    for i in range(n):
        charity = str(rng.randint(200000, 1199999)) if i % 2 == 0 else ""
        company = "" if charity else f"{rng.randint(100000, 9999999)}"  # leading zeros lost, as Excel does
        rows.append(
            [
                f"KCC-P{i + 1:04d}",
                names[i % len(names)] + (f" {i // len(names) + 1}" if i >= len(names) else ""),
                charity,
                company,
                "checked 2010",
            ]
        )
    return Export(PROVIDER_HEADERS, rows)


def services(n: int = 12, providers_n: int = 6, seed: int = 2) -> Export:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind, unit, groups, (low, high), hours = _SERVICE_KINDS[i % len(_SERVICE_KINDS)]
        district = KENT_DISTRICTS[rng.randrange(len(KENT_DISTRICTS))]
        units = rng.randint(low, high)
        rows.append(
            [
                f"KCC-S{i + 1:05d}",
                f"KCC-P{i % providers_n + 1:04d}",
                f"{district} {kind} {i + 1}",
                district,
                kind,
                groups[rng.randrange(len(groups))],
                units,
                unit,
                round(units * hours, 1) if hours else None,
                "Y" if kind == "Refuge" else "N",
                "Short term" if kind in ("Hostel", "Refuge") else "Long term",
            ]
        )
    return Export(SERVICE_HEADERS, rows)


def contracts(n: int = 12, seed: int = 3) -> Export:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        start = date(2008 + rng.randrange(3), 4, 1)
        rows.append(
            [
                f"KCC-C{i + 1:05d}",
                f"KCC-S{i + 1:05d}",
                f"£{rng.randint(20, 400) * 1000:,}.00",
                start,
                date(start.year + 3, 3, 31),
            ]
        )
    return Export(CONTRACT_HEADERS, rows)


def client_records(n: int = 200, services_n: int = 12, seed: int = 4, *, without_linkage: float = 0.2) -> Export:
    """`without_linkage` of the records lack the surname, the date of birth or both, as returns do."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        start = date(2009, 4, 1) + timedelta(days=rng.randrange(365))
        birth = start - timedelta(days=rng.randint(17 * 365, 88 * 365))
        age = (start - birth).days // 365
        surname: str | None = _SURNAMES[rng.randrange(len(_SURNAMES))]
        dob: date | None = birth
        if rng.random() < without_linkage:
            if rng.random() < 0.5:
                surname = None
            else:
                dob = None
        rows.append(
            [
                f"CR{i + 1:06d}",
                f"KCC-S{i % services_n + 1:05d}",
                start,
                _SERVICE_KINDS[(i % services_n) % len(_SERVICE_KINDS)][2][0],
                age,
                "F" if rng.random() < 0.5 else "M",
                _ETHNICITY[rng.randrange(len(_ETHNICITY))],
                _ECONOMIC[rng.randrange(len(_ECONOMIC))],
                _REFERRED[rng.randrange(len(_REFERRED))],
                _ACCOMMODATION[rng.randrange(len(_ACCOMMODATION))],
                _PREVIOUS[rng.randrange(len(_PREVIOUS))],
                surname,
                "ABCDEFGHJKLMNPRSTW"[rng.randrange(18)],
                dob,
            ]
        )
    return Export(RECORD_HEADERS, rows)


def with_cached_values(path: Path, cached: dict[str, str]) -> Path:
    """Give formula cells the values Excel would have saved with them (openpyxl saves none):
    `cached` maps a formula's text (without "=") to its value."""
    with zipfile.ZipFile(path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    for name, data in files.items():
        if name.startswith("xl/worksheets/sheet"):
            text = data.decode("utf-8")
            for formula, value in cached.items():
                text = re.sub(f"<f>{re.escape(formula)}</f><v */>", f"<f>{formula}</f><v>{value}</v>", text)
            files[name] = text.encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path

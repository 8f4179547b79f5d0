"""Mapping profiles: how one source system's export becomes cagnet's columns and values.

A profile is a small TOML file an SP team keeps in its node folder, one per source system: which
header holds which cagnet column, which headers to skip, what each local value means (a client group
written as text, "Bed Spaces", a district name) and the date formats the system writes. Without a
profile the importers still accept client groups by name, dates as YYYY-MM-DD, dd/mm/yyyy, d-mmm-yy
or an Excel serial number, and a previous authority by its name in the authority register.

    source = "The county's SP system, quarterly export"
    date_formats = ["dd/mm/yyyy", "excel-serial"]
    ignore = ["Comments"]

    [columns]                 # the file's header -> cagnet's column
    "Service ID" = "service_ref"
    "Primary Client Group" = "client_group"

    [values.service_type]     # the file's value -> cagnet's value, per column
    "Sheltered Housing" = "accommodation-based"
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from shared.authorities import Register, shipped_register
from shared.errors import ImportError_, ImportProblem
from shared.vocabulary import CLIENT_GROUPS

__all__ = [
    "DATE_COLUMNS",
    "DATE_FORMATS",
    "DEFAULT_DATE_FORMATS",
    "Profile",
    "Translator",
    "fold",
    "load_profile",
    "place_codes",
]

DATE_FORMATS: dict[str, str] = {
    "yyyy-mm-dd": "2010-04-01",
    "dd/mm/yyyy": "01/04/2010 or 1/4/2010",
    "dd/mm/yy": "01/04/10",
    "dd-mm-yyyy": "01-04-2010",
    "dd.mm.yyyy": "01.04.2010",
    "d-mmm-yy": "1-Apr-10",
    "d-mmm-yyyy": "1-Apr-2010 or 1 Apr 2010",
    "mm/dd/yyyy": "04/01/2010, a US export",
    "excel-serial": "40269, the number Excel keeps for a date",
}
"""The date formats a profile may name, with an example of 1 April 2010 in each."""

DEFAULT_DATE_FORMATS = ("yyyy-mm-dd", "dd/mm/yyyy", "d-mmm-yy", "d-mmm-yyyy", "excel-serial")
"""Accepted without a profile: none of them can be read as another (dd/mm, never mm/dd)."""

DATE_COLUMNS = frozenset({"start_date", "end_date", "date_of_birth"})

_MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
_DMY = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})")
_D_MON_Y = re.compile(r"(\d{1,2})[- ]([A-Za-z]{3,9})[- ](\d{4}|\d{2})")
_SERIAL = re.compile(r"\d{1,7}(\.0+)?")
_EXCEL_EPOCH = date(1899, 12, 30)  # Excel's day 0, counting its 1900 leap-year bug in
_MAX_SERIAL = 2_958_465  # 9999-12-31


def fold(value: str) -> str:
    """A value as profiles and vocabularies compare it: case, spacing, `_` and `-` forgiven."""
    return re.sub(r"[\s_\-]+", " ", value).strip().casefold()


@dataclass(frozen=True)
class Profile:
    source: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # the file's header -> cagnet column
    ignore: frozenset[str] = frozenset()
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> folded value -> cagnet value
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    path: Path | None = None


def load_profile(path: Path) -> Profile:
    """Read a profile; `ImportError_` names each key that is wrong, and nothing is imported."""
    label = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        reason = f"cannot read the mapping profile: {exc.strerror}"
        raise ImportError_([ImportProblem(label, None, None, reason)]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ImportError_([ImportProblem(label, None, None, f"not a valid TOML mapping profile: {exc}")]) from None
    problems: list[ImportProblem] = []

    def bad(key: str, reason: str) -> None:
        problems.append(ImportProblem(label, None, key, reason))

    known = {"source", "columns", "ignore", "values", "date_formats"}
    for key in data:
        if key not in known:
            bad(key, f"unknown key; a profile has {', '.join(sorted(known))}")
    columns = _strings(data.get("columns", {}), "columns", bad)
    ignore = data.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
        bad("ignore", "must be a list of header names")
        ignore = []
    values: dict[str, dict[str, str]] = {}
    raw_values = data.get("values", {})
    if not isinstance(raw_values, dict):
        bad("values", "must be tables of values, e.g. [values.client_group]")
        raw_values = {}
    for column, table in raw_values.items():
        values[column] = {fold(k): v for k, v in _strings(table, f"values.{column}", bad).items()}
    formats = data.get("date_formats", list(DEFAULT_DATE_FORMATS))
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        bad("date_formats", 'must be a list, e.g. ["dd/mm/yyyy"]')
        formats = list(DEFAULT_DATE_FORMATS)
    for f in formats:
        if f not in DATE_FORMATS:
            bad("date_formats", f"{f!r} is not a date format cagnet reads; use: {', '.join(DATE_FORMATS)}")
    if "dd/mm/yyyy" in formats and "mm/dd/yyyy" in formats:
        bad("date_formats", "dd/mm/yyyy and mm/dd/yyyy together would read 01/04/2010 two ways; keep one")
    source = data.get("source", "")
    if problems:
        raise ImportError_(problems)
    return Profile(
        source=str(source),
        columns=columns,
        ignore=frozenset(ignore),
        values=values,
        date_formats=tuple(formats),
        path=path,
    )


def _strings(table: Any, where: str, bad: Callable[[str, str], None]) -> dict[str, str]:
    if not isinstance(table, dict):
        bad(where, 'must be a table of "from" = "to" pairs')
        return {}
    out = {}
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            bad(f"{where}.{key}", f"must be text or a whole number, not {value!r}")
            continue
        out[str(key)] = str(value)
    return out


def place_codes(register: Register) -> dict[str, str]:
    """Folded place name -> GSS code for every authority and listed district in the register
    ("Maidstone", "Brighton and Hove", "Brighton & Hove"); a name two places share is left out,
    so it must be written as a code."""
    found: dict[str, set[str]] = {}
    for authority in register.authorities.values():
        for code, name in ((authority.code, authority.name), *((d.code, d.name) for d in authority.listed_districts)):
            for variant in {name, name.replace("&", "and"), name.replace(" and ", " & ")}:
                found.setdefault(fold(variant), set()).add(code)
    return {name: next(iter(codes)) for name, codes in found.items() if len(codes) == 1}


def _date_reader(formats: Iterable[str], today: date) -> Callable[[str], str]:
    """Text in one of `formats` -> YYYY-MM-DD; ValueError naming the formats otherwise."""
    formats = tuple(formats)

    def year_of(text: str) -> int:
        if len(text) == 4:
            return int(text)
        # Two-digit years: the latest century that does not put the date after this year.
        year = 2000 + int(text)
        return year if year <= today.year else year - 100

    def read(value: str) -> str:
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            # Always read: it cannot be mistaken, and it is how a workbook's real dates arrive.
            return text  # the importers check it is a real date
        match = _DMY.fullmatch(text)
        if match:
            a, sep, b, y = match.group(1), match.group(2), match.group(3), match.group(4)
            wanted = {"/": ("dd/mm/yyyy", "mm/dd/yyyy", "dd/mm/yy"), "-": ("dd-mm-yyyy",), ".": ("dd.mm.yyyy",)}[sep]
            for f in wanted:
                if f in formats and (len(y) == 4) == f.endswith("yyyy"):
                    day, month = (b, a) if f.startswith("mm") else (a, b)
                    return _iso(year_of(y), int(month), int(day), value)
        match = _D_MON_Y.fullmatch(text)
        if match and ({"d-mmm-yy", "d-mmm-yyyy"} & set(formats)):
            month = _MONTHS.get(match.group(2)[:3].lower())
            if month is not None:
                return _iso(year_of(match.group(3)), month, int(match.group(1)), value)
        if "excel-serial" in formats and _SERIAL.fullmatch(text):
            serial = int(float(text))
            if 1 <= serial <= _MAX_SERIAL:
                return (_EXCEL_EPOCH + timedelta(days=serial)).isoformat()
        named = ", ".join(f for f in formats if f != "yyyy-mm-dd")
        raise ValueError(f"not a date in a format this import reads (yyyy-mm-dd, {named}): {value!r}")

    return read


def _iso(year: int, month: int, day: int, value: str) -> str:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        raise ValueError(f"not a real date: {value!r}") from None


class Translator:
    """Per column, the function that turns a file's cell into the cell cagnet's checks read: the
    profile's value map first, then the built-in readings (dates, client group names, places)."""

    def __init__(self, profile: Profile | None = None, *, register: Register | None = None, today: date | None = None):
        self.profile = profile or Profile()
        self.register = register
        self.today = today or date.today()
        self._groups = {fold(name): str(code) for code, name in CLIENT_GROUPS.items()}
        self._places: dict[str, str] | None = None
        self._columns: dict[str, Callable[[str], str] | None] = {}

    @property
    def renames(self) -> dict[str, str]:
        return self.profile.columns

    @property
    def ignored(self) -> frozenset[str]:
        return self.profile.ignore

    def places(self) -> dict[str, str]:
        if self._places is None:
            self._places = place_codes(self.register or shipped_register())
        return self._places

    def for_column(self, column: str) -> Callable[[str], str] | None:
        """None when the column's cells go to the checks as they are."""
        steps: list[Callable[[str], str]] = []
        mapped = self.profile.values.get(column)
        if mapped:
            steps.append(lambda v, m=mapped: m.get(fold(v), v))  # type: ignore[misc]
        if column in DATE_COLUMNS:
            steps.append(_date_reader(self.profile.date_formats, self.today))
        elif column == "client_group":
            groups = self._groups
            steps.append(lambda v: groups.get(fold(v), v))
        elif column == "previous_authority":
            places = self.places()
            steps.append(lambda v: places.get(fold(v), v))
        if not steps:
            return None
        if len(steps) == 1:
            return steps[0]

        def chain(value: str) -> str:
            for step in steps:
                value = step(value)
            return value

        return chain

    def row(self, values: dict[str, str], problem: Callable[[str, str, str], None]) -> dict[str, str]:
        """A file row's cells as the checks read them. Each cell that cannot be read is told to
        `problem` (column, reason, value) and left out, and the others are still translated, so a
        row's every problem is found. Each column's function is made once."""
        out = dict(values)
        for column, value in values.items():
            if column not in self._columns:
                self._columns[column] = self.for_column(column)
            translate = self._columns[column]
            if translate is not None:
                try:
                    out[column] = translate(value)
                except ValueError as exc:
                    problem(column, str(exc), value)
                    del out[column]
        return out

    def wrap(self, column: str, check: Callable[[str], Any]) -> Callable[[str], Any]:
        """`check` reading the translated cell."""
        translate = self.for_column(column)
        if translate is None:
            return check
        return lambda value: check(translate(value))

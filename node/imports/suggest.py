"""A first mapping profile for a source system, made from one of its files, for the officer to edit.

Each header is matched to a cagnet column by similarity (difflib) with the column's name and the
names SP systems export it under (node.imports.fields); each column with a fixed list of values
has its distinct values listed against that list: accepted as they are, matched to the closest
value (marked "check"), or left for the officer to fill in; the date columns' formats are found
from their values. Nothing is guessed silently: every proposal is written as a line to read.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from node.imports.fields import COLUMNS, FIELDS, KINDS
from node.imports.mapping import DATE_COLUMNS, DATE_FORMATS, Profile, Translator, fold
from node.imports.reading import Columns, Encoding, Source
from shared.authorities import Authority, Register
from shared.errors import ImportProblem

__all__ = ["SAMPLE_ROWS", "Suggestion", "suggest_profile"]

SAMPLE_ROWS = 20_000
"""Rows read for distinct values: enough to see every value a vocabulary column holds."""
_MATCH = 0.6  # header similarity below which a header is left unmapped
_DISTINCT = 60  # more distinct values than this: not a column with a fixed list


@dataclass
class Suggestion:
    kind: str
    columns: dict[str, str]  # the file's header -> cagnet column
    scores: dict[str, float]
    unmapped: list[str]  # headers matched to nothing
    missing: list[str]  # required columns no header matched
    values: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)  # column -> value -> (to, how)
    date_formats: list[str] = field(default_factory=list)
    read_as: str = ""
    problems: list[ImportProblem] = field(default_factory=list)

    def toml(self, source: str) -> str:
        """The profile as TOML, with a comment on every line that needs the officer's eye."""
        lines = [
            f"# Mapping profile suggested by `cagnet node mapping suggest` from {source} ({self.kind}).",
            "# Read every line marked CHECK or FILL IN, then import with --mapping and --dry-run first.",
            f"source = {json.dumps(source)}",
            f"date_formats = {json.dumps(self.date_formats or ['yyyy-mm-dd', 'dd/mm/yyyy'])}",
        ]
        if self.unmapped:
            lines.append(f"ignore = {json.dumps(self.unmapped)}  # CHECK: headers matched to no cagnet column")
        lines += ["", "[columns]  # the file's header = cagnet's column"]
        for header, column in self.columns.items():
            note = "" if self.scores[header] >= 0.999 else f"  # CHECK: matched at {self.scores[header]:.0%}"
            lines.append(f"{json.dumps(header)} = {json.dumps(column)}{note}")
        for column in self.missing:
            lines.append(f"# FILL IN: no header holds {column!r}, which is required")
        for column, found in self.values.items():
            rows = [(value, to, how) for value, (to, how) in found.items() if how != "accepted"]
            if not rows:
                continue
            lines += ["", f"[values.{column}]  # the file's value = cagnet's value"]
            for value, to, how in rows:
                if to is None:
                    lines.append(f'# {json.dumps(value)} = ""  # FILL IN: no close match; {how}')
                else:
                    lines.append(f"{json.dumps(value)} = {json.dumps(to)}  # CHECK: {how}")
        return "\n".join(lines) + "\n"


def _score(header: str, column: str) -> float:
    key = fold(header)
    candidates = [fold(column), *(fold(s) for s in FIELDS[column].synonyms)]
    return max(difflib.SequenceMatcher(None, key, c).ratio() for c in candidates)


def _match_headers(headers: list[str], kind: str) -> tuple[dict[str, str], dict[str, float], list[str]]:
    """Each header to at most one column and each column to at most one header, best pairs first."""
    pairs = sorted(
        ((_score(h, c), h, c) for h in headers if h for c in COLUMNS[kind].all),
        key=lambda item: -item[0],
    )
    columns: dict[str, str] = {}
    scores: dict[str, float] = {}
    taken: set[str] = set()
    for score, header, column in pairs:
        if score < _MATCH or header in columns or column in taken:
            continue
        columns[header], scores[header] = column, score
        taken.add(column)
    unmapped = [h for h in headers if h and h not in columns]
    ordered = {h: columns[h] for h in headers if h in columns}
    return ordered, scores, unmapped


def _best_kind(headers: list[str]) -> str:
    def fit(kind: str) -> float:
        columns, scores, _ = _match_headers(headers, kind)
        required = COLUMNS[kind].required
        return sum(scores.values()) + 2 * sum(1 for c in required if c in columns.values()) - len(required)

    return max(KINDS, key=fit)


def _choices(column: str, authority: Authority | None, translator: Translator) -> dict[str, str]:
    """Folded label -> the value to write, for a column with a fixed list (names and codes)."""
    if column == "district" and authority is not None:
        return {fold(d.name): d.name for d in authority.districts} | {fold(d.code): d.code for d in authority.districts}
    if column == "previous_authority":
        return {name: code for name, code in translator.places().items()}
    choices = dict(_ALSO.get(column, {}))
    for value, meaning in FIELDS[column].values:
        choices[fold(value)] = value
        if meaning and not meaning.startswith(("or ", "counted in")):
            choices[fold(meaning)] = value
    return choices


_ALSO = {  # what the importers accept besides the listed values
    "designated": {"y": "yes", "n": "no", "true": "yes", "false": "no", "1": "yes", "0": "no"},
    "term": {"short term": "short", "long term": "long"},
    "sex": {"f": "female", "m": "male"},
}


def _accepted(column: str, value: str, choices: dict[str, str], translator: Translator) -> bool:
    translate = translator.for_column(column)
    text = translate(value) if translate is not None else value
    return fold(text) in choices or fold(text) in {fold(v) for v in choices.values()}


def _date_formats(samples: list[str], today: date) -> list[str]:
    """The formats, in DATE_FORMATS order, that read every sample; dd/mm before mm/dd."""
    from node.imports.mapping import _date_reader

    found = []
    for name in DATE_FORMATS:
        read = _date_reader((name,), today)
        try:
            if all(read(s) for s in samples if s):
                found.append(name)
        except ValueError:
            continue
    if "dd/mm/yyyy" in found and "mm/dd/yyyy" in found:
        found.remove("mm/dd/yyyy")  # a UK export: dd/mm unless the values say otherwise
    return found


def suggest_profile(
    path: Path,
    *,
    kind: str | None = None,
    sheet: str | None = None,
    encoding: Encoding = "auto",
    authority: Authority | None = None,
    register: Register | None = None,
    today: date | None = None,
) -> Suggestion:
    """Read `path` (its header and up to SAMPLE_ROWS rows) and propose a profile for it."""
    problems: list[ImportProblem] = []
    source = Source(path, Columns(()), problems, sheet=sheet, encoding=encoding)
    rows = source.table()
    headers: list[str] = []
    samples: list[list[str]] = []
    for _, cells in rows:
        if not headers:
            if any(cells):
                headers = cells
            continue
        if any(cells):
            samples.append(cells)
        if len(samples) >= SAMPLE_ROWS:
            break
    kind = kind or (_best_kind(headers) if headers else KINDS[0])
    columns, scores, unmapped = _match_headers(headers, kind)
    missing = [c for c in COLUMNS[kind].required if c not in columns.values()]
    today = today or date.today()
    translator = Translator(Profile(), register=register, today=today)
    suggestion = Suggestion(kind, columns, scores, unmapped, missing, read_as=source.encoding_note, problems=problems)
    index = {h: i for i, h in enumerate(headers)}
    formats: set[str] | None = None
    for header, column in columns.items():
        cells = [row[index[header]] for row in samples if index[header] < len(row)]
        if column in DATE_COLUMNS:
            found = set(_date_formats([c for c in cells if c][:500], today))
            formats = found if formats is None else formats & found
            continue
        if not FIELDS[column].values and column not in ("district", "previous_authority"):
            continue
        distinct = Counter(c for c in cells if c)
        if len(distinct) > _DISTINCT:
            continue
        choices = _choices(column, authority, translator)
        found_values: dict[str, tuple[str | None, str]] = {}
        for value, count in distinct.most_common():
            if _accepted(column, value, choices, translator):
                found_values[value] = (value, "accepted")
                continue
            close = difflib.get_close_matches(fold(value), list(choices), n=1, cutoff=0.5)
            if close:
                found_values[value] = (choices[close[0]], f"{count:,} rows; closest to {close[0]!r}")
            else:
                found_values[value] = (None, f"{count:,} rows; {_what(column)}")
        suggestion.values[column] = found_values
    suggestion.date_formats = [f for f in DATE_FORMATS if formats and f in formats]
    return suggestion


def _what(column: str) -> str:
    values = FIELDS[column].values
    if not values:
        return "see docs/import-fields.md"
    listed = ", ".join(v for v, _ in values[:8])
    return f"one of {listed}{', ...' if len(values) > 8 else ''}"

"""Who a provider is, across authorities: one key from the strongest identifier each one holds.

Authorities spell the same organisation differently ("St Mungo's Housing Association Ltd",
"ST MUNGOS HA LIMITED"), so a provider's key is, in order of preference: its national provider id,
else its charity number, else its company number, else its normalised name. The accreditation
register keys entries by it, and the common-providers analysis is to reuse it.

    provider_key(name="Weald & Downs Housing Association Limited")   -> "name:weald and downs ha"
    provider_key(name="x", charity_number="1 149 085")                -> "charity:1149085"
    provider_key(name="x", company_number="2812345")                  -> "company:02812345"
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "KEY_KINDS",
    "identifier_keys",
    "normalise_charity_number",
    "normalise_company_number",
    "normalise_name",
    "normalise_national_id",
    "parse_key",
    "provider_key",
]

KEY_KINDS = ("npi", "charity", "company", "name")

# Apostrophes (straight and curly) join a word ("Mungo's" -> "mungos"); other punctuation splits.
_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc`´]")
_NON_WORD = re.compile(r"[^0-9a-z]+")
# Initials written with stops or spaces ("Y.M.C.A.", "H A") read as one word ("ymca", "ha").
_INITIALS = re.compile(r"\b[a-z](?: [a-z]\b)+")
# Whole-word rewrites applied to the lower-cased, punctuation-free name, in this order.
_PHRASES = (
    (re.compile(r"\bhousing associations?\b"), "ha"),
    (re.compile(r"\blimited\b"), "ltd"),
    (re.compile(r"\bcompany\b"), "co"),
    (re.compile(r"\bsaint\b"), "st"),
)
# A legal form at the end says how an organisation is registered, not which one it is.
_LEGAL_SUFFIX = re.compile(r"(?: (?:ltd|plc|llp|cic|cio))+$")
_LEADING_THE = re.compile(r"^the ")
_CHARITY = re.compile(r"^[0-9]{6,8}(?:-[0-9]{1,3})?$")
_COMPANY = re.compile(r"^(?:[0-9]{8}|[A-Z]{2}[0-9]{6})$")


def normalise_name(name: str) -> str:
    """A provider's name in a form two authorities' spellings share.

    Case, accents, punctuation and spacing are ignored; initials run together ("Y.M.C.A." is
    "ymca"); "&" and "+" read as "and"; "Housing Association" and "H.A." read as "ha";
    "Limited" as "ltd"; "Saint" as "st"; a leading "The" and a trailing legal form (Ltd, PLC,
    LLP, CIC, CIO) are dropped. Raises ValueError when nothing is left.
    """
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = text.replace("&", " and ").replace("+", " and ")
    text = _APOSTROPHES.sub("", text)
    text = _NON_WORD.sub(" ", text).strip()
    text = _INITIALS.sub(lambda m: m.group(0).replace(" ", ""), text)
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    text = _LEADING_THE.sub("", text)
    text = _LEGAL_SUFFIX.sub("", text).strip()
    if not text:
        raise ValueError(f"a provider name needs at least one letter or digit: {name!r}")
    return text


def normalise_charity_number(value: str) -> str:
    """A Charity Commission number (six to eight digits, optionally "-n" for a linked charity)."""
    text = re.sub(r"[\s.]", "", value)
    if not _CHARITY.fullmatch(text):
        raise ValueError(f"not a charity number: {value!r}")
    return text


def normalise_company_number(value: str) -> str:
    """A Companies House number: eight characters, digits zero-padded, a two-letter prefix kept."""
    text = re.sub(r"\s", "", value).upper()
    if text.isdigit() and len(text) < 8:
        text = text.zfill(8)
    if not _COMPANY.fullmatch(text):
        raise ValueError(f"not a company number: {value!r}")
    return text


def normalise_national_id(value: str) -> str:
    text = re.sub(r"\s", "", value).upper()
    if not re.fullmatch(r"[A-Z0-9-]{1,32}", text):
        raise ValueError(f"not a national provider id: {value!r}")
    return text


def identifier_keys(
    *,
    name: str,
    national_provider_id: str | None = None,
    charity_number: str | None = None,
    company_number: str | None = None,
) -> tuple[str, ...]:
    """Every key the provider can be found by, strongest first; the first is its `provider_key`."""
    keys = []
    if national_provider_id:
        keys.append("npi:" + normalise_national_id(national_provider_id))
    if charity_number:
        keys.append("charity:" + normalise_charity_number(charity_number))
    if company_number:
        keys.append("company:" + normalise_company_number(company_number))
    keys.append("name:" + normalise_name(name))
    return tuple(keys)


def provider_key(
    *,
    name: str,
    national_provider_id: str | None = None,
    charity_number: str | None = None,
    company_number: str | None = None,
) -> str:
    """The provider's key: its strongest identifier, normalised, with its kind as a prefix."""
    return identifier_keys(
        name=name,
        national_provider_id=national_provider_id,
        charity_number=charity_number,
        company_number=company_number,
    )[0]


def parse_key(text: str) -> str:
    """A key as a user types it: "charity:1149085" is normalised by its kind; anything else is a name."""
    kind, sep, value = text.partition(":")
    if sep and kind in KEY_KINDS:
        if kind == "npi":
            return "npi:" + normalise_national_id(value)
        if kind == "charity":
            return "charity:" + normalise_charity_number(value)
        if kind == "company":
            return "company:" + normalise_company_number(value)
        return "name:" + normalise_name(value)
    return "name:" + normalise_name(text)

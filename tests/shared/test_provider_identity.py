"""Provider identity across authorities: the strongest identifier wins, and names that differ only
in spelling conventions normalise to the same key."""

from __future__ import annotations

import pytest

from shared.provider_identity import (
    identifier_keys,
    normalise_charity_number,
    normalise_company_number,
    normalise_name,
    parse_key,
    provider_key,
)


@pytest.mark.parametrize(
    "spellings",
    [
        ("St Mungo's Housing Association Ltd", "ST MUNGOS HA LIMITED", "St. Mungo’s H.A.", "Saint Mungos HA"),
        ("Weald & Downs Housing Association", "Weald and Downs HA Ltd", "weald  and downs housing association"),
        ("The Salvation Army", "Salvation Army", "SALVATION ARMY."),
        ("Look-Ahead Care & Support Ltd", "Look Ahead Care and Support Limited", "LOOK AHEAD CARE + SUPPORT"),
        ("Société Générale de Logement", "Societe Generale de Logement"),
        ("YMCA Downslink Group CIC", "Y.M.C.A. Downslink Group"),
    ],
)
def test_spellings_of_one_provider_share_a_name_key(spellings: tuple[str, ...]) -> None:
    keys = {normalise_name(s) for s in spellings}
    assert len(keys) == 1, keys


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Kent Housing Association", "Kent Housing Group"),
        ("Theatre Housing Trust", "Housing Trust"),  # "the" only goes as a whole leading word
        ("Limited Options Trust", "Options Trust"),  # a legal form is dropped only at the end
        ("Housing 21", "Housing 2 1"),
    ],
)
def test_different_providers_keep_different_keys(a: str, b: str) -> None:
    assert normalise_name(a) != normalise_name(b)


def test_the_strongest_identifier_is_the_key() -> None:
    assert provider_key(name="X Ltd", national_provider_id="np 123", charity_number="1149085") == "npi:NP123"
    assert provider_key(name="X Ltd", charity_number="1 149 085", company_number="123") == "charity:1149085"
    assert provider_key(name="X Ltd", company_number="2812345") == "company:02812345"
    assert provider_key(name="X Ltd", company_number="sc 123456") == "company:SC123456"
    assert provider_key(name="The X Ltd") == "name:x"
    assert identifier_keys(name="X", charity_number="1149085-1") == ("charity:1149085-1", "name:x")


@pytest.mark.parametrize("bad", ["", "  ", "...", "'''", "— –"])
def test_a_name_needs_something_left_after_normalising(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_name(bad)


@pytest.mark.parametrize("bad", ["12345", "ABC1234", "1149085-1234"])
def test_malformed_charity_numbers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_charity_number(bad)


@pytest.mark.parametrize("bad", ["123456789", "S1234567", "SC12345X"])
def test_malformed_company_numbers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_company_number(bad)


def test_a_typed_key_is_normalised_by_its_kind_and_anything_else_is_a_name() -> None:
    assert parse_key("charity: 1149085") == "charity:1149085"
    assert parse_key("company:2812345") == "company:02812345"
    assert parse_key("St Mungo's HA") == "name:st mungos ha"
    assert parse_key("name:The Salvation Army") == "name:salvation army"
    assert parse_key("Re: Housing") == "name:re housing"  # not a known kind: a name with a colon

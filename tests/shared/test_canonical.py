"""The one canonical-JSON function gives, byte for byte, what each hand-rolled site used to give:
its output is signed and hashed by older cagnets (tests/network/test_golden.py holds such evidence)."""

from __future__ import annotations

import json
import math

import pytest

from shared.canonical import canonical_json

# Values shaped like what is signed: nested objects out of key order, a provider name that is not
# ASCII, integers, floats, nulls, booleans, and the rounding coin's lists of lists.
DOCS = [
    {"version": 3, "network": "South West CAG", "parties": [{"name": "Côté Housing Trust", "id": "p-1"}]},
    {"b": 1, "a": {"z": None, "y": True, "x": [1.5, 0.0, -2]}, "é": "naïve"},
    [[["E10000002", "floating support"], ["age", "25-34"]], 42],
    {"percent_planned": 37.25, "units_per_1000": 4.1, "kind": "supply_map"},
    [],
    {},
]


@pytest.mark.parametrize("doc", DOCS)
def test_matches_the_sites_that_escaped_non_ascii(doc: object) -> None:
    # bundles, snapshots, manifests, proposals, join requests, sealed keys, the release signature
    old = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert canonical_json(doc) == old
    # accreditation entry_bytes encoded as ASCII: the same bytes
    assert canonical_json(doc) == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("ascii")


@pytest.mark.parametrize("doc", DOCS)
def test_matches_the_sites_that_kept_utf8(doc: object) -> None:
    # the audit log's entry hash and the accreditation entry
    old = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert canonical_json(doc, ensure_ascii=False) == old.encode("utf-8")


@pytest.mark.parametrize("doc", [d for d in DOCS if isinstance(d, list)])
def test_matches_the_unsorted_sites_on_lists(doc: list[object]) -> None:
    # the release ledger and the rounding coin never sorted keys: they only ever hold lists
    old = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert canonical_json(doc, ensure_ascii=False) == old


def test_key_order_does_not_matter_and_non_ascii_is_escaped_by_default() -> None:
    assert canonical_json({"b": "é", "a": 1}) == b'{"a":1,"b":"\\u00e9"}'
    assert canonical_json({"a": 1, "b": "é"}, ensure_ascii=False) == '{"a":1,"b":"é"}'.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_refuses_what_is_not_json(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"figure": bad})

"""Canonical JSON: the one way cagnet turns a value into bytes that are signed, hashed or keyed.

Keys sorted, no whitespace, UTF-8; NaN and infinities are refused (they are not JSON). The bytes
are signed and hashed by older cagnets too, so this function's output must never change."""

from __future__ import annotations

import json


def canonical_json(value: object, *, ensure_ascii: bool = True) -> bytes:
    """`value` as compact JSON with sorted keys, encoded as UTF-8.

    `ensure_ascii` escapes every non-ASCII character (a \\u and four hex digits), as the signed
    envelopes, bundles, manifests and snapshots always have; the audit log, the accreditation entries, the release
    ledger and the rounding coins were defined with it off (the characters as UTF-8) and keep it.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=False).encode(
        "utf-8"
    )

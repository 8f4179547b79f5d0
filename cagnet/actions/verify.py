"""Verifying a saved bundle against a verified manifest chain, line by line: what `cagnet verify`
prints and the console's verify page shows."""

from __future__ import annotations

from collections.abc import Sequence

from cagnet.actions.labels import currency_lines
from coordinator.joint.bundle import Bundle, verify_saved_bundle
from shared import dsse
from shared.manifest import Manifest

__all__ = ["verification"]


def verification(envelope: dsse.Envelope, chain: Sequence[Manifest], current_policy: str) -> tuple[Bundle, list[str]]:
    """Re-check a saved bundle's envelope against the network's verified manifest chain: every
    signature (with the keys each party held at the version the bundle names), every binding, and
    the combined result; `current_policy` is the digest of the policy in force now. Returns the
    bundle and what was checked, line by line; a bundle that does not verify raises the reason
    (BadSignature, BundleMismatch, ...). `cagnet verify` and the console's verify page both call it."""
    bundle, made_under = verify_saved_bundle(envelope, chain)
    lines = [
        f"verified: {bundle.kind} bundle from {bundle.network}, "
        f"{len(bundle.contributions)} signed contributions ({', '.join(bundle.answered)}), "
        + (
            "each node's signed receipt checked (repeat movers are counted from tokens, and VFM summed from "
            "masked histograms, that the bundle does not hold); "
            if bundle.kind in ("repeat-movers", "vfm")
            else "result recomputed and identical; "
        )
        + f"missing: {', '.join(m.authority for m in bundle.missing) or 'none'}"
    ]
    note = (
        "the network's current policy" if current_policy == bundle.policy_digest else "not the network's current policy"
    )
    lines.append(f"made under policy {bundle.policy_digest} ({note})")
    if made_under.version == chain[-1].version:
        lines.append(f"signatures checked against the keys of manifest version {made_under.version} (the current one)")
    else:
        lines.append(
            f"signatures checked against the keys each party held at manifest version {made_under.version}, "
            f"from the verified chain (the current version is {chain[-1].version}: keys rotated since do not matter)"
        )
    lines.extend(currency_lines(bundle.currency))  # checked against each node's signed statement
    return bundle, lines

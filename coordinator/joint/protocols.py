"""The round protocols a joint query kind declares (`shared.kinds.registry.Protocol`): one round,
a linked count, a reveal, a masked sum. Each runs its rounds and says how the result is made;
`CoordinatorRuntime` picks one by the kind's declaration and never by the kind's name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from coordinator.joint.fanout import Contribution, Missing
from coordinator.joint.rounds import Round, common_providers, vfm_benchmarks
from shared.auth import digest, forwarded_request, verify_response
from shared.errors import CagnetError
from shared.kinds.records import count_repeat_movers, records_span
from shared.kinds.registry import JointKind, Protocol
from shared.linkage import tokens_digest
from shared.manifest import Manifest
from shared.pb.cagnet.v1 import node_pb2
from shared.serde import envelope_from_proto

__all__ = ["Finish", "run"]

# The result once enough authorities answered: None when the bundle combines it from the answers.
Finish = Callable[[list[Contribution]], Any]


def run(r: Round, spec: JointKind, *, secret: Callable[[], bytes]) -> tuple[list[Contribution], list[Missing], Finish]:
    """Run `spec`'s rounds with every member; `secret` is the coordinator's rounding secret, read
    only by a protocol that counts (repeat movers)."""
    match spec.protocol:
        case Protocol.ONE_ROUND:
            answered, missing = one_round(r, spec)
            return answered, missing, lambda _answered: None
        case Protocol.LINKED_COUNT:
            answered, missing = one_round(r, spec)
            return answered, missing, lambda answered: _count(answered, r, secret())
        case Protocol.REVEAL:
            answered, missing = common_providers(r, spec)
            return answered, missing, lambda _answered: None
        case Protocol.MASKED_SUM:
            answered, missing, result = vfm_benchmarks(r, spec)
            return answered, missing, lambda _answered: result
        case _:  # pragma: no cover - a new protocol must be handled here
            raise ValueError(f"no coordinator handler for the {spec.protocol} protocol")


def one_round(r: Round, spec: JointKind) -> tuple[list[Contribution], list[Missing]]:
    """Ask every member the principal's question once; keep answers whose receipt checks out."""

    def build(member: Any) -> Any:
        return forwarded_request(spec.request_cls, r.header(member.id, spec.method), r.query)

    # Figures made under two policies are not comparable: Round.ask never combines them.
    answered, missing = r.ask(r.manifest.members, spec.rpc, build, spec.response_cls)
    if spec.receipt_cls is not None:
        _check_receipts(answered, missing, r.manifest)
    return answered, missing


def _count(answered: list[Contribution], r: Round, secret: bytes) -> Any:
    # The tokens exist only in this call: never logged, stored, or put in the bundle.
    counted = count_repeat_movers(
        ((c.authority, c.message.tokens, c.message.groups) for c in answered), r.rule, secret=secret
    )
    # The span the people were found in, from each node's signed receipt (which the bundle keeps).
    receipts = [node_pb2.LinkageReceipt.FromString(envelope_from_proto(c.message.receipt).payload) for c in answered]
    stated = [m.currency.records_to for m in receipts if m.HasField("currency")]
    return counted.model_copy(update={"period": records_span(r.query.from_date, r.query.to_date, stated)})


def _check_receipts(answered: list[Contribution], missing: list[Missing], manifest: Manifest) -> None:
    """Keep only answers whose signed receipt attests exactly the tokens sent, made under the
    linkage key most answers share (a node with another key would match nobody)."""
    good = []
    for c in answered:
        try:
            receipt = verify_response(
                envelope_from_proto(c.message.receipt),
                node_pb2.LinkageReceipt,
                signer=manifest.party(c.authority),
                request_digest=digest(c.request.payload),
            )
        except CagnetError:
            missing.append(Missing(c.authority, "its receipt for the linkage tokens failed verification"))
            continue
        if receipt.tokens_digest != tokens_digest(c.message.tokens, c.message.groups) or (
            receipt.key_check != c.message.key_check
        ):
            missing.append(Missing(c.authority, "its receipt does not match the linkage tokens it sent"))
            continue
        good.append(c)
    checks = Counter(c.message.key_check for c in good)
    common = checks.most_common(1)[0][0] if checks else ""
    answered[:] = [c for c in good if c.message.key_check == common]
    for c in good:
        if c.message.key_check != common:
            missing.append(Missing(c.authority, "it holds a different network linkage key"))

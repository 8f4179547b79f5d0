"""A CAG chair's standing feed mandate: what lets the coordinator publish feed snapshots on a
schedule without holding any right of its own.

The chair signs (DSSE, payload type `application/vnd.cagnet.v1.feed-mandate+json`) the network,
the exact joint queries a snapshot is made of, an interval, and a validity window. For each
scheduled snapshot the coordinator signs those queries itself with the mandate and the slot number
(whole intervals since `not_before`) attached. Whoever receives one checks it here: a node before
answering (`check_mandated_query(..., current=True)`), a chair re-checking a bundle or a board a
snapshot afterwards (`current=False`). Every check raises a typed error from `shared.errors`.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared import dsse
from shared.auth import CLOCK_SKEW_S, now_ms
from shared.errors import BadSignature, ExpiredRequest, InvalidRequest, NotPermitted, WrongAudience
from shared.identity import Identity

# FEED_KINDS, the joint queries a feed snapshot is made of (a mandate may allow these and
# nothing else), is read from the registry of kinds.
from shared.kinds.registry import FEED_KINDS, KINDS
from shared.manifest import CAG_CHAIR, Manifest, Party
from shared.pb.cagnet.v1 import coordinator_pb2, envelope_pb2
from shared.serde import envelope_from_proto

__all__ = [
    "FEED_KINDS",
    "MANDATE_PAYLOAD_TYPE",
    "FeedMandate",
    "MandateUse",
    "MandatedQuery",
    "check_mandated_query",
    "check_use",
    "feed_queries",
    "format_interval",
    "make_mandate",
    "mandate_of",
    "open_mandate",
    "parse_interval",
    "query_message",
    "question_of",
    "sign_mandate",
]

MANDATE_PAYLOAD_TYPE = "application/vnd.cagnet.v1.feed-mandate+json"
# The JointQueryRequest fields that are not the question: who asks and how (header, deadline),
# and the mandate itself.
_NOT_THE_QUESTION = frozenset({"header", "node_deadline_ms", "mandate", "slot"})

_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_interval(text: str) -> int:
    """Seconds in "90s", "30m", "24h", "7d" or "2w"; raises ValueError saying what is accepted."""
    match = _INTERVAL.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not an interval such as 7d, 24h, 30m or 90s (a number, then s, m, h, d or w)")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def format_interval(seconds: int) -> str:
    """The shortest exact spelling: 604800 -> "7d", 5400 -> "90m"."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MandatedQuery(_Model):
    """One joint query's question, field for field as in `JointQueryRequest` (without its header,
    node deadline, mandate and slot). `question_of` refuses a request with a field this lacks."""

    kind: str
    by_district: bool = False
    client_groups: tuple[int, ...] = ()
    from_date: str = ""
    to_date: str = ""
    period: str = ""
    min_share_percent: int = 0
    service_type: str = ""

    @field_validator("client_groups")
    @classmethod
    def _as_a_set(cls, groups: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(groups)))  # the nodes treat them as a set; so does the comparison


class FeedMandate(_Model):
    """The chair's standing authority for the coordinator to run `queries`, once per interval,
    from `not_before` until `not_after`."""

    network: str
    chair: str  # the signer's party id; the signer must hold the cag-chair role when it is used
    mandate_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    issued_at: AwareDatetime
    not_before: AwareDatetime
    not_after: AwareDatetime
    interval_s: Annotated[int, Field(ge=1)]
    queries: tuple[MandatedQuery, ...]

    @model_validator(mode="after")
    def _coherent(self) -> FeedMandate:
        if self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")
        kinds = [q.kind for q in self.queries]
        if sorted(kinds) != sorted(FEED_KINDS):
            raise ValueError(f"a feed mandate allows one query of each kind: {', '.join(FEED_KINDS)}")
        return self

    def payload(self) -> bytes:
        return self.model_dump_json().encode()

    @property
    def starts(self) -> float:
        return self.not_before.timestamp()

    @property
    def ends(self) -> float:
        return self.not_after.timestamp()

    def slot_at(self, at: float) -> int:
        """The slot `at` (epoch seconds) falls in: whole intervals since not_before."""
        return math.floor((at - self.starts) / self.interval_s)

    def slot_window(self, slot: int) -> tuple[float, float]:
        start = self.starts + slot * self.interval_s
        return start, start + self.interval_s

    @property
    def tolerance_s(self) -> float:
        """How far either side of its window a slot is still accepted: the clock skew allowed on
        any request, but never more than one interval (so only the slots either side)."""
        return float(min(CLOCK_SKEW_S, self.interval_s))

    def query(self, kind: str) -> MandatedQuery:
        return next(q for q in self.queries if q.kind == kind)


def feed_queries(*, from_date: str = "", to_date: str = "") -> tuple[MandatedQuery, ...]:
    """The feed's questions, as `cagnet feed publish` asks them: the supply map as it stands, and
    net flows and KPI 2 over the whole period (optionally bounded by client-record dates)."""
    return tuple(
        MandatedQuery(kind=kind, from_date=from_date, to_date=to_date, period="all")
        if KINDS[kind].about_records
        else MandatedQuery(kind=kind)
        for kind in FEED_KINDS
    )


def query_message(question: MandatedQuery, header: envelope_pb2.RequestHeader) -> coordinator_pb2.JointQueryRequest:
    """The JointQueryRequest that asks exactly `question`."""
    return coordinator_pb2.JointQueryRequest(header=header, **question.model_dump())


def question_of(query: coordinator_pb2.JointQueryRequest) -> MandatedQuery:
    """The question a JointQueryRequest asks. A field added to the request but not to
    MandatedQuery is refused when set rather than left out of the comparison; left empty, it asks
    nothing (a supply map's `as_at`: a feed's maps are of the day they are made), and a mandate's
    signed bytes stay as they were."""
    fields: dict[str, Any] = {}
    for descriptor in query.DESCRIPTOR.fields:
        if descriptor.name in _NOT_THE_QUESTION:
            continue
        value = getattr(query, descriptor.name)
        if descriptor.name not in MandatedQuery.model_fields and not value:
            continue
        fields[descriptor.name] = tuple(value) if descriptor.is_repeated else value
    try:
        return MandatedQuery.model_validate(fields)
    except ValidationError:
        raise InvalidRequest("the query has a field a feed mandate cannot allow") from None


def make_mandate(
    *,
    network: str,
    chair: str,
    interval_s: int,
    not_before: datetime,
    not_after: datetime,
    queries: tuple[MandatedQuery, ...],
) -> FeedMandate:
    """A new mandate with a random id; times are kept to the second."""
    return FeedMandate(
        network=network,
        chair=chair,
        mandate_id=secrets.token_hex(16),
        issued_at=datetime.now(UTC).replace(microsecond=0),
        not_before=not_before.astimezone(UTC).replace(microsecond=0),
        not_after=not_after.astimezone(UTC).replace(microsecond=0),
        interval_s=interval_s,
        queries=queries,
    )


def sign_mandate(mandate: FeedMandate, chair: Identity) -> dsse.Envelope:
    if chair.party_id != mandate.chair:
        raise InvalidRequest("a mandate is signed by the chair it names")
    return dsse.sign(MANDATE_PAYLOAD_TYPE, mandate.payload(), chair.signing_key)


def open_mandate(envelope: dsse.Envelope, manifest: Manifest, *, now: int | None = None) -> tuple[FeedMandate, Party]:
    """Verify a mandate: a feed mandate for this network, signed by the party it names as chair,
    who holds the cag-chair role in `manifest`. Returns the mandate and the chair."""
    now = now_ms() if now is None else now
    if envelope.payload_type != MANDATE_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet feed mandate")
    try:
        claimed = FeedMandate.model_validate_json(envelope.payload)
    except ValidationError as exc:
        raise InvalidRequest("the feed mandate is malformed", detail=str(exc)) from None
    chair = manifest.party(claimed.chair)  # UnknownIssuer for a party not listed
    # The named chair's key, never the key id, decides; a rotated-out key counts until its overlap ends.
    keys = chair.keys_at(now)
    for i, key in enumerate(keys):
        try:
            dsse.verify(envelope, key)
            break
        except BadSignature:
            if i == len(keys) - 1:
                raise BadSignature("the feed mandate is not signed by the party it names") from None
    if not chair.has_role(CAG_CHAIR):
        raise NotPermitted("the feed mandate is not signed by a CAG chair")
    if claimed.network != manifest.network:
        raise WrongAudience("the feed mandate is for another network")
    return claimed, chair


@dataclass(frozen=True)
class MandateUse:
    """A mandated query that checked out: on whose authority, under which mandate, for which slot."""

    chair: Party
    mandate: FeedMandate
    envelope: dsse.Envelope
    slot: int
    kind: str

    def audit_parameters(self) -> dict[str, object]:
        return {"mandate": self.mandate.mandate_id, "slot": self.slot}


def check_mandated_query(
    query: coordinator_pb2.JointQueryRequest, manifest: Manifest, *, current: bool, now: int | None = None
) -> MandateUse:
    """Everything a coordinator-signed query under a mandate must satisfy (the caller has checked
    the coordinator's signature on `query`): a valid mandate (`mandate_of`), then `check_use`."""
    now = now_ms() if now is None else now
    mandate, chair, envelope = mandate_of(query, manifest, now=now)
    return check_use(query, mandate, chair, envelope, current=current, now=now)


def mandate_of(
    query: coordinator_pb2.JointQueryRequest, manifest: Manifest, *, now: int | None = None
) -> tuple[FeedMandate, Party, dsse.Envelope]:
    """The mandate a coordinator-signed query carries, verified (`open_mandate`), with its chair."""
    if not query.HasField("mandate"):
        raise NotPermitted("the coordinator asks for an aggregate only on a principal's behalf or a chair's mandate")
    envelope = envelope_from_proto(query.mandate)
    mandate, chair = open_mandate(envelope, manifest, now=now)
    return mandate, chair, envelope


def check_use(
    query: coordinator_pb2.JointQueryRequest,
    mandate: FeedMandate,
    chair: Party,
    envelope: dsse.Envelope,
    *,
    current: bool,
    now: int | None = None,
) -> MandateUse:
    """A query under a verified mandate: its slot lies inside the mandate's validity and the query
    was signed in it, and it asks exactly one of the questions the mandate allows. With `current`
    (a node, answering), the mandate must be in force and the slot the one `now` falls in, each
    give or take the mandate's tolerance."""
    now = now_ms() if now is None else now
    at, tolerance = now / 1000, mandate.tolerance_s
    if current and at > mandate.ends + tolerance:
        raise ExpiredRequest("the feed mandate has expired")
    if current and at < mandate.starts - tolerance:
        raise ExpiredRequest("the feed mandate is not valid yet")
    begins, ends = mandate.slot_window(query.slot)
    if query.slot < 0 or begins >= mandate.ends:
        raise NotPermitted("the slot is outside the feed mandate's validity")
    if current and not begins - tolerance <= at < ends + tolerance:
        raise ExpiredRequest("the mandated query is not for the current slot")
    # The coordinator signs each query in its slot; a query signed at another time was not run then.
    if not begins - tolerance <= query.header.issued_at_ms / 1000 < ends + tolerance:
        raise ExpiredRequest("the mandated query was not signed in its slot")
    asked = question_of(query)
    if asked not in mandate.queries:
        raise NotPermitted("the query is not one the feed mandate allows")
    return MandateUse(chair=chair, mandate=mandate, envelope=envelope, slot=query.slot, kind=asked.kind)

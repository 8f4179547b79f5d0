"""The network policy: which roles may ask for which aggregate, and the disclosure rules for each.

A policy is a TOML document whose exact bytes are signed in a DSSE envelope and identified by their
SHA-256 digest. Nodes refuse to serve without a valid one and stamp every response with its digest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from collections.abc import Iterable
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import CagnetError, DisclosureRefused, InvalidRequest, NotPermitted, Unavailable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from shared.manifest import ManifestSource

__all__ = [
    "GRID_KINDS",
    "POLICY_PAYLOAD_TYPE",
    "ROLES",
    "SUPPORTED_POLICY_VERSIONS",
    "AggregateRule",
    "Policy",
    "PolicySource",
    "StandardGrid",
    "default_policy",
    "default_policy_toml",
    "digest",
    "load_signed_policy",
    "parse_policy",
    "sign_policy",
]

POLICY_PAYLOAD_TYPE = "application/vnd.cagnet.v1.policy+toml"

# The policy format versions this code understands; a node refuses any other.
SUPPORTED_POLICY_VERSIONS = frozenset({1})

ROLES = ("member-authority", "cag-chair", "regional-board", "coordinator")

RoundingMode = Literal["keyed", "nearest", "midpoint6"]


class AggregateRule(BaseModel):
    """The disclosure rules for one aggregate kind (after `[defaults]` have been applied).

    Counts: cells of 1..`threshold` are suppressed (a stricter `group_thresholds[g]` for cells of
    client group g); others are rounded to a multiple of `rounding_base` ("keyed": up or down,
    chosen by a keyed hash of the cell and its true value, unbiased and the same every time;
    "nearest": the nearest multiple; "midpoint6": the midpoint of the band of six it falls in,
    3, 9, 15, ..., whatever the base). Money: a cell needs `min_contributors`; it is suppressed when
    its `dominance_n` largest contributors exceed `dominance_k` of its total, or when the total
    less the two largest is under `p_percent` of the largest (p% rule; 0.10 means 10%).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    roles: tuple[str, ...]
    threshold: int = Field(default=7, ge=0)
    rounding_base: int = Field(default=5, ge=1)
    rounding_mode: RoundingMode = "keyed"
    group_thresholds: dict[int, int] = Field(default_factory=lambda: {14: 10, 17: 10})
    min_authorities: int = Field(default=1, ge=1)
    max_dimensions: int = Field(default=2, ge=1)
    min_contributors: int = Field(default=3, ge=1)
    dominance_n: int = Field(default=2, ge=1)
    dominance_k: float = 0.9
    p_percent: float = 0.10

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        for role in roles:
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if "coordinator" in roles:
            # The coordinator only forwards requests on behalf of a principal; it asks for nothing.
            raise ValueError("the coordinator may not ask for an aggregate on its own account")
        return roles

    @field_validator("group_thresholds")
    @classmethod
    def _known_groups(cls, thresholds: dict[int, int]) -> dict[int, int]:
        for group, value in thresholds.items():
            if not 1 <= group <= 21:
                raise ValueError(f"client group {group} is not an SP client group (1-21)")
            if value < 0:
                raise ValueError("a group threshold cannot be negative")
        return thresholds

    @field_validator("dominance_k", "p_percent")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError("must be a fraction between 0 and 1 (0.10 means 10%)")
        return value

    @model_validator(mode="after")
    def _groups_only_stricter(self) -> AggregateRule:
        for group, value in self.group_thresholds.items():
            if value < self.threshold:
                raise ValueError(
                    f"group_thresholds[{group}] is below threshold: a group threshold may only be stricter"
                )
        return self

    def threshold_for(self, client_group: int | None) -> int:
        """The small-count threshold for cells of this client group (None: not one group)."""
        if client_group is None:
            return self.threshold
        return self.group_thresholds.get(client_group, self.threshold)

    def threshold_over(self, client_groups: Iterable[int]) -> int:
        """The threshold of a figure that covers these client groups: the strictest of theirs
        (a total of refuges only is as sensitive as a refuge's own count)."""
        return max([self.threshold, *(self.threshold_for(g) for g in client_groups)])

    @property
    def strictest_threshold(self) -> int:
        return max([self.threshold, *self.group_thresholds.values()])


# The count kinds a standard table set may cover (from client records and quarterly returns).
GRID_KINDS = (
    "movement",
    "net-flow",
    "kpi",
    "non-local-services",
    "outcomes",
    "kpi1",
    "equality",
    "unmet-demand",
)


class StandardGrid(BaseModel):
    """The standard table set (`[grid]`): every financial year from April `first_year` to March
    after `last_year`, and each of its quarters, for each of `kinds`, by the dimensions each kind
    has. A node protects the whole set at once, so its questions are answered every time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first_year: int = Field(ge=1990, le=2100)
    last_year: int = Field(ge=1990, le=2100)
    kinds: tuple[str, ...] = GRID_KINDS

    @field_validator("kinds")
    @classmethod
    def _grid_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        for kind in kinds:
            if kind not in GRID_KINDS:
                raise ValueError(f"{kind!r} has no standard tables; the kinds are {', '.join(GRID_KINDS)}")
        if "equality" in kinds and "movement" not in kinds:
            # The equality profile counts movement's new clients: its tables are in movement's block.
            raise ValueError("'equality' is on the standard table set only with 'movement' (they share one block)")
        return kinds

    @model_validator(mode="after")
    def _span(self) -> StandardGrid:
        if self.last_year < self.first_year:
            raise ValueError("last_year is before first_year")
        if self.last_year - self.first_year >= 20:
            raise ValueError("a standard table set covers at most 20 financial years")
        return self


class Policy(BaseModel):
    """A parsed network policy, with the exact bytes it was parsed from. `grid` is the standard
    table set; a policy without one (every policy before it existed) has none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    revision: int = Field(ge=1)
    name: str = Field(min_length=1)
    aggregates: dict[str, AggregateRule]
    grid: StandardGrid | None = None
    source: bytes = Field(repr=False)

    @field_validator("version")
    @classmethod
    def _supported_version(cls, version: int) -> int:
        if version not in SUPPORTED_POLICY_VERSIONS:
            supported = ", ".join(str(v) for v in sorted(SUPPORTED_POLICY_VERSIONS))
            raise ValueError(f"unsupported policy version {version}; this node understands {supported}")
        return version

    @property
    def digest(self) -> str:
        """ "sha256:<hex>" of the exact bytes this policy was parsed from."""
        return _source_digest(self.source)

    @classmethod
    def from_toml(cls, data: bytes) -> Policy:
        return parse_policy(data)

    def rule(self, kind: str) -> AggregateRule:
        """The rule for an aggregate kind; a kind the policy does not name is refused."""
        try:
            return self.aggregates[kind]
        except KeyError:
            # The caller's kind is not echoed back: it is untrusted input.
            raise DisclosureRefused("no rule for this aggregate kind in the network policy") from None

    def permits(self, kind: str, role: str) -> bool:
        rule = self.aggregates.get(kind)
        return rule is not None and role in rule.roles

    def require_role(self, kind: str, role: str) -> AggregateRule:
        """The rule for `kind` if `role` may ask for it; else DisclosureRefused or NotPermitted."""
        rule = self.rule(kind)
        if role not in rule.roles:
            shown = repr(role) if role in ROLES else "an unknown role"
            raise NotPermitted(f"the network policy does not let {shown} ask for {kind!r}")
        return rule

    def require_any_role(self, kind: str, roles: tuple[str, ...]) -> AggregateRule:
        """The rule for `kind` if any of a principal's roles may ask for it; else NotPermitted."""
        for role in roles:
            if self.permits(kind, role):
                return self.rule(kind)
        if len(roles) == 1:
            return self.require_role(kind, roles[0])
        shown = " or ".join(repr(r) if r in ROLES else "an unknown role" for r in roles) or "a principal with no role"
        raise NotPermitted(f"the network policy does not let {shown} ask for {kind!r}")


@functools.lru_cache(maxsize=16)
def _source_digest(policy_bytes: bytes) -> str:
    # Asked several times a query by every server (each response is stamped with it); the bytes of
    # the policy in force are few and rarely change. Keyed on the bytes themselves.
    return digest(policy_bytes)


def digest(policy_bytes: bytes) -> str:
    """The policy's identity: "sha256:" and the hex SHA-256 of its exact bytes."""
    return "sha256:" + hashlib.sha256(policy_bytes).hexdigest()


def parse_policy(data: bytes) -> Policy:
    """Parse policy TOML (exact bytes); InvalidRequest names the offending field.

    Each `[aggregates.<kind>]` table starts from `[defaults]` and overrides what it names, so
    a key set under a kind applies to that kind only.
    """
    try:
        document = tomllib.loads(bytes(data).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidRequest("policy is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"policy is not valid TOML: {exc}") from exc

    for reserved in ("source", "digest"):
        if reserved in document:
            raise InvalidRequest(f"policy field {reserved}: not allowed in the document")
    defaults = document.pop("defaults", {})
    if not isinstance(defaults, dict):
        raise InvalidRequest("policy field defaults: must be a table")
    if "roles" in defaults or "kind" in defaults:
        raise InvalidRequest("policy field defaults: roles and kind are set per aggregate kind only")
    aggregates = document.get("aggregates", {})
    if not isinstance(aggregates, dict):
        raise InvalidRequest("policy field aggregates: must be a table of aggregate kinds")
    merged: dict[str, Any] = {}
    for kind, overrides in aggregates.items():
        if not isinstance(overrides, dict):
            raise InvalidRequest(f"policy field aggregates.{kind}: must be a table")
        if "kind" in overrides:
            raise InvalidRequest(f"policy field aggregates.{kind}.kind: set by the table's name")
        merged[kind] = {**defaults, **overrides, "kind": kind}
    document["aggregates"] = merged

    try:
        # The defaults first, once, so that a bad default is reported as itself and not per kind.
        AggregateRule.model_validate({**defaults, "kind": "defaults", "roles": ()})
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc, prefix=("defaults",))) from None
    try:
        return Policy.model_validate({**document, "source": bytes(data)})
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc)) from None


def _describe(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join([*prefix, *(str(part) for part in error["loc"])]) or "(document)"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"policy field {field}: {message}")
    return "; ".join(problems)


def load_signed_policy(envelope_json: object, signer_key: Ed25519PublicKey) -> Policy:
    """The policy inside a DSSE envelope signed by `signer_key`; raises if anything is wrong.

    BadSignature if no signature verifies; InvalidRequest if the envelope is malformed, carries
    something other than a policy, or the policy does not parse. The policy's digest is over the
    exact signed bytes.
    """
    from shared import dsse  # imported here so that parsing a policy needs no crypto

    envelope = dsse.Envelope.from_json(envelope_json)
    payload = dsse.verify(envelope, signer_key)
    # The payload type is covered by the signature (PAE), so it can be trusted once verified.
    if envelope.payload_type != POLICY_PAYLOAD_TYPE:
        raise InvalidRequest("the envelope does not carry a network policy")
    return parse_policy(payload)


def sign_policy(policy_bytes: bytes, key: Ed25519PrivateKey) -> dict[str, object]:
    """The DSSE envelope (JSON form) of a policy's exact bytes; parses them first so that an
    invalid policy is never signed."""
    from shared import dsse

    parse_policy(policy_bytes)
    return dsse.sign(POLICY_PAYLOAD_TYPE, policy_bytes, key).to_json()


class PolicySource:
    """The network policy from a signed file, re-read (and re-verified) whenever the file changes.

    `current()` raises Unavailable when there is no valid signed policy: a node serves nothing
    without one, rather than falling back to some default.

    With `manifests`, once the network is governed the policy is the one the quorum-signed
    manifest carries, and the file is not read: the coordinator's signature alone cannot change it.
    """

    def __init__(self, path: Path, trusted_key: Ed25519PublicKey, *, manifests: ManifestSource | None = None) -> None:
        self._path, self._key = path, trusted_key
        self._manifests = manifests
        self._lock = Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._policy: Policy | None = None

    @property
    def path(self) -> Path:
        return self._path

    def current(self) -> Policy:
        if self._manifests is not None:
            manifest = self._manifests.current()
            if manifest.governed:
                return _governed_policy(manifest.policy.encode())
        try:
            st = self._path.stat()
        except OSError:
            raise Unavailable("no valid network policy", detail=f"{self._path} is missing") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # a replaced file is a new inode
        with self._lock:
            if self._policy is None or stamp != self._stamp:
                try:
                    document = json.loads(self._path.read_bytes())
                    policy = load_signed_policy(document, self._key)
                except (ValueError, CagnetError) as exc:
                    # Serve nothing rather than an old policy the network has moved on from.
                    self._policy, self._stamp = None, None
                    raise Unavailable("no valid network policy", detail=f"{self._path}: {exc}") from None
                self._policy, self._stamp = policy, stamp
            return self._policy


@functools.lru_cache(maxsize=8)
def _governed_policy(policy_bytes: bytes) -> Policy:
    try:
        return parse_policy(policy_bytes)
    except CagnetError as exc:
        raise Unavailable("no valid network policy", detail=f"the manifest's policy: {exc}") from None


def default_policy_toml(*, grid: bool = True) -> bytes:
    """The default network policy's exact bytes (sign these to use it): the rules, then the
    standard table set (`STANDARD_GRID_TOML`). `grid=False` leaves the set out: the ledger alone
    guards every question (what the default was before, kept for comparison in bench/)."""
    return (_DEFAULT_POLICY_TOML + (STANDARD_GRID_TOML if grid else "")).encode("utf-8")


def default_policy() -> Policy:
    return parse_policy(default_policy_toml())


# The one copy of the default policy. Its digest is over these bytes, comments included.
_DEFAULT_POLICY_TOML = """\
# cagnet network policy: the rules every node applies before it releases an aggregate.
# Sign the exact bytes of this file; nodes refuse to serve without a valid signed policy.

version = 1            # policy format version; nodes refuse any version they do not understand
revision = 1           # this document's own revision; raise it with every change
name = "cagnet default disclosure policy"

# Every [aggregates.<kind>] starts from these and overrides what it names.
[defaults]
threshold = 7                  # counts 1-7 are suppressed (NHS Digital / OpenSAFELY)
rounding_base = 5              # other counts are rounded to a multiple of 5
rounding_mode = "keyed"        # "keyed" (consistent unbiased rounding), "nearest" or "midpoint6"
group_thresholds = { 14 = 10, 17 = 10 }  # women at risk of domestic violence; refugees
min_authorities = 1            # authorities a joint figure must combine
max_dimensions = 2             # dimensions a table may have
min_contributors = 3           # money: contributors a cell needs
dominance_n = 2                # money: (n, k) dominance rule ...
dominance_k = 0.9              # ... the two largest may not exceed 90% of the total
p_percent = 0.10               # money: p% rule with p = 10%

[aggregates.supply-map]
roles = ["member-authority", "cag-chair"]
max_dimensions = 3             # client group x service type x district

[aggregates.movement]
roles = ["member-authority", "cag-chair"]
max_dimensions = 3             # origin x destination x client group

[aggregates.net-flow]
roles = ["member-authority", "cag-chair"]
min_authorities = 2

[aggregates.repeat-movers]
roles = ["member-authority", "cag-chair"]
min_authorities = 2

[aggregates.non-local-services]
roles = ["member-authority", "cag-chair"]

[aggregates.kpi]
roles = ["member-authority", "cag-chair"]
min_authorities = 3

[aggregates.common-providers]
roles = ["member-authority", "cag-chair"]
min_authorities = 2

[aggregates.vfm]
roles = ["member-authority", "cag-chair"]
min_authorities = 3            # one authority's price must never be recoverable from a benchmark

[aggregates.fair-shares]
roles = ["member-authority", "cag-chair"]
min_authorities = 2            # a share of a joint service: at least two authorities' answers

[aggregates.spend]
roles = ["member-authority", "cag-chair"]
min_authorities = 2            # money per unit and per client: money rules at each node, two answers
[aggregates.outcomes]
roles = ["member-authority", "cag-chair"]
min_authorities = 3            # like KPI 2: outcome rates are compared across the CAG
max_dimensions = 3             # client group x measure (departure or outcome domain) x value

[aggregates.equality]
roles = ["member-authority", "cag-chair"]
max_dimensions = 3             # client group x equality dimension x category; a cross-tab has two

[aggregates.kpi1]
roles = ["member-authority", "cag-chair"]
min_authorities = 3

[aggregates.utilisation]
roles = ["member-authority", "cag-chair"]
max_dimensions = 3             # client group x service type x occupied or void
min_authorities = 3

[aggregates.unmet-demand]
roles = ["member-authority", "cag-chair"]
max_dimensions = 3             # client group x service type x waiting list or referrals refused
min_authorities = 3

# CAG-level figures for the Regional Housing Board; the only aggregate a regional board may ask for.
[aggregates.feed]
roles = ["member-authority", "cag-chair", "regional-board"]
min_authorities = 3
"""


# The standard table set, part of the default policy (docs/disclosure.md); a network may change its
# years or kinds with `cagnet network policy set`.
STANDARD_GRID_TOML = """
# The standard table set: each financial year April 2005 - March 2010 and its quarters, protected
# once as a whole at each node, so that these questions are answered every time they are asked.
[grid]
first_year = 2005
last_year = 2009
kinds = ["movement", "net-flow", "kpi", "non-local-services", "outcomes", "kpi1", "equality", "unmet-demand"]
"""

"""The one error catalogue, mapped to gRPC status codes.

    CagnetError                      INTERNAL (the detail goes to the server log only)
    +-- InvalidRequest               INVALID_ARGUMENT
    +-- NotFound                     NOT_FOUND
    +-- Unavailable                  UNAVAILABLE
    +-- VerificationError            (raised by every verifier; never "return False")
    |   +-- BadSignature             UNAUTHENTICATED
    |   +-- PeerMismatch             UNAUTHENTICATED
    |   +-- UnknownIssuer            PERMISSION_DENIED
    |   +-- WrongAudience            FAILED_PRECONDITION
    |   +-- ExpiredRequest           DEADLINE_EXCEEDED
    |   +-- ReplayedRequest          ALREADY_EXISTS
    |   +-- BundleMismatch           DATA_LOSS
    |   +-- InconsistentLog          DATA_LOSS (a register proof, checkpoint or stored entry)
    |   +-- ManifestRefused          FAILED_PRECONDITION (a manifest version that breaks the chain)
    +-- NotPermitted                 PERMISSION_DENIED
    +-- InviteRefused                PERMISSION_DENIED (unknown, wrong secret, another network or authority)
    |   +-- InviteExpired            FAILED_PRECONDITION
    |   +-- InviteUsed               ALREADY_EXISTS (another joiner already filed with it)
    +-- KeyLocked                    (a private key file is encrypted and no or the wrong passphrase was given)
    +-- DisclosureRefused            FAILED_PRECONDITION
    +-- StalePolicy                  FAILED_PRECONDITION
    +-- ImportError_                 (CSV import; never crosses the wire)
    +-- SchemaMismatch               (a store's database at another schema revision; local only)

Every `public_message` names the rule or reason and never carries data: no figures, no names,
no record identifiers. It is what a remote caller sees. `rule_of` gives a refusal's rule as a short
fixed name for metrics and logs (see docs/operations.md).
"""

from __future__ import annotations

import re

import grpc


class CagnetError(Exception):
    """Root of every error cagnet raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_message = "internal error"
    # Set once the error has been written to an audit log with who asked and what, so the
    # interceptor's catch-all (which knows only the TLS peer) does not write it a second time.
    audited = False

    def __init__(self, public_message: str | None = None, *, detail: str | None = None) -> None:
        self.public_message = public_message or self.default_message
        # `detail` is for the local log and the local CLI only; it is never sent to a peer.
        self.detail = detail
        super().__init__(self.public_message if detail is None else f"{self.public_message}: {detail}")


class InvalidRequest(CagnetError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_message = "invalid request"


class NotFound(CagnetError):
    code = grpc.StatusCode.NOT_FOUND
    default_message = "not found"


class Unavailable(CagnetError):
    code = grpc.StatusCode.UNAVAILABLE
    default_message = "unavailable"


class VerificationError(CagnetError):
    """Something signed or certified did not check out."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_message = "verification failed"


class BadSignature(VerificationError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_message = "bad signature"


class PeerMismatch(VerificationError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_message = "the TLS peer certificate does not match the envelope's signer"


class UnknownIssuer(VerificationError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_message = "unknown issuer"


class WrongAudience(VerificationError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "wrong audience"


class ExpiredRequest(VerificationError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_message = "request expired"


class ReplayedRequest(VerificationError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_message = "replayed request"


class BundleMismatch(VerificationError):
    code = grpc.StatusCode.DATA_LOSS
    default_message = "the bundle's result is not what its contributions combine to"


class InconsistentLog(VerificationError):
    """A Merkle proof, a checkpoint or a stored entry of the accreditation register does not check out."""

    code = grpc.StatusCode.DATA_LOSS
    default_message = "the register's log does not check out"


class ManifestRefused(VerificationError):
    """A manifest version that does not follow from the one before: too few member signatures,
    a skipped or older version, or a fork of a version already accepted."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "manifest version refused"


class NotPermitted(CagnetError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_message = "not permitted"


class InviteRefused(CagnetError):
    """An onboarding call whose invite does not admit it (docs/onboarding.md)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_message = "invite refused"


class InviteExpired(InviteRefused):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "the invite has expired: ask the coordinator's operator for a new one"


class InviteUsed(InviteRefused):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_message = "the invite has already been used by another joiner"


class KeyLocked(CagnetError):
    """A private key file is encrypted and CAGNET_KEY_PASSPHRASE is unset or wrong (local only)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "a private key is encrypted: set CAGNET_KEY_PASSPHRASE"


class DisclosureRefused(CagnetError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "refused by the disclosure policy"


class StalePolicy(CagnetError):
    """The request was made under another network policy than the one this party applies."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "stale policy: the request was made under a different network policy"


class SchemaMismatch(CagnetError):
    """A store's database is at a schema revision this code does not run on: an older one (upgrade
    it with the command the detail names) or one newer than this code (run the newer cagnet).
    Raised when a store is opened, before anything is read or written; never crosses the wire."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "the database's schema is not the one this cagnet runs on"


class ImportError_(CagnetError):
    """A CSV import was refused; `problems` lists every (file, row, column, reason) found."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_message = "import refused"

    def __init__(self, problems: list[ImportProblem]) -> None:
        self.problems = problems
        lines = [str(p) for p in problems[:20]]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__("import refused; nothing was written", detail="\n" + "\n".join(lines) + more)


class ImportProblem:
    """One thing wrong with an input file, precise enough to fix: file, sheet (of a workbook), row,
    column, the value found, the reason, and the fix when the reason does not already say it."""

    __slots__ = ("column", "file", "fix", "reason", "row", "sheet", "value")

    def __init__(
        self,
        file: str,
        row: int | None,
        column: str | None,
        reason: str,
        *,
        sheet: str | None = None,
        value: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.file, self.row, self.column, self.reason = file, row, column, reason
        self.sheet, self.value, self.fix = sheet, value, fix

    def __str__(self) -> str:
        where = self.file
        if self.sheet is not None:
            where += f", sheet {self.sheet!r}"
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column {self.column!r}"
        return f"{where}: {self.reason}" + (f"; {self.fix}" if self.fix else "")

    def __repr__(self) -> str:
        return f"ImportProblem({self.file!r}, {self.row!r}, {self.column!r}, {self.reason!r})"


# The disclosure rules a DisclosureRefused names before its colon (shared/disclosure.py and the
# release path). A closed set: a metric label or log field never carries the rest of a message.
DISCLOSURE_RULES = (
    "maximum dimensions",
    "query-set restriction",
    "minimum authorities",
    "secondary suppression",
    "differencing",
    "secure aggregation",
)


def rule_of(error: BaseException) -> str:
    """The rule a refusal was made under, as a fixed name: `disclosure:differencing`,
    `not-permitted`, `replayed-request`... (the error class, or for a disclosure refusal the rule
    its message names); `internal` for anything that is not a CagnetError."""
    if not isinstance(error, CagnetError):
        return "internal"
    if isinstance(error, DisclosureRefused):
        named = error.public_message.split(":", 1)[0].strip().lower()
        if named in DISCLOSURE_RULES:
            return "disclosure:" + named.replace(" ", "-")
        if error.public_message.startswith("no rule for this aggregate kind"):
            return "disclosure:no-rule"
        return "disclosure"
    if type(error) is CagnetError:
        return "internal"
    name = type(error).__name__.rstrip("_")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()

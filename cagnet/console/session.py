"""One console session: the folder it acts from (a principal's kit, a network folder, or a member
node's folder), the secrets that let only the person who started it in, one kept-open channel to
the coordinator, and the verified results asked so far.

The kit's or node's keys are read by the same functions the CLI uses and stay in this process:
nothing the browser receives holds a key, only figures, bundles and the tokens of this session.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cagnet.actions.asking import member_asker
from cagnet.actions.tables import ResultTable, bundle_notes, result_tables
from coordinator import network
from coordinator.joint.bundle import Bundle
from coordinator.joint.client import Asker, CoordinatorClient, folder_asker
from shared import dsse
from shared.errors import InvalidRequest
from shared.manifest import REGIONAL_BOARD

__all__ = ["ASKER_TTL_S", "Held", "Session", "check_board_kits"]

ASKER_TTL_S = 60.0


@dataclass(frozen=True)
class Held:
    """A verified result the console holds for its pages and downloads."""

    id: str
    bundle: Bundle
    envelope: dsse.Envelope
    tables: list[ResultTable]
    notes: list[tuple[str, str]]
    asked_at: datetime
    question: dict[str, Any]


@dataclass
class Session:
    folder: Path
    principal: str = ""
    feeds_dir: Path | None = None
    # A regional board's kits, one per network (the first is `folder`): the Region page rolls them up.
    region_kits: tuple[Path, ...] = ()
    # The secrets of this session: the token in the URL (a cookie after the first visit) and the
    # token every form carries (CSRF), both fresh each start.
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    results: dict[str, Held] = field(default_factory=dict)
    _client: CoordinatorClient | None = None
    _asker: tuple[float, Asker] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if self.region_kits:
            check_board_kits(self.region_kits)

    @property
    def is_node(self) -> bool:
        """Acting as a member authority's officer, from its node's folder."""
        return (self.folder / "node.toml").exists()

    @property
    def is_kit(self) -> bool:
        return not self.is_node and network.kit_principal(self.folder) is not None

    def asker(self) -> Asker:
        """Who asks, and the verified manifest and policy (a kit's brought up to date over the wire
        first); read again after ASKER_TTL_S, so that a page load does not cost a round trip."""
        now = time.monotonic()
        with self._lock:
            if self._asker is not None and now - self._asker[0] < ASKER_TTL_S:
                return self._asker[1]
        asker = folder_asker(self.folder, principal=self.principal, member_asker=member_asker)
        with self._lock:
            self._asker = (now, asker)
        return asker

    def client(self) -> CoordinatorClient:
        """One channel to the coordinator for the whole session: the handshake is paid once."""
        with self._lock:
            if self._client is None:
                self._client = CoordinatorClient(self.folder, principal=self.principal, member_asker=member_asker)
            return self._client

    def ask(self, kind: str, question: dict[str, Any]) -> Held:
        """Ask a joint query and hold its verified result; a refusal raises (Refused, CagnetError)."""
        bundle, envelope = self.client().query(kind=kind, **question)
        held = Held(
            id=f"r{next(self._ids)}",
            bundle=bundle,
            envelope=envelope,
            tables=result_tables(bundle),
            notes=bundle_notes(bundle),
            asked_at=datetime.now(UTC),
            question=question,
        )
        with self._lock:
            self.results[held.id] = held
        return held

    def latest(self) -> Held | None:
        with self._lock:
            return next(reversed(self.results.values()), None)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def check_board_kits(kits: tuple[Path, ...]) -> None:
    """Several kits make one session only as a regional board's, one kit per network: any other
    principal's kit, or a network folder, is refused by name before anything is served."""
    for folder in kits:
        principal = network.kit_principal(folder)
        if principal is None or REGIONAL_BOARD not in network.read(folder).party(principal).roles:
            raise InvalidRequest(
                f"{folder} is not a regional board's kit: several kits are taken only as a regional board's, "
                "one per network"
            )

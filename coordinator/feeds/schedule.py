"""The coordinator's feed schedule: a snapshot once a slot, under the CAG chair's standing mandate.

It runs beside the server when `[feed] publish_every` is set (`coordinator.settings`). Each tick
reads the mandate file afresh, so `cagnet feed authorise` and `cagnet feed revoke` take effect
without a restart; publishes if the current slot (whole `publish_every` intervals since the
mandate's not_before) has no snapshot under that mandate, catching up once after a start; and logs
what it did, or why not. A failure (too few authorities, a node refusing) is logged and tried
again in the next slot: the schedule never stops the server.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from coordinator.feeds.snapshot import FeedStore
from coordinator.settings import CoordinatorSettings
from shared import dsse
from shared.errors import CagnetError, InvalidRequest
from shared.mandate import FeedMandate, format_interval, open_mandate
from shared.manifest import ManifestSource

log = logging.getLogger(__name__)

# The mandate file is read at least this often, so a new or revoked one is noticed.
POLL_S = 60.0


def read_mandate_file(path: Path) -> dsse.Envelope | None:
    """The signed mandate in `path` (DSSE JSON), None if there is none; unverified."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return dsse.Envelope.from_json(text)


def write_mandate_file(path: Path, envelope: dsse.Envelope) -> None:
    """Replace the mandate in one step: the schedule never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(envelope.to_json(), indent=2) + "\n")
    tmp.replace(path)


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class Publisher(Protocol):
    """What the schedule needs of a coordinator (`coordinator.server.CoordinatorRuntime` is one):
    named here so that the server imports the schedule and not the other way round."""

    @property
    def netdir(self) -> Path: ...
    @property
    def settings(self) -> CoordinatorSettings: ...
    @property
    def manifests(self) -> ManifestSource: ...
    @property
    def feeds(self) -> FeedStore: ...
    def publish_mandated(self, mandate: dsse.Envelope, *, now: int | None = None) -> dsse.Envelope: ...


class FeedSchedule:
    """Publishes under the mandate in `mandate_path` once every `every_s` seconds."""

    def __init__(
        self,
        runtime: Publisher,
        *,
        every_s: int,
        mandate_path: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.every_s = every_s
        self.mandate_path = mandate_path
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mandate: FeedMandate | None = None  # the last one loaded, for the wake-up time
        self._done: tuple[str, int | None] | None = None  # (mandate id, the last slot attempted)
        self._said: str | None = None

    @classmethod
    def prepare(cls, runtime: Publisher) -> FeedSchedule | None:
        """The schedule the settings ask for, checked against the mandate on file; None when off.
        Raises InvalidRequest when the schedule is more frequent than the mandate allows."""
        settings = runtime.settings
        every = settings.publish_every_s
        if every is None:
            log.info("feed schedule: off ([feed] publish_every is not set); snapshots only by `cagnet feed publish`")
            return None
        schedule = cls(runtime, every_s=every, mandate_path=settings.mandate_path(runtime.netdir))
        loaded = schedule._load()
        if not isinstance(loaded, str) and loaded[0].interval_s > every:
            allowed = format_interval(loaded[0].interval_s)
            raise InvalidRequest(
                f"coordinator setting [feed] publish_every {format_interval(every)} is more often than the CAG "
                f"chair's mandate allows (every {allowed}): set it to {allowed} or longer, or ask the chair "
                "for a new mandate"
            )
        log.info("feed schedule: every %s, under the mandate in %s", format_interval(every), schedule.mandate_path)
        if isinstance(loaded, str):
            schedule._say(logging.WARNING, loaded)
        return schedule

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="feed-schedule", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the schedule never takes the server down
                log.exception("feed schedule: unexpected error; trying again")
            self._stop.wait(self._sleep())

    def _sleep(self) -> float:
        """Until just after the next slot begins, but never longer than POLL_S."""
        mandate = self._mandate
        if mandate is None:
            return POLL_S
        now = self._clock()
        slot = math.floor((now - mandate.starts) / self.every_s)
        following = mandate.starts + (max(slot, -1) + 1) * self.every_s
        return max(0.05, min(POLL_S, following - now + 0.01))

    def _say(self, level: int, message: str) -> None:
        """Log a state once, not on every tick."""
        if message != self._said:
            log.log(level, "feed schedule: %s", message)
            self._said = message

    def _load(self) -> tuple[FeedMandate, dsse.Envelope] | str:
        """The mandate on file, verified against the current manifest; else why there is none."""
        try:
            envelope = read_mandate_file(self.mandate_path)
            if envelope is None:
                self._mandate = None
                return (
                    f"no mandate at {self.mandate_path}; scheduled publishing stays off until the CAG chair "
                    "runs `cagnet feed authorise`"
                )
            mandate, _ = open_mandate(envelope, self.runtime.manifests.current())
        except CagnetError as exc:
            self._mandate = None
            return f"the mandate at {self.mandate_path} is refused ({exc}); scheduled publishing stays off"
        self._mandate = mandate
        return mandate, envelope

    def tick(self) -> str:
        """Publish if the current slot has no snapshot under the mandate; say what happened."""
        loaded = self._load()
        if isinstance(loaded, str):
            self._say(logging.WARNING, loaded)
            return loaded
        mandate, envelope = loaded
        now = self._clock()
        if mandate.interval_s > self.every_s:
            message = (
                f"mandate {mandate.mandate_id} allows a snapshot every {format_interval(mandate.interval_s)}, less "
                f"often than publish_every {format_interval(self.every_s)}: nothing published"
            )
            self._say(logging.ERROR, message)
            return message
        if now < mandate.starts:
            message = f"mandate {mandate.mandate_id} starts at {_at(mandate.starts)}; waiting"
            self._say(logging.INFO, message)
            return message
        if now >= mandate.ends:
            message = (
                f"mandate {mandate.mandate_id} ended at {_at(mandate.ends)}; scheduled publishing stays off until "
                "the CAG chair runs `cagnet feed authorise` again"
            )
            self._say(logging.WARNING, message)
            return message
        slot = math.floor((now - mandate.starts) / self.every_s)
        if self._done is None or self._done[0] != mandate.mandate_id:
            every = format_interval(self.every_s)
            self._say(logging.INFO, f"publishing every {every} under mandate {mandate.mandate_id}")
            self._done = (mandate.mandate_id, self._slot_published(mandate))
        if self._done[1] is not None and self._done[1] >= slot:
            return f"slot {slot} already tried"  # published, or failed and left to the next slot
        self._done = (mandate.mandate_id, slot)  # at most one attempt a slot, whatever the outcome
        following = _at(mandate.starts + (slot + 1) * self.every_s)
        try:
            published = self.runtime.publish_mandated(envelope, now=int(now * 1000))
        except CagnetError as exc:
            why = exc.public_message if exc.detail is None else f"{exc.public_message} ({exc.detail})"
            message = f"no snapshot for slot {slot}: {why}; next attempt at {following}"
            log.warning("feed schedule: %s", message)
            return message
        sequence = json.loads(published.payload)["sequence"]
        message = f"published snapshot {sequence} (slot {slot}); next at {following}"
        log.info("feed schedule: %s", message)
        return message

    def _slot_published(self, mandate: FeedMandate) -> int | None:
        """The slot of the latest snapshot already stored under this mandate (a restart does not
        publish twice in a slot)."""
        began = self.runtime.feeds.last_published_under(mandate.mandate_id)
        return None if began is None else math.floor((began - mandate.starts) / self.every_s)

"""The coordinator's settings: `NETDIR/coordinator.toml`, each overridden by a CAGNET_COORDINATOR_*
environment variable. The file's top-level keys are the settings below; its `[feed]` section holds
the feed's (`publish_every` there is CAGNET_COORDINATOR_FEED_PUBLISH_EVERY, and so on)::

    node_deadline_ms = 5000
    onboarding_listen = "0.0.0.0:7443"   # the onboarding port for joiners with an invite (default: off)
    metrics_listen = "127.0.0.1:9465"  # the Prometheus endpoint; off unless set (loopback only)
    log_format = "json"                # `coordinator serve`'s log lines: "text" (default) or "json"

    [feed]
    publish_every = "7d"            # the schedule: "7d", "24h", "30m", ...; "off" (the default)
    mandate = "feed-mandate.json"   # the CAG chair's signed mandate, relative to NETDIR
    min_interval = "1m"             # the shortest schedule accepted
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import InvalidRequest
from shared.mandate import format_interval, parse_interval
from shared.metrics import parse_listen

SETTINGS_FILE = "coordinator.toml"
ENV_PREFIX = "CAGNET_COORDINATOR_"
# Sections of the file whose keys are settings named `<section>_<key>`.
_SECTIONS = ("feed",)
_OFF = ("", "off", "never", "none")


class CoordinatorSettings(BaseSettings):
    """Read from CAGNET_COORDINATOR_* environment variables (and, through `load`, the file)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    node_deadline_ms: int = 5000
    max_node_deadline_ms: int = 30000
    # Where feed snapshots are kept (default: sqlite file feeds.db in the network folder).
    feed_database_url: str = ""
    # The coordinator's audit log (default: sqlite file coordinator-audit.db in the network folder).
    audit_database_url: str = ""
    # A feed stream ends after this long; the subscriber reconnects with a fresh signed request.
    feed_stream_max_s: int = 3600
    # How often the coordinator publishes a snapshot under the chair's mandate; "off" by default.
    feed_publish_every: str = "off"
    # The chair's signed mandate (`cagnet feed authorise` writes it), relative to the network folder.
    feed_mandate: str = "feed-mandate.json"
    # The shortest schedule accepted: a slip such as "7s" for "7d" is refused rather than run.
    feed_min_interval: str = "1m"
    # Where the onboarding port listens (docs/onboarding.md), HOST:PORT; off ("") unless set, so
    # that a coordinator opens no port a certificate-less peer may reach unless its operator asks.
    onboarding_listen: str = ""

    @property
    def onboarding_address(self) -> str | None:
        """The onboarding port's listen address, or None when it is off."""
        value = self.onboarding_listen.strip()
        return None if value.lower() in _OFF else value

    # The plain-HTTP Prometheus endpoint ("127.0.0.1:9465" or a port); "" is off (docs/operations.md).
    metrics_listen: str = ""
    log_format: Literal["text", "json"] = "text"

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str) -> str:
        if value.strip():
            try:
                parse_listen(value, setting="metrics_listen")
            except InvalidRequest as exc:
                raise ValueError(exc.public_message.removeprefix("metrics_listen: ")) from None
        return value.strip()

    @field_validator("feed_publish_every")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if value.strip().lower() in _OFF:
            return "off"
        parse_interval(value)
        return value.strip()

    @field_validator("feed_min_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        parse_interval(value)
        return value.strip()

    @model_validator(mode="after")
    def _not_too_often(self) -> CoordinatorSettings:
        every = self.publish_every_s
        if every is not None and every < parse_interval(self.feed_min_interval):
            raise ValueError(
                f"publish_every {self.feed_publish_every} is shorter than min_interval {self.feed_min_interval}"
            )
        return self

    @property
    def publish_every_s(self) -> int | None:
        """The schedule in seconds, or None when scheduled publishing is off."""
        return None if self.feed_publish_every == "off" else parse_interval(self.feed_publish_every)

    def mandate_path(self, netdir: Path) -> Path:
        return netdir / self.feed_mandate

    def describe_schedule(self) -> str:
        every = self.publish_every_s
        return "off" if every is None else f"every {format_interval(every)}"

    @classmethod
    def load(cls, netdir: Path) -> CoordinatorSettings:
        """The settings from NETDIR/coordinator.toml (if any), each overridden by its environment
        variable. A bad value raises InvalidRequest naming the key and where it was set."""
        path = netdir / SETTINGS_FILE
        from_file = _read_file(path)
        try:
            from_env = cls()
            overrides = from_env.model_dump(include=from_env.model_fields_set)
            return cls(**{**from_file, **overrides})
        except ValidationError as exc:
            raise InvalidRequest(_describe(exc, path, set(from_file))) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise InvalidRequest(f"{path}: [{key}] must be a section")
            flat.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _where(field: str, path: Path, in_file: set[str]) -> str:
    """A setting's name as the operator wrote it: `[feed] publish_every` in the file, or the variable."""
    env = ENV_PREFIX + field.upper()
    if env in os.environ:
        return env
    for section in _SECTIONS:
        if field.startswith(section + "_"):
            name = f"[{section}] {field.removeprefix(section + '_')}"
            break
    else:
        name = field
    return f"{path} {name}" if field in in_file else name


def _describe(exc: ValidationError, path: Path, in_file: set[str]) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "not a coordinator setting"
        if not field:  # a rule across settings: the first setting it names is the one to fix
            field = "feed_publish_every" if "publish_every" in message else ""
        problems.append(f"coordinator setting {_where(field, path, in_file) if field else '(settings)'}: {message}")
    return "; ".join(problems)

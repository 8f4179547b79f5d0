"""The demo's six member authorities (cagnet/demo.toml), as the shipped register describes them:
what the tests written for the six-authority demo network use."""

from __future__ import annotations

from cagnet.demo import DEMO
from shared.authorities import Authority, shipped_register

SIX: tuple[str, ...] = tuple(DEMO["members"])
AUTHORITIES: dict[str, Authority] = {code: shipped_register().authority(code) for code in SIX}

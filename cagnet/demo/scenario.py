"""The demo network's members and scenario, read once from `cagnet/demo.toml`: data, not code,
shared by the demo's network part and its register part."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any


def _load_demo() -> dict[str, Any]:
    return tomllib.loads(resources.files("cagnet").joinpath("demo.toml").read_text(encoding="utf-8"))


DEMO = _load_demo()

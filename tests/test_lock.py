"""The lock files pin every dependency pyproject.toml names, with hashes, and agree with each other.

`make test` and `make demo` install only from requirements/dev.lock; a dependency added to
pyproject.toml but not locked would make a fresh clone resolve it anew (or fail `pip check`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", re.MULTILINE)


def _name(requirement: str) -> str:
    """The normalised project name of a PEP 508 requirement ("psycopg[binary]>=3.2" -> psycopg)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]).lower()


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {_name(name): version for name, version in PIN.findall(text)}


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def test_every_declared_dependency_is_pinned() -> None:
    runtime, dev = _declared()
    dev_pins, runtime_pins = _pins("dev.lock"), _pins("runtime.lock")
    assert not (runtime | dev) - dev_pins.keys(), "run `make lock`: dev.lock misses some"
    assert not runtime - runtime_pins.keys(), "run `make lock`: runtime.lock misses some"


def test_runtime_lock_is_the_dev_lock_without_the_tools() -> None:
    dev_pins, runtime_pins = _pins("dev.lock"), _pins("runtime.lock")
    differing = {n: (v, dev_pins.get(n)) for n, v in runtime_pins.items() if dev_pins.get(n) != v}
    assert not differing, f"runtime.lock and dev.lock pin different versions: {differing}"


def test_every_pin_carries_a_hash() -> None:
    for lock in ("dev.lock", "runtime.lock"):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / lock).read_text())
        unhashed = [b.split()[0] for b in blocks if "==" in b.split("\n")[0] and "--hash=sha256:" not in b]
        assert not unhashed, f"{lock}: pins without a hash: {unhashed}"

"""`cagnet --help` must not pay for grpc, SQLAlchemy, cryptography, pydantic, protobuf or plotly
(issue 24 item 5): counted from what a fresh interpreter has loaded after the command line has
built its whole tree, never timed (bench/startup.py measures the time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ("grpc", "sqlalchemy", "sqlmodel", "alembic", "cryptography", "pydantic", "google.protobuf", "plotly")
# What of cagnet's own code the command tree may load before a command runs: the log formats (a
# --log-format choice) and the role names (in help texts), both plain Python.
ALLOWED_OWN = {"shared", "shared.logs", "shared.roles"}


def _loaded(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def _own(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("shared", "node", "coordinator")}


def _help(*argv: str) -> str:
    """Run `cagnet ARGV --help` in-process (the whole tree is built), keeping the interpreter alive."""
    return (
        "import contextlib, io, sys\n"
        f"sys.argv = ['cagnet', *{list(argv)!r}, '--help']\n"
        "from cagnet.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
    )


def test_the_probe_sees_a_heavy_import() -> None:
    # The counting is real: a module the commands use does pull in grpc and pydantic.
    loaded = _loaded("import coordinator.joint.client")
    assert {"grpc", "pydantic"} <= set(_heavy(loaded))


def test_importing_the_entry_module_loads_nothing_heavy() -> None:
    loaded = _loaded("import cagnet.cli")
    assert _heavy(loaded) == []
    assert _own(loaded) <= ALLOWED_OWN


def test_help_loads_nothing_heavy() -> None:
    loaded = _loaded(_help())
    assert "typer" in loaded
    assert _heavy(loaded) == []
    assert _own(loaded) <= ALLOWED_OWN


@pytest.mark.parametrize("argv", [("query", "supply-map"), ("node", "serve"), ("network", "propose-roles")])
def test_a_command_help_loads_nothing_heavy_of_its_own(argv: tuple[str, ...]) -> None:
    loaded = _loaded(_help(*argv))
    # Typer itself checks a command's parameters with pydantic (its own start-up, not cagnet's): the
    # rest, and all of cagnet's own modules but the two plain ones, must stay unloaded.
    assert "typer._adapters" in loaded
    assert [m for m in _heavy(loaded) if m.split(".")[0] != "pydantic"] == []
    assert _own(loaded) <= ALLOWED_OWN


@pytest.mark.parametrize("argv", [["query", "--help"], ["query", "supply-map", "--help"], ["node", "import", "--help"],
                                  ["network", "status", "--help"], ["feed"], ["register", "list", "--nope"],
                                  ["query", "no-such-kind"]])  # fmt: skip
def test_a_group_built_alone_says_what_the_whole_tree_says(argv: list[str]) -> None:
    """`cagnet GROUP ...` builds only that group (`_app_for`): its help, usage and errors are the
    whole tree's, word for word."""
    from typer.testing import CliRunner

    from cagnet.cli import _app_for, app

    narrow = _app_for(["cagnet", *argv])
    assert narrow is not app
    whole = CliRunner().invoke(app, argv, env={"COLUMNS": "120"}, prog_name="cagnet")
    alone = CliRunner().invoke(narrow, argv, env={"COLUMNS": "120"}, prog_name="cagnet")
    assert (alone.exit_code, alone.output) == (whole.exit_code, whole.output)
    assert whole.output.strip()

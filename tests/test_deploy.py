"""The deployment files against the CLI they drive: every `cagnet ...` command line in the systemd
units, docker-compose.yml, the compose scripts and the Dockerfile's health check parses as a real
command with real options, and every CAGNET_NODE_* / CAGNET_COORDINATOR_* variable they set is a
setting the process reads. (`make compose-test` runs them for real; this keeps them current.)"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import typer

from cagnet.cli import app
from coordinator.settings import CoordinatorSettings
from node.config import NodeSettings

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy").glob("*.service"))
SCRIPTS = sorted((ROOT / "deploy" / "compose").glob("*.sh"))
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def _parse(args: list[str]) -> dict[str, object]:
    """Resolve `cagnet ARGS` down to its command and parse its options, without running it."""
    command = typer.main.get_command(app)
    context = command.make_context("cagnet", list(args))
    rest = list(args)
    while hasattr(command, "get_command"):
        name, rest = rest[0], rest[1:]
        sub = command.get_command(context, name)
        assert sub is not None, f"no command {name!r} in `cagnet {' '.join(args)}`"
        command, context = sub, sub.make_context(name, list(rest), parent=context)
    return dict(context.params)


def _shell_words(line: str) -> list[str]:
    """A shell line's words: ${VAR:-default} as its default, any other $VAR as 1 (a valid path,
    name or number alike)."""
    line = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", line)
    line = re.sub(r"\$\{?\w+\}?|\$\([^)]*\)", "1", line)
    return shlex.split(line, comments=True)


def _cagnet_lines(text: str) -> list[list[str]]:
    joined = text.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        words = _shell_words(line) if re.match(r"\s*(exec\s+)?cagnet\s", line) else []
        if words:
            lines.append(words[words.index("cagnet") + 1 :])
    return lines


def _compose_defaults(text: str) -> str:
    """docker-compose.yml with each ${VAR:-default} as its default, as Compose fills it in."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def _exec_start(unit: Path) -> list[str]:
    """The unit's ExecStart as cagnet's arguments (through `/bin/sh -c 'exec cagnet ...'` too)."""
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit.read_text(), re.MULTILINE)
    words = shlex.split(exec_start)
    if words[:2] == ["/bin/sh", "-c"]:
        words = _shell_words(words[2].replace("%%", "%"))
        words = words[1:] if words[0] == "exec" else words
    binary, *args = words
    assert binary.endswith("/cagnet"), unit.name
    return args


def test_every_unit_runs_a_real_command() -> None:
    assert {"cagnet-node.service", "cagnet-coordinator.service"} <= {u.name for u in UNITS}
    for unit in UNITS:
        params = _parse(_exec_start(unit))
        assert str(params.get("nodedir") or params.get("netdir")).startswith("/var/lib/cagnet/"), unit.name


def test_every_node_unit_uses_the_same_store() -> None:
    urls = {
        u.name: re.findall(r"^Environment=CAGNET_NODE_DATABASE_URL=(.*)$", u.read_text(), re.MULTILINE) for u in UNITS
    }
    node_urls = {name: found for name, found in urls.items() if found}
    assert len(node_urls) >= 2 and len({tuple(found) for found in node_urls.values()}) == 1, node_urls


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_compose_script_runs_real_commands(script: Path) -> None:
    lines = _cagnet_lines(script.read_text())
    assert lines, f"{script.name} runs no cagnet command"
    for args in lines:
        _parse(args)


def test_the_compose_file_and_dockerfile_run_real_commands() -> None:
    compose = _compose_defaults(COMPOSE.read_text())
    # A `command` is the image entry point's (cagnet's) arguments; a health `test` is CMD and a command.
    cagnet: list[list[str]] = [json.loads(c) for c in re.findall(r"^\s+command: (\[.*\])$", compose, re.MULTILINE)]
    tests = [json.loads(c) for c in re.findall(r"^\s+test: (\[.*\])$", compose, re.MULTILINE)]
    cagnet += [t[2:] for t in tests if t[:2] == ["CMD", "cagnet"]]
    assert any(c[0] == "health" for c in cagnet)
    for args in cagnet:
        _parse(args)
    dockerfile = DOCKERFILE.read_text()
    (health_env,) = re.findall(r'^ENV CAGNET_HEALTH="(.*)"$', dockerfile, re.MULTILINE)
    assert "CMD cagnet health $CAGNET_HEALTH" in dockerfile
    assert _parse(["health", *shlex.split(health_env)])["nodedir"] == Path("/var/lib/cagnet/node")


def test_every_setting_named_is_one_the_process_reads() -> None:
    known = {f"CAGNET_NODE_{f.upper()}" for f in NodeSettings.model_fields} | {
        f"CAGNET_COORDINATOR_{f.upper()}" for f in CoordinatorSettings.model_fields
    }
    named: set[str] = set()
    for path in [*UNITS, COMPOSE, *SCRIPTS]:
        named |= set(re.findall(r"\bCAGNET_(?:NODE|COORDINATOR)_[A-Z_]+", path.read_text()))
    assert "CAGNET_NODE_DATABASE_URL" in named
    assert named <= known, sorted(named - known)

"""What the network operator's, a CAG chair's and a member officer's commands share: the consoles,
the --network/--kit/--node options and how a folder becomes the one to act from."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.align import AlignMethod
from rich.console import Console
from rich.rule import Rule
from rich.style import Style
from rich.text import TextType

if TYPE_CHECKING:
    from coordinator.joint.bundle import Bundle


# Wider than any table: a pipe or a file gets each table whole, one line per row.
PIPE_WIDTH = 1000
RULE_WIDTH = 100  # a heading's rule in a pipe: a page wide, not PIPE_WIDTH
WIDE = 160  # a console this wide shows every label in full


class PipeConsole(Console):
    """A console writing to a pipe or a file: PIPE_WIDTH wide, so no table is cut, with each rule
    (a section heading) as wide as a page."""

    def rule(
        self,
        title: TextType = "",
        *,
        characters: str = "─",
        style: str | Style = "rule.line",
        align: AlignMethod = "center",
    ) -> None:
        self.print(Rule(title, characters=characters, style=style, align=align), width=RULE_WIDTH)


def stdout_console(*, stderr: bool = False) -> Console:
    """Standard output (or error): a terminal at its own width (tables wrap their labels to fit
    it); a pipe or a file, unless COLUMNS says otherwise, at PIPE_WIDTH, so that no column is ever
    cut to 80 characters (`--format csv` gives the figures without the layout)."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = PipeConsole(stderr=stderr, width=PIPE_WIDTH)
    return console


def label_cap(console: Console, width: int) -> int | None:
    """A label column's widest: none on a wide console, else `width`, its text folded onto more
    lines (never cut) so that the figures beside it fit the terminal."""
    return None if console.width >= WIDE else width


out = stdout_console()
# Errors too: piped into a log, a message naming a long path stays one line, the path unbroken.
err = stdout_console(stderr=True)


def _default_network() -> Path | None:
    env = os.environ.get("CAGNET_NETWORK")
    return Path(env) if env else None


NetworkOpt = Annotated[
    Path | None,
    typer.Option("--network", "--kit", help="The network folder, or a principal's kit (default: $CAGNET_NETWORK)."),
]
# Joint queries may also be asked as a member authority's officer, from its node's folder.
AskerOpt = Annotated[
    Path | None,
    typer.Option(
        "--network",
        "--kit",
        "--node",
        help="The network folder, a principal's kit (--kit KIT), or a member node's folder (--node NODEDIR:"
        " ask as that authority's officer) (default: $CAGNET_NETWORK).",
    ),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="table (for reading), csv (every table in full, with the period, policy and coverage: for a pipe"
        " or a spreadsheet) or json (the verified bundle, as --json).",
    ),
]
FORMATS = ("table", "csv", "json")
PrincipalOpt = Annotated[
    str, typer.Option(help="The principal to act as (default: a kit's own principal, else cag-chair).")
]


def check_format(value: str) -> str:
    if value not in FORMATS:
        raise typer.BadParameter(f"use one of: {', '.join(FORMATS)}", param_hint="--format")
    return value


def print_bundle(bundle: Bundle, fmt: str) -> bool:
    """Print a verified bundle as `--format csv` or `json` asks; False for `table` (the caller
    renders it for reading)."""
    if fmt == "json":
        print(json.dumps(bundle.model_dump(mode="json"), indent=2))
        return True
    if fmt == "csv":
        from cagnet.actions.tables import bundle_notes, result_tables, tables_csv

        sys.stdout.write(tables_csv(result_tables(bundle), bundle_notes(bundle)))
        return True
    return False


def _netdir(value: Path | None) -> Path:
    from coordinator import network

    netdir = value or _default_network()
    if netdir is None:
        raise typer.BadParameter("give --network NETDIR or set CAGNET_NETWORK", param_hint="--network")
    if network.kit_principal(netdir) is not None:
        from coordinator import kit

        kit.refresh(netdir)  # the kit's manifest, brought up to date and verified, before it is used
    return netdir


def parse_districts(values: list[str]) -> dict[str, str]:
    """--district CODE=NAME options as code -> name; a malformed one is refused before anything is written."""
    districts: dict[str, str] = {}
    for value in values:
        code, sep, name = value.partition("=")
        if not sep or not code.strip() or not name.strip():
            raise typer.BadParameter(f"{value!r} is not CODE=NAME", param_hint="--district")
        if code.strip() in districts:
            raise typer.BadParameter(f"{code.strip()} is given twice", param_hint="--district")
        districts[code.strip()] = name.strip()
    return districts

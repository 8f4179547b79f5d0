"""`cagnet kit ...`: what a person (a CAG chair, a regional board) runs on its own machine: join a
network by invite with keys it makes itself, and rotate its own key (docs/onboarding.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cagnet.cli.common import err

if TYPE_CHECKING:
    from coordinator.onboarding import person

app = typer.Typer(help="A person's kit: join by invite, rotate your own key.", no_args_is_help=True)

NoPassphraseOpt = Annotated[
    bool,
    typer.Option(
        "--no-passphrase",
        help="Write the kit's private keys unencrypted and ask for no passphrase (scripts; or set"
        " CAGNET_KEY_PASSPHRASE to encrypt them without being asked).",
    ),
]


def _passphrase(no_passphrase: bool, *, keys: Path | None = None) -> None:
    """Have the kit's keys under a passphrase by default: asked at a terminal unless
    CAGNET_KEY_PASSPHRASE is set (scripts) or --no-passphrase. `keys`: an existing signing key,
    asked for only if it is encrypted; None: new keys, asked twice."""

    from shared import keyfile

    if no_passphrase:
        os.environ.pop(keyfile.PASSPHRASE_ENV, None)  # this process only: the keys are written plain
        return
    if keyfile.passphrase() is not None:
        return
    if keys is not None and b"ENCRYPTED PRIVATE KEY" not in keys.read_bytes():
        return
    if not sys.stdin.isatty():
        if keys is None:
            err.print(
                "[yellow]no terminal to ask for a passphrase at: the kit's private keys are written unencrypted"
                " (set CAGNET_KEY_PASSPHRASE to have them encrypted)[/]"
            )
        return  # an encrypted key then stops with the one line naming the file and the variable
    value = typer.prompt(
        "Passphrase for this kit's private keys" if keys is None else f"Passphrase for {keys}",
        hide_input=True,
        confirmation_prompt=keys is None,
    )
    os.environ[keyfile.PASSPHRASE_ENV] = value


def _progress(status: person.Status) -> None:
    if status.state == "filed":
        err.print(
            "join request filed; waiting for the coordinator's operator to admit you (while the network is"
            " being founded) or for a member authority to sponsor you (`cagnet network propose-join`)"
        )
    elif status.state == "proposed":
        err.print(
            f"proposal {status.proposal_id}: {len(status.approvals)} of {status.needed} approvals"
            + (f" ({', '.join(status.approvals)})" if status.approvals else "")
        )
    else:
        err.print(f"admitted in manifest version {status.manifest_version}")


@app.command("join")
def kit_join(
    out: Annotated[Path, typer.Option("--out", help="An empty folder for your kit (or your kit, to resume).")],
    invite_code: Annotated[
        str | None,
        typer.Option("--invite", help="The invite code, @FILE holding it, or - for stdin (not needed to resume)."),
    ] = None,
    coordinator: Annotated[
        str | None, typer.Option(help="The coordinator's onboarding port HOST:PORT (default: the invite's).")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="File (or look) once and stop; run again to collect.")
    ] = False,
    poll_s: Annotated[float, typer.Option(min=0.1, help="Seconds between looks while waiting.")] = 5.0,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=0.0, help="Stop waiting after this many seconds (0: never).")
    ] = 0.0,
    no_passphrase: NoPassphraseOpt = False,
) -> None:
    """Join a network as the person an invite names: make your keys here (they never leave this
    folder), file your signed request over the coordinator's onboarding port, wait to be admitted,
    and assemble your kit. Use it with `--kit KIT` on query, report and feed commands."""

    from cagnet.cli.onboarding import _read_invite
    from coordinator.onboarding import person
    from shared.errors import InvalidRequest

    if person.joined(out):
        err.print(f"{out} is already a kit")
        return
    join = person.pending(out)
    if join is None:
        if invite_code is None:
            raise typer.BadParameter("a new kit needs --invite", param_hint="--invite")
        made = _read_invite(invite_code)
        if not made.for_person:
            raise InvalidRequest("this invite is for an authority's node: its staff join with `cagnet node join`")
        _passphrase(no_passphrase)
        join, status = person.start(out, invite=made, coordinator=coordinator)
        err.print(
            f"keys for {made.name} ({made.authority}, {made.role}) made in {out}; join request filed with"
            f" {made.network!r} (its signing key {join.request.signing_key}: whoever admits you may check it"
            " with you)"
        )
        _progress(status)
        if no_wait:
            err.print(f"run `cagnet kit join --out {out}` again to collect your certificate once admitted")
            return
    else:
        if invite_code is not None and _read_invite(invite_code) != join.invite:
            raise InvalidRequest(f"{out} is joining with another invite")
        _passphrase(no_passphrase, keys=join.keys_dir / "signing.key")
    done = person.collect(join, wait=not no_wait, poll_s=poll_s, timeout_s=timeout_s, progress=_progress)
    if not done:
        err.print(f"not admitted yet: run `cagnet kit join --out {out}` again later")
        raise typer.Exit(3)
    err.print(
        f"[green]kit for {join.request.name} ({join.request.party_id})[/] ready in {out}: use it with"
        f" `--kit {out}`; its private keys were made here and never left it"
    )


@app.command("rotate-key")
def kit_rotate_key(
    kit: Annotated[Path, typer.Argument(metavar="KIT", help="Your kit (made by `cagnet kit join`).")],
    overlap_days: Annotated[
        int, typer.Option(min=0, max=90, help="Days the old key stays accepted on requests after the proposal.")
    ] = 7,
) -> None:
    """Make your next signing key in your kit and propose it to the members, signed with your current
    key. Once a quorum approves, the kit switches to it the next time you use it; bundles signed
    before still verify (against the key you held when they were made)."""

    from coordinator import kit as kits
    from coordinator import network
    from shared.errors import InvalidRequest

    principal = network.kit_principal(kit)
    if principal is None:
        raise InvalidRequest(f"{kit} is not a kit (it has no {network.KIT})")
    _passphrase(False, keys=network.principal_dir(kit, principal) / "signing.key")
    filed, waiting, until = kits.rotate_key(kit, overlap_days=overlap_days)
    err.print(
        f"proposal {filed.id}: {filed.proposal.change.describe()} -> version {filed.candidate.version}"
        f" ({len(filed.approvals)} of {filed.needed} approvals: member authorities approve it with"
        f" `cagnet network approve {filed.id} --node NODEDIR`)"
    )
    err.print(
        f"new key waiting in {waiting}; the old one is accepted until {until:%Y-%m-%d %H:%M} UTC once the"
        " rotation is published"
    )

"""`cagnet network invite` (the coordinator's operator) and `cagnet node join` (the joining
authority): joining a governed network over the wire, nothing copied by hand (docs/onboarding.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cagnet.cli.common import err

if TYPE_CHECKING:
    from node.network import onboarding
    from shared import invite as invites


def invite(
    network_dir: Annotated[Path, typer.Option("--network", help="The coordinator's network folder.")],
    authority: Annotated[
        str, typer.Option(help="The GSS code of the one authority that may use it (default: any).")
    ] = "",
    valid_days: Annotated[float, typer.Option(min=0.0, help="Days within which the join must be filed.")] = 14,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT the joiner reaches the onboarding port at (default: onboarding_listen in"
            " coordinator.toml, when it names a host a joiner can reach)."
        ),
    ] = None,
    principal: Annotated[
        str, typer.Option(help="Invite a person instead: its principal id, e.g. jane-smith (with --role, --name).")
    ] = "",
    role: Annotated[str, typer.Option(help="The person's role: cag-chair or regional-board.")] = "",
    name: Annotated[
        str, typer.Option(help="The person's name as the manifest and audit logs show it, e.g. 'Jane Smith, Chair'.")
    ] = "",
) -> None:
    """Print a one-time invite code: for an authority to join with `cagnet node join`, or (--principal)
    for a person to make a kit with `cagnet kit join`. It pins the network, the founding coordinator
    key and the CA fingerprint; only its secret's digest is kept."""

    from coordinator import network
    from coordinator.onboarding import invites as coordinator_onboarding
    from coordinator.settings import CoordinatorSettings

    network.read(network_dir)  # a folder that is not a network is refused before anything is made
    address = endpoint or CoordinatorSettings.load(network_dir).onboarding_address
    if address is None:
        raise typer.BadParameter(
            "give --endpoint HOST:PORT, where joiners reach the onboarding port (`cagnet coordinator serve"
            " --onboarding HOST:PORT` or onboarding_listen in coordinator.toml opens it)",
            param_hint="--endpoint",
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or host in ("0.0.0.0", "::", "[::]"):
        raise typer.BadParameter(
            f"{address!r} is not an address a joiner can reach: give --endpoint HOST:PORT", param_hint="--endpoint"
        )
    if bool(principal) != bool(role):
        raise typer.BadParameter("a person's invite needs both --principal and --role", param_hint="--principal")
    made = coordinator_onboarding.create_invite(
        network_dir,
        endpoint=address,
        authority=authority,
        valid_days=valid_days,
        principal=principal,
        role=role,
        name=name,
    )
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(made.expires_at))
    if made.for_person:
        err.print(
            f"invite {made.invite_id} for {made.name} ({principal}) as {role} in {made.network!r}, valid until"
            f" {expires}; the person runs `cagnet kit join --invite CODE --out KIT` on their own machine"
            " (send the code by a channel you trust: it admits one join request)"
        )
    else:
        err.print(
            f"invite {made.invite_id} for {'authority ' + authority if authority else 'one authority'} to join"
            f" {made.network!r}, valid until {expires}; the joiner runs `cagnet node join NODEDIR --invite CODE`"
            " (send the code by a channel you trust: it admits one join request)"
        )
    print(made.encode())


def list_invites(
    network_dir: Annotated[Path, typer.Option("--network", help="The coordinator's network folder.")],
    revoke: Annotated[
        str | None, typer.Option(help="Revoke this invite (its id): every further use is refused.")
    ] = None,
) -> None:
    """The invites made for this network: for whom, until when, and whether used or revoked."""

    from rich.table import Table

    from cagnet.cli.common import out
    from coordinator.onboarding import invites as coordinator_onboarding

    if revoke is not None:
        coordinator_onboarding.revoke_invite(network_dir, revoke)
        err.print(f"invite {revoke} revoked")
    table = Table(title="invites")
    for col in ("id", "authority", "endpoint", "expires", "state"):
        table.add_column(col)
    now = time.time()
    for record in coordinator_onboarding.list_invites(network_dir):
        state = (
            "revoked"
            if record.get("revoked")
            else f"used by {record['party_id']}"
            if record.get("party_id")
            else "expired"
            if now > int(str(record["expires_at"]))
            else "open"
        )
        expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(str(record["expires_at"]))))
        who = str(record["authority"] or "any") + (f" ({record['role']})" if record.get("role") else "")
        table.add_row(str(record["id"]), who, str(record["endpoint"]), expires, state)
    out.print(table)


def _read_invite(value: str) -> invites.Invite:
    """An invite code, @FILE holding one, or - to read it from standard input (both keep the
    secret out of shell history and process lists)."""

    from shared import invite as invites

    if value == "-":
        value = sys.stdin.read()
    elif value.startswith("@"):
        try:
            value = Path(value[1:]).read_text()
        except FileNotFoundError:
            raise typer.BadParameter(f"no file {value[1:]}", param_hint="--invite") from None
    return invites.decode(value)


def _progress(status: onboarding.Status) -> None:
    if status.state == "filed":
        err.print(
            "join request filed; waiting for a member authority to sponsor it (`cagnet network propose-join`),"
            " or, while the network is being founded, for the coordinator's operator to admit it"
            " (`cagnet network admit`)"
        )
    elif status.state == "proposed":
        err.print(
            f"proposal {status.proposal_id}: {len(status.approvals)} of {status.needed} approvals"
            + (f" ({', '.join(status.approvals)})" if status.approvals else "")
        )
    elif not status.HasField("sealed_linkage_key"):
        err.print("admitted; waiting for a member to seal the network linkage key to this node")
    else:
        err.print(f"admitted in manifest version {status.manifest_version}")


def join(
    nodedir: Annotated[
        Path, typer.Argument(metavar="NODEDIR", help="An empty folder for this node (or its folder, to resume).")
    ],
    invite_code: Annotated[
        str | None,
        typer.Option("--invite", help="The invite code, @FILE holding it, or - for stdin (not needed to resume)."),
    ] = None,
    authority: Annotated[str | None, typer.Option(help="Your authority's GSS code.")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="host:port this node will listen on (members' coordinator connects here).")
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
) -> None:
    """Join a governed network over the wire: make this node's keys, fetch and verify the public
    files the invite pins, file the signed join request, wait for the members' quorum, and collect
    the certificate and the sealed network linkage key."""

    from node.network import onboarding
    from shared.errors import InvalidRequest

    if onboarding.joined(nodedir):
        err.print(f"{nodedir} has already joined its network")
        return
    join_ = onboarding.pending(nodedir)
    if join_ is None:
        if invite_code is None or authority is None or endpoint is None:
            raise typer.BadParameter("a new join needs --invite, --authority and --endpoint")
        made = _read_invite(invite_code)
        if made.for_person:
            raise InvalidRequest(
                f"this invite is for a person ({made.authority}, {made.role}): they run `cagnet kit join`"
            )
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise typer.BadParameter(f"{endpoint!r} is not HOST:PORT", param_hint="--endpoint")
        join_, status = onboarding.start(
            nodedir, invite=made, authority=authority, endpoint=endpoint, coordinator=coordinator
        )
        request = join_.join_request
        from shared import governance

        key = governance.open_join_request(request).signing_key
        err.print(
            f"node {authority} made in {nodedir}; join request filed with {made.network!r}"
            f" (its signing key {key}: a sponsoring member may check it with you)"
        )
        _progress(status)
        if no_wait:
            err.print(f"run `cagnet node join {nodedir}` again to collect the certificate once the members approve")
            return
    elif invite_code is not None and _read_invite(invite_code) != join_.invite:
        raise InvalidRequest(f"{nodedir} is joining with another invite")
    done = onboarding.collect(join_, wait=not no_wait, poll_s=poll_s, timeout_s=timeout_s, progress=_progress)
    if not done:
        err.print(f"not admitted yet: run `cagnet node join {nodedir}` again later")
        raise typer.Exit(3)
    err.print(
        f"[green]{join_.party_id} joined[/]: certificate and linkage key installed;"
        f" start it with `cagnet node serve {nodedir}`"
    )


def admit(
    party_id: Annotated[str, typer.Argument(metavar="ID", help="The joiner's authority code (or principal id).")],
    network_dir: Annotated[Path, typer.Option("--network", help="The coordinator's network folder.")],
    yes: Annotated[bool, typer.Option("--yes", help="Admit without asking (for scripts).")] = False,
) -> None:
    """While the network is being founded (before its charter): admit a join request filed with an
    invite. The coordinator issues the certificate for the key the joiner made on its own machine
    and lists it; the joiner collects both with `cagnet node join` (or `cagnet kit join`). Once
    governed, a member sponsors instead (`propose-join`) and a quorum decides."""

    from coordinator import network
    from coordinator.onboarding import invites as coordinator_onboarding
    from shared import governance
    from shared.errors import InvalidRequest

    if network.read(network_dir).governed:
        raise InvalidRequest(
            "the network is governed by its members: a member sponsors the join"
            f" (`cagnet network propose-join {party_id} --node NODEDIR`) and a quorum approves"
        )
    envelope = coordinator_onboarding.filed_request(network_dir, party_id)
    if envelope is None:
        raise typer.BadParameter(f"no join request from {party_id} is filed over the onboarding port", param_hint="ID")
    request = governance.open_join_request(envelope)
    # What the joiner signed, shown before anything is issued: check the key with the joiner.
    err.print(
        f"{request.name} ({request.party_id}) asks to join"
        + (f" as {request.role}" if request.role else f", reachable at {request.endpoint}")
        + f"; its signing key {request.signing_key}",
        markup=False,
    )
    if not yes and not typer.confirm(f"Admit {party_id} (issue its certificate and list it)?"):
        err.print("not admitted: nothing changed")
        raise typer.Exit(1)
    _, version = coordinator_onboarding.admit_founding(network_dir, party_id)
    err.print(
        f"[green]{party_id} admitted[/] in manifest version {version}; it collects its certificate over the"
        " onboarding port"
    )


# `cagnet network ...` commands (the coordinator's side of joining) and `cagnet node join`.
NETWORK_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("invite", invite),
    ("invites", list_invites),
    ("admit", admit),
)
NODE_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (("join", join),)

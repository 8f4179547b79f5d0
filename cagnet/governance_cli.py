"""`cagnet network charter | propose-join | proposals | approve | history | status` and
`cagnet node complete-join`: the members' side of governance (docs/governance.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from coordinator import governance as gov
from coordinator import network
from coordinator.cli import err, network_app, out
from node.config import complete_join, load_config
from shared import dsse, governance, keys, pki
from shared.identity import Identity
from shared.manifest import COORDINATOR, ROLES, Governance, encode_key
from shared.models import JoinRequest

NodeOpt = Annotated[Path, typer.Option("--node", help="A member node's folder: its signing key signs.")]
OverlapOpt = Annotated[
    int, typer.Option(min=0, max=90, help="Days the old key stays accepted on requests after the proposal.")
]


def _member(nodedir: Path) -> Identity:
    return Identity.load(nodedir / "identity")


def _report(filed: gov.Filed) -> None:
    state = "published" if filed.published else f"{len(filed.approvals)} of {filed.needed} approvals"
    err.print(f"proposal {filed.id}: {filed.proposal.change.describe()} -> version {filed.candidate.version} ({state})")


@network_app.command("charter")
def charter(netdir: Annotated[Path, typer.Argument()], node: NodeOpt) -> None:
    """Propose that the members govern the network from the next version (every member approves)."""
    _report(gov.charter(netdir, _member(node)))


@network_app.command("propose-join")
def propose_join(netdir: Annotated[Path, typer.Argument()], node: NodeOpt) -> None:
    """File a node's request to join (made by `cagnet node init`), signed with its own new key."""
    request = JoinRequest.model_validate_json((node / "join-request.json").read_text())
    key = dsse.load_private_key((node / "identity" / "signing.key").read_bytes())
    _report(gov.propose_join(netdir, request, gov.Joiner(request.party_id, key)))


@network_app.command("proposals")
def proposals(netdir: Annotated[Path, typer.Argument()]) -> None:
    """Proposals that apply to the current version, and who has approved them."""
    table = Table(title=f"open proposals (manifest version {network.read(netdir).version})")
    for col in ("id", "change", "proposed by", "approvals", "needed"):
        table.add_column(col)
    for f in gov.pending(netdir):
        table.add_row(f.id, f.proposal.change.describe(), f.proposal.proposed_by, ", ".join(f.approvals), str(f.needed))
    out.print(table)


@network_app.command("approve")
def approve(netdir: Annotated[Path, typer.Argument()], proposal_id: str, node: NodeOpt) -> None:
    """Check a proposal's candidate manifest against the change it names and sign it."""
    _report(gov.approve(netdir, proposal_id, _member(node)))


@network_app.command("history")
def history(netdir: Annotated[Path, typer.Argument()]) -> None:
    """Every manifest version, verified from version 1, with who signed it."""
    table = Table(title="manifest history (verified from version 1)")
    for col in ("version", "digest", "phase", "signed by", "members"):
        table.add_column(col)
    previous = None
    for manifest, envelope in network.history(netdir):
        if previous is None or not previous.governed:
            signed = "founding key" + (
                " + " + ", ".join(governance.signers(manifest, envelope)) if manifest.governed else ""
            )
        else:
            signed = ", ".join(governance.signers(previous, envelope))
        phase = "governed" if manifest.governed else "founding"
        members = ", ".join(p.id for p in manifest.members)
        table.add_row(str(manifest.version), governance.envelope_digest(envelope)[:16], phase, signed, members)
        previous = manifest
    out.print(table)


@network_app.command("status")
def status(
    netdir: Annotated[Path, typer.Argument()],
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for each party's health check.")] = 2.0,
) -> None:
    """Members, reachability, manifest version, policy digest, and each party's certificate: the one
    it presents checked against the manifest, and flagged if it expires within 30 days."""
    from coordinator import status as party_status

    manifest = network.read(netdir)
    policy = network.read_policy(netdir)
    me = network.coordinator_identity(netdir)
    out.print(
        f"{manifest.network}: manifest version {manifest.version}"
        f" ({'governed' if manifest.governed else 'founding phase'})"
    )
    out.print(f"policy {policy.digest} (revision {policy.revision})")
    table = Table()
    for col in ("party", "roles", "endpoint", "reachable", "certificate"):
        table.add_column(col)
    now = party_status.now()
    for party in manifest.parties:
        found = party_status.check(party, me, netdir / "coordinator", timeout_s=timeout_s, now=now)
        if not party.endpoint:  # a principal: its certificate is in the network folder, if anywhere
            held = network.principal_dir(netdir, party.id) / "tls.crt"
            if held.exists():
                shown = party_status.describe(party, pki.load_cert(held.read_bytes()), now=now)
                found = party_status.PartyStatus(party, "-", shown.certificate, shown.warning)
        cert = f"[yellow]{found.certificate}[/]" if found.warning else found.certificate
        table.add_row(party.id, ",".join(party.roles), party.endpoint, found.reachable, cert)
    out.print(table)
    ca = pki.load_cert((netdir / "ca" / "ca.crt").read_bytes())
    if ca.not_valid_after_utc < now + party_status.EXPIRY_WARNING:
        out.print(f"[yellow]the network CA certificate expires {ca.not_valid_after_utc:%Y-%m-%d}[/]")


def node_complete_join(
    nodedir: Annotated[Path, typer.Argument(metavar="NODEDIR", help="The joining node's folder.")],
    network_dir: Annotated[Path, typer.Option("--network", help="The network folder.")],
) -> None:
    """Install the certificate issued when the members' quorum admitted this node."""
    request = JoinRequest.model_validate_json((nodedir / "join-request.json").read_text())
    folder = gov.joined_dir(network_dir, request.party_id)
    if not (folder / "tls.crt").exists():
        raise typer.BadParameter("not admitted yet: members approve with `cagnet network approve`")
    complete_join(
        nodedir,
        cert_pem=(folder / "tls.crt").read_bytes(),
        ca_pem=(folder / "ca.crt").read_bytes(),
        coordinator_key=network.coordinator_key_b64(network_dir),
    )
    load_config(nodedir)
    err.print(f"[green]{request.name}[/] joined: certificate installed in {nodedir / 'identity'}")


def write_join_request(nodedir: Path, request: JoinRequest) -> None:
    (nodedir / "join-request.json").write_text(json.dumps(request.model_dump(mode="json"), indent=2) + "\n")


def _file(netdir: Path, change: governance.Change, node: Path) -> None:
    """File `change` as a proposal signed by `node`'s member authority (its approval counts at once)."""
    _report(gov.propose(netdir, change, _member(node)))


@network_app.command("propose-policy")
def propose_policy(netdir: Annotated[Path, typer.Argument()], file: Path, node: NodeOpt) -> None:
    """Propose a new network policy (a loosening needs every member; see docs/governance.md)."""
    _file(netdir, governance.Change(action="set-policy", policy=file.read_text(encoding="utf-8")), node)


@network_app.command("propose-remove")
def propose_remove(netdir: Annotated[Path, typer.Argument()], party_id: str, node: NodeOpt) -> None:
    """Propose removing a party: every node refuses it from the version that drops it."""
    _file(netdir, governance.Change(action="remove-member", party_id=party_id), node)


@network_app.command("propose-endpoint")
def propose_endpoint(
    netdir: Annotated[Path, typer.Argument()],
    party_id: Annotated[str, typer.Argument(help="The party that moves, e.g. E06000035 or coordinator.")],
    endpoint: Annotated[str, typer.Argument(help="Where it will listen, HOST:PORT.")],
    node: NodeOpt,
) -> None:
    """Propose a party's new endpoint (its certificate names the party, not the host, so it stays valid)."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{endpoint!r} is not HOST:PORT", param_hint="ENDPOINT")
    _file(netdir, governance.Change(action="set-endpoints", endpoints={party_id: endpoint}), node)


@network_app.command("propose-roles")
def propose_roles(
    netdir: Annotated[Path, typer.Argument()],
    party_id: str,
    role: Annotated[list[str], typer.Option("--role", help=f"A role it will hold (repeat): {', '.join(ROLES)}.")],
    node: NodeOpt,
) -> None:
    """Propose the exact roles a party holds from the next version (those not listed are taken away)."""
    unknown = [r for r in role if r not in ROLES]
    if unknown:
        raise typer.BadParameter(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}", param_hint="--role")
    _file(netdir, governance.Change(action="set-roles", party_id=party_id, roles=tuple(dict.fromkeys(role))), node)


@network_app.command("propose-quorum")
def propose_quorum(
    netdir: Annotated[Path, typer.Argument()],
    node: NodeOpt,
    quorum: Annotated[int, typer.Option(min=0, help="Members a change needs (0: a simple majority).")] = 0,
    loosening_quorum: Annotated[
        int, typer.Option(min=0, help="Members a policy that loosens a rule needs (0: every member).")
    ] = 0,
) -> None:
    """Propose new voting rules; the rules in force decide, so changing them needs the old quorum."""
    members = len(network.read(netdir).members)
    for flag, value in (("--quorum", quorum), ("--loosening-quorum", loosening_quorum)):
        if value > members:
            raise typer.BadParameter(f"{value} is more than the {members} member authorities", param_hint=flag)
    rules = Governance(quorum=quorum, loosening_quorum=loosening_quorum)
    _file(netdir, governance.Change(action="set-governance", governance=rules), node)


@network_app.command("propose-principal")
def propose_principal(
    netdir: Annotated[Path, typer.Argument()],
    party_id: Annotated[str, typer.Option("--id", help="The principal's id, e.g. regional-board.")],
    role: Annotated[str, typer.Option(help="cag-chair or regional-board.")],
    node: NodeOpt,
    name: Annotated[str, typer.Option(help="A display name.")] = "",
) -> None:
    """Make a principal's keys and certificate under NETDIR/principals/ID and propose listing it
    (in the founding phase, `cagnet network principal add` lists it at once)."""
    party = network.make_principal(netdir, party_id=party_id, role=role, name=name)
    _file(netdir, governance.Change(action="add-member", party=party), node)


@network_app.command("rotate-key")
def rotate_principal_key(
    netdir: Annotated[Path, typer.Argument()],
    party_id: Annotated[str, typer.Argument(help="A principal (e.g. cag-chair) or coordinator.")],
    node: NodeOpt,
    overlap_days: OverlapOpt = 7,
) -> None:
    """Make a new signing key for a principal or the coordinator and propose it; the holder switches
    to it once the manifest lists it (restart `cagnet coordinator serve` within the overlap)."""
    folder = netdir / "coordinator" if party_id == COORDINATOR else network.principal_dir(netdir, party_id)
    _propose_rotation(netdir, folder, party_id, node, overlap_days)


def node_rotate_key(
    nodedir: Annotated[Path, typer.Argument(metavar="NODEDIR", help="The node folder made by `cagnet node init`.")],
    network_dir: Annotated[Path, typer.Option("--network", help="The network folder.")],
    overlap_days: OverlapOpt = 7,
) -> None:
    """Make this node a new signing key and propose it, signed with the current one. A running node
    switches to the new key by itself when it accepts the version that lists it."""
    _propose_rotation(network_dir, nodedir / "identity", load_config(nodedir).authority, nodedir, overlap_days)


def _propose_rotation(netdir: Path, folder: Path, party_id: str, node: Path, overlap_days: int) -> None:
    network.read(netdir).party(party_id)  # UnknownIssuer: not listed
    new = keys.next_key(folder)
    until = datetime.now(UTC) + timedelta(days=overlap_days)
    change = governance.Change(
        action="rotate-key",
        party_id=party_id,
        signing_key=encode_key(new.public_key()),
        overlap_until_ms=int(until.timestamp() * 1000),
    )
    _file(netdir, change, node)
    err.print(
        f"new key waiting in {folder / keys.NEXT}; the old one is accepted until {until:%Y-%m-%d %H:%M} UTC "
        "once the rotation is published"
    )

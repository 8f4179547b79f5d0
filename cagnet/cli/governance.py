"""`cagnet network charter | propose-* | proposals | approve | rotate-key | history | status` and
`cagnet node complete-join | rotate-key`: the members' side of governance (docs/governance.md).

A member runs them from its node's folder (`--node`): they go over gRPC to the coordinator the
node's manifest names, signed with the node's key, and every proposal is checked against the
node's own verified chain before it signs. With `--network NETDIR` the same steps act on the
coordinator's network folder directly (its operator's machine, no server needed).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer
from rich.table import Table

from cagnet.cli.common import err, out, parse_districts
from shared.roles import ROLES

if TYPE_CHECKING:
    from shared import dsse
    from shared.errors import CagnetError
    from shared.governance import Change, Filed, Review
    from shared.manifest import Governance, Manifest
    from shared.models import JoinRequest

JOIN_REQUEST = "join-request.json"

NodeOpt = Annotated[
    Path,
    typer.Option(
        "--node", help="Your member node's folder: its key signs, and its verified manifest chain is the reference."
    ),
]
FolderOpt = Annotated[
    Path | None,
    typer.Option(
        "--network",
        help="Act on the coordinator's network folder directly (its operator's machine) instead of over gRPC.",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", help="Do it without asking (for scripts).")]
OverlapOpt = Annotated[
    int, typer.Option(min=0, max=90, help="Days the old key stays accepted on requests after the proposal.")
]


class _Governance(Protocol):
    """The one path every command takes: a member over gRPC (node.governance.Member), or the same
    steps on the network folder (coordinator.governance.folder.FolderMember)."""

    @property
    def head(self) -> Manifest: ...
    def propose(self, change: Change) -> Filed: ...
    def charter(self, rules: Governance | None = None) -> Filed: ...
    def sponsor_join(self, join_request: dsse.Envelope) -> Review: ...
    def proposals(self) -> list[tuple[Filed, Review | CagnetError]]: ...
    def find(self, proposal_id: str) -> Review: ...
    def approve(self, review: Review) -> Filed: ...
    def join_requests(self) -> list[dsse.Envelope]: ...
    def awaiting_key(self) -> list[dsse.Envelope]: ...
    def file_sealed(self, sealed: dsse.Envelope) -> str: ...
    def close(self) -> None: ...


@contextmanager
def _open(folder: Path | None, nodedir: Path) -> Iterator[_Governance]:
    """The member acting: over gRPC (one channel), or on the network folder; closed after use."""

    from coordinator.governance.folder import FolderMember
    from node.network.governance import Member

    member: _Governance = FolderMember(folder, nodedir) if folder is not None else Member(nodedir)
    try:
        yield member
    finally:
        member.close()


def _report(filed: Filed) -> None:
    state = "published" if filed.published else f"{len(filed.approvals)} of {filed.needed} approvals"
    err.print(f"proposal {filed.id}: {filed.proposal.change.describe()} -> version {filed.candidate.version} ({state})")


def _propose(folder: Path | None, nodedir: Path, change: Change) -> None:
    with _open(folder, nodedir) as member:
        _report(member.propose(change))


def _show(review: Review) -> None:
    """The change, who proposed it, and the candidate against the version in force, line by line."""
    proposer = review.proposal.proposed_by + (f" (sponsored by {review.sponsor})" if review.sponsor else "")
    out.print(f"proposal {review.id}: {review.proposal.change.describe()}", markup=False)
    out.print(f"proposed by {proposer}; approvals so far: {', '.join(review.approvals) or 'none'}", markup=False)
    out.print(
        f"manifest version {review.base.version} -> {review.candidate.version}"
        f" (needs {review.needed}; recomputed from the verified chain, the candidate matches the change)",
        markup=False,
    )
    for line in review.diff():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        out.print(line, style=style, markup=False, highlight=False)


def _sign(member: _Governance, review: Review, yes: bool) -> None:
    _show(review)
    if not yes and not typer.confirm(f"Sign manifest version {review.candidate.version}?"):
        err.print("not signed")
        raise typer.Exit(1)
    _report(member.approve(review))


def charter(node: NodeOpt, folder: FolderOpt = None) -> None:
    """Propose that the members govern the network from the next version (every member approves)."""
    with _open(folder, node) as member:
        _report(member.charter())


def read_join_request(path: Path) -> tuple[dsse.Envelope, JoinRequest]:
    """A joiner's signed request (a node folder or its join-request.json), checked against the key it lists."""

    from shared import dsse, governance

    file = path / JOIN_REQUEST if path.is_dir() else path
    try:
        envelope = dsse.Envelope.from_json(file.read_text())
    except FileNotFoundError:
        raise typer.BadParameter(f"no join request at {file} (made by `cagnet node init`)") from None
    return envelope, governance.open_join_request(envelope)


def filed_join(member: _Governance, party_id: str) -> dsse.Envelope:
    """The join request `party_id` filed over the onboarding port (waiting for a sponsor, or in an
    open proposal), checked against the key it lists."""

    from shared import governance

    proposed = [f.join_request for f, _ in member.proposals() if f.join_request is not None]
    for envelope in [*member.join_requests(), *proposed, *member.awaiting_key()]:
        request = governance.open_join_request(envelope)
        if request.party_id == party_id:
            return envelope
    raise typer.BadParameter(f"no join request from {party_id} is filed with the coordinator", param_hint="REQUEST")


def seal_for(member: _Governance, nodedir: Path, envelope: dsse.Envelope) -> JoinRequest | None:
    """Seal this member's network linkage key to the joiner (its X25519 key, in its signed
    request) and file it through the coordinator, which cannot open it; the request sealed to, or
    None for a request made by `cagnet node init` (the key goes with --linkage-key instead)."""

    from node.answers.linkage import load_linkage_key
    from shared import governance, sealing
    from shared.identity import Identity

    request = governance.open_join_request(envelope)
    if not request.sealing_key:
        return None
    identity = Identity.load(nodedir / "identity")
    sealed = sealing.seal(
        load_linkage_key(nodedir / "identity" / "linkage.key"),
        network=member.head.network,
        party_id=request.party_id,
        recipient_key=request.sealing_key,
        join_request=envelope,
        sealed_by=identity.party_id,
        signing_key=identity.signing_key,
    )
    member.file_sealed(sealed)
    return request


def _seal_and_say(member: _Governance, nodedir: Path, envelope: dsse.Envelope) -> None:
    request = seal_for(member, nodedir, envelope)
    if request is not None:
        err.print(f"network linkage key sealed to {request.name} ({request.party_id}) and filed; only it can open it")


def propose_join(
    request: Annotated[
        str,
        typer.Argument(
            help="The joiner's authority code (or a person's principal id), for a request it filed with"
            " `cagnet node join` (`cagnet kit join`); or its join-request.json (or node folder) from"
            " `cagnet node init`."
        ),
    ],
    node: NodeOpt,
    folder: FolderOpt = None,
    yes: YesOpt = False,
) -> None:
    """Sponsor a request to join: the coordinator issues the joiner's certificate and files the
    change; you check it and approve it as its first member signature, and (an authority) seal the
    network linkage key to the joiner. Asks before filing anything unless --yes."""

    with _open(folder, node) as member:
        if Path(request).exists():
            envelope, _ = read_join_request(Path(request))
        else:
            envelope = filed_join(member, request)
        _sponsor(member, node, envelope, yes)


def _sponsor(member: _Governance, node: Path, envelope: dsse.Envelope, yes: bool) -> None:
    from shared import governance

    joiner = governance.open_join_request(envelope)
    # Asked before anything is filed: an answer of no leaves no proposal behind.
    where = f"reachable at {joiner.endpoint}"
    if joiner.role:
        where = f"as {joiner.role}"
    elif joiner.transport == "dial-out":
        where = "its node dialling out (no port)"
    out.print(
        f"{joiner.name} ({joiner.party_id}) asks to join, {where}, signing key {joiner.signing_key}", markup=False
    )
    if not yes and not typer.confirm(
        f"Sponsor {joiner.party_id}: have the coordinator issue its certificate and file the change, then sign it?"
    ):
        err.print("not sponsored: nothing filed")
        raise typer.Exit(1)
    _sign(member, member.sponsor_join(envelope), yes=True)
    _seal_and_say(member, node, envelope)


def seal_linkage_key(
    party_id: Annotated[str, typer.Argument(help="The joining authority's code.")],
    node: NodeOpt,
    folder: FolderOpt = None,
) -> None:
    """Seal the network linkage key to an authority whose join request was filed over the wire
    (`propose-join` does this for its sponsor; any member may do it)."""
    with _open(folder, node) as member:
        _seal_and_say(member, node, filed_join(member, party_id))


def _print_unsealed(unsealed: list[JoinRequest], *, governed: bool) -> None:
    """Members admitted whose node cannot answer yet: it waits for the network linkage key. Said
    loudly, with who acts: a person while founding, the members' running nodes once governed."""
    keys = Table(
        title="[yellow]members admitted, waiting for the network linkage key: their nodes cannot answer yet[/]"
    )
    for col in ("authority", "name", "seal it with"):
        keys.add_column(col)
    for request in unsealed:
        keys.add_row(
            request.party_id, request.name, f"cagnet network seal-linkage-key {request.party_id} --node NODEDIR"
        )
    out.print(keys)
    if governed:
        out.print(
            "[dim]A running member node seals it by itself at its next manifest poll (a quorum admitted"
            " these); a member may seal it now with the command shown.[/]"
        )
    else:
        out.print(
            "[yellow]While the network is founded no node seals it by itself (the founding key alone"
            " admitted these): a member's officer checks the joiner's signing key with the joiner, then"
            " seals it with the command shown.[/]"
        )


def proposals(
    node: Annotated[Path | None, typer.Option("--node", help="Your member node's folder.")] = None,
    folder: FolderOpt = None,
) -> None:
    """Open proposals, who has approved them, and whether each checks out against your chain
    (with only --network, the operator's view: nothing is checked)."""

    from coordinator import network
    from coordinator.governance import proposals as gov
    from coordinator.onboarding import invites as onboarding
    from shared import governance
    from shared.governance import Review

    rows: list[tuple[Filed, Review | CagnetError | None]] = []
    if node is not None:
        with _open(folder, node) as member:
            rows.extend(member.proposals())
            version, version_governed = member.head.version, member.head.governed
    elif folder is not None:
        rows.extend((f, None) for f in gov.pending(folder))
        version, version_governed = network.read(folder).version, network.read(folder).governed
    else:
        raise typer.BadParameter("give --node NODEDIR (a member) or --network NETDIR (the operator)")
    if node is not None:
        with _open(folder, node) as member:
            waiting = [governance.open_join_request(e) for e in member.join_requests()]
            unsealed = [governance.open_join_request(e) for e in member.awaiting_key()]
    else:
        assert folder is not None
        waiting = [governance.open_join_request(e) for e in onboarding.awaiting_sponsor(folder)]
        unsealed = [governance.open_join_request(e) for e in onboarding.awaiting_key(folder)]
    table = Table(title=f"open proposals (manifest version {version})")
    for col in ("id", "change", "proposed by", "approvals", "needed", "check"):
        table.add_column(col)
    for filed, checked in rows:
        proposer = filed.proposal.proposed_by + (f" for {filed.sponsor}" if filed.sponsor else "")
        verdict = "-" if checked is None else "ok" if isinstance(checked, Review) else f"refused: {checked}"
        approvals = checked.approvals if isinstance(checked, Review) else filed.approvals
        table.add_row(
            filed.id, filed.proposal.change.describe(), proposer, ", ".join(approvals), str(filed.needed), verdict
        )
    out.print(table)
    if waiting:
        joins = Table(title="join requests filed over the wire, waiting for a sponsor")
        for col in ("authority", "name", "endpoint", "signing key", "sponsor with"):
            joins.add_column(col)
        for request in waiting:
            joins.add_row(
                request.party_id,
                request.name,
                request.endpoint,
                request.signing_key,
                f"cagnet network propose-join {request.party_id} --node NODEDIR",
            )
        out.print(joins)
    if unsealed:
        _print_unsealed(unsealed, governed=version_governed)


def approve(proposal_id: str, node: NodeOpt, folder: FolderOpt = None, yes: YesOpt = False) -> None:
    """Recompute a proposal's candidate manifest from your own chain and the change, show what it
    changes, and sign it (a candidate that differs is refused, unsigned). Asks before signing unless --yes."""
    with _open(folder, node) as member:
        _sign(member, member.find(proposal_id), yes)


def history(
    netdir: Annotated[Path | None, typer.Argument(help="The network folder (or give --node).")] = None,
    node: Annotated[Path | None, typer.Option("--node", help="A node's folder: the chain it holds.")] = None,
) -> None:
    """Every manifest version, verified from version 1, with who signed it."""

    from coordinator import network
    from node.config import load_config
    from node.network.governance import node_manifests
    from shared import governance

    if netdir is not None:
        versions = network.history(netdir)
    elif node is not None:
        versions = node_manifests(load_config(node)).history
    else:
        raise typer.BadParameter("give NETDIR or --node NODEDIR")
    table = Table(title="manifest history (verified from version 1)")
    for col in ("version", "digest", "phase", "signed by", "members"):
        table.add_column(col)
    previous = None
    for manifest, envelope in versions:
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


def status(
    netdir: Annotated[Path, typer.Argument()],
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for each party's health check.")] = 2.0,
) -> None:
    """Members, reachability, manifest version, policy digest, and each party's certificate: the one
    it presents checked against the manifest, and flagged if it expires within 30 days."""

    from coordinator import network
    from coordinator import status as party_status
    from coordinator.governance import proposals as gov
    from coordinator.onboarding import invites as onboarding
    from shared import governance, pki

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
        found = party_status.check(
            party,
            me,
            netdir / "coordinator",
            timeout_s=timeout_s,
            now=now,
            coordinator_endpoint=manifest.coordinator_endpoint,
        )
        if not party.endpoint:  # a principal: its certificate is kept in the network folder
            # made here (`principal add`), or issued to a person who joined by invite (`kit join`)
            held = network.principal_dir(netdir, party.id) / "tls.crt"
            if not held.exists():
                held = gov.joined_dir(netdir, party.id) / "tls.crt"
            if held.exists():
                shown = party_status.describe(party, pki.load_cert(held.read_bytes()), now=now)
                found = party_status.PartyStatus(party, "-", shown.certificate, shown.warning)
        cert = f"[yellow]{found.certificate}[/]" if found.warning else found.certificate
        table.add_row(party.id, ",".join(party.roles), party.endpoint, found.reachable, cert)
    out.print(table)
    unsealed = [governance.open_join_request(e) for e in onboarding.awaiting_key(netdir)]
    if unsealed:
        _print_unsealed(unsealed, governed=manifest.governed)
    ca = pki.load_cert((netdir / "ca" / "ca.crt").read_bytes())
    if ca.not_valid_after_utc < now + party_status.EXPIRY_WARNING:
        out.print(f"[yellow]the network CA certificate expires {ca.not_valid_after_utc:%Y-%m-%d}[/]")


def node_complete_join(
    nodedir: Annotated[Path, typer.Argument(metavar="NODEDIR", help="The joining node's folder.")],
    network_dir: Annotated[Path, typer.Option("--network", help="The network folder.")],
) -> None:
    """Install the certificate issued when the members' quorum admitted this node."""

    from coordinator import network
    from coordinator.governance import proposals as gov
    from node.config import complete_join, load_config

    _, request = read_join_request(nodedir)
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


def write_join_request(nodedir: Path, request: JoinRequest) -> Path:
    """The join request, signed with the node's new key, for a member to sponsor."""

    from shared import governance, keyfile

    key = keyfile.read_signing_key(nodedir / "identity" / "signing.key")
    path = nodedir / JOIN_REQUEST
    governance.write_envelope(path, governance.sign_join_request(request, key))
    return path


def propose_policy(file: Path, node: NodeOpt, folder: FolderOpt = None) -> None:
    """Propose a new network policy (a loosening needs every member; see docs/governance.md)."""

    from shared.governance import Change

    _propose(folder, node, Change(action="set-policy", policy=file.read_text(encoding="utf-8")))


def propose_authority(
    authority: Annotated[str, typer.Argument(help="The authority's GSS code, as the register lists it.")],
    node: NodeOpt,
    population: Annotated[int | None, typer.Option(help="Its corrected population.")] = None,
    year: Annotated[int | None, typer.Option(help="The year of that population (default: the latest held).")] = None,
    district: Annotated[
        list[str] | None, typer.Option("--district", help="A county's district to add or rename, CODE=NAME (repeat).")
    ] = None,
    folder: FolderOpt = None,
) -> None:
    """Propose a correction to the authority register: a population, or a county's districts. Refused
    with the reason, and nothing filed, for a code the register does not hold or a bad figure."""

    from shared.governance import Change

    change = Change(
        action="set-authority",
        authority=authority,
        population=population,
        year=year,
        districts=parse_districts(district or []),
    )
    _propose(folder, node, change)


def propose_reference(
    file: Annotated[Path, typer.Argument(help="A CSV of authority,year,indicator,value rows (docs/need.md).")],
    node: NodeOpt,
    folder: FolderOpt = None,
) -> None:
    """Propose need indicators or grant allocations to add or replace. Every row is checked first
    (errors name the row and column) and nothing is filed unless all read."""

    from coordinator.network import read_reference_file
    from shared.authorities import register_of
    from shared.governance import Change
    from shared.reference import parse_reference

    text = read_reference_file(file)
    with _open(folder, node) as member:
        # Checked against the member's own verified register, so any error names the file's row.
        rows = parse_reference(text, source=str(file), register=register_of(member.head))
        _report(member.propose(Change(action="set-reference", reference=rows.to_csv())))


def propose_remove(party_id: str, node: NodeOpt, folder: FolderOpt = None) -> None:
    """Propose removing a party: every node refuses it from the version that drops it."""

    from shared.governance import Change

    _propose(folder, node, Change(action="remove-member", party_id=party_id))


def propose_endpoint(
    party_id: Annotated[str, typer.Argument(help="The party that moves: a member's GSS code, or coordinator.")],
    endpoint: Annotated[str, typer.Argument(help="Where it will listen, HOST:PORT.")],
    node: NodeOpt,
    folder: FolderOpt = None,
) -> None:
    """Propose a party's new endpoint (its certificate names the party, not the host, so it stays valid)."""

    from shared.governance import Change

    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{endpoint!r} is not HOST:PORT", param_hint="ENDPOINT")
    _propose(folder, node, Change(action="set-endpoints", endpoints={party_id: endpoint}))


def propose_transport(
    party_id: Annotated[str, typer.Argument(help="The member authority's GSS code.")],
    transport: Annotated[
        str, typer.Argument(help="listen (the coordinator connects to its node) or dial-out (its node attaches).")
    ],
    node: NodeOpt,
    folder: FolderOpt = None,
) -> None:
    """Propose how the coordinator reaches a member's node (docs/onboarding.md, "Firewall"); the
    node's node.toml says the same once the version is published."""

    from shared.governance import Change

    _propose(folder, node, Change(action="set-transport", party_id=party_id, transport=transport))


def propose_roles(
    party_id: str,
    role: Annotated[list[str], typer.Option("--role", help=f"A role it will hold (repeat): {', '.join(ROLES)}.")],
    node: NodeOpt,
    folder: FolderOpt = None,
) -> None:
    """Propose the exact roles a party holds from the next version (those not listed are taken away)."""

    from shared.governance import Change

    unknown = [r for r in role if r not in ROLES]
    if unknown:
        raise typer.BadParameter(f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}", param_hint="--role")
    _propose(folder, node, Change(action="set-roles", party_id=party_id, roles=tuple(dict.fromkeys(role))))


def propose_quorum(
    node: NodeOpt,
    folder: FolderOpt = None,
    quorum: Annotated[int, typer.Option(min=0, help="Members a change needs (0: a simple majority).")] = 0,
    loosening_quorum: Annotated[
        int, typer.Option(min=0, help="Members a policy that loosens a rule needs (0: every member).")
    ] = 0,
) -> None:
    """Propose new voting rules; the rules in force decide, so changing them needs the old quorum."""

    from shared.governance import Change
    from shared.manifest import Governance

    with _open(folder, node) as member:
        members = len(member.head.members)
        for flag, value in (("--quorum", quorum), ("--loosening-quorum", loosening_quorum)):
            if value > members:
                raise typer.BadParameter(f"{value} is more than the {members} member authorities", param_hint=flag)
        rules = Governance(quorum=quorum, loosening_quorum=loosening_quorum)
        _report(member.propose(Change(action="set-governance", governance=rules)))


NetworkDirOpt = Annotated[
    Path, typer.Option("--network", help="The coordinator's network folder, where the new key material is made.")
]


def propose_principal(
    party_id: Annotated[str, typer.Option("--id", help="The principal's id, e.g. regional-board.")],
    role: Annotated[str, typer.Option(help="cag-chair or regional-board.")],
    node: NodeOpt,
    folder: FolderOpt = None,
    name: Annotated[str, typer.Option(help="A display name.")] = "",
    yes: YesOpt = False,
) -> None:
    """Propose listing a person as a principal. From your node's folder (over signed gRPC): sponsor
    the request the person filed with `cagnet kit join` (keys made on its own machine), after
    checking it asks for this id, role and name. With --network NETDIR (one-machine demos and test
    networks): make the principal's keys under NETDIR/principals/ID and propose listing it."""

    from shared import governance

    if folder is None:
        with _open(None, node) as member:
            envelope = filed_join(member, party_id)
            request = governance.open_join_request(envelope)
            if request.role != role or (name and request.name != name):
                raise typer.BadParameter(
                    f"{party_id} filed a request as {request.role or 'an authority'} ({request.name!r}),"
                    f" not as {role}" + (f" ({name!r})" if name else ""),
                    param_hint="--role",
                )
            _sponsor(member, node, envelope, yes)
        return

    from coordinator import network
    from coordinator.governance import proposals as gov
    from coordinator.governance.folder import FolderMember
    from shared.governance import Change

    identity = FolderMember(folder, node).identity
    party = network.make_principal(folder, party_id=party_id, role=role, name=name)
    # The certificate goes with the proposal, so that approvers check it is the one listed.
    made = network.principal_dir(folder, party_id)
    certificate = (made / "tls.crt").read_bytes()
    try:
        filed = gov.propose(folder, Change(action="add-member", party=party), identity, certificate=certificate)
    except BaseException:
        # Not filed: the keys made for it would only lie there, and block proposing the principal again.
        shutil.rmtree(made, ignore_errors=True)
        raise
    _report(filed)


def withdraw(
    proposal_id: Annotated[str, typer.Argument(help="The open proposal to withdraw.")],
    folder: Annotated[
        Path, typer.Option("--network", help="The coordinator's network folder (its operator's machine).")
    ],
    yes: YesOpt = False,
) -> None:
    """Withdraw an open proposal (the coordinator's operator): it is kept in proposals/withdrawn/, the
    keys made for a principal it would have listed are removed, and another change can be proposed.
    Asks first unless --yes."""

    from coordinator.governance import proposals as gov

    filed = gov.status(folder, proposal_id)
    if not yes and not typer.confirm(
        f"Withdraw proposal {filed.id} ({filed.proposal.change.describe()}, {len(filed.approvals)} of "
        f"{filed.needed} approvals)?"
    ):
        err.print("not withdrawn")
        raise typer.Exit(1)
    withdrawn, removed = gov.withdraw(folder, proposal_id)
    what = withdrawn.proposal.change.describe()
    err.print(f"proposal {withdrawn.id} withdrawn ({what}); kept in proposals/withdrawn/")
    for path in removed:
        err.print(f"removed the keys made for it: {path}")


def rotate_principal_key(
    party_id: Annotated[str, typer.Argument(help="A principal (e.g. cag-chair) or coordinator.")],
    folder: NetworkDirOpt,
    node: Annotated[
        Path | None,
        typer.Option("--node", help="A member node whose key signs the proposal (a principal made in NETDIR)."),
    ] = None,
    overlap_days: OverlapOpt = 7,
) -> None:
    """Make a new signing key for the coordinator (its operator, on NETDIR: the coordinator proposes
    it, members approve; restart `cagnet coordinator serve` within the overlap), or for a principal
    whose keys were made in NETDIR (with --node: that member proposes it). A person with a kit
    rotates its own key: `cagnet kit rotate-key KIT`."""

    from coordinator import network
    from coordinator.governance import proposals as gov
    from shared.manifest import COORDINATOR

    if party_id == COORDINATOR and node is None:
        coordinator = network.coordinator_identity(folder)
        _report(gov.propose(folder, _rotation(folder / "coordinator", COORDINATOR, overlap_days), coordinator))
        _say_waiting(folder / "coordinator", overlap_days)
        return
    network.read(folder).party(party_id)  # UnknownIssuer: not listed
    keys_dir = folder / "coordinator" if party_id == COORDINATOR else network.principal_dir(folder, party_id)
    if not (keys_dir / "signing.key").exists():
        raise typer.BadParameter(
            f"{folder} holds no keys of {party_id}: a person rotates its own key from its kit"
            " (`cagnet kit rotate-key KIT`)",
            param_hint="ID",
        )
    if node is None:
        raise typer.BadParameter("give --node NODEDIR: a member authority proposes the rotation", param_hint="--node")
    with _open(folder, node) as member:
        _propose_rotation(member, keys_dir, party_id, overlap_days)


def node_rotate_key(
    nodedir: Annotated[Path, typer.Argument(metavar="NODEDIR", help="The node folder made by `cagnet node init`.")],
    folder: FolderOpt = None,
    overlap_days: OverlapOpt = 7,
) -> None:
    """Make this node a new signing key and propose it, signed with the current one. A running node
    switches to the new key by itself when it accepts the version that lists it."""

    from node.config import load_config

    with _open(folder, nodedir) as member:
        _propose_rotation(member, nodedir / "identity", load_config(nodedir).authority, overlap_days)


def _propose_rotation(member: _Governance, folder: Path, party_id: str, overlap_days: int) -> None:
    member.head.party(party_id)  # UnknownIssuer: not listed
    _report(member.propose(_rotation(folder, party_id, overlap_days)))
    _say_waiting(folder, overlap_days)


def _rotation(folder: Path, party_id: str, overlap_days: int) -> Change:
    """The next key, made in `folder` beside the current one, proposed for `party_id`."""
    from shared import keys
    from shared.governance import Change
    from shared.manifest import encode_key

    new = keys.next_key(folder)
    until = datetime.now(UTC) + timedelta(days=overlap_days)
    return Change(
        action="rotate-key",
        party_id=party_id,
        signing_key=encode_key(new.public_key()),
        overlap_until_ms=int(until.timestamp() * 1000),
    )


def _say_waiting(folder: Path, overlap_days: int) -> None:
    from shared import keys

    until = datetime.now(UTC) + timedelta(days=overlap_days)
    err.print(
        f"new key waiting in {folder / keys.NEXT}; the old one is accepted until {until:%Y-%m-%d %H:%M} UTC "
        "once the rotation is published"
    )


# `cagnet network ...` commands of a governed network, in the order `cagnet network --help` lists them.
NETWORK_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("charter", charter),
    ("propose-join", propose_join),
    ("seal-linkage-key", seal_linkage_key),
    ("proposals", proposals),
    ("approve", approve),
    ("withdraw", withdraw),
    ("history", history),
    ("status", status),
    ("propose-policy", propose_policy),
    ("propose-authority", propose_authority),
    ("propose-reference", propose_reference),
    ("propose-remove", propose_remove),
    ("propose-endpoint", propose_endpoint),
    ("propose-transport", propose_transport),
    ("propose-roles", propose_roles),
    ("propose-quorum", propose_quorum),
    ("propose-principal", propose_principal),
    ("rotate-key", rotate_principal_key),
)
# `cagnet node ...` commands a member runs on its own folder.
NODE_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("complete-join", node_complete_join),
    ("rotate-key", node_rotate_key),
)

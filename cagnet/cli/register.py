"""`cagnet register ...` and `cagnet node witness`: the shared accreditation register from the
command line. Every command takes --json. A member acts through its node folder (--node NODEDIR);
the CAG chair through the network folder (--network NETDIR, default $CAGNET_NETWORK).
"""

from __future__ import annotations

import base64
import json
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cagnet.actions.register import Actor
from cagnet.actions.register import checkpoint_json as _checkpoint_json
from cagnet.cli.common import stdout_console
from shared.roles import CAG_CHAIR

if TYPE_CHECKING:
    from node.network.witness import WitnessRound
    from shared.accreditation import ProviderStatus
    from shared.checkpoint import VerifiedCheckpoint
    from shared.manifest import Manifest


register_app = typer.Typer(
    help="The shared accreditation register (a witnessed transparency log).", no_args_is_help=True
)

out = stdout_console()  # a pipe gets each table whole
err = stdout_console(stderr=True)  # piped into a log, a message stays whole

NodeOpt = Annotated[Path | None, typer.Option("--node", help="Act as this member's node folder.")]
NetworkOpt = Annotated[
    Path | None, typer.Option("--network", help="Act as a principal of this network folder (default: $CAGNET_NETWORK).")
]
PrincipalOpt = Annotated[str, typer.Option(help="With --network: the principal to act as.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
QuorumOpt = Annotated[
    int | None, typer.Option(help="Member cosignatures that make a checkpoint final (default: a majority).")
]


def _actor(node: Path | None, network_dir: Path | None, principal: str) -> Actor:
    from cagnet.actions.register import actor

    if node is None and network_dir is None and not os.environ.get("CAGNET_NETWORK"):
        raise typer.BadParameter("give --node NODEDIR or --network NETDIR", param_hint="--node/--network")
    return actor(node, network_dir, principal)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def _checkpoint_line(verified: VerifiedCheckpoint) -> str:
    cp = verified.checkpoint
    final = "[green]final[/]" if verified.final else "[yellow]not yet final[/]"
    return (
        f"checkpoint: {cp.size} entries, root {cp.root.hex()[:16]}…, cosigned by {len(verified.cosigners)} "
        f"members, {verified.quorum} needed ({', '.join(verified.cosigners) or 'none'}): {final}"
    )


@register_app.command("submit")
def submit(
    nodedir: Annotated[Path, typer.Argument(help="The accrediting authority's node folder.")],
    entry_file: Annotated[Path, typer.Argument(help="The decision as TOML (see docs/register.md).")],
    as_json: JsonOpt = False,
) -> None:
    """Sign a decision with this authority's key and append it to the register."""

    from node.config import load_config
    from shared import dsse
    from shared.accreditation import entry_bytes, entry_from_toml, sign_entry
    from shared.checkpoint import register_origin
    from shared.manifest import ManifestSource
    from shared.register_client import RegisterClient

    config = load_config(nodedir)
    trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
    manifests = ManifestSource(config.manifest_path, trusted)
    try:
        text = entry_file.read_text()
    except FileNotFoundError:
        raise typer.BadParameter(f"no such file: {entry_file}", param_hint="ENTRY") from None
    entry = entry_from_toml(
        text, authority=config.authority, register=register_origin(manifests.current()), base=entry_file.parent
    )
    identity = config.identity()
    data = entry_bytes(sign_entry(entry, identity.signing_key))
    with RegisterClient(identity, manifests.current) as client:
        index, size = client.submit(data)
    if as_json:
        _print_json(
            {"leaf_index": index, "tree_size": size, "provider": entry.provider.key, "decision": entry.decision}
        )
    else:
        err.print(
            f"[green]logged[/]: {config.authority} {entry.decision} {entry.provider.name} "
            f"({entry.provider.key}) at leaf {index}; log size {size}"
        )


@register_app.command("import")
def import_list(
    nodedir: Annotated[Path, typer.Argument(help="The accrediting authority's node folder.")],
    file: Annotated[Path, typer.Argument(help="The authority's accreditation list: .xlsx or .csv (docs/register.md).")],
    sheet: Annotated[str | None, typer.Option(help="The sheet of an .xlsx file (default: the first).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and sign every row; submit nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit an authority's existing accreditation decisions, one signed entry per row. Every row
    is checked first (as `submit` checks an ENTRY.toml, and as the coordinator will): if any row is
    bad, nothing is submitted. Rows the register already holds are skipped, so an interrupted
    import can be run again."""
    from node.config import load_config
    from node.network.register_import import read_decisions, sign_decisions, submit_decisions
    from shared import dsse
    from shared.checkpoint import register_origin
    from shared.manifest import ManifestSource
    from shared.register_client import RegisterClient

    config = load_config(nodedir)
    trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
    manifests = ManifestSource(config.manifest_path, trusted)
    manifest = manifests.current()
    origin = register_origin(manifest)
    members = frozenset(p.id for p in manifest.members)
    entries = read_decisions(file, authority=config.authority, register=origin, members=members, sheet=sheet)
    identity = config.identity()
    signed = sign_decisions(entries, key=identity.signing_key, manifest=manifest, register=origin, label=file.name)
    if dry_run:
        if as_json:
            _print_json({"checked": len(signed), "submitted": 0})
        else:
            err.print(f"[green]checked[/] {len(signed)} decisions in {file.name}: every row is good; nothing submitted")
        return
    with RegisterClient(identity, manifests.current) as client:
        summary = submit_decisions(client, signed)
    if as_json:
        _print_json(
            {
                "logged": [{"row": row, "leaf_index": index} for row, index in summary.logged],
                "already_logged": list(summary.already),
            }
        )
        return
    err.print(
        f"[green]logged[/] {len(summary.logged)} decisions from {file.name} as {config.authority}"
        + (f"; {len(summary.already)} were already in the register" if summary.already else "")
    )


@register_app.command("list")
def list_cmd(
    node: NodeOpt = None,
    network_dir: NetworkOpt = None,
    principal: PrincipalOpt = CAG_CHAIR,
    on: Annotated[str | None, typer.Option(help="Statuses on this date (YYYY-MM-DD; default today).")] = None,
    status_filter: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only providers with this overall status (repeat for several)."),
    ] = None,
    expires_before: Annotated[
        str | None,
        typer.Option(help="Only providers with an accreditation or passport ending before this date (renewals)."),
    ] = None,
    authority: Annotated[str | None, typer.Option(help="Only providers this authority has decided on.")] = None,
    quorum: QuorumOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every provider in the register and its status, derived from every authority's verified
    entries; filter by status and by expiry to see what is due for renewal."""
    from shared.accreditation import STATUSES, register_statuses
    from shared.register_client import RegisterClient, fetch_register

    day = date.fromisoformat(on) if on else date.today()
    wanted = set(status_filter or ())
    if wanted - set(STATUSES):
        raise typer.BadParameter(f"one of {', '.join(STATUSES)}", param_hint="--status")
    before = date.fromisoformat(expires_before) if expires_before else None
    actor = _actor(node, network_dir, principal)
    with RegisterClient(actor.identity, actor.manifest) as client:
        whole = fetch_register(client, quorum=quorum, chain=actor.chain())
    statuses = register_statuses(whole.entries, on=day)
    shown = [
        s
        for s in statuses
        if (not wanted or s.overall in wanted)
        and (authority is None or any(a.authority == authority for a in s.authorities))
        and (before is None or _next_expiry(s, before) is not None)
    ]
    if as_json:
        _print_json(
            {
                "on": day.isoformat(),
                "providers": [{**_status_json(s), "next_expiry": _expiry_json(s)} for s in shown],
                "checkpoint": _checkpoint_json(whole.checkpoint),
            }
        )
        return
    table = Table(title=f"{len(shown)} of {len(statuses)} providers in the register on {day.isoformat()}")
    for col in ("provider", "key", "status", "authorities", "next expiry"):
        table.add_column(col)
    colours = {"accredited": "green", "passported": "green", "suspended": "red"}
    for s in shown:
        overall = f"[{colours.get(s.overall, 'yellow')}]{s.overall}[/]"
        by = ", ".join(f"{a.authority} {a.status}" for a in s.authorities)
        table.add_row(" / ".join(s.names), s.provider, overall, by, _expiry_json(s) or "")
    out.print(table)
    out.print(_checkpoint_line(whole.checkpoint))


def _current_ends(status: ProviderStatus) -> list[date]:
    return [a.valid_to for a in status.authorities if a.status in ("accredited", "passported")]


def _next_expiry(status: ProviderStatus, before: date) -> date | None:
    ends = [end for end in _current_ends(status) if end < before]
    return min(ends) if ends else None


def _expiry_json(status: ProviderStatus) -> str | None:
    ends = _current_ends(status)
    return min(ends).isoformat() if ends else None


def _history(
    provider: str, node: Path | None, network_dir: Path | None, principal: str, quorum: int | None
) -> tuple[Any, Actor]:
    from shared.register_client import RegisterClient, fetch_history

    actor = _actor(node, network_dir, principal)
    with RegisterClient(actor.identity, actor.manifest) as client:
        history = fetch_history(client, provider, quorum=quorum, network_dir=actor.netdir, chain=actor.chain())
        return history, actor


def _status_json(status: ProviderStatus) -> dict[str, object]:
    return status.model_dump(mode="json")


@register_app.command("status")
def status(
    provider: Annotated[str, typer.Argument(help='A key ("charity:1149085") or the provider\'s name.')],
    node: NodeOpt = None,
    network_dir: NetworkOpt = None,
    principal: PrincipalOpt = CAG_CHAIR,
    on: Annotated[str | None, typer.Option(help="Status on this date (YYYY-MM-DD; default today).")] = None,
    quorum: QuorumOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A provider's current status, derived from every authority's verified entries."""

    from shared.accreditation import provider_status
    from shared.errors import InvalidRequest

    day = date.fromisoformat(on) if on else date.today()
    history, _ = _history(provider, node, network_dir, principal, quorum)
    if not history.entries:
        raise InvalidRequest(f"no entries in the register for {history.provider}")
    result = provider_status(history.provider, history.entries, on=day)
    if as_json:
        _print_json({**_status_json(result), "checkpoint": _checkpoint_json(history.checkpoint)})
        return
    colour = {"accredited": "green", "passported": "green", "suspended": "red"}.get(result.overall, "yellow")
    out.print(f"{' / '.join(result.names)} ({result.provider}) on {day.isoformat()}: [{colour}]{result.overall}[/]")
    if result.suspended_by:
        out.print(f"[red]suspended by[/]: {', '.join(result.suspended_by)}")
    table = Table()
    for col in ("authority", "status", "latest decision", "leaf", "valid", "note"):
        table.add_column(col)
    for a in result.authorities:
        table.add_row(
            a.authority,
            a.status,
            a.decision,
            str(a.leaf_index),
            f"{a.valid_from.isoformat()} to {a.valid_to.isoformat()}",
            a.note,
        )
    out.print(table)
    out.print(_checkpoint_line(history.checkpoint))


@register_app.command("history")
def history_cmd(
    provider: Annotated[str, typer.Argument(help='A key ("charity:1149085") or the provider\'s name.')],
    node: NodeOpt = None,
    network_dir: NetworkOpt = None,
    principal: PrincipalOpt = CAG_CHAIR,
    quorum: QuorumOpt = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Save the entries, proofs and checkpoint for `verify`.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every verified entry about a provider, in log order."""
    history, _ = _history(provider, node, network_dir, principal, quorum)
    if out_file is not None:
        out_file.write_text(json.dumps(history.receipt, indent=2) + "\n")
        err.print(f"receipt saved to {out_file} (check it with `cagnet register verify {out_file}`)")
    if as_json:
        _print_json(
            {
                "provider": history.provider,
                "entries": [
                    {"leaf_index": e.leaf_index, **e.entry.model_dump(mode="json", by_alias=True)}
                    for e in history.entries
                ],
                "checkpoint": _checkpoint_json(history.checkpoint),
            }
        )
        return
    table = Table(title=f"{history.provider}: {len(history.entries)} entries")
    for col in ("leaf", "authority", "decision", "decided", "valid", "criteria", "QAF", "evidence"):
        table.add_column(col)
    for logged in history.entries:
        e = logged.entry
        decision = e.decision + (f" from {e.passported_from}" if e.passported_from else "")
        met = sum(1 for v in e.criteria.model_dump().values() if v == "met")
        table.add_row(
            str(logged.leaf_index),
            e.authority,
            decision,
            e.decided_on.isoformat(),
            f"{e.valid_from.isoformat()} to {e.valid_to.isoformat()}",
            f"{met}/5 met",
            "".join(v[0] if v != "not-assessed" else "-" for v in e.qaf.model_dump().values()),
            e.evidence_sha256[:12] + "…",
        )
    out.print(table)
    out.print(_checkpoint_line(history.checkpoint))


@register_app.command("checkpoint")
def checkpoint_cmd(
    node: NodeOpt = None,
    network_dir: NetworkOpt = None,
    principal: PrincipalOpt = CAG_CHAIR,
    quorum: QuorumOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Save the signed checkpoint for `verify`.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The register's newest checkpoint: size, root, and which members have cosigned it."""

    from shared.checkpoint import make_receipt, verify_checkpoint
    from shared.register_client import RegisterClient

    actor = _actor(node, network_dir, principal)
    with RegisterClient(actor.identity, actor.manifest) as client:
        envelope = client.checkpoint()
    manifest = actor.manifest()
    verified = verify_checkpoint(envelope, manifest, quorum=quorum)
    if out_file is not None:
        receipt = make_receipt(envelope, [], network_dir=actor.netdir, manifest_version=manifest.version)
        out_file.write_text(json.dumps(receipt, indent=2) + "\n")
        err.print(f"checkpoint saved to {out_file}")
    if as_json:
        _print_json(_checkpoint_json(verified))
    else:
        out.print(_checkpoint_line(verified))


def _chain_for(receipt: dict[str, object], network_dir: Path | None, node: Path | None) -> list[Manifest]:
    """The verified manifest chain, oldest first, of the node or network folder the receipt is checked in."""
    from coordinator import network
    from node.config import load_config
    from shared import dsse
    from shared.manifest import ManifestSource

    if node is not None:
        config = load_config(node)
        source = ManifestSource(config.manifest_path, dsse.load_public_key(base64.b64decode(config.coordinator_key)))
        return [m for m, _ in source.history]
    hint = receipt.get("network_dir")
    netdir = network_dir or (Path(os.environ["CAGNET_NETWORK"]) if os.environ.get("CAGNET_NETWORK") else None)
    netdir = netdir or (Path(str(hint)) if hint else None)
    if netdir is None:
        raise typer.BadParameter("the file names no network folder; give --network or --node", param_hint="--network")
    return [m for m, _ in network.history(netdir)]


@register_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="A receipt saved by `history --out` or `checkpoint --out`.")],
    network_dir: Annotated[
        Path | None, typer.Option("--network", help="Check against this network's manifest.")
    ] = None,
    node: Annotated[Path | None, typer.Option("--node", help="Check against this node's manifest.")] = None,
    quorum: QuorumOpt = None,
    allow_pending: Annotated[
        bool, typer.Option(help="Accept a checkpoint with fewer cosignatures than the quorum.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Offline: the checkpoint's signatures and quorum, each entry's signature, each inclusion proof."""

    from shared.checkpoint import load_receipt, verify_receipt_in_chain

    receipt = load_receipt(file)
    chain = _chain_for(receipt, network_dir, node)
    checkpoint, entries, manifest = verify_receipt_in_chain(
        receipt, chain, quorum=quorum, require_final=not allow_pending
    )
    if as_json:
        _print_json(
            {
                "verified": True,
                "checkpoint": _checkpoint_json(checkpoint),
                "entries": [{"leaf_index": e.leaf_index, "authority": e.entry.authority} for e in entries],
                "manifest_version": manifest.version,
            }
        )
        return
    out.print(
        f"[green]verified[/]: {len(entries)} entries included in the checkpoint of {checkpoint.checkpoint.size}, "
        f"each signed by its authority; checkpoint signed by the coordinator and cosigned by "
        f"{', '.join(checkpoint.cosigners) or 'no member'} ({checkpoint.quorum} needed)"
    )
    out.print(_keys_note(manifest, chain[-1]))


def _keys_note(made_under: Manifest, current: Manifest) -> str:
    if made_under.version == current.version:
        return f"checked against the keys of manifest version {made_under.version} (the current one)"
    return (
        f"checked against the keys each party held at manifest version {made_under.version}, from the verified "
        f"chain (the current version is {current.version}: keys rotated since do not matter)"
    )


@register_app.command("verify-log")
def verify_log(
    netdir: Annotated[Path, typer.Argument(help="The network folder (the coordinator's side).")],
    database_url: Annotated[str | None, typer.Option(help="The register's database (default: as the server).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """On the coordinator: re-hash every stored entry and check the whole tree and every checkpoint."""

    from coordinator import network
    from coordinator.register import store
    from coordinator.register.server import RegisterSettings, default_database_url
    from shared.accreditation import verify_entry
    from shared.checkpoint import register_origin
    from shared.errors import InvalidRequest

    manifest = network.read(netdir)
    chain = [m for m, _ in network.history(netdir)]
    origin = register_origin(manifest)
    url = database_url or RegisterSettings().database_url or default_database_url(netdir)
    engine = store.open_register(url)

    def check(index: int, data: bytes) -> None:
        try:
            verify_entry(data, manifest, register=origin, earlier=chain)
        except Exception as exc:
            raise InvalidRequest(f"leaf {index}: {exc}") from None

    try:
        size = store.verify_log(engine, check_entry=check)
    finally:
        engine.dispose()
    if as_json:
        _print_json({"verified": True, "size": size})
    else:
        out.print(f"[green]log intact[/]: {size} entries re-hashed, every subtree and checkpoint matches")


def _round_json(r: WitnessRound) -> dict[str, object]:
    return {
        "authority": r.authority,
        "previous_size": r.previous_size,
        "size": r.size,
        "root": r.root.hex(),
        "new_entries": r.new_entries,
        "audited": r.audited,
        "cosignatures": r.cosignatures,
        "quorum": r.quorum,
        "final": r.final,
    }


def node_witness(
    nodedir: Annotated[Path, typer.Argument(help="The node folder made by `cagnet node init`.")],
    as_json: JsonOpt = False,
) -> None:
    """Witness the register once: check the newest checkpoint against the last one cosigned, then cosign."""

    from node.config import load_config
    from node.network.witness import witness_round

    r = witness_round(load_config(nodedir))
    if as_json:
        _print_json(_round_json(r))
        return
    final = "final" if r.final else "not yet final"
    err.print(
        f"[green]cosigned[/] checkpoint {r.size} (from {r.previous_size}: {r.new_entries} new entries checked, "
        f"{r.audited} older re-checked); {r.cosignatures} cosignatures, {r.quorum} needed: {final}"
    )


def entry_summary(data: bytes) -> str:
    """One line about a logged entry (for the demo and logs)."""

    from shared.accreditation import open_entry

    _, entry = open_entry(data)
    return f"{entry.authority} {entry.decision} {entry.provider.name}"

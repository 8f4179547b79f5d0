"""`cagnet network ...`, `cagnet coordinator ...`, `cagnet query ...` and `cagnet verify`:
what the network operator and a CAG chair run."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from coordinator import audit as coordinator_audit
from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.bundle import Bundle, verify_saved_bundle
from coordinator.joint.combine import JointSupplyMap
from shared import audit as shared_audit
from shared import logs
from shared.audit_cli import audit_app

network_app = typer.Typer(help="Create and inspect a network folder.", no_args_is_help=True)
coordinator_app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)
query_app = typer.Typer(help="Joint queries across the member nodes (as the CAG chair).", no_args_is_help=True)

out = Console()
err = Console(stderr=True)


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
PrincipalOpt = Annotated[
    str, typer.Option(help="The principal to act as (default: a kit's own principal, else cag-chair).")
]


def _netdir(value: Path | None) -> Path:
    netdir = value or _default_network()
    if netdir is None:
        raise typer.BadParameter("give --network NETDIR or set CAGNET_NETWORK", param_hint="--network")
    if network.kit_principal(netdir) is not None:
        from coordinator import kit

        kit.refresh(netdir)  # the kit's manifest, brought up to date and verified, before it is used
    return netdir


@network_app.command("init")
def network_init(
    netdir: Annotated[Path, typer.Argument(help="An empty folder for the network's keys and manifest.")],
    name: Annotated[str, typer.Option(help="The network's name, e.g. the CAG's.")] = "Supporting People network",
    coordinator_endpoint: Annotated[
        str, typer.Option(help="host:port the coordinator will listen on.")
    ] = "127.0.0.1:7100",
    authorities: Annotated[
        Path | None,
        typer.Option(help="An authority register file to start from (default: the shipped 2011 list)."),
    ] = None,
) -> None:
    """Create a network: its CA, the coordinator's identity, a cag-chair principal and the manifest,
    with the authority register members' names, districts and populations come from."""
    manifest = network.init_network(
        netdir, name=name, coordinator_endpoint=coordinator_endpoint, authorities=authorities
    )
    err.print(
        f"[green]network {manifest.network!r} created[/] in {netdir} (manifest version {manifest.version},"
        f" {len(network.read_register(netdir).authorities)} authorities in its register)"
    )


@network_app.command("show")
def network_show(netdir: Annotated[Path, typer.Argument()]) -> None:
    """List the parties in the (verified) manifest."""
    manifest = network.read(netdir)
    table = Table(title=f"{manifest.network}: manifest version {manifest.version}")
    for col in ("party", "name", "roles", "endpoint", "key id"):
        table.add_column(col)
    for p in manifest.parties:
        table.add_row(p.id, p.name, ",".join(p.roles), p.endpoint, p.keyid[:16])
    out.print(table)


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


@network_app.command("authorities")
def network_authorities(
    netdir: Annotated[Path, typer.Argument()],
    members_only: Annotated[bool, typer.Option("--members", help="Only the member authorities.")] = False,
) -> None:
    """The network's authority register (from the verified manifest): code, name, kind, region,
    population and districts."""
    from shared.places import REGIONS

    manifest = network.read(netdir)
    register = network.read_register(netdir)
    members = {p.id for p in manifest.members}
    table = Table(title=f"{manifest.network}: authority register ({register.digest[:19]}…)")
    for col in ("code", "name", "kind", "region", f"population {register.years[-1]}", "districts", "member"):
        table.add_column(col)
    for a in register.authorities.values():
        if members_only and a.code not in members:
            continue
        districts = str(len(a.listed_districts)) if a.listed_districts else "-"
        member = "yes" if a.code in members else ""
        table.add_row(a.code, a.name, a.kind, REGIONS[a.region], f"{a.population:,}", districts, member)
    out.print(table)


@network_app.command("set-authority")
def network_set_authority(
    netdir: Annotated[Path, typer.Argument()],
    authority: Annotated[str, typer.Argument(help="The authority's GSS code, as the register lists it.")],
    population: Annotated[int | None, typer.Option(help="Its corrected population.")] = None,
    year: Annotated[int | None, typer.Option(help="The year of that population (default: the latest held).")] = None,
    district: Annotated[
        list[str] | None, typer.Option("--district", help="A county's district to add or rename, CODE=NAME (repeat).")
    ] = None,
) -> None:
    """Correct the register while the network is being set up (once governed: `propose-authority`)."""
    districts = parse_districts(district or [])
    manifest = network.set_authority(netdir, authority, population=population, year=year, districts=districts)
    err.print(f"[green]authority register corrected[/]: {authority}, manifest version {manifest.version}")


principal_app = typer.Typer(help="Principals: people who ask, not nodes that answer.", no_args_is_help=True)
network_app.add_typer(principal_app, name="principal")


@principal_app.command("export")
def principal_export(
    party_id: Annotated[str, typer.Argument(metavar="ID", help="The principal, e.g. cag-chair.")],
    network_dir: Annotated[Path, typer.Option("--network", help="The coordinator's network folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="A new folder for the kit.")],
) -> None:
    """Write a principal's kit: its own keys, the CA certificate and the public files, never the CA
    key or the coordinator's keys. Its holder passes `--kit KIT` to query, report and feed commands."""
    from coordinator import kit

    kit.export(network_dir, party_id, out_dir)
    party = network.read(network_dir).party(party_id)
    err.print(
        f"[green]kit for {party.name} ({party_id})[/] written to {out_dir}: hand it over as you would a key"
        " (the private key is in it; set CAGNET_KEY_PASSPHRASE before `principal add` to have it encrypted)"
    )


@principal_app.command("add")
def principal_add(
    netdir: Annotated[Path, typer.Argument()],
    party_id: Annotated[str, typer.Option("--id", help="The principal's id, e.g. regional-board.")],
    role: Annotated[str, typer.Option(help="cag-chair or regional-board.")],
    name: Annotated[
        str,
        typer.Option(help="The person or body, e.g. 'Jane Smith, Lead Officer' (shown with the id in audit logs)."),
    ] = "",
) -> None:
    """Make a principal's keys and certificate under NETDIR/principals/ID and list it in the manifest."""
    manifest = network.add_principal(netdir, party_id=party_id, role=role, name=name)
    err.print(
        f"[green]principal {party_id} ({role})[/] created in {network.principal_dir(netdir, party_id)}, "
        f"listed in manifest version {manifest.version}"
    )


policy_app = typer.Typer(help="Show or change the signed network policy.", no_args_is_help=True)
network_app.add_typer(policy_app, name="policy")


@policy_app.command("show")
def policy_show(
    netdir: Annotated[Path, typer.Argument()],
    raw: Annotated[bool, typer.Option("--raw", help="Print the policy document itself.")] = False,
) -> None:
    """The network policy in force: its digest, revision and the rules for each aggregate."""
    policy = network.read_policy(netdir)
    if raw:
        print(policy.source.decode(), end="")
        return
    table = Table(title=f"{policy.name} (revision {policy.revision}) {policy.digest}")
    for col in ("aggregate", "roles", "suppress", "round", "stricter groups", "min auth.", "max dims", "money rules"):
        table.add_column(col)
    for kind, rule in policy.aggregates.items():
        table.add_row(
            kind,
            ", ".join(rule.roles),
            f"1-{rule.threshold}",
            f"{rule.rounding_mode} to {rule.rounding_base}",
            ", ".join(f"{g}: 1-{t}" for g, t in sorted(rule.group_thresholds.items())),
            str(rule.min_authorities),
            str(rule.max_dimensions),
            f"n={rule.dominance_n} k={rule.dominance_k:.0%}, p={rule.p_percent:.0%}, min {rule.min_contributors}",
        )
    out.print(table)


@policy_app.command("set")
def policy_set(
    netdir: Annotated[Path, typer.Argument()],
    file: Annotated[Path, typer.Argument(help="The new policy (TOML; see `cagnet network policy show --raw`).")],
) -> None:
    """Sign and publish a new network policy (its revision must be higher); nodes pick it up."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE") from None
    policy = network.set_policy(netdir, data)
    err.print(f"[green]policy revision {policy.revision} signed and published[/]: {policy.digest}")


@coordinator_app.command("serve")
def coordinator_serve(
    netdir: Annotated[Path, typer.Argument()],
    listen: Annotated[
        str | None, typer.Option(help="host:port (default: the manifest's coordinator endpoint).")
    ] = None,
    onboarding: Annotated[
        str | None,
        typer.Option(
            help="host:port of the onboarding port, where joining authorities with an invite connect"
            " (default: onboarding_listen in coordinator.toml; off when neither is given)."
        ),
    ] = None,
    log_format: Annotated[
        logs.LogFormat | None,
        typer.Option(
            "--log-format",
            help="text, or json for one object per line (default: log_format in coordinator.toml, else text).",
        ),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            help="host:port the manifest is to list for the coordinator, when it is not the one listed: a new"
            " manifest version (founding phase). Without it, a --listen that differs from the listed address"
            " asks first (and is refused when nobody is there to answer).",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Publish the --listen address without asking (scripts).")] = False,
) -> None:
    """Run the coordinator until stopped (Ctrl-C or SIGTERM). Metrics are served on metrics_listen
    when coordinator.toml (or CAGNET_COORDINATOR_METRICS_LISTEN) sets it. The manifest's coordinator
    address changes only when you say so (--advertise, or --yes/confirming a new --listen address):
    nodes and kits find the coordinator there, and one made earlier follows a change only while it
    can still reach the old address (docs/governance.md)."""
    from coordinator.migrations import check_databases
    from coordinator.server import serve
    from coordinator.settings import CoordinatorSettings

    settings = CoordinatorSettings.load(netdir)  # a bad setting is reported before anything starts
    logs.configure(log_format.value if log_format is not None else settings.log_format)
    check_databases(netdir)  # and so is a database that needs `cagnet coordinator upgrade`
    listed = network.read(netdir).coordinator_endpoint
    address = listen or listed
    advertise = advertise or _advertised(listed, address, yes=yes)
    onboarding_address = onboarding or settings.onboarding_address
    # Through the log, not the console: with --log-format json every line on stderr is one object.
    logging.getLogger("cagnet.coordinator").info(
        "coordinator listening on %s (mTLS)%s",
        address,
        f", onboarding on {onboarding_address} (TLS)" if onboarding_address else "",
    )
    serve(netdir, listen=address, onboarding_listen=onboarding_address, advertise=advertise)


def _advertised(listed: str, listen: str, *, yes: bool) -> str | None:
    """The address to publish for a coordinator told to --listen where the manifest does not say,
    after asking; None to keep the listed one. A listed address with port 0 (a network made with
    one to be filled in) takes the --listen address; so does a wildcard host on the listed port."""
    if listen == listed:
        return None
    port = listed.rpartition(":")[2]
    if not listed or port == "0":
        return listen
    listen_host, _, listen_port = listen.rpartition(":")
    if listen_port == port and listen_host.strip("[]") in ("0.0.0.0", "::", ""):
        return None  # every interface, the listed port: the listed address still reaches it
    question = (
        f"The manifest lists the coordinator at {listed}; nodes and kits look for it there. Publish {listen} as its "
        "address in a new manifest version?"
    )
    if yes or (sys.stdin.isatty() and typer.confirm(question)):
        return listen
    raise typer.BadParameter(
        f"{listen} is not the coordinator's address in the manifest ({listed}). Give --advertise {listen} (or --yes) "
        f"to publish it, or --advertise {listed} to listen on {listen} while the manifest keeps {listed} (behind a "
        "proxy or NAT). Nodes and kits follow a new address only while they can still reach the old one: in a "
        "governed network, members approve `cagnet network propose-endpoint coordinator HOST:PORT` first.",
        param_hint="--listen",
    )


@coordinator_app.command("upgrade")
def coordinator_upgrade(
    netdir: Annotated[Path, typer.Argument(help="The network folder the coordinator serves.")],
) -> None:
    """Bring the coordinator's databases (register, feeds, audit log) to this cagnet's schema, in place
    (back them up first). Prints each schema's revision before and after; running it again changes nothing."""
    from sqlalchemy import create_engine

    from coordinator.migrations import databases
    from shared.migrate import missing_sqlite_file, upgrade_database

    if not network.manifest_path(netdir).is_file():
        raise typer.BadParameter(f"{netdir} is not a network folder (no manifest)", param_hint="NETDIR")
    for store, url in databases(netdir):
        missing = missing_sqlite_file(url)
        if missing is not None:
            err.print(f"{store.title}: none at {missing} yet (made at this revision when first used)")
            continue
        engine = create_engine(url)
        try:
            upgrade_database(engine, store, err.print)
        finally:
            engine.dispose()
    err.print("[green]the coordinator's databases are up to date[/]")


def _audit_log(netdir: Path) -> Engine:
    if not network.manifest_path(netdir).is_file():
        raise typer.BadParameter(f"{netdir} is not a network folder (no manifest)", param_hint="NETDIR")
    return shared_audit.open_log(coordinator_audit.database_url(netdir))


coordinator_app.add_typer(
    audit_app(
        about="The coordinator's hash-chained audit log: every call to its services, and every scheduled snapshot.",
        metavar="NETDIR",
        folder_help="The network folder the coordinator serves.",
        open_log=_audit_log,
        principal_names=lambda netdir: network.party_names(netdir),
    ),
    name="audit",
)


def render_supply_map(bundle: Bundle, console: Console) -> None:
    r = bundle.result
    assert isinstance(r, JointSupplyMap)
    codes = [a.authority for a in r.authorities]
    names = {a.authority: a.name for a in r.authorities}
    title = f"{bundle.network}: joint supply map (manifest v{bundle.manifest_version})"
    if r.selected_groups:
        title += f", client groups {', '.join(str(g) for g in r.selected_groups)}"
    totals = Table(title=title)
    for col in ("authority", "population", "services", "units", "designated", "contracts £/yr"):
        totals.add_column(col, justify="right" if col != "authority" else "left")
    for a in r.authorities:
        totals.add_row(
            a.name,
            f"{a.population:,}",
            _figure(a.services),
            f"{a.units:,}",
            _figure(a.designated_services),
            _figure(a.annual_value),
        )
    totals.add_row(
        "[bold]CAG[/]",
        f"{r.population:,}",
        _figure(r.services),
        f"{r.units:,}",
        _figure(r.designated_services),
        _figure(r.annual_value),
    )
    console.print(totals)
    console.print(
        "[dim]Service counts are rounded under the network policy (small counts suppressed, shown as *);"
        " contract values are withheld (*) where a few providers dominate. Units are capacity and exact.[/]"
    )

    # Two narrow tables rather than one wide one: six authorities must fit an 80-column terminal.
    heads = {code: _short_name(names[code]) for code in codes}
    rates = Table(
        title="Units per 1,000 population by client group", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    gaps = Table(title="Gap against the CAG rate, in units", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    # Rich never shrinks a no-wrap column, so size the label column to what the numbers leave.
    numbers = sum(max(len(h), 5) + 3 for h in [*heads.values(), "CAG"])  # padding and a rule each
    label_width = max(14, min(40, console.width - numbers - 1))
    for table in (rates, gaps):
        table.add_column("client group", no_wrap=True, overflow="ellipsis", max_width=label_width)
        for code in codes:
            table.add_column(heads[code], justify="right", no_wrap=True, min_width=max(5, len(heads[code])))
    rates.add_column("CAG", justify="right", no_wrap=True, min_width=5)
    for g in r.client_groups:
        label = f"{g.client_group:>2} {g.name}"
        rates.add_row(label, *(f"{g.rates[code]:.2f}" for code in codes), f"{g.cag_rate:.2f}")
        gaps.add_row(label, *(f"{g.shortfall[code]:,}" if g.shortfall[code] > 0 else "-" for code in codes))
    console.print(rates)
    console.print(gaps)
    _render_coverage(bundle, console)


def _figure(value: int | None) -> str:
    return "*" if value is None else f"{value:,}"


def _short_name(name: str) -> str:
    """Column headings for narrow tables: "North Yorkshire" -> "N Yorkshire", "Bath & Wells" -> "B&W"."""
    if " & " in name:
        return "&".join(part[0] for part in name.split(" & "))
    first, _, rest = name.partition(" ")
    return f"{first[0]} {rest}" if rest and first in {"North", "South", "East", "West"} else name


def _render_coverage(bundle: Bundle, console: Console) -> None:
    console.print(f"answered: {', '.join(bundle.answered) or 'none'}  (policy {bundle.policy_digest[:19]}…)")
    if bundle.missing:
        for m in bundle.missing:
            console.print(f"[yellow]missing[/]: {m.authority} — {m.reason}")
        console.print("[yellow]CAG figures above cover only the authorities that answered.[/]")


@query_app.command("supply-map")
def query_supply_map(
    network_dir: AskerOpt = None,
    by_district: Annotated[bool, typer.Option(help="Break down by district as well.")] = False,
    client_group: Annotated[
        list[int] | None,
        typer.Option("--client-group", "-g", help="Only this SP client group (1-21); repeat for several."),
    ] = None,
    deadline_ms: Annotated[int, typer.Option(help="Per-node deadline (0: the coordinator's default).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verified bundle as JSON.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Save the signed bundle for `cagnet verify`.")] = None,
    principal: PrincipalOpt = "",
) -> None:
    """The joint supply map: per-authority and CAG supply, rates per 1,000 and gaps."""
    from coordinator.joint.client import joint_query

    netdir = _netdir(network_dir)
    bundle, envelope = joint_query(
        netdir,
        kind="supply-map",
        principal=principal,
        by_district=by_district,
        client_groups=client_group or (),
        node_deadline_ms=deadline_ms,
    )
    if out_file is not None:
        bundle_mod.save(out_file, envelope, network_dir=netdir)
        err.print(f"signed bundle saved to {out_file} (check it with `cagnet verify {out_file}`)")
    if as_json:
        print(json.dumps(bundle.model_dump(mode="json"), indent=2))
    else:
        render_supply_map(bundle, out)


def verify(
    file: Annotated[Path, typer.Argument(help="A bundle saved with `cagnet query ... --out FILE`.")],
    network_dir: NetworkOpt = None,
) -> None:
    """Re-check a saved bundle offline: every signature, every binding, and the combined result."""
    envelope, hint = bundle_mod.load(file)
    netdir = network_dir or _default_network() or hint
    if netdir is None:
        raise typer.BadParameter("the file names no network folder; give --network", param_hint="--network")
    chain = [m for m, _ in network.history(netdir)]
    bundle, made_under = verify_saved_bundle(envelope, chain)
    out.print(
        f"[green]verified[/]: {bundle.kind} bundle from {bundle.network}, "
        f"{len(bundle.contributions)} signed contributions ({', '.join(bundle.answered)}), "
        + (
            "each node's signed receipt checked (repeat movers are counted from tokens, and VFM summed from "
            "masked histograms, that the bundle does not hold); "
            if bundle.kind in ("repeat-movers", "vfm")
            else "result recomputed and identical; "
        )
        + f"missing: {', '.join(m.authority for m in bundle.missing) or 'none'}"
    )
    current = network.read_policy(netdir).digest
    note = "the network's current policy" if current == bundle.policy_digest else "not the network's current policy"
    out.print(f"made under policy {bundle.policy_digest} ({note})")
    if made_under.version == chain[-1].version:
        out.print(f"signatures checked against the keys of manifest version {made_under.version} (the current one)")
    else:
        out.print(
            f"signatures checked against the keys each party held at manifest version {made_under.version}, "
            f"from the verified chain (the current version is {chain[-1].version}: keys rotated since do not matter)"
        )

"""`cagnet network ...` (the operator's part): create a network folder, show it, correct its
authority register, add principals and sign the network policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cagnet.cli.common import err, out, parse_districts

app = typer.Typer(help="Create and inspect a network folder.", no_args_is_help=True)


@app.command("init")
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
    no_chair: Annotated[
        bool,
        typer.Option(
            "--no-chair",
            help="Make no cag-chair keys here: the chair joins by invite and makes its own"
            " (`cagnet network invite --principal`, `cagnet kit join`).",
        ),
    ] = False,
) -> None:
    """Create a network: its CA, the coordinator's identity, a cag-chair principal (unless --no-chair)
    and the manifest, with the authority register members' names, districts and populations come from."""

    from coordinator import network

    manifest = network.init_network(
        netdir, name=name, coordinator_endpoint=coordinator_endpoint, authorities=authorities, chair=not no_chair
    )
    err.print(
        f"[green]network {manifest.network!r} created[/] in {netdir} (manifest version {manifest.version},"
        f" {len(network.read_register(netdir).authorities)} authorities in its register)"
    )


@app.command("show")
def network_show(netdir: Annotated[Path, typer.Argument()]) -> None:
    """List the parties in the (verified) manifest."""

    from coordinator import network

    manifest = network.read(netdir)
    table = Table(title=f"{manifest.network}: manifest version {manifest.version}")
    for col in ("party", "name", "roles", "endpoint", "key id"):
        table.add_column(col)
    for p in manifest.parties:
        endpoint = f"{p.endpoint} (dials out)" if p.dials_out else p.endpoint
        table.add_row(p.id, p.name, ",".join(p.roles), endpoint, p.keyid[:16])
    out.print(table)


@app.command("authorities")
def network_authorities(
    netdir: Annotated[Path, typer.Argument()],
    members_only: Annotated[bool, typer.Option("--members", help="Only the member authorities.")] = False,
) -> None:
    """The network's authority register (from the verified manifest): code, name, kind, region,
    population and districts."""

    from coordinator import network
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


@app.command("set-authority")
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

    from coordinator import network

    districts = parse_districts(district or [])
    manifest = network.set_authority(netdir, authority, population=population, year=year, districts=districts)
    err.print(f"[green]authority register corrected[/]: {authority}, manifest version {manifest.version}")


@app.command("set-transport")
def network_set_transport(
    netdir: Annotated[Path, typer.Argument()],
    authority: Annotated[str, typer.Argument(help="The member authority's GSS code.")],
    transport: Annotated[
        str, typer.Argument(help="listen (the coordinator connects to its node) or dial-out (its node attaches).")
    ],
) -> None:
    """List how the coordinator reaches a member's node, while the network is being set up (once
    governed: `propose-transport`). The node's node.toml must say the same (docs/onboarding.md)."""

    from coordinator import network

    manifest = network.set_transport(netdir, authority, transport)
    err.print(f"[green]{authority}'s node: {transport}[/], manifest version {manifest.version}")


@app.command("set-reference")
def network_set_reference(
    netdir: Annotated[Path, typer.Argument()],
    file: Annotated[Path, typer.Argument(help="A CSV of authority,year,indicator,value rows (docs/need.md).")],
) -> None:
    """Add or replace need indicators and grant allocations while the network is being set up (once
    governed: `propose-reference`). Every row is checked first; on an error nothing is written."""

    from coordinator import network

    text = network.read_reference_file(file)
    manifest = network.set_reference(netdir, text, source=str(file))
    err.print(f"[green]reference data set[/] from {file}: manifest version {manifest.version}")


@app.command("reference")
def network_reference(
    netdir: Annotated[Path, typer.Argument()],
    indicator: Annotated[str | None, typer.Option(help="Only this indicator (e.g. sp_grant).")] = None,
) -> None:
    """The network's reference data (from the verified manifest): each indicator by authority and year."""

    from coordinator import network
    from shared.authorities import register_of
    from shared.reference import indicator_of, reference_of

    manifest = network.read(netdir)
    data = reference_of(manifest)
    register = register_of(manifest)
    if not len(data):
        out.print(f"{manifest.network}: no reference data yet (`cagnet network set-reference` or `propose-reference`)")
        return
    for name in data.indicators():
        if indicator and name != indicator:
            continue
        meta = indicator_of(name)
        assert meta is not None  # parse_reference read it
        years = data.years(name)
        table = Table(title=f"{meta.label} ({name}, {meta.unit})")
        table.add_column("authority")
        for y in years:
            table.add_column(str(y), justify="right")
        for code in sorted({a for a, _y, i in data.values if i == name}):
            label = register.authority(code).name if code in register else code
            cells = [data.value(code, y, name) for y in years]
            table.add_row(label, *("-" if v is None else f"{v:,}" for v in cells))
        out.print(table)


principal_app = typer.Typer(help="Principals: people who ask, not nodes that answer.", no_args_is_help=True)
app.add_typer(principal_app, name="principal")


@principal_app.command("export")
def principal_export(
    party_id: Annotated[str, typer.Argument(metavar="ID", help="The principal, e.g. cag-chair.")],
    network_dir: Annotated[Path, typer.Option("--network", help="The coordinator's network folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="A new folder for the kit.")],
) -> None:
    """Write a principal's kit: its own keys, the CA certificate and the public files, never the CA
    key or the coordinator's keys. Its holder passes `--kit KIT` to query, report and feed commands."""

    from coordinator import kit, network

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

    from coordinator import network

    manifest = network.add_principal(netdir, party_id=party_id, role=role, name=name)
    err.print(
        f"[green]principal {party_id} ({role})[/] created in {network.principal_dir(netdir, party_id)}, "
        f"listed in manifest version {manifest.version}"
    )


policy_app = typer.Typer(help="Show or change the signed network policy.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("show")
def policy_show(
    netdir: Annotated[Path, typer.Argument()],
    raw: Annotated[bool, typer.Option("--raw", help="Print the policy document itself.")] = False,
) -> None:
    """The network policy in force: its digest, revision and the rules for each aggregate."""

    from coordinator import network

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

    from coordinator import network

    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE") from None
    policy = network.set_policy(netdir, data)
    err.print(f"[green]policy revision {policy.revision} signed and published[/]: {policy.digest}")

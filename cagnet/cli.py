"""The `cagnet` command line. Errors are printed plainly (what was wrong, where) with exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.markup import escape

import cagnet.onboarding_cli
import cagnet.vfm_position  # noqa: F401  (registers `cagnet node vfm-position`)
import coordinator.joint.client
import coordinator.providers_cli
import coordinator.records_cli
from cagnet.governance_cli import node_complete_join, node_rotate_key, write_join_request
from cagnet.health_cli import health_command
from cagnet.register_cli import node_witness, register_app
from coordinator import network
from coordinator.cli import coordinator_app, network_app, query_app, verify
from coordinator.feed_cli import feed_app
from coordinator.joint.client import Asker, Refused
from node.cli import app as node_app
from node.config import complete_join, init_node, load_config
from shared import pki
from shared.channel import ServiceRefused
from shared.errors import CagnetError, ImportError_

app = typer.Typer(
    help="cagnet: federated data sharing for Supporting People Cross Authority Groups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(network_app, name="network")
app.add_typer(node_app, name="node")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(query_app, name="query")
app.command("verify")(verify)
app.command("health")(health_command)
app.add_typer(register_app, name="register")
app.add_typer(feed_app, name="feed")
node_app.command("witness")(node_witness)
node_app.command("complete-join")(node_complete_join)
node_app.command("rotate-key")(node_rotate_key)

err = Console(stderr=True)


def _member_asker(nodedir: Path) -> Asker:
    """A member authority's officer asking from its node's folder: the node's key signs, and the
    node's own verified chain and policy check the answers (`cagnet query ... --node NODEDIR`)."""
    import base64

    from node.network.governance import node_manifests
    from shared import dsse, keys
    from shared.policy import PolicySource

    config = load_config(nodedir)
    manifests = node_manifests(config)
    # A rotated key the node has not switched to yet (it is not running): switch as it would.
    keys.promote_if_listed(config.identity_dir, manifests.current(), config.authority)
    trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
    return Asker(config.identity(), manifests, PolicySource(config.policy_file, trusted, manifests=manifests))


coordinator.joint.client.member_asker = _member_asker


@node_app.command("init")
def node_init(
    nodedir: Annotated[Path, typer.Argument(help="An empty folder for this node.")],
    network_dir: Annotated[Path, typer.Option("--network", help="The network folder to join.")],
    authority: Annotated[
        str, typer.Option(help="The authority's GSS code (2011), as the network's register lists it.")
    ],
    endpoint: Annotated[str, typer.Option(help="host:port this node will listen on.")],
    linkage_key: Annotated[
        Path | None,
        typer.Option(
            help="The network linkage key, copied from a member node (identity/linkage.key). The first"
            " member leaves it out and a new key is made; the coordinator must never hold it."
        ),
    ] = None,
) -> None:
    """Create a node's keys and configuration and admit it to the network (founding phase), or
    write its join request for `cagnet network propose-join` (a governed network)."""
    from node.answers import linkage

    # Refuse a file that is not a key before anything is made.
    key = linkage.load_linkage_key(linkage_key) if linkage_key is not None else None
    request = init_node(
        nodedir,
        authority=authority,
        endpoint=endpoint,
        manifest_path=network.manifest_path(network_dir),
        linkage_key=key,
        register=network.read_register(network_dir),
    )
    if key is None:
        err.print(
            f"made a new network linkage key in {nodedir / 'identity' / 'linkage.key'}: give a copy to each"
            " member that joins (`--linkage-key`), never to the coordinator"
        )
    if network.read(network_dir).governed:
        signed = write_join_request(nodedir, request)
        err.print(
            f"node {request.name} ({authority}) created in {nodedir}; the network is governed by its members:"
            f" hand {signed} to a member authority, who runs `cagnet network propose-join {signed} --node"
            f" THEIR_NODEDIR`; once a quorum approves, `cagnet node complete-join {nodedir} --network {network_dir}`"
        )
        return
    cert, ca_cert, manifest = network.admit(network_dir, request)
    complete_join(
        nodedir,
        cert_pem=pki.cert_pem(cert),
        ca_pem=pki.cert_pem(ca_cert),
        coordinator_key=network.coordinator_key_b64(network_dir),
    )
    err.print(
        f"[green]node {request.name} ({authority})[/] created in {nodedir}, "
        f"listed in manifest version {manifest.version}"
    )


@app.command("report")
def report(
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path("report.html"),
    network_dir: Annotated[
        Path | None, typer.Option("--network", "--kit", help="The network folder, or a principal's kit.")
    ] = None,
    principal: Annotated[
        str, typer.Option(help="The principal to act as (default: a kit's own, else cag-chair).")
    ] = "",
) -> None:
    """The CAG's joint analyses as one self-contained HTML file with charts (no request leaves it)."""
    from coordinator.cli import _netdir
    from coordinator.report import write_report

    path = write_report(_netdir(network_dir), out_file, principal=principal)
    err.print(f"[green]report written[/]: {path.resolve()}")


@app.command("demo")
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the joint bundle as JSON only.")] = False,
    keep: Annotated[Path | None, typer.Option(help="Build the network in this folder and keep it.")] = None,
) -> None:
    """Six authorities as separate processes on loopback, mTLS and signatures on, a joint supply map."""
    from cagnet.demo import run_demo

    raise typer.Exit(run_demo(as_json=as_json, keep=keep))


def main() -> None:
    try:
        app()
    except ImportError_ as exc:
        err.print(f"[red]error:[/] {exc.public_message}")
        for problem in exc.problems[:50]:
            err.print(f"  {problem}")
        if len(exc.problems) > 50:
            err.print(f"  ... and {len(exc.problems) - 50} more")
        sys.exit(2)
    except (Refused, ServiceRefused) as exc:
        err.print(f"[red]refused[/] ({exc.code.name}): {exc.public_message}")
        sys.exit(2)
    except CagnetError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")  # a message may name a [section] of a file
        sys.exit(2)
    except grpc.RpcError as exc:
        err.print(f"[red]refused:[/] {exc.code().name}: {exc.details()}")
        sys.exit(2)


if __name__ == "__main__":
    main()

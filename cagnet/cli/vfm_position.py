"""`cagnet node vfm-position NODEDIR --bundle FILE`: where each of this authority's services sits
against the CAG's released unit-cost benchmarks. Worked out on the node's own machine from its own
store and a verified VFM bundle; nothing is sent anywhere. Lives in `cagnet` because it reads both
a node's store and a coordinator's bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cagnet.cli.common import stdout_console
from cagnet.cli.records import _group_label, _table

out = stdout_console()  # a pipe gets each table whole


def vfm_position(
    nodedir: Annotated[Path, typer.Argument(help="The node folder made by `cagnet node init`.")],
    bundle_file: Annotated[Path, typer.Option("--bundle", help="A VFM bundle saved with `cagnet query vfm --out`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the positions as JSON.")] = False,
) -> None:
    """Each of this authority's services against the released CAG quartiles (computed here, sent nowhere)."""

    from coordinator.joint import bundle as bundle_mod
    from node.answers import vfm
    from node.config import load_config
    from node.store import open_store
    from shared.errors import InvalidRequest
    from shared.kinds.providers import VfmBenchmarks
    from shared.manifest import ManifestSource

    config = load_config(nodedir)
    envelope, _ = bundle_mod.load(bundle_file)
    trusted = ManifestSource(config.manifest_path, _coordinator_key(config.coordinator_key))
    trusted.current()
    # Against the keys held when it was made: a VFM bundle saved before a rotation still counts.
    bundle, _ = bundle_mod.verify_saved_bundle(envelope, [m for m, _ in trusted.history])
    if not isinstance(bundle.result, VfmBenchmarks):
        raise InvalidRequest(f"{bundle_file} is a {bundle.kind} bundle, not a VFM one")
    engine = open_store(config.database_url)
    try:
        costs = vfm.unit_costs(engine, authority_code=config.authority)
    finally:
        engine.dispose()
    positions = vfm.position(costs, bundle.result.cells)
    if as_json:
        rows = [
            {
                "service_ref": p.service.service_ref,
                "name": p.service.name,
                "client_group": p.service.client_group,
                "service_type": p.service.service_type,
                "unit_cost": round(p.service.cost),
                "measure": p.benchmark.measure,
                "cag_median": p.benchmark.median,
                "from_median": p.from_median,
                "quarter": p.quartile,
            }
            for p in positions
        ]
        print(json.dumps(rows, indent=2))
        return
    table = _table(f"{config.authority}'s services against the CAG benchmarks (computed on this node only)")
    for column in ("service", "client group", "service type", "unit cost", "CAG median", "difference", "quarter"):
        table.add_column(column, justify="right" if column in ("unit cost", "CAG median", "difference") else "left")
    for p in positions:
        table.add_row(
            f"{p.service.service_ref} {p.service.name}",
            _group_label(p.service.client_group),
            p.service.service_type,
            f"£{round(p.service.cost):,}",
            f"£{p.benchmark.median:,}",
            f"{p.from_median:+,}",
            p.quartile,
        )
    out.print(table)
    unplaced = len(costs) - len(positions)
    out.print(
        f"{len(positions)} services placed; {unplaced} in cells the CAG figures do not cover (suppressed or absent)."
    )


def _coordinator_key(b64: str):  # type: ignore[no-untyped-def]
    import base64

    from shared import dsse

    return dsse.load_public_key(base64.b64decode(b64))

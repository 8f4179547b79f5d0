"""The demo's accreditation register part: five authorities log decisions about three providers
(an accreditation, a passport, a suspension, an application; the decisions are in
`cagnet/demo.toml`), every node witnesses the log, and the CAG chair's view of a provider is
checked offline from a saved receipt.
"""

from __future__ import annotations

import base64
import json
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cagnet.demo.scenario import DEMO
from coordinator import network
from node.config import load_config
from node.network.witness import witness_round
from shared import dsse
from shared.accreditation import entry_bytes, entry_from_toml, provider_status, sign_entry
from shared.authorities import shipped_register
from shared.checkpoint import register_origin, verify_receipt
from shared.manifest import ManifestSource
from shared.register_client import RegisterClient, fetch_history

_CRITERIA = """
[criteria]
financial_viability = "met"
administration = "met"
employment_policies = "met"
management = "met"
competence_to_deliver = "met"
[qaf]
assessment_and_support_planning = "{q}"
security_health_and_safety = "B"
safeguarding_and_protection_from_abuse = "B"
fair_access_diversity_and_inclusion = "{q}"
client_involvement = "C"
"""


def _entry_toml(decision: str, extra: str, provider: str, qaf: str) -> str:
    body = f'decision = "{decision}"\n{extra}\nvalid_from = 2025-04-01\nevidence = ["evidence.pdf"]\n'
    body += f"[provider]\n{provider}\n"
    return body + (_CRITERIA.format(q=qaf) if qaf else "")


def run_register_demo(console: Console, netdir: Path, nodes: dict[str, Path], workdir: Path) -> None:
    """Submit, witness, and show a provider's status and the cosigned checkpoint (all verified)."""
    names = shipped_register().authorities
    scenario = DEMO["register"]
    console.rule("The shared accreditation register: each decision signed by its authority, witnessed by all")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "evidence.pdf").write_bytes(b"the evidence stays at the authority; only its digest is logged")
    origin = register_origin(network.read(netdir))
    for d in scenario["decisions"]:
        code, decision, extra, provider, qaf = (
            d["authority"],
            d["decision"],
            d.get("extra", ""),
            d["provider"],
            d.get("qaf", ""),
        )
        config = load_config(nodes[code])
        path = workdir / f"{code}.toml"
        path.write_text(_entry_toml(decision, extra, provider, qaf))
        entry = entry_from_toml(path.read_text(), authority=code, register=origin, base=workdir)
        identity = config.identity()
        manifests = ManifestSource(config.manifest_path, dsse.load_public_key(base64.b64decode(config.coordinator_key)))
        with RegisterClient(identity, manifests.current) as client:
            index, _ = client.submit(entry_bytes(sign_entry(entry, identity.signing_key)))
        source = f" from {names[entry.passported_from].name}" if entry.passported_from else ""
        console.print(
            f"  leaf {index}: {names[code].name:<16} {decision}{source}: {entry.provider.name} ({entry.provider.key})"
        )

    console.print("Every node witnesses the log (consistency proof, entries re-hashed, then a cosignature):")
    for code, nodedir in nodes.items():
        r = witness_round(load_config(nodedir))
        state = ": [green]final[/]" if r.final else ""
        console.print(
            f"  {names[code].name:<16} cosigned checkpoint {r.size}; {r.cosignatures} cosignatures, "
            f"{r.quorum} needed{state}"
        )

    # A member's view: it asks about the provider by the name its own system uses.
    asker = load_config(nodes[scenario["asks"]])
    manifests = ManifestSource(asker.manifest_path, dsse.load_public_key(base64.b64decode(asker.coordinator_key)))
    with RegisterClient(asker.identity(), manifests.current) as client:
        history = fetch_history(client, scenario["provider_key"], network_dir=netdir)
    status = provider_status(history.provider, history.entries, on=date.today())
    console.print(f"{names[scenario['asks']].name} asks for {history.provider}, known as: {'; '.join(status.names)}")
    table = Table(title=f"{history.provider} on {status.on.isoformat()}: {status.overall}")
    for col in ("authority", "status", "note"):
        table.add_column(col)
    for a in status.authorities:
        table.add_row(names[a.authority].name, a.status, a.note)
    console.print(table)
    if status.suspended_by:
        suspended = ", ".join(names[a].name for a in status.suspended_by)
        console.print(f"[red]suspended by {suspended}[/]: the suspension shows to every member")

    receipt = workdir / "receipt.json"
    receipt.write_text(json.dumps(history.receipt, indent=2) + "\n")
    checkpoint, entries = verify_receipt(json.loads(receipt.read_text()), network.read(netdir))
    cp = checkpoint.checkpoint
    console.print(
        f"[green]register receipt verified offline[/]: {len(entries)} entries in checkpoint {cp.size} "
        f"(root {cp.root.hex()[:16]}…), each signed by its authority; cosigned by {len(checkpoint.cosigners)} "
        f"members, {checkpoint.quorum} needed: checkpoint final ({receipt.name})"
    )

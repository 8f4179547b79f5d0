"""The README's first command, end to end: `cagnet demo --json` founds its network by invite (six
authorities and two people, each making its keys in a folder of its own), starts six node
processes and a coordinator on loopback, the members charter the network, a seventh authority
joins over the wire from its own folder and serves, it prints a verified bundle across the seven,
shows refusals, a key rotated by quorum and a missing node, and exits 0. Run with --keep, so that
every folder can be searched afterwards for the members' and people's private keys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.network.test_founding import assert_private_keys_only_in

SEVEN = ["E06000035", "E06000043", "E10000011", "E10000014", "E10000016", "E10000030", "E10000032"]


def test_demo_founds_by_invite_runs_the_six_authority_network_and_admits_a_seventh(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "cagnet", "demo", "--json", "--keep", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    bundle = json.loads(done.stdout)
    assert list(bundle["answered"]) == SEVEN and bundle["missing"] == []
    assert bundle["policy_digest"].startswith("sha256:")
    assert len(bundle["contributions"]) == 7
    # The register's 2011 figures: the six founders' 4,467,000 and Hampshire's 1,318,000.
    assert bundle["result"]["population"] == 5_785_000

    log = done.stderr
    # Founded by invite: each founder makes its keys in its own folder; the first makes the linkage key.
    founding = log.split("Founding the network by invite", 1)[1].split("all seven processes up", 1)[0]
    assert founding.count("joined by invite") == 8 and founding.count("opens the sealed key") == 5
    assert "Kent" in founding.split("makes the linkage key", 1)[0]
    assert "bundle verified offline: 7 node signatures" in log
    assert "query-set restriction" in log and "differencing" in log
    # Brighton & Hove and West Sussex open no port; a stopped dial-out node is missing as any other.
    assert "Brighton & Hove and West Sussex open no port" in log
    assert "missing: E06000043 (Brighton & Hove) — unreachable" in log
    assert "register receipt verified offline: 3 entries in checkpoint 5" in log and "checkpoint final" in log
    assert "suspended by East Sussex" in log
    # Were people helped, and who do the services reach: outcomes and the equality profile.
    assert "Short-term outcomes: planned departures" in log and "stay safe" in log
    assert "Equality: ethnicity, % of new client records" in log and "age band x sex" in log
    # KPI 1 and occupancy from the synthetic quarterly returns, with the supply map's units beside.
    assert "KPI 1: long-term services' users maintaining independent living" in log
    assert "Occupancy by service type" in log and "CAG units" in log
    assert "Waiting list / referrals refused by service type" in log
    # The money questions over the demo's signed reference data: fair shares, spend, the grant.
    assert "Designated cross-authority services and each authority's share of their intake" in log
    assert "Contracted spend a year beside the SP grant" in log and "£31,086,000" in log  # Kent's 2009 grant
    assert "Cost per occupied unit a week by service type" in log
    assert "SP grant 2009 beside contracted spend" in log and "-10%" in log
    # Governed from the charter on: the coordinator alone is refused; a key rotation needs 4 of 6.
    # Version 1, six founders and two people admitted, the need and grant figures, then the charter.
    assert "charter adopted: manifest version 11, signed by all 6 member authorities over signed gRPC" in log
    assert "coordinator tries to add a member on its own: refused" in log
    # ... but Hampshire, invited, sponsored and approved by a quorum, joins from its own folder.
    join = log.split("Hampshire joins from its own machine", 1)[1].split("bundle verified offline", 1)[0]
    assert "request filed" in join and "Kent sponsors it" in join and "linkage key sealed to Hampshire" in join
    assert "(4 of 6): manifest version 12" in join
    assert "Hampshire collects its certificate and opens the sealed linkage key" in join
    answered = join.split("the next joint supply map answered for 7:\n", 1)[1].splitlines()[0].strip()
    assert answered == "Medway, Brighton & Hove, East Sussex, Hampshire, Kent, Surrey, West Sussex"
    assert "(4 of 7): manifest version 13" in log
    assert "Medway's node switched to its new key by itself and answered the next joint query" in log
    workdir = re.search(r"logs in (\S+)/logs", log)
    assert workdir is not None and Path(workdir.group(1)) == root

    # Every private key of a member (signing, TLS, sealing, rounding, person) and of a person exists
    # in its own folder and nowhere else: not in the operator's, another member's or a kit.
    operator = root / "network"
    assert not (operator / "principals").exists()  # the operator made no person's keys
    owners = [*(root / "nodes").iterdir(), root / "elsewhere", *(root / "people").iterdir()]
    assert len(owners) == 6 + 1 + 2
    for own in owners:
        assert assert_private_keys_only_in(root, own) >= 2
    # Each node's configuration points into its own folder only.
    for nodedir in [*(root / "nodes").iterdir(), root / "elsewhere" / "E10000014"]:
        config = (nodedir / "node.toml").read_text()
        assert str(operator) not in config and str(nodedir / "network" / "manifest.json") in config

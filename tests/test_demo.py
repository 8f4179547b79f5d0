"""The README's first command, end to end: `cagnet demo --json` starts six node processes and a
coordinator on loopback, the members charter the network, it prints a verified bundle, shows
refusals, a key rotated by quorum and a missing node, exits 0 and leaves nothing behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SIX = ["E06000035", "E06000043", "E10000011", "E10000016", "E10000030", "E10000032"]


def test_demo_runs_the_six_authority_network_and_cleans_up() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cagnet", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    bundle = json.loads(done.stdout)
    assert list(bundle["answered"]) == SIX and bundle["missing"] == []
    assert bundle["policy_digest"].startswith("sha256:")
    assert len(bundle["contributions"]) == 6
    assert bundle["result"]["population"] == 4_467_000  # the register's 2011 figures for the six

    log = done.stderr
    assert "bundle verified offline: 6 node signatures" in log
    assert "query-set restriction" in log and "differencing" in log
    assert "missing: E06000043 (Brighton & Hove) — unreachable" in log
    assert "register receipt verified offline: 3 entries in checkpoint 5" in log and "checkpoint final" in log
    assert "suspended by East Sussex" in log
    # Governed from the charter on: the coordinator alone is refused; a key rotation needs 4 of 6.
    assert "charter adopted: manifest version 9, signed by all 6 member authorities over signed gRPC" in log
    assert "coordinator tries to add a member on its own: refused" in log
    assert "(4 of 6): manifest version 10" in log
    assert "Medway's node switched to its new key by itself and answered the next joint query" in log
    workdir = re.search(r"logs in (\S+)/logs", log)
    assert workdir is not None
    assert not Path(workdir.group(1)).exists()

"""A node answers while it imports: a real node server (mTLS, signed envelopes) serves the joint
supply map, signed and verifiable, while another process is part-way through importing a large
client-record file into the same store (SQLite, as a new node runs it): half-way through reading
the file, part-way through building the table's next version, and with it built, just before the
swap (`node.imports.swap`). The import takes that way because the node serves the store (its
transport holds the serving lock, `node.imports.swap.serving`), and says so: for a node that
listens and for one that only dials out to the coordinator.

Before imports were staged, the import took the store's one write lock at its first row and held
it to its last; the node's answer (which records its nonce, ledger and audit entries) waited for
it past the coordinator's deadline, and the node was reported missing. Staged, it still wrote every
row in one last transaction, and a million rows held the lock for 18 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import joint_query
from node.client_records import ClientRecord
from node.config import load_config
from node.imports.staging import SWAPPED
from node.imports.swap import BUILD_PREFIX, BUILD_ROWS, SWAP_ROWS
from node.store import open_store
from node.synthetic.clients import write_client_csvs
from node.synthetic.supply import generate
from tests.netutil import make_network, running

ROOT = Path(__file__).resolve().parents[2]
MEDWAY = "E06000035"
RECORDS = 60_000
STOPS = ("rows=30000", "building", "built")  # where the import stops itself, in its order


def _stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def _records(url: str) -> tuple[int, bool]:
    """How many client records the store holds, and whether a table is being built beside them."""
    engine = open_store(url)
    try:
        with engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(ClientRecord)).scalar_one()
            building = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_schema WHERE name = ?", (BUILD_PREFIX + "client_record",)
            ).scalar_one()
            return count, bool(building)
    finally:
        engine.dispose()


def _wait_stopped(importer: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):  # at most 120 s to the next stop
        if importer.poll() is not None or _stopped(importer.pid):
            return
        time.sleep(0.1)


@pytest.mark.faults
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads a process's state from /proc")
@pytest.mark.parametrize("transport", ["listen", "dial-out"])
def test_a_node_serves_a_signed_supply_map_while_it_imports(tmp_path: Path, transport: str) -> None:
    dial_out = (MEDWAY,) if transport == "dial-out" else ()
    net = make_network(tmp_path / "net", (MEDWAY,), clients=1000, dial_out=dial_out)
    config = load_config(net.nodedirs[MEDWAY])
    # The same supply as the node's (make_network seeds its first node with 7), so the file's
    # services are the node's.
    big = write_client_csvs(generate(MEDWAY, seed=7), tmp_path / "files", count=RECORDS)["client-records"]
    before, _ = _records(config.database_url)
    assert RECORDS >= SWAP_ROWS and RECORDS > 2 * BUILD_ROWS  # built a little at a time, then swapped
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with running(net):
        importer = subprocess.Popen(
            [sys.executable, "-m", "tests.importchild", config.database_url, str(big),
             str(config.person_key_path), "stop", ",".join(STOPS)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            for stop in STOPS:
                _wait_stopped(importer)
                assert importer.poll() is None and _stopped(importer.pid), f"the import did not reach {stop}"
                bundle, envelope = joint_query(net.netdir, kind="supply-map", node_deadline_ms=5000)
                assert bundle.answered == (MEDWAY,) and bundle.missing == (), stop
                assert bundle_mod.verify_bundle(envelope, network.read(net.netdir)) == bundle
                # The store is as it was (the half-read file is not in it), and from "building" on,
                # its next version is being written beside it.
                assert _records(config.database_url) == (before, stop != STOPS[0]), stop
                importer.send_signal(signal.SIGCONT)
        finally:
            importer.send_signal(signal.SIGCONT)
        stdout, stderr = importer.communicate(timeout=300)
        assert importer.returncode == 0, stderr.decode()[-2000:]
        assert stdout.decode().strip().endswith(f"({SWAPPED})")
    after, building = _records(config.database_url)
    assert after > before and not building  # swapped in, and nothing left beside it

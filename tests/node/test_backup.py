"""Backing up a serving node and restoring it elsewhere, on SQLite and PostgreSQL: the restored
node's audit chain verifies, its keys are 0600, and it answers the same question with the same
signed figures. A corrupt, truncated or tampered archive is refused and nothing is written."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, select

from cagnet.demo import join_founding_member
from coordinator import network
from node.backup import restore
from node.client_records import load_person_key
from node.config import load_config
from node.rpc.server import NodeRuntime, create_server
from node.store import Provider, add_provider
from node.synthetic.supply import load as load_synthetic
from shared import audit
from shared.auth import digest, request_header, sign_message, verify_response
from shared.errors import InvalidRequest
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.pb.cagnet.v1 import node_pb2, node_pb2_grpc
from shared.serde import envelope_from_proto, envelope_to_proto
from tests.conftest import _postgres_base_url

MEDWAY = "E06000035"
SUPPLY_MAP = "/cagnet.v1.Node/SupplyMap"


@dataclass
class Node:
    netdir: Path
    nodedir: Path


def _make_node(root: Path, database_url: str) -> Node:
    netdir = root / "network"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    nodedir = root / "medway"
    join_founding_member(netdir, nodedir, authority=MEDWAY, endpoint="127.0.0.1:0", linkage_key=None)
    config = nodedir / "node.toml"
    lines = [line for line in config.read_text().splitlines() if not line.startswith("database_url")]
    config.write_text("\n".join([*lines, f'database_url = "{database_url}"']) + "\n")
    runtime = NodeRuntime.open(load_config(nodedir))
    person_key = load_person_key(runtime.config.person_key_path)
    load_synthetic(runtime.engine, authority_code=MEDWAY, seed=11, person_key=person_key, clients=400)
    runtime.engine.dispose()
    return Node(netdir, nodedir)


def providers(engine: Engine) -> list[Provider]:
    with Session(engine) as session:
        return list(session.exec(select(Provider)))


def _serve(node: Node, nodedir: Path) -> tuple[grpc.Server, NodeRuntime]:
    runtime = NodeRuntime.open(load_config(nodedir))
    server, port = create_server(runtime, address="127.0.0.1:0")
    network.set_endpoint(node.netdir, MEDWAY, f"127.0.0.1:{port}")
    return server, runtime


def _ask(node: Node, client_groups: list[int]) -> node_pb2.SupplyMapResponse:
    """The chair asks Medway's node for its supply map; the answer verified under the manifest's key."""
    chair = Identity.load(network.principal_dir(node.netdir, "cag-chair"))
    manifest = network.read(node.netdir)
    channel = secure_channel(
        manifest.party(MEDWAY).endpoint,
        peer_party_id=MEDWAY,
        ca_pem=chair.ca_cert_pem,
        key_pem=chair.tls_key_pem,
        cert_pem=chair.tls_cert_pem,
    )
    with channel:
        header = request_header(chair, audience=MEDWAY, method=SUPPLY_MAP)
        request = sign_message(node_pb2.SupplyMapRequest(header=header, client_groups=client_groups), chair)
        reply = node_pb2_grpc.NodeStub(channel).SupplyMap(envelope_to_proto(request), timeout=20)
    answer = verify_response(
        envelope_from_proto(reply),
        node_pb2.SupplyMapResponse,
        signer=manifest.party(MEDWAY),
        request_digest=digest(request.payload),
    )
    assert isinstance(answer, node_pb2.SupplyMapResponse)
    return answer


def _figures(answer: node_pb2.SupplyMapResponse) -> bytes:
    figures = node_pb2.SupplyMapResponse()
    figures.CopyFrom(answer)
    figures.ClearField("header")  # per response: request digest, time
    figures.ClearField("receipt")  # signed over the header
    return figures.SerializeToString(deterministic=True)


@pytest.fixture
def second_postgres() -> Iterator[str]:
    """A second brand-new PostgreSQL database to restore into."""
    base = _postgres_base_url()
    if base is None:
        pytest.skip("no PostgreSQL")
    name = f"cagnet_restore_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _cli(*args: str) -> str:
    """The command as an operator runs it: a fresh process, which has imported nothing before."""
    ran = subprocess.run(
        [sys.executable, "-m", "cagnet.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout + ran.stderr


def test_backup_of_a_serving_node_restores_to_the_same_signed_answers(
    tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> None:
    node = _make_node(tmp_path, database_url)
    archive = tmp_path / "backups" / "medway.tar.gz"
    server, runtime = _serve(node, node.nodedir)
    try:
        before = _ask(node, [])
        with pytest.raises(grpc.RpcError):  # a handful of services: refused, and audited with the rule
            _ask(node, [11])
        out = _cli("node", "backup", str(node.nodedir), "--out", str(archive))  # while it serves
        head = audit.head(runtime.engine)
    finally:
        server.stop(grace=None).wait()
        runtime.engine.dispose()
    assert "private keys" in out
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile(names[0]).read())  # type: ignore[union-attr]
    assert names[0] == "BACKUP.json" and "PRIVATE-KEYS-README.txt" in names
    assert "node/identity/signing.key" in names and "database/node.db" in names
    assert (index["audit"]["entries"], index["audit"]["head"]) == head
    assert set(index["files"]) == set(names[1:])

    restored = tmp_path / "restored" / "medway"
    target = ["--database-url", request.getfixturevalue("second_postgres")] if "postgres" in database_url else []
    out = _cli("node", "restore", str(archive), str(restored), *target)
    assert f"audit log {head[0]} entries" in out
    assert f"audit log intact: {head[0]} entries verified" in _cli("node", "audit", "verify", str(restored))
    for key in (restored / "identity").iterdir():
        assert key.stat().st_mode & 0o777 == 0o600, key
    assert (restored / "identity").stat().st_mode & 0o777 == 0o700
    config = load_config(restored)
    if "postgres" in database_url:
        assert config.database_url == target[1]
    else:
        assert config.database_url == f"sqlite:///{(restored / 'node.db').resolve()}"

    # The restored node, on a new port, answers the same question with the same figures, signed
    # with the same key; its release ledger came along, so a differencing question is still refused.
    server, runtime = _serve(node, restored)
    try:
        after = _ask(node, [])
        assert _figures(after) == _figures(before)
        with pytest.raises(grpc.RpcError) as differencing:
            _ask(node, list(range(1, 14)))
        assert "differencing" in str(differencing.value.details())
        assert audit.head(runtime.engine)[0] == head[0] + 2
        assert audit.verify_chain(runtime.engine, head) == head[0] + 2
        # New rows take new ids: on PostgreSQL each sequence continues after the restored rows.
        newest = max(p.id or 0 for p in providers(runtime.engine))
        added = add_provider(runtime.engine, provider_ref="P-RESTORE-1", name="Weald & Downs Housing Association")
        assert added.id is not None and added.id > newest
    finally:
        server.stop(grace=None).wait()
        runtime.engine.dispose()


@pytest.mark.postgres
def test_restore_refuses_a_database_that_holds_data(tmp_path: Path, postgres_url: str) -> None:
    node = _make_node(tmp_path, postgres_url)
    archive = tmp_path / "medway.tar.gz"
    _cli("node", "backup", str(node.nodedir), "--out", str(archive))
    restored = tmp_path / "restored"
    with pytest.raises(InvalidRequest, match="already holds data"):
        restore(archive, restored, database_url=postgres_url)
    assert not restored.exists()


@pytest.fixture(scope="module")
def sqlite_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backup")
    node = _make_node(root, f"sqlite:///{root}/medway.db")
    archive = root / "medway.tar.gz"
    _cli("node", "backup", str(node.nodedir), "--out", str(archive))
    return archive


def _refused(archive: Path, root: Path, reason: str) -> None:
    restored = root / "restored"
    with pytest.raises(InvalidRequest, match="nothing was restored") as refused:
        restore(archive, restored)
    assert reason in str(refused.value)
    assert not restored.exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".cagnet")] == []


def _members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def _rebuild(members: list[tuple[tarfile.TarInfo, bytes]], out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for member, content in members:
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return out


def test_a_truncated_archive_is_refused_and_nothing_written(sqlite_backup: Path, tmp_path: Path) -> None:
    data = sqlite_backup.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    _refused(cut, tmp_path, "cannot be read")


def test_a_tampered_member_is_refused_and_nothing_written(sqlite_backup: Path, tmp_path: Path) -> None:
    # A valid archive with the same BACKUP.json and the node's endpoint changed in node.toml.
    members = [
        (m, c.replace(b"127.0.0.1:0", b"127.0.0.9:0") if m.name == "node/node.toml" else c)
        for m, c in _members(sqlite_backup)
    ]
    _refused(_rebuild(members, tmp_path / "tampered.tar.gz"), tmp_path, "node/node.toml does not match its SHA-256")


def test_a_corrupt_database_is_refused_and_nothing_written(sqlite_backup: Path, tmp_path: Path) -> None:
    members = _members(sqlite_backup)
    for i, (member, content) in enumerate(members):
        if member.name == "database/node.db":
            flipped = bytearray(content)
            flipped[len(flipped) // 2] ^= 0xFF
            members[i] = (member, bytes(flipped))
    _refused(_rebuild(members, tmp_path / "corrupt.tar.gz"), tmp_path, "database/node.db does not match")


def test_a_missing_member_is_refused_and_nothing_written(sqlite_backup: Path, tmp_path: Path) -> None:
    members = [(m, c) for m, c in _members(sqlite_backup) if m.name != "node/identity/signing.key"]
    _refused(_rebuild(members, tmp_path / "short.tar.gz"), tmp_path, "missing node/identity/signing.key")


def test_restore_needs_an_empty_folder(sqlite_backup: Path, tmp_path: Path) -> None:
    occupied = tmp_path / "node"
    occupied.mkdir()
    (occupied / "node.toml").write_text('authority = "E06000035"\n')
    with pytest.raises(InvalidRequest, match="is not empty"):
        restore(sqlite_backup, occupied)
    assert [p.name for p in occupied.iterdir()] == ["node.toml"]


def test_an_archive_an_older_cagnet_made_restores_at_this_revision(sqlite_backup: Path, tmp_path: Path) -> None:
    """A backup taken before schema migrations (no version tables, nothing of revisions 0002-0007) is
    restored and brought to this cagnet's revisions, so the restored node opens at once."""
    import hashlib
    import sqlite3

    from node.migrations import SCHEMA
    from node.store import open_store, row_counts
    from shared import migrate

    members = _members(sqlite_backup)
    older = tmp_path / "older.db"
    older.write_bytes(next(content for member, content in members if member.name == "database/node.db"))
    with sqlite3.connect(older) as conn:
        for statement in (
            "DROP TABLE alembic_version_node",
            "DROP TABLE alembic_version_audit",
            "DROP INDEX ix_client_record_updated_at",
            "DROP INDEX ix_outcome_updated_at",
            # Revision 0004's service dates and history.
            "DROP TABLE service_history",
            "ALTER TABLE service DROP COLUMN start_date",
            "ALTER TABLE service DROP COLUMN end_date",
            # Revision 0005's standard table set editions.
            "DROP TABLE IF EXISTS grid_edition",
            # Revision 0006's quarterly returns.
            "DROP TABLE kpi1_return",
            "DROP TABLE occupancy_return",
            # Revision 0007's write stamps.
            "DROP TABLE write_stamp",
        ):
            conn.execute(statement)
    conn.close()
    database = older.read_bytes()
    for i, (member, content) in enumerate(members):
        if member.name == "database/node.db":
            members[i] = (member, database)
        elif member.name == "BACKUP.json":
            index = json.loads(content)
            index["files"]["database/node.db"].update(sha256=hashlib.sha256(database).hexdigest(), size=len(database))
            members[i] = (member, json.dumps(index).encode())
    restored = tmp_path / "restored"
    summary = restore(_rebuild(members, tmp_path / "older.tar.gz"), restored)

    engine = open_store(summary.database_url)  # refused were it not at this cagnet's revisions
    try:
        with engine.connect() as conn:
            assert migrate.current_revision(conn, SCHEMA) == migrate.head_revision(SCHEMA)
        counts = row_counts(engine)
        assert counts["provider"] > 0 and counts["service"] > 0
    finally:
        engine.dispose()

"""Backup and restore of a node: one archive holding a consistent copy of its database (with the
audit log and release ledger in it), its identity (private keys), node.toml and the rest of its
folder, and the network manifest and policy it points to.

    BACKUP.json              format, authority, when, the audit log's head, and every other
                             member's SHA-256, size and file mode
    PRIVATE-KEYS-README.txt  the warning: this archive holds the node's private keys
    node/...                 the node folder (node.toml, identity/, manifests/, ...), less the database
    database/node.db         the database as one SQLite file
    network/...              the manifest and policy node.toml names, when they are outside the folder

The database is copied consistently while the node serves: an SQLite store through SQLite's online
backup API (never a file copy of a live database), a PostgreSQL store table by table inside one
REPEATABLE READ transaction, into the same SQLite file format. A restore checks every member
against BACKUP.json and the audit log against the recorded head before it writes anything, and
refuses a corrupt or truncated archive, a folder that is not empty and a database that already
holds data. It restores into SQLite or PostgreSQL whatever the source was. Large PostgreSQL stores
can use pg_dump/pg_restore instead (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, func, insert, inspect, select, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import SQLModel

from node.config import CONFIG, NodeConfig, NodeSettings, _toml_str
from node.imports.swap import BUILD_PREFIX, RETIRED_PREFIX
from node.stamps import WriteStamp
from node.store import STORE, open_store, store_engine
from shared import audit, migrate
from shared.errors import InvalidRequest, SchemaMismatch

FORMAT = "cagnet-node-backup/1"
INDEX = "BACKUP.json"
README = "PRIVATE-KEYS-README.txt"
DATABASE = "database/node.db"
WARNING = (
    "This archive holds the node's private keys (identity/: signing, TLS, rounding, person and\n"
    "network linkage keys) and its whole database. Anyone holding it can act as this node and\n"
    "re-identify its records. Keep it encrypted, off the node's host, readable only by the\n"
    "node's operators, and destroy copies you no longer need.\n"
)
_COPY_BATCH = 5000


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    authority: str
    files: int
    database_bytes: int
    audit_entries: int
    sha256: str


@dataclass(frozen=True)
class RestoreSummary:
    nodedir: Path
    authority: str
    database_url: str
    files: int
    audit_entries: int


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# The modules that define a node's tables: imported so that every table is on SQLModel.metadata
# whatever this process imported before.
_TABLE_MODULES = ("node.store", "node.client_records", "node.ledger", "shared.audit")


def _node_tables() -> None:
    for module in _TABLE_MODULES:
        importlib.import_module(module)


def _tables(engine: Engine) -> list[Table]:
    """The tables present in `engine`'s database, parents before children: the node's own from
    SQLModel.metadata, then any other as reflected. Not the schema version tables (`shared.migrate`):
    `open_store` stamps the copy at this cagnet's revisions, which it requires of the source too. Nor
    the records' write stamps (`node.stamps`): the copy's own writes stamp it afresh, so a restored
    store's edition is a new one."""
    _node_tables()
    # Not a table an import is building or has just replaced (or one a killed import left): no part of the store.
    present = {
        name
        for name in inspect(engine).get_table_names()
        if not name.startswith(("alembic_version", BUILD_PREFIX, RETIRED_PREFIX)) and name != WriteStamp.__tablename__
    }
    known = [t for t in SQLModel.metadata.sorted_tables if t.name in present]
    other = sorted(present - {t.name for t in known})
    if not other:
        return known
    reflected = MetaData()
    reflected.reflect(bind=engine, only=other)
    for table in reflected.tables.values():
        for column in table.columns:
            # BYTEA, JSONB...: the generic type, so the table can be made in the other backend too.
            with contextlib.suppress(NotImplementedError):
                column.type = column.type.as_generic()
    return known + [reflected.tables[name] for name in other]


def _copy_tables(source: Engine, target: Engine, tables: list[Table], *, snapshot: bool) -> dict[str, int]:
    """Every row of `tables` from `source` to `target` in one target transaction; with `snapshot`,
    read in one REPEATABLE READ transaction so that the copy is of one moment (PostgreSQL)."""
    counts: dict[str, int] = {}
    options: dict[str, Any] = {"isolation_level": "REPEATABLE READ"} if snapshot else {}
    with source.connect().execution_options(**options) as src, src.begin(), target.begin() as dst:
        for table in tables:
            if table.metadata is not SQLModel.metadata:
                table.create(dst, checkfirst=True)
            counts[table.name] = 0
            batch: list[dict[str, Any]] = []
            for row in src.execution_options(yield_per=_COPY_BATCH).execute(select(table)).mappings():
                batch.append(dict(row))
                if len(batch) == _COPY_BATCH:
                    dst.execute(insert(table), batch)
                    counts[table.name] += len(batch)
                    batch = []
            if batch:
                dst.execute(insert(table), batch)
                counts[table.name] += len(batch)
        if target.dialect.name == "postgresql":
            _reset_sequences(dst, tables)
    return counts


def _reset_sequences(conn: Any, tables: list[Table]) -> None:
    # Rows came with their ids: each serial column's sequence must continue after the highest.
    for table in tables:
        for column in table.primary_key.columns:
            if column.autoincrement is False or column.type.python_type is not int:
                continue
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table.name, "column": column.name}
            ).scalar()
            if sequence is None:
                continue
            highest = conn.execute(select(func.max(column))).scalar()
            conn.execute(
                text("SELECT setval(:sequence, :value, :called)"),
                {"sequence": sequence, "value": highest or 1, "called": highest is not None},
            )


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise InvalidRequest(f"database {url!r}: an in-memory database cannot be backed up or restored")
    return Path(parsed.database)


def _copy_database(url: str, out: Path) -> None:
    """A consistent copy of the live database at `url` as the SQLite file `out`."""
    path = _sqlite_path(url)
    if path is not None:
        if not path.is_file():
            raise InvalidRequest(f"database {path} does not exist")
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            copy = sqlite3.connect(out)
            try:
                source.backup(copy)  # SQLite's online backup: one consistent snapshot, writers carry on
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            finally:
                copy.close()
        finally:
            source.close()
        return
    source_engine = open_store(url)
    tables = _tables(source_engine)
    copy_engine = open_store(f"sqlite:///{out}")
    try:
        _copy_tables(source_engine, copy_engine, tables, snapshot=True)
    finally:
        source_engine.dispose()
        copy_engine.dispose()
    with contextlib.closing(sqlite3.connect(out)) as copy:
        copy.execute("PRAGMA journal_mode=DELETE")


def _audit_head(database: Path) -> tuple[int, str]:
    engine = audit.open_log(f"sqlite:///{database}")
    try:
        head = audit.head(engine)
        audit.verify_chain(engine, head)
        return head
    finally:
        engine.dispose()


def _describe(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"sha256": _sha256_file(path), "size": stat.st_size, "mode": f"{stat.st_mode & 0o777:04o}"}


def _folder_files(config: NodeConfig) -> Iterator[tuple[str, Path]]:
    """The node folder's files as (archive name, path), less the database and SQLite's side files."""
    database = _sqlite_path(config.database_url)
    skip: set[Path] = set()
    if database is not None:
        resolved = database.resolve()
        # With the import and serving lock files (node.imports.swap): empty, meaningful only while held.
        sides = ("-wal", "-shm", "-journal", "-import.lock", "-serving.lock")
        skip = {resolved, *(resolved.with_name(resolved.name + s) for s in sides)}
    root = config.nodedir.resolve()
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.resolve() not in skip:
            yield "node/" + path.relative_to(root).as_posix(), path


def _network_files(config: NodeConfig) -> Iterator[tuple[str, Path]]:
    root = config.nodedir.resolve()
    for name, path in (("network/manifest.json", config.manifest_path), ("network/policy.json", config.policy_file)):
        if path.is_file() and not path.resolve().is_relative_to(root):
            yield name, path


def backup(config: NodeConfig, out: Path) -> BackupSummary:
    """Write the node's backup archive to `out` (gzip-compressed tar, mode 0600)."""
    if out.exists():
        raise InvalidRequest(f"{out} already exists; choose a new file for the backup")
    if out.resolve().is_relative_to(config.nodedir.resolve()):
        raise InvalidRequest(f"{out} is inside the node folder; write the backup elsewhere")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cagnet-backup-", dir=out.parent) as work:
        database = Path(work) / "node.db"
        _copy_database(config.database_url, database)
        head = _audit_head(database)
        # Each file is copied first and the copy hashed and archived: the serving node may replace
        # one (a new manifest version) while this runs, and the archive must match its index.
        members: list[tuple[str, Path]] = [(DATABASE, database)]
        for name, path in [*_folder_files(config), *_network_files(config)]:
            copy = Path(work) / "files" / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            members.append((name, copy))
        readme = Path(work) / README
        readme.write_text(WARNING)
        members.append((README, readme))
        files = {name: _describe(path) for name, path in members}
        index = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "authority": config.authority,
            "source_database": make_url(config.database_url).get_backend_name(),
            "audit": {"entries": head[0], "head": head[1]},
            "warning": WARNING.replace("\n", " ").strip(),
            "files": files,
        }
        index_bytes = json.dumps(index, indent=2, sort_keys=True).encode()
        partial = Path(work) / "archive.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                info = tarfile.TarInfo(INDEX)
                info.size, info.mode, info.mtime = len(index_bytes), 0o600, int(datetime.now(UTC).timestamp())
                tar.addfile(info, io.BytesIO(index_bytes))
                for name, path in members:
                    member = tar.gettarinfo(str(path), arcname=name)
                    member.uid = member.gid = 0
                    member.uname = member.gname = ""
                    with path.open("rb") as f:
                        tar.addfile(member, f)
            raw.flush()
            os.fsync(raw.fileno())  # the whole archive, gzip trailer included, is on disk before the rename
        digest = _sha256_file(partial)
        database_bytes = database.stat().st_size
        partial.replace(out)
    return BackupSummary(
        path=out,
        authority=config.authority,
        files=len(members),
        database_bytes=database_bytes,
        audit_entries=head[0],
        sha256=digest,
    )


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name == path.as_posix()


def _unpack(archive: Path, staging: Path) -> dict[str, Any]:
    """Extract `archive` into `staging`, checking every member against BACKUP.json; the index."""

    def corrupt(reason: str) -> InvalidRequest:
        return InvalidRequest(f"{archive} is not a complete cagnet node backup ({reason}); nothing was restored")

    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != INDEX or not first.isfile():
                raise corrupt(f"it does not start with {INDEX}")
            stream = tar.extractfile(first)
            assert stream is not None
            try:
                index = json.loads(stream.read())
            except ValueError:
                raise corrupt(f"{INDEX} is not JSON") from None
            if not isinstance(index, dict) or index.get("format") != FORMAT:
                raise corrupt(f"{INDEX} does not name the format {FORMAT}")
            expected: dict[str, dict[str, Any]] = index.get("files") or {}
            if DATABASE not in expected:
                raise corrupt(f"{INDEX} lists no {DATABASE}")
            seen: set[str] = set()
            while (member := tar.next()) is not None:  # streamed: each member read once, in order
                name = member.name
                if not member.isfile() or not _safe_name(name) or name not in expected or name in seen:
                    raise corrupt(f"unexpected member {name!r}")
                seen.add(name)
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                h = hashlib.sha256()
                with target.open("wb") as out:
                    for block in iter(lambda: source.read(1 << 20), b""):  # noqa: B023
                        h.update(block)
                        out.write(block)
                if h.hexdigest() != expected[name].get("sha256"):
                    raise corrupt(f"{name} does not match its SHA-256 in {INDEX}")
            missing = sorted(set(expected) - seen)
            if missing:
                raise corrupt(f"missing {', '.join(missing[:5])}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise corrupt(f"the archive cannot be read: {exc}") from None
    return index


def _set_key(config_text: str, key: str, value: str) -> str:
    # First in the file: a top-level key must come before any [section] a later version may add.
    lines = [line for line in config_text.splitlines() if not line.replace(" ", "").startswith(key + "=")]
    return "\n".join([f"{key} = {_toml_str(value)}", *lines]) + "\n"


def _check_empty(engine: Engine, tables: list[Table]) -> None:
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        for table in tables:
            if table.name in present and conn.execute(select(func.count()).select_from(table)).scalar():
                raise InvalidRequest(
                    f"the target database already holds data (table {table.name}); restore into an empty database"
                )


def _upgrade_staged(archive: Path, database: Path) -> None:
    """The unpacked copy of the database brought to this cagnet's schema revisions, when an older
    cagnet made the backup: the restored node starts at once, and a PostgreSQL target is copied
    into from a current schema. Only the staging copy changes; the audit chain is checked after."""
    engine = store_engine(f"sqlite:///{database}")
    try:
        migrate.upgrade(engine, STORE)
    except SchemaMismatch as exc:
        raise InvalidRequest(f"{archive}: {exc}; nothing was restored") from None
    finally:
        engine.dispose()


def restore(archive: Path, nodedir: Path, *, database_url: str | None = None) -> RestoreSummary:
    """Restore a backup into `nodedir` (absent or empty) and the database at `database_url` (by
    default CAGNET_NODE_DATABASE_URL, else NODEDIR/node.db for an SQLite source, else the source's
    own PostgreSQL URL), which must hold no data. Nothing is written unless the archive verifies."""
    if nodedir.exists() and (not nodedir.is_dir() or any(nodedir.iterdir())):
        raise InvalidRequest(f"{nodedir} is not empty; restore into a new folder")
    nodedir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cagnet-restore-", dir=nodedir.parent))
    try:
        index = _unpack(archive, staging)
        database = staging / DATABASE
        _upgrade_staged(archive, database)
        try:
            head = _audit_head(database)
        except Exception as exc:
            raise InvalidRequest(
                f"{archive}: the database's audit log does not verify ({exc}); nothing was restored"
            ) from None
        recorded = index.get("audit") or {}
        if head != (recorded.get("entries"), recorded.get("head")):
            raise InvalidRequest(f"{archive}: the audit log does not end where {INDEX} says; nothing was restored")
        config_path = staging / "node" / CONFIG
        if not config_path.is_file():
            raise InvalidRequest(f"{archive} holds no node/{CONFIG}; nothing was restored")
        config_text = config_path.read_text()
        source_url = _source_url(config_text)
        url = database_url or NodeSettings().database_url or _default_target(source_url, nodedir)
        config_text = _set_key(config_text, "database_url", url)
        config_text = _network_paths(config_text, staging, nodedir)
        config_path.write_text(config_text)

        target_path = _sqlite_path(url)
        if target_path is not None and target_path.exists():
            raise InvalidRequest(f"{target_path} already exists; restore into a new database file")
        if target_path is None:
            source = open_store(f"sqlite:///{database}")
            try:
                tables = _tables(source)  # first: it puts every node table on the metadata open_store creates
                plain = create_engine(url)
                try:
                    _check_empty(plain, tables)  # before open_store creates any table in it
                finally:
                    plain.dispose()
                engine = open_store(url)
                try:
                    _copy_tables(source, engine, tables, snapshot=False)
                finally:
                    engine.dispose()
            finally:
                source.dispose()

        # Only now does anything land in the folder: the files with their recorded modes, keys 0600.
        nodedir.mkdir(parents=True, exist_ok=True)
        files = index["files"]
        for name in files:
            if not name.startswith("node/"):
                continue
            target = nodedir / name.removeprefix("node/")
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / name).replace(target)
            mode = int(files[name].get("mode", "0600"), 8) & 0o777
            if target.parent.name == "identity":
                mode = 0o600
            target.chmod(mode)
        identity = nodedir / "identity"
        if identity.is_dir():
            identity.chmod(0o700)
        for name in ("network/manifest.json", "network/policy.json"):
            if name in files and (staging / name).exists():
                (nodedir / "network").mkdir(exist_ok=True)
                (staging / name).replace(nodedir / name)
        if target_path is not None:
            target_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(database, target_path)
            target_path.chmod(0o600)
        return RestoreSummary(
            nodedir=nodedir,
            authority=str(index.get("authority", "")),
            database_url=url,
            files=sum(1 for n in files if n.startswith("node/")),
            audit_entries=head[0],
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _source_url(config_text: str) -> str:
    import tomllib

    try:
        return str(tomllib.loads(config_text).get("database_url", ""))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"the archived {CONFIG} is not valid TOML: {exc}") from None


def _default_target(source_url: str, nodedir: Path) -> str:
    if not source_url or make_url(source_url).get_backend_name() == "sqlite":
        return f"sqlite:///{(nodedir / 'node.db').resolve()}"
    return source_url


def _network_paths(config_text: str, staging: Path, nodedir: Path) -> str:
    """Point node.toml at the archived manifest and policy when the files it names are gone
    (a restore on a new host); where they still exist, they are the network's, possibly newer."""
    import tomllib

    raw = tomllib.loads(config_text)
    manifest = Path(str(raw.get("manifest_path", "")))
    if (staging / "network/manifest.json").is_file() and not manifest.is_file():
        config_text = _set_key(config_text, "manifest_path", str((nodedir / "network/manifest.json").resolve()))
        if (staging / "network/policy.json").is_file() and "policy_path" not in raw:
            config_text = _set_key(config_text, "policy_path", str((nodedir / "network/policy.json").resolve()))
    return config_text

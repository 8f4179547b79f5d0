"""Shared fixtures: a database URL per backend (SQLite file, real PostgreSQL).

PostgreSQL comes from CAGNET_TEST_POSTGRES_URL (set by .ci/run), else from testcontainers
where a Docker engine answers, else those tests are skipped with the reason. Each test gets
its own freshly created database, dropped afterwards.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
import typer.testing
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "CAGNET_TEST_POSTGRES_URL"

# pytest-xdist hands its workers the controlling terminal's COLUMNS, though a worker's output is
# never a terminal: cagnet would then print at that width, where a one-process run (and a person's
# pipe) gets whole tables. Each worker prints as the one process does.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

# Typer's test runner builds the whole click command tree from every command's signature and type
# hints on each invoke: a third of the suite's time went there. A person's `cagnet` process builds
# it once; so does the suite now, and each invoke still runs the same commands from a fresh context.
typer.testing._get_command = functools.cache(typer.testing._get_command)  # type: ignore[attr-defined]


def _docker_engine_answers() -> bool:
    """Whether a Docker engine listens, asked without the docker library: when none does, the
    library leaks its socket, and this suite makes the ResourceWarning an error."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a TCP engine: let the library find out
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


def _docker_postgres() -> str | None:
    if not _docker_engine_answers():
        return None
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env()
    except Exception:
        return None
    try:
        client.ping()
    except Exception:
        return None
    finally:
        client.close()  # an unclosed socket would be a ResourceWarning, which this suite makes an error
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer("postgres:16-alpine", driver="psycopg")
    try:
        container.start()
    except Exception as exc:  # e.g. an engine with no registry to pull the image from
        _base_url["why"] = f"a Docker engine answers but could not start postgres:16-alpine ({type(exc).__name__})"
        return None
    _containers.append(container)
    return str(container.get_connection_url())


_containers: list[object] = []
_base_url: dict[str, str | None] = {}


def _postgres_base_url() -> str | None:
    if "url" not in _base_url:
        _base_url["url"] = os.environ.get(POSTGRES_ENV) or _docker_postgres()
    return _base_url["url"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for container in _containers:
        container.stop()  # type: ignore[attr-defined]


@pytest.fixture
def postgres_databases() -> Iterator[Callable[[int], list[str]]]:
    """Make `n` brand-new PostgreSQL databases (one per node of a network), all dropped after the test."""
    base = _postgres_base_url()
    if base is None:
        why = _base_url.get("why") or "no Docker engine for testcontainers"
        pytest.skip(f"no PostgreSQL: set {POSTGRES_ENV} ({why}; docs/deploy.md has one in docker-compose.yml)")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def make(n: int) -> list[str]:
        made = [f"cagnet_test_{uuid.uuid4().hex[:12]}" for _ in range(n)]
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                names.append(name)
        return [make_url(base).set(database=name).render_as_string(hide_password=False) for name in made]

    try:
        yield make
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_databases: Callable[[int], list[str]]) -> str:
    """A URL to a brand-new PostgreSQL database, dropped after the test."""
    return postgres_databases(1)[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    """The same test on each backend: an SQLite file, then a real PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/node.db"
    else:
        yield request.getfixturevalue("postgres_url")

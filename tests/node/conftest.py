"""Fixtures for the node's tests: an empty node store on the test's database (SQLite, and
PostgreSQL where the suite has one; `tests/conftest.py` `database_url`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from node.store import open_store


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A new node store at the newest schema revision, disposed after the test. A module that
    needs a store with something in it defines its own `engine`."""
    engine = open_store(database_url)
    try:
        yield engine
    finally:
        engine.dispose()

"""Alembic's entry point for the feed store's migrations; `shared.migrate` runs it."""

from coordinator.migrations.feeds import SCHEMA
from shared.migrate import run_environment

run_environment(SCHEMA)

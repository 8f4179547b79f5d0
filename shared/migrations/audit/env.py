"""Alembic's entry point for the audit log's migrations; `shared.migrate` runs it."""

from shared.migrate import run_environment
from shared.migrations.audit import SCHEMA

run_environment(SCHEMA)

"""Alembic's entry point for the accreditation register's migrations; `shared.migrate` runs it."""

from coordinator.migrations.register import SCHEMA
from shared.migrate import run_environment

run_environment(SCHEMA)

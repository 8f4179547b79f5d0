"""Alembic's entry point for the coordinator's nonce table; `shared.migrate` runs it."""

from shared.migrate import run_environment
from shared.migrations.nonces import SCHEMA

run_environment(SCHEMA)

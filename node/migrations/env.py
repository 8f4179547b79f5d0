"""Alembic's entry point for the node database's migrations; `shared.migrate` runs it."""

from node.migrations import SCHEMA
from shared.migrate import run_environment

run_environment(SCHEMA)

"""Write the next revision of one store's schema from the difference between its migrations and its
models: a scratch SQLite database is brought to the current head, Alembic's autogenerate compares it
with the code's tables, and the revision file lands in the schema's versions/ folder, numbered next
(0002, 0003, ...). Read and clean the file before committing it (docs/migrations.md).

Run: .venv/bin/python scripts/new_migration.py node "persisted request nonces"
     (schemas: node, audit, register, feeds)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

from coordinator.migrations import feeds, register  # noqa: E402
from node import migrations as node  # noqa: E402
from shared import migrate  # noqa: E402
from shared.migrations import audit, nonces  # noqa: E402

SCHEMAS = {s.name: s for s in (node.SCHEMA, audit.SCHEMA, nonces.SCHEMA, register.SCHEMA, feeds.SCHEMA)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("schema", choices=sorted(SCHEMAS))
    parser.add_argument("message", help="what the revision does, in a few words")
    args = parser.parse_args()
    schema = SCHEMAS[args.schema]
    revisions = [s.revision for s in migrate.script_directory(schema).walk_revisions()]
    number = f"{max((int(r) for r in revisions), default=0) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/scratch.db"
        if revisions:
            engine = create_engine(url)
            try:
                migrate.upgrade(engine, migrate.Store("a scratch database", (schema,), "(none)"))
            finally:
                engine.dispose()
        config = Config()
        config.set_main_option("script_location", str(schema.directory))
        config.cmd_opts = argparse.Namespace(x=[f"url={url}"])
        script = command.revision(config, message=args.message, autogenerate=True, rev_id=number)
    paths = [s.path for s in (script if isinstance(script, list) else [script]) if s is not None]
    for path in paths:
        print(f"wrote {Path(path).relative_to(ROOT)}: read it, clean it, run the migration tests")


if __name__ == "__main__":
    main()

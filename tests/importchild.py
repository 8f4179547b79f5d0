"""A client-record import in a process of its own, which stops or kills itself at a chosen point:
for the tests that kill an import (kill -9) or hold one part-way while the node answers.

    python -m tests.importchild DATABASE_URL FILE PERSON_KEY ACTION WHERE

ACTION is `kill` (SIGKILL, as kill -9) or `stop` (SIGSTOP, until the test sends SIGCONT); WHERE is
`rows=N` (after N rows have been read and staged) or a phase of `node.imports.staging.Phase`
(`staged`, `building`, `built`, `locked`, `written`), or `never`; several, comma-separated, for a
stop at each in turn. Exits 0 after a whole import, having printed its summary.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from node.client_records import PersonSealer, load_person_key
from node.imports.records import import_client_records
from node.store import open_store


def main(url: str, file: str, key: str, action: str, where: str) -> None:
    signum = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}[action]
    points = where.split(",")
    done: set[str] = set()

    def act(point: str) -> None:
        if point in points and point not in done:  # once: a stopped import goes on when continued
            done.add(point)
            os.kill(os.getpid(), signum)

    def progress(read: int, total: int) -> None:
        for point in points:
            if point.startswith("rows=") and read >= int(point.removeprefix("rows=")) and read < total:
                act(point)

    def on_phase(phase: str) -> None:
        act(phase)

    engine = open_store(url)
    try:
        summary = import_client_records(
            engine,
            path=Path(file),
            sealer=PersonSealer(load_person_key(Path(key))),
            progress=progress,
            on_phase=on_phase,
        )
        print(summary)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])

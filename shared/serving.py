"""One server per folder and per port: the lock a serving node or coordinator holds on its folder,
and binding a port that refuses to share (see `shared.guard.server_options`).

Two servers on one folder would write one audit chain from two processes and answer from two
copies of the same keys; two on one port would split its calls between them without a word.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import grpc

from shared.errors import CagnetError

LOCK_FILE = "serve.lock"


class AlreadyServing(CagnetError):
    """A second server on a folder or a port already served (local only: it stops the start)."""

    default_message = "already served"


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[Path]:
    """Hold FOLDER/serve.lock (an exclusive `flock`) while serving. The kernel lets go of it when
    the process ends, however it ends, so a kill -9 leaves no stale lock behind."""
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            raise AlreadyServing(
                f"{what} at {folder} is already being served (process {holder}, which holds {path}): "
                "stop that server first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


def bind(server: grpc.Server, address: str, credentials: grpc.ServerCredentials, *, what: str) -> int:
    """`server.add_secure_port`, with a clear error when the port is taken (or not this machine's)."""
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise AlreadyServing(
            f"{what} could not listen on {address}: the port is in use (another server?) or the address "
            "is not this machine's"
        )
    return port

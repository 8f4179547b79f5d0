"""A member authority's own node, for its officer (`cagnet console --node NODEDIR`): imports
(upload a file, see the preview, the counts and every problem before anything is written, then
confirm), its audit log (who asked what, what was released or refused) and its completeness
report (the returns to chase). Each calls what `cagnet node import`, `node audit show` and
`node completeness` call."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cagnet.actions.node import KINDS, audit_log, check_file, node_store, party_names
from cagnet.console.session import Session
from cagnet.console.web import form_of, render, session_of, upload_of
from node import completeness as completeness_mod
from node.imports.check import Check, reason_and_fix
from node.imports.reading import ENCODINGS
from shared import audit
from shared.errors import CagnetError

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
AUDIT_SHOWN = 200


class Uploads:
    """Files uploaded for import, kept in a private temporary folder between the check and the
    confirmation (the officer's browser never sends the file twice); removed when the console stops."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cagnet-console-"))
        self._held: dict[str, tuple[Path, str, str, str]] = {}  # id -> (path, kind, sheet, encoding)
        self._lock = threading.Lock()
        self._next = 0

    def keep(self, name: str, data: bytes, kind: str, sheet: str, encoding: str) -> tuple[str, Path]:
        with self._lock:
            self._next += 1
            upload_id = f"u{self._next}"
        folder = self.root / upload_id
        folder.mkdir()
        safe = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name).name) or "upload.csv"
        path = folder / safe
        path.write_bytes(data)
        with self._lock:
            self._held[upload_id] = (path, kind, sheet, encoding)
        return upload_id, path

    def get(self, upload_id: str) -> tuple[Path, str, str, str]:
        with self._lock:
            found = self._held.get(upload_id)
        if found is None:
            raise HTTPException(404, "no such upload in this console session: upload the file again")
        return found

    def forget(self, upload_id: str) -> None:
        with self._lock:
            found = self._held.pop(upload_id, None)
        if found is not None:
            shutil.rmtree(found[0].parent, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads  # made with the app (cagnet/console/app.py)
    return uploads


def _check(session: Session, path: Path, kind: str, sheet: str, encoding: str, *, dry_run: bool) -> Check:
    check, engine = check_file(
        session.folder, kind, path, dry_run=dry_run, sheet=sheet or None, encoding=encoding or "auto"
    )
    engine.dispose()
    return check


def _shown(check: Check) -> dict[str, Any]:
    """A check as the page shows it: every problem with its reason and fix, the preview, the values."""
    problems = []
    for p in check.problems:
        reason, fix = reason_and_fix(p)
        problems.append(
            {
                "sheet": p.sheet or "",
                "row": p.row,
                "column": p.column or "",
                "value": p.value or "",
                "reason": reason,
                "fix": fix,
            }
        )
    columns = [c for c in check.preview[0] if c != "row"] if check.preview else []
    distinct = [
        (column, value, seen.stored.get(value), count)
        for column, seen in check.distinct.items()
        for value, count in sorted(seen.counts.items(), key=lambda item: -item[1])
    ]
    return {"check": check, "problems": problems, "columns": columns, "distinct": distinct}


async def imports_form(request: Request) -> Response:
    return render(request, "imports.html", kinds=KINDS, encodings=ENCODINGS, shown=None, upload_id="", written=None)


async def imports_check(request: Request) -> Response:
    form = await form_of(request)
    try:
        return await _imports_check(request, form)
    finally:
        await form.close()


async def _imports_check(request: Request, form: FormData) -> Response:
    session = session_of(request)
    kind = str(form.get("kind", ""))
    encoding = str(form.get("encoding", "auto"))
    sheet = str(form.get("sheet", ""))
    upload = upload_of(form, "file")
    context: dict[str, Any] = {"kinds": KINDS, "encodings": ENCODINGS, "shown": None, "upload_id": "", "written": None}
    if kind not in KINDS or encoding not in ENCODINGS or upload is None:
        context["error"] = "choose what the file holds, its encoding, and the file"
        return render(request, "imports.html", status_code=400, **context)
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        context["error"] = f"the file is larger than {MAX_UPLOAD_BYTES:,} bytes: import it with `cagnet node import`"
        return render(request, "imports.html", status_code=400, **context)
    uploads = _uploads(request)
    upload_id, path = uploads.keep(upload.filename or "upload.csv", data, kind, sheet, encoding)
    try:
        check = await run_in_threadpool(_check, session, path, kind, sheet, encoding, dry_run=True)
    except CagnetError as exc:
        uploads.forget(upload_id)
        context["error"] = str(exc)
        return render(request, "imports.html", status_code=400, **context)
    if not check.ok:
        uploads.forget(upload_id)  # nothing can be written from it: the officer fixes the file
    context.update(shown=_shown(check), upload_id=upload_id if check.ok else "")
    return render(request, "imports.html", status_code=200 if check.ok else 422, **context)


async def imports_write(request: Request) -> Response:
    await form_of(request)
    session = session_of(request)
    uploads = _uploads(request)
    upload_id = request.path_params["id"]
    path, kind, sheet, encoding = uploads.get(upload_id)
    try:
        check = await run_in_threadpool(_check, session, path, kind, sheet, encoding, dry_run=False)
    finally:
        uploads.forget(upload_id)
    context: dict[str, Any] = {"kinds": KINDS, "encodings": ENCODINGS, "upload_id": ""}
    return render(
        request, "imports.html", status_code=200 if check.ok else 422, shown=_shown(check), written=check.ok, **context
    )


def _audit_rows(session: Session, decision: str) -> tuple[int, list[Any], dict[str, str]]:
    engine = audit_log(session.folder)
    try:
        last, _ = audit.head(engine)
        rows = audit.entries(engine, since_seq=max(0, last - AUDIT_SHOWN))
    finally:
        engine.dispose()
    try:
        names = party_names(session.folder)
    except (CagnetError, OSError):
        names = {}
    if decision:
        rows = [e for e in rows if decision in e.decision]
    return last, list(reversed(rows)), names


async def audit_page(request: Request) -> Response:
    session = session_of(request)
    decision = request.query_params.get("decision", "")
    last, rows, names = await run_in_threadpool(_audit_rows, session, decision)
    shown = min(last, AUDIT_SHOWN)  # the entries looked at: a young log has fewer than AUDIT_SHOWN
    return render(request, "audit.html", last=last, rows=rows, names=names, decision=decision, shown=shown)


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CagnetError(f"{name}: not a day in the form YYYY-MM-DD: {value!r}") from None


def _completeness(session: Session, first: date | None, last: date | None) -> completeness_mod.Completeness:
    _, engine = node_store(session.folder)
    try:
        return completeness_mod.completeness(engine, first_day=first, last_day=last)
    finally:
        engine.dispose()


async def completeness_page(request: Request) -> Response:
    session = session_of(request)
    try:
        first = _day(request.query_params.get("from", ""), "from")
        last = _day(request.query_params.get("to", ""), "to")
        report = await run_in_threadpool(_completeness, session, first, last)
    except CagnetError as exc:
        return render(request, "completeness.html", status_code=400, report=None, rows=[], error=str(exc))
    rows = completeness_mod.csv_rows(report)
    return render(request, "completeness.html", report=report, rows=rows, error="")


def routes() -> list[Route]:
    return [
        Route("/node/imports", imports_form, methods=["GET"]),
        Route("/node/imports", imports_check, methods=["POST"]),
        Route("/node/imports/{id}/write", imports_write, methods=["POST"]),
        Route("/node/audit", audit_page, methods=["GET"]),
        Route("/node/completeness", completeness_page, methods=["GET"]),
    ]

"""Verifying a bundle someone sent: upload the file `cagnet query ... --out` (or this console)
saved, and it is checked as `cagnet verify` checks it, against this folder's verified manifest
chain; a tampered or foreign bundle is refused with the reason."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cagnet.actions.tables import result_tables
from cagnet.actions.verify import verification
from cagnet.console.charts import result_chart
from cagnet.console.web import form_of, refusal, render, session_of, upload_of
from shared import dsse
from shared.errors import CagnetError, InvalidRequest

MAX_BUNDLE_BYTES = 64 * 1024 * 1024


def _envelope(data: bytes, name: str) -> dsse.Envelope:
    """A saved bundle file's envelope (or a bare DSSE envelope), refused plainly if it is neither."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{name} is not a bundle file: {exc}") from None
    if isinstance(doc, dict) and "envelope" in doc:
        doc = doc["envelope"]
    try:
        return dsse.Envelope.from_json(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"{name} is not a bundle file: {exc}") from None


async def verify_form(request: Request) -> Response:
    return render(request, "verify.html", outcome=None)


async def verify(request: Request) -> Response:
    form = await form_of(request)
    try:
        return await _verify(request, upload_of(form, "bundle"))
    finally:
        await form.close()


async def _verify(request: Request, upload: UploadFile | None) -> Response:
    if upload is None:
        return render(request, "verify.html", status_code=400, outcome={"ok": False, "reason": "choose a file"})
    data = await upload.read(MAX_BUNDLE_BYTES + 1)
    name = upload.filename or "the file"
    session = session_of(request)
    try:
        if len(data) > MAX_BUNDLE_BYTES:
            raise InvalidRequest(f"{name} is larger than any bundle ({MAX_BUNDLE_BYTES:,} bytes)")
        envelope = _envelope(data, name)
        asker = await run_in_threadpool(session.asker)
        asker.manifests.current()  # reads and verifies the chain, which `history` lists
        chain = [m for m, _ in asker.manifests.history]
        policy = asker.policies.current().digest
        bundle, lines = await run_in_threadpool(verification, envelope, chain, policy)
    except (CagnetError, ValueError) as exc:
        outcome = {"ok": False, "name": name, "reason": refusal(exc)}
        return render(request, "verify.html", status_code=422, outcome=outcome)
    tables = result_tables(bundle)
    outcome = {"ok": True, "name": name, "lines": lines, "bundle": bundle, "tables": tables}
    return render(request, "verify.html", outcome=outcome, chart=result_chart(tables))


def routes() -> list[Route]:
    return [Route("/verify", verify_form, methods=["GET"]), Route("/verify", verify, methods=["POST"])]

"""A regional board's feeds: fetch the network's new snapshots (verified, then written as
`cagnet feed subscribe --out` writes them) and show the latest one's figures, each re-verified
from its signed envelope against the folder's manifest chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cagnet.actions.labels import currency_lines, snapshot_periods
from cagnet.actions.tables import model_tables
from cagnet.console.session import Session
from cagnet.console.web import form_of, refusal, render, session_of
from coordinator import network
from coordinator.feeds.client import held, subscribe
from coordinator.feeds.snapshot import FeedSnapshot, verify_snapshot_in_chain
from shared import dsse
from shared.errors import CagnetError
from shared.manifest import REGIONAL_BOARD


def feeds_dir(session: Session) -> Path:
    return session.feeds_dir or session.folder / "feeds"


def _latest(session: Session) -> FeedSnapshot | None:
    out = feeds_dir(session)
    if not out.is_dir() or not held(out):
        return None
    path = out / f"snapshot-{max(held(out)):06d}.dsse.json"
    envelope = dsse.Envelope.from_json(json.loads(path.read_text()))
    asker = session.asker()
    asker.manifests.current()
    return verify_snapshot_in_chain(envelope, [m for m, _ in asker.manifests.history])[0]


async def feeds_page(request: Request) -> Response:
    session = session_of(request)
    context: dict[str, Any] = {"feeds_dir": feeds_dir(session), "snapshot": None, "tables": [], "error": ""}
    try:
        snapshot = await run_in_threadpool(_latest, session)
    except (CagnetError, ValueError, OSError) as exc:
        context["error"] = refusal(exc)
        snapshot = None
    if snapshot is not None:
        context.update(
            snapshot=snapshot,
            held=sorted(held(feeds_dir(session))),
            periods=snapshot_periods(snapshot),
            currency=currency_lines(snapshot.currency),
            tables=model_tables(
                "feed", snapshot, snapshot_periods(snapshot), skip=("evidence", "mandate", "currency", "missing")
            ),
        )
    return render(request, "feeds.html", **context)


async def fetch(request: Request) -> Response:
    await form_of(request)
    session = session_of(request)
    if session.is_node:
        return render(request, "refused.html", what="fetching feeds", reason="feeds are fetched with a principal's kit")
    principal = session.principal or network.kit_principal(session.folder) or REGIONAL_BOARD
    try:
        await run_in_threadpool(lambda: subscribe(session.folder, feeds_dir(session), principal=principal))
    except (CagnetError, ValueError) as exc:
        return render(request, "refused.html", what="fetching the feed", reason=refusal(exc))
    return RedirectResponse("/feeds", status_code=303)


def routes() -> list[Route]:
    return [Route("/feeds", feeds_page, methods=["GET"]), Route("/feeds", fetch, methods=["POST"])]

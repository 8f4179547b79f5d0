"""The accreditation register: search a provider by name or key, see its status at each
authority and its whole verified history, and download the receipt (entries, inclusion proofs and
checkpoint) that `cagnet register verify` checks offline."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cagnet.actions.register import actor, checkpoint_json
from cagnet.console.session import Session
from cagnet.console.web import refusal, render, session_of
from shared.accreditation import ProviderStatus, provider_status, register_statuses
from shared.errors import CagnetError
from shared.register_client import History, RegisterClient, WholeRegister, fetch_history, fetch_register


def _actor_of(session: Session) -> Any:
    if session.is_node:
        return actor(session.folder, None, "")
    return actor(None, session.folder, session.principal)


def _whole(session: Session) -> WholeRegister:
    actor = _actor_of(session)
    with RegisterClient(actor.identity, actor.manifest) as client:
        return fetch_register(client, chain=actor.chain())


def _history(session: Session, provider: str) -> History:
    actor = _actor_of(session)
    with RegisterClient(actor.identity, actor.manifest) as client:
        return fetch_history(client, provider, network_dir=actor.netdir, chain=actor.chain())


def _matches(status: ProviderStatus, query: str) -> bool:
    q = query.casefold()
    return q in status.provider.casefold() or any(q in name.casefold() for name in status.names)


async def register_page(request: Request) -> Response:
    session = session_of(request)
    query = request.query_params.get("q", "").strip()
    try:
        whole = await run_in_threadpool(_whole, session)
    except CagnetError as exc:
        return render(request, "refused.html", what="reading the register", reason=refusal(exc))
    statuses = register_statuses(whole.entries, on=date.today())
    shown = [s for s in statuses if not query or _matches(s, query)]
    return render(
        request,
        "register.html",
        query=query,
        shown=shown,
        total=len(statuses),
        checkpoint=checkpoint_json(whole.checkpoint),
    )


async def provider_page(request: Request) -> Response:
    session = session_of(request)
    key = request.query_params.get("key", "")
    try:
        history = await run_in_threadpool(_history, session, key)
        if not history.entries:
            raise CagnetError(f"no entries in the register for {history.provider}")
    except CagnetError as exc:
        return render(request, "refused.html", what=f"the register's history of {key}", reason=refusal(exc))
    status = provider_status(history.provider, history.entries, on=date.today())
    return render(
        request,
        "provider.html",
        key=key,
        status=status,
        history=history,
        checkpoint=checkpoint_json(history.checkpoint),
    )


async def receipt(request: Request) -> Response:
    session = session_of(request)
    key = request.query_params.get("key", "")
    try:
        history = await run_in_threadpool(_history, session, key)
    except CagnetError as exc:
        return render(request, "refused.html", what=f"the receipt for {key}", reason=refusal(exc))
    name = "".join(c if c.isalnum() else "-" for c in history.provider)[:60]
    return Response(
        json.dumps(history.receipt, indent=2) + "\n",
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="register-{name}.receipt.json"'},
    )


def routes() -> list[Route]:
    return [
        Route("/register", register_page, methods=["GET"]),
        Route("/register/provider", provider_page, methods=["GET"]),
        Route("/register/receipt", receipt, methods=["GET"]),
    ]

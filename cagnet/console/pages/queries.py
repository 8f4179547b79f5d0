"""Asking: the list of joint queries (from the kinds registry), each one's form, the plan before
asking, each verified result as tables with their period and a chart, refusals with their reason,
and the downloads: the signed bundle (for `cagnet verify`), CSV and XLSX."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cagnet.actions.tables import tables_csv, tables_xlsx
from cagnet.console.charts import result_chart
from cagnet.console.forms import askable_kinds, fields_of, parse_question, plan_question
from cagnet.console.session import Held
from cagnet.console.web import form_of, refusal, render, session_of
from shared.errors import CagnetError
from shared.kinds.registry import KINDS, PLAN, JointKind

_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _lists(form: FormData) -> dict[str, list[str]]:
    """Every field's values as text (a multiple choice sends one value per choice)."""
    return {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form}


def _spec(kind: str) -> JointKind:
    spec = KINDS.get(kind)
    if spec is None or kind == PLAN:
        raise HTTPException(404, f"no joint query called {kind!r}")
    return spec


async def ask_list(request: Request) -> Response:
    session = session_of(request)
    asker = await run_in_threadpool(session.asker)
    policy = asker.policies.current()
    roles = asker.manifests.current().party(asker.identity.party_id).roles
    kinds = [
        {"kind": spec.kind, "permitted": any(policy.permits(spec.kind, r) for r in roles), "fields": fields_of(spec)}
        for spec in askable_kinds()
    ]
    return render(request, "ask.html", kinds=kinds)


async def ask_form(request: Request) -> Response:
    spec = _spec(request.path_params["kind"])
    return render(request, "query_form.html", kind=spec.kind, fields=fields_of(spec), values={}, error="")


async def ask(request: Request) -> Response:
    spec = _spec(request.path_params["kind"])
    form = await form_of(request)
    values = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    try:
        question = parse_question(spec, form, _lists(form))
    except CagnetError as exc:
        return render(
            request,
            "query_form.html",
            status_code=400,
            kind=spec.kind,
            fields=fields_of(spec),
            values=values,
            error=str(exc),
        )
    try:
        held = await run_in_threadpool(session_of(request).ask, spec.kind, question)
    except (CagnetError, ValueError) as exc:
        return render(request, "refused.html", what=f"the {spec.kind} query", reason=refusal(exc), kind=spec.kind)
    return RedirectResponse(f"/results/{held.id}", status_code=303)


async def plan_form(request: Request) -> Response:
    return render(request, "plan.html", fields=fields_of(KINDS[PLAN]), held=None, error="")


async def plan(request: Request) -> Response:
    form = await form_of(request)
    try:
        question = plan_question(form, _lists(form))
    except CagnetError as exc:
        return render(request, "plan.html", status_code=400, fields=fields_of(KINDS[PLAN]), held=None, error=str(exc))
    try:
        held = await run_in_threadpool(session_of(request).ask, PLAN, question)
    except (CagnetError, ValueError) as exc:
        return render(request, "refused.html", what="the plan", reason=refusal(exc))
    return RedirectResponse(f"/results/{held.id}", status_code=303)


def _held(request: Request) -> Held:
    held = session_of(request).results.get(request.path_params["id"])
    if held is None:
        raise HTTPException(404, "no such result in this console session")
    return held


async def results(request: Request) -> Response:
    return render(request, "results.html", results=list(reversed(session_of(request).results.values())))


async def result(request: Request) -> Response:
    held = _held(request)
    return render(request, "result.html", held=held, chart=result_chart(held.tables))


def _attachment(held: Held, suffix: str) -> dict[str, str]:
    name = f"{held.bundle.kind}-{held.bundle.created_at[:10]}-{held.id}.{suffix}"
    return {"content-disposition": f'attachment; filename="{name}"'}


async def download_bundle(request: Request) -> Response:
    """The signed bundle as `cagnet query ... --out` saves it, for `cagnet verify`."""
    held = _held(request)
    session = session_of(request)
    document = {"network_dir": str(session.folder.resolve()), "envelope": held.envelope.to_json()}
    body = json.dumps(document, indent=2) + "\n"
    return Response(body, media_type="application/json", headers=_attachment(held, "bundle.json"))


async def download_csv(request: Request) -> Response:
    held = _held(request)
    body = "\ufeff" + tables_csv(held.tables, held.notes)  # a byte order mark: Excel reads it as UTF-8
    return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8", headers=_attachment(held, "csv"))


async def download_xlsx(request: Request) -> Response:
    held = _held(request)
    body = await run_in_threadpool(tables_xlsx, held.tables, held.notes)
    return Response(body, media_type=_XLSX, headers=_attachment(held, "xlsx"))


def routes() -> list[Route]:
    return [
        Route("/ask", ask_list, methods=["GET"]),
        Route("/ask/{kind}", ask_form, methods=["GET"]),
        Route("/ask/{kind}", ask, methods=["POST"]),
        Route("/plan", plan_form, methods=["GET"]),
        Route("/plan", plan, methods=["POST"]),
        Route("/results", results, methods=["GET"]),
        Route("/results/{id}", result, methods=["GET"]),
        Route("/results/{id}/bundle.json", download_bundle, methods=["GET"]),
        Route("/results/{id}/csv", download_csv, methods=["GET"]),
        Route("/results/{id}/xlsx", download_xlsx, methods=["GET"]),
    ]

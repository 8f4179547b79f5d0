"""The network page: who the members are, how current each one's records are (as their signed
answers state), and the policy in force, rule by rule."""

from __future__ import annotations

from datetime import date

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cagnet.actions.labels import currency_lines
from cagnet.actions.tables import place_name
from cagnet.console.web import form_of, refusal, render, session_of
from shared.errors import CagnetError
from shared.kinds.registry import PLAN


def _financial_year(today: date) -> tuple[str, str]:
    start = today.year if today.month >= 4 else today.year - 1
    return date(start, 4, 1).isoformat(), date(start + 1, 3, 31).isoformat()


async def network_page(request: Request) -> Response:
    session = session_of(request)
    asker = await run_in_threadpool(session.asker)
    manifest = asker.manifests.current()
    policy = asker.policies.current()
    me = manifest.party(asker.identity.party_id)
    latest = next((h for h in reversed(session.results.values()) if h.bundle.currency), None)
    currency = {c.authority: c for c in latest.bundle.currency} if latest else {}
    members = [
        {
            "id": p.id,
            "name": p.name,
            "place": place_name(p.id),
            "population": p.population,
            "records_to": currency[p.id].records_to if p.id in currency else "",
            "last_import": currency[p.id].last_import[:16].replace("T", " ") if p.id in currency else "",
        }
        for p in manifest.members
    ]
    rules = [
        {
            "kind": kind,
            "roles": ", ".join(rule.roles),
            "threshold": rule.threshold,
            "rounding": f"{rule.rounding_base} ({rule.rounding_mode})",
            "min_authorities": rule.min_authorities,
            "mine": any(r in rule.roles for r in me.roles),
        }
        for kind, rule in policy.aggregates.items()
    ]
    return render(
        request,
        "network.html",
        manifest=manifest,
        me=me,
        members=members,
        policy=policy,
        rules=rules,
        currency_from=latest,
        currency_lines=currency_lines(latest.bundle.currency) if latest else [],
        error=request.query_params.get("error", ""),
    )


async def check_currency(request: Request) -> Response:
    """Ask the plan for this financial year: it releases no figure and records nothing in any
    release ledger, and each node's signed answer says how current its records are."""
    await form_of(request)
    session = session_of(request)
    first, last = _financial_year(date.today())
    try:
        await run_in_threadpool(session.ask, PLAN, {"from_date": first, "to_date": last})
    except (CagnetError, ValueError) as exc:
        return render(request, "refused.html", what="checking the members' records", reason=refusal(exc))
    return RedirectResponse("/", status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", network_page, methods=["GET"]),
        Route("/currency", check_currency, methods=["POST"]),
    ]

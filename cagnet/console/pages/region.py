"""A regional board's roll-up across the CAGs whose feeds it takes, one kit per network
(`cagnet console --kit A --kit B ...`): the Region page runs exactly what `cagnet feed region`
runs (cagnet/actions/region.py), into FIRST-KIT/region/, and shows each CAG's column, the region's
sums where the definitions agree, the missing and stale CAGs named, and region.xlsx / region.csv
to download."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from cagnet.actions.region import CagFeed, region_tables, write_region
from cagnet.actions.tables import ResultTable
from cagnet.console.session import Session
from cagnet.console.web import form_of, refusal, render, session_of
from shared.errors import CagnetError
from shared.mandate import parse_interval

__all__ = ["RollUp", "region_dir", "routes"]

DEFAULT_STALE_AFTER = "31d"  # as `cagnet feed region --stale-after`
_DOWNLOADS = {
    "region.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "region.csv": "text/csv; charset=utf-8",
}


@dataclass(frozen=True)
class RollUp:
    """The last roll-up this session made: what the page shows (the files hold the same)."""

    feeds: list[CagFeed]
    tables: list[ResultTable]
    notes: list[tuple[str, str]]
    made: datetime
    stale_after: str


def region_dir(session: Session) -> Path:
    return session.folder / "region"


def _roll_up(session: Session, stale_after: str) -> RollUp:
    after = timedelta(seconds=parse_interval(stale_after))
    now = datetime.now(UTC)
    feeds, _ = write_region(list(session.region_kits), region_dir(session), stale_after=after, now=now)
    tables, notes = region_tables(feeds)  # the same tables write_region has just written
    return RollUp(feeds, tables, notes, now, stale_after)


async def region_page(request: Request) -> Response:
    session = session_of(request)
    return render(
        request,
        "region.html",
        kits=session.region_kits,
        out=region_dir(session),
        rollup=request.app.state.region,
        stale_after=request.app.state.region.stale_after if request.app.state.region else DEFAULT_STALE_AFTER,
    )


async def roll_up(request: Request) -> Response:
    form = await form_of(request)
    session = session_of(request)
    stale_after = str(form.get("stale_after") or DEFAULT_STALE_AFTER).strip()
    try:
        request.app.state.region = await run_in_threadpool(_roll_up, session, stale_after)
    except (CagnetError, ValueError, OSError) as exc:
        return render(request, "refused.html", what="the regional roll-up", reason=refusal(exc))
    return RedirectResponse("/region", status_code=303)


async def download(request: Request) -> Response:
    name = request.path_params["name"]
    path = region_dir(session_of(request)) / name
    if name not in _DOWNLOADS or request.app.state.region is None or not path.is_file():
        raise HTTPException(404, "no such roll-up file: press Fetch and roll up first")
    return FileResponse(path, media_type=_DOWNLOADS[name], filename=name)


def routes() -> list[Route]:
    return [
        Route("/region", region_page, methods=["GET"]),
        Route("/region", roll_up, methods=["POST"]),
        Route("/region/{name}", download, methods=["GET"]),
    ]

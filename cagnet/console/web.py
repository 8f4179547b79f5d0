"""What every console page shares: the templates, rendering a page with the session's navigation
and CSRF token, reading a posted form (its CSRF token checked), and saying why something was
refused in words a chair can act on."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import grpc
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from cagnet.console.session import Session
from shared.errors import CagnetError

__all__ = ["form_of", "refusal", "render", "session_of"]

TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))


def _figure(value: Any) -> str:
    """A cell as the page shows it: `*` for a suppressed or withheld figure, thousands separated."""
    if value is None:
        return "*"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


_env.filters["figure"] = _figure


def session_of(request: Request) -> Session:
    session: Session = request.app.state.session
    return session


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session = session_of(request)
    page = _env.get_template(template).render(
        request=request,
        session=session,
        csrf=session.csrf,
        node_pages=session.is_node,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(page, status_code=status_code)


async def form_of(request: Request) -> FormData:
    """The posted form, once its CSRF token is this session's; otherwise 403, nothing done."""
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not _same(sent, session_of(request).csrf):
        await form.close()  # any uploaded file's temporary copy goes now
        raise HTTPException(403, "this form did not come from this console (its CSRF token is missing or wrong)")
    return form


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def upload_of(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) and value.filename else None


def refusal(exc: Exception) -> str:
    """Why a question or a check was refused: the typed rule, never data (the coordinator's and
    nodes' messages disclose none)."""
    code = getattr(exc, "code", None)
    if isinstance(code, grpc.StatusCode):
        return f"{code.name.lower().replace('_', ' ')}: {exc}"
    if isinstance(exc, CagnetError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"

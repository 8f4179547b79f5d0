"""The console's web app and its server: Starlette routes from each area's page module, behind a
guard that lets in only the person who started it, served by uvicorn on loopback.

The guard, as Jupyter does it: a random token in the URL printed (and opened); the first visit
with it sets a cookie (HttpOnly, SameSite=Strict) and redirects to the same page without it; any
request without the cookie or the `X-Console-Token` header is refused 403. The Host header must
be the console's own (no DNS rebinding), a POST must come from the console's own origin (Origin,
else Referer) and carry the session's CSRF token in its form. Every page forbids fetching
anything from elsewhere (CSP) and being framed.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from cagnet.console.pages import bundles, feeds, network, node, queries, region, register
from cagnet.console.session import Session

__all__ = ["COOKIE", "TOKEN_HEADER", "ConsoleServer", "create_app"]

COOKIE = "cagnet_console"
TOKEN_HEADER = "x-console-token"
STATIC = Path(__file__).parent / "static"
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none';"
    " base-uri 'none'"
)
_SAFE_METHODS = frozenset({"GET", "HEAD"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """Refuses every request that is not from the person holding this session's token, on this
    console's own origin (see the module's docstring)."""

    def __init__(self, app: Starlette, session: Session, port: int) -> None:
        self.app = app
        self.session = session
        self.port = port
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    def _token_ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(str(value).encode(), self.session.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = self._refusal(request)
        if refused is not None:
            await PlainTextResponse(refused, status_code=403)(scope, receive, send)
            return
        if request.method in _SAFE_METHODS and self._token_ok(request.query_params.get("token")):
            # The token leaves the address bar (and the history) for a cookie only this origin sees.
            query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
            target = str(URL(path=request.url.path, query=query))
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, self.session.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend(
                    [
                        (b"content-security-policy", _CSP.encode()),
                        (b"x-frame-options", b"DENY"),
                        (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"same-origin"),
                        (b"cache-control", b"no-store"),
                    ]
                )
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, request: Request) -> str | None:
        """Why a request is refused, or None to let it in."""
        if request.headers.get("host", "") not in self.hosts:
            return "refused: this console answers only on its own loopback address"
        if not (
            self._token_ok(request.cookies.get(COOKIE))
            or self._token_ok(request.headers.get(TOKEN_HEADER))
            or (request.method in _SAFE_METHODS and self._token_ok(request.query_params.get("token")))
        ):
            return "refused: open the console with the address `cagnet console` printed (it holds this session's token)"
        if request.method not in _SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is None:
                referer = request.headers.get("referer")
                parts = urlsplit(referer) if referer else None
                origin = f"{parts.scheme}://{parts.netloc}" if parts else None
            if origin not in self.origins:
                return "refused: a change may only be asked from this console's own pages (cross-origin request)"
        return None


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code)


def create_app(session: Session, *, port: int) -> Guard:
    """The console for `session`, answering on 127.0.0.1:`port` (or localhost:`port`)."""
    routes = [
        *network.routes(),
        *queries.routes(),
        *bundles.routes(),
        *register.routes(),
        *feeds.routes(),
        *(node.routes() if session.is_node else []),
        *(region.routes() if session.region_kits else []),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _forbidden})
    app.state.session = session
    if session.is_node:
        app.state.uploads = node.Uploads()
    app.state.region = None  # the Region page's last roll-up
    return Guard(app, session, port)


class ConsoleServer:
    """The console served by uvicorn on a loopback port (0: any free one) in a thread of its own."""

    def __init__(self, session: Session, *, port: int = 0) -> None:
        self.session = session
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))  # loopback only: never another machine
        self.port = self._socket.getsockname()[1]
        self.app = create_app(session, port=self.port)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The address to open: it carries the session's token."""
        return f"{self.origin}/?token={self.session.token}"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self._run, name="cagnet-console", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the console's server stopped as it started")
            threading.Event().wait(0.02)
        return self

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def wait(self) -> None:
        """Until the server stops (Ctrl-C in the terminal that started it)."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(0.5)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._socket.close()
        self.session.close()
        uploads = getattr(self.app.app.state, "uploads", None)
        if uploads is not None:
            uploads.close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

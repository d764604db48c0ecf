"""The Starlette app: pages (GET, read-only) and the guard around every request.

`build_app(queue, guard)` wires the routes of pages.py and actions.py, the static files
and the templates (autoescape on: every value from Redis is rendered escaped). The guard
middleware gives each browser a session cookie, asks for the token when one is set
(without one, serves only requests whose Host is a loopback address), and turns a Redis
outage into one line with status 503.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from supervisor_q.queue import ids
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.payload import printable
from supervisor_q.web import actions, pages
from supervisor_q.web.security import (
    AUTH_COOKIE,
    SESSION_COOKIE,
    Guard,
    is_loopback,
    new_session,
)

HERE = Path(__file__).parent
OPEN_PATHS = ("/login", "/static/")  # reachable without the token


class GuardMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        guard: Guard = request.app.state.guard
        session = request.cookies.get(SESSION_COOKIE)
        fresh = session is None or len(session) > 64
        request.state.session = new_session() if fresh else session
        if guard.token is None and not is_loopback(request.url.hostname or ""):
            # without a token only loopback names are served: a rebinding DNS name
            # pointing at 127.0.0.1 gets nothing
            response: Response = PlainTextResponse("Host must be a loopback address", 421)
        elif not request.url.path.startswith(OPEN_PATHS) and not guard.authorized(
                _bearer(request), request.state.session, request.cookies.get(AUTH_COOKIE)):
            response = pages.unauthorized(request)
        else:
            try:
                response = await call_next(request)
            except redis.RedisError as exc:
                response = PlainTextResponse(f"Redis unavailable: {str(exc)[:200]}", 503)
        if fresh:
            response.set_cookie(SESSION_COOKIE, request.state.session, httponly=True,
                                samesite="strict", path="/")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; style-src 'self' 'unsafe-inline'")
        return response


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value else None


def _printable(value: Any) -> Any:
    """Every value a template prints: bytes that were not UTF-8 (surrogate escapes in
    Redis text) as \\xNN, so no page fails to encode."""
    return printable(value) if type(value) is str else value


def build_app(queue: RedisQueue, guard: Guard, **state: Any) -> Starlette:
    """The dashboard over queue's Redis; state goes to app.state (e.g. redis_url)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, finalize=_printable)
    env.filters["ago"] = pages.ago
    env.filters["when"] = pages.when
    env.filters["shown"] = ids.shown  # an id as every page links, shows and posts it
    templates = Jinja2Templates(env=env)
    routes = [*pages.ROUTES, *actions.ROUTES,
              Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static")]
    app = Starlette(routes=routes, middleware=[Middleware(GuardMiddleware)])
    app.state.queue = queue
    app.state.guard = guard
    app.state.templates = templates
    app.state.series_cache = {}  # sources.cached_series
    for key, value in state.items():
        setattr(app.state, key, value)
    return app

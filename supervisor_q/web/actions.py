"""The dashboard's actions: POST only, each checked against the session's CSRF token.

Every action reaches masters through Redis, so it works for any host: retry and forget
act on the failed store, pause and continue on `sq:paused`, scale on the target master's
command inbox (fleet/inbox.py). Each answers with a redirect back and a short message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from supervisor_q.config.schema import MAX_NUMPROCS
from supervisor_q.queue.keys import check_queue_name
from supervisor_q.queue.pauses import pause, resume
from supervisor_q.web import pages, sources
from supervisor_q.web.security import AUTH_COOKIE

Action = Callable[[Request, FormData], Awaitable[Response]]


def checked(action: Action) -> Callable[[Request], Awaitable[Response]]:
    """Run action only for a POST whose form (or X-CSRF-Token header) has the token."""
    async def endpoint(request: Request) -> Response:
        form = await request.form()
        given = form.get("csrf") or request.headers.get("x-csrf-token")
        if not isinstance(given, str) or not request.app.state.guard.csrf_ok(
                request.state.session, given):
            return PlainTextResponse("CSRF token missing or wrong; reload the page", 403)
        return await action(request, form)
    return endpoint


def back(request: Request, form: FormData, message: str) -> Response:
    """303 to the form's `next` path (same site only), with a message."""
    target = form.get("next")
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        target = "/"
    target = target.split("?", 1)[0]
    return RedirectResponse(f"{target}?{urlencode({'msg': message})}", 303)


def _selected(form: FormData) -> list[tuple[str, str]]:
    """The `job` checkboxes, each QUEUE/ID (a queue name has no slash)."""
    found = []
    for value in form.getlist("job"):
        queue_name, sep, job_id = str(value).partition("/")
        if sep and job_id:
            found.append((queue_name, job_id))
    return found


async def failed_act(request: Request, form: FormData) -> Response:
    """action=retry|forget over scope=selected (the `job` boxes) or scope=all."""
    queue = request.app.state.queue
    what = form.get("action")
    if what not in ("retry", "forget"):
        return back(request, form, "unknown action")
    if form.get("scope") == "all" and what == "retry":  # in chunks (queue/failed.py)
        total = queue.failed_page(None, 0, 0)[1]
        return back(request, form, f"{queue.retry_all_failed()} of {total} failed job(s) "
                                   "queued again")
    if form.get("scope") == "all":  # forget all: one DEL per queue (queue/failed.py)
        return back(request, form, f"{queue.flush_failed()} failed job(s) forgotten")
    else:
        chosen = _selected(form)
        if not chosen or len(chosen) != len(form.getlist("job")):
            return back(request, form, "no failed job selected" if not form.getlist("job")
                        else "malformed job (QUEUE/ID expected): nothing done")
        found = (sources.failed_job(queue, q, i) for q, i in chosen)
        records = [r for r in found if r is not None]
        if not records:
            return back(request, form, "no such failed job: nothing done")
    done = 0
    for record in records:
        if what == "forget":
            done += queue.forget_failed(record["queue"], record["id"])
        else:
            done += queue.retry_failed(record)
    verb = "queued again" if what == "retry" else "forgotten"
    return back(request, form, f"{done} of {len(records)} failed job(s) {verb}")


async def queue_pause(request: Request, form: FormData) -> Response:
    try:
        name = check_queue_name(form.get("queue"))
    except ValueError:
        return back(request, form, "bad queue name")
    client = request.app.state.queue.client
    if form.get("action") == "continue":
        resume(client, name)
        return back(request, form, f"queue {name}: continued on every host")
    pause(client, name)
    return back(request, form, f"queue {name}: paused on every host")


async def scale(request: Request, form: FormData) -> Response:
    master, program = form.get("master"), form.get("program")
    try:
        numprocs = int(str(form.get("numprocs", "")))
    except ValueError:
        numprocs = -1
    if not (isinstance(master, str) and master and isinstance(program, str) and program):
        return back(request, form, "scale needs a master and a program")
    if not 0 <= numprocs <= MAX_NUMPROCS:
        return back(request, form, f"numprocs must be a whole number from 0 to {MAX_NUMPROCS}")
    refused = sources.scale_refusal(request.app.state.queue, master, program)
    if refused is not None:
        return back(request, form, refused)
    sources.send_scale(request.app.state.queue, master, program, numprocs)
    return back(request, form, f"{program} on {master}: scale to {numprocs} sent")


async def login_page(request: Request) -> Response:
    return pages.render(request, "login.html")


async def login(request: Request, form: FormData) -> Response:
    guard = request.app.state.guard
    given = form.get("token")
    if not isinstance(given, str) or not guard.token_ok(given.strip()):
        return pages.render(request, "login.html", status=401, failed=True)
    response = RedirectResponse("/", 303)
    response.set_cookie(AUTH_COOKIE, guard.sign("auth", request.state.session),
                        httponly=True, samesite="strict", path="/")
    return response


async def logout(request: Request, form: FormData) -> Response:
    response = RedirectResponse("/login", 303)
    response.delete_cookie(AUTH_COOKIE, path="/")
    return response


ROUTES = [
    Route("/login", login_page, methods=["GET"], name="login_page"),
    Route("/login", checked(login), methods=["POST"], name="login"),
    Route("/logout", checked(logout), methods=["POST"], name="logout"),
    Route("/actions/failed", checked(failed_act), methods=["POST"], name="failed_act"),
    Route("/actions/pause", checked(queue_pause), methods=["POST"], name="pause"),
    Route("/actions/scale", checked(scale), methods=["POST"], name="scale"),
]

"""The dashboard's pages: GET only, and none of them changes anything.

Each handler reads what it shows through sources.py and renders one template; the
overview's live part is also served alone (/part/overview) for htmx to refresh it.
Handlers are plain functions: Starlette runs them in its thread pool, so a slow Redis
read (a day of charts over many queues) does not hold up other requests.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from supervisor_q.queue.keys import check_queue_name
from supervisor_q.web import sources

RANGES = {"hour": 60, "day": 1440}


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    """A template with what every page needs: the CSRF token, a flash message."""
    guard = request.app.state.guard
    context.update(request=request, csrf=guard.csrf_token(request.state.session),
                   message=request.query_params.get("msg", "")[:300],
                   token_required=guard.token is not None)
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                        status_code=status)


def unauthorized(request: Request) -> Response:
    return render(request, "login.html", status=401)


def ago(stamp: float | None) -> str:
    """Seconds since an epoch time, short ('12s', '5m', '3h'); '-' for none."""
    if not stamp:
        return "-"
    return duration(max(0.0, time.time() - float(stamp)))


def when(stamp: float | None) -> str:
    """An epoch time as UTC, to the second."""
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(stamp)))


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _overview_context(request: Request) -> dict[str, Any]:
    queue = request.app.state.queue
    return {"masters": sources.fleet(queue), "queues": sources.queue_rows(queue),
            "duration": duration}


def overview(request: Request) -> Response:
    return render(request, "overview.html", **_overview_context(request))


def overview_part(request: Request) -> Response:
    return render(request, "overview_part.html", **_overview_context(request))


def queue_detail(request: Request) -> Response:
    try:
        name = check_queue_name(request.path_params["name"])
    except ValueError:
        return render(request, "missing.html", status=404, what="queue")
    queue = request.app.state.queue
    rows = sources.queue_rows(queue, [name])
    failed, failed_total = sources.failed_jobs(queue, name)
    return render(request, "queue.html", row=rows[0], duration=duration,
                  failed=failed, failed_total=failed_total,
                  jobs=sources.recent_jobs(queue, name, 20))


def failed_list(request: Request) -> Response:
    """?page=N: 100 per page, newest first."""
    text = request.query_params.get("page", "1")
    page = int(text) if text.isdigit() and 0 < len(text) < 7 and int(text) > 0 else 1
    failed, total = sources.failed_jobs(request.app.state.queue, page=page)
    pages = max(1, -(-total // sources.FAILED_PAGE))
    return render(request, "failed.html", failed=failed, total=total, page=min(page, pages),
                  pages=pages)


def failed_detail(request: Request) -> Response:
    queue_name, job_id = request.path_params["queue"], request.path_params["job_id"]
    record = sources.failed_job(request.app.state.queue, queue_name, job_id)
    if record is None:
        return render(request, "missing.html", status=404, what="failed job")
    return render(request, "failed_job.html", job=record)


def batch_list(request: Request) -> Response:
    return render(request, "batches.html", batches=sources.batches(request.app.state.queue))


def job_list(request: Request) -> Response:
    wanted = request.query_params.get("id", "").strip()
    if wanted:
        # the shown form (\\xNN, \\n) as typed: the job page looks it up either way
        return RedirectResponse(f"/jobs/{quote(wanted, safe='')}", 303)
    return render(request, "jobs.html", jobs=sources.recent_jobs(request.app.state.queue))


def job_page(request: Request) -> Response:
    job = sources.job_detail(request.app.state.queue, request.path_params["job_id"])
    if job is None:
        return render(request, "missing.html", status=404, what="job")
    return render(request, "job.html", job=job)


def series(request: Request) -> Response:
    """Chart data as JSON: ?queue=Q (or all) &range=hour|day."""
    minutes = RANGES.get(request.query_params.get("range", "hour"), 60)
    name = request.query_params.get("queue") or None
    return JSONResponse(sources.cached_series(request.app.state.series_cache,
                                              request.app.state.queue, name, minutes))


ROUTES = [
    Route("/", overview, name="overview"),
    Route("/part/overview", overview_part, name="overview_part"),
    Route("/queues/{name}", queue_detail, name="queue"),
    Route("/failed", failed_list, name="failed"),
    Route("/failed/{queue}/{job_id:path}", failed_detail, name="failed_job"),
    Route("/batches", batch_list, name="batches"),
    Route("/jobs", job_list, name="jobs"),
    Route("/jobs/{job_id:path}", job_page, name="job"),
    Route("/api/series", series, name="series"),
]

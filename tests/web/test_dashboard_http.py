"""The dashboard over HTTP (Starlette's TestClient on a real Redis database): pages, the
token, CSRF, escaping, and the actions' effect in Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

from supervisor_q.fleet import inbox
from supervisor_q.queue.pauses import paused_queues
from supervisor_q.web.security import BindRefused, check_bind
from tests.helpers import wait_until
from tests.web.dashboard import client_for, csrf_of, failed_job, fake_master

TOKEN = "t0ken-for-the-tests-0123456789"


def test_overview_shows_masters_programs_and_queue_depths(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    fake_master(queue, "h1:1:aa", "emails")
    failed_job(queue, "app:send")
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-program="emails"' in page.text and "h1:1:aa" in page.text
    assert 'data-queue="default"' in page.text
    assert '<td class="failed">1</td>' in page.text
    assert client.get("/part/overview").text.count('data-program="emails"') == 1


def test_non_loopback_bind_needs_a_token(redis_url: str) -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", TOKEN)
    try:
        check_bind("0.0.0.0", None)
    except BindRefused as exc:
        assert "without --token-file" in str(exc)
    else:
        raise AssertionError("a non-loopback bind without a token was accepted")
    run = subprocess.run([sys.executable, "-m", "supervisor_q", "dashboard", "--bind",
                          "0.0.0.0:1"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("supervisor-q dashboard: refusing")
    assert "Traceback" not in run.stderr


def test_a_port_in_use_is_one_clear_line(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "supervisor_q", "dashboard", "--bind",
                              f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "address already in use" in run.stderr and "Traceback" not in run.stderr


def test_without_a_token_only_loopback_hosts_are_served(redis_url: str) -> None:
    client, _ = client_for(redis_url)
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"Host": "localhost:8787"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example:8787"}).status_code == 421
    with_token, _ = client_for(redis_url, TOKEN)
    assert with_token.get("/", headers={"Host": "dash.example",
                                        "Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_token_by_bearer_or_login_form(redis_url: str) -> None:
    client, _ = client_for(redis_url, TOKEN)
    assert client.get("/").status_code == 401
    assert client.get("/failed").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    login = client.get("/login")
    csrf = csrf_of(login.text)
    bad = client.post("/login", data={"csrf": csrf, "token": "nope"})
    assert bad.status_code == 401 and client.get("/").status_code == 401
    good = client.post("/login", data={"csrf": csrf, "token": TOKEN})
    assert good.status_code == 303
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/").status_code == 200


def test_posts_need_the_sessions_csrf_token(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    csrf = csrf_of(client.get("/").text)
    assert client.post("/actions/pause", data={"queue": "q1"}).status_code == 403
    assert client.post("/actions/pause", data={"queue": "q1", "csrf": "0" * 64}).status_code \
        == 403
    other, _ = client_for(redis_url)
    other_csrf = csrf_of(other.get("/").text)
    assert client.post("/actions/pause",
                       data={"queue": "q1", "csrf": other_csrf}).status_code == 403
    assert paused_queues(queue.client) == frozenset()
    assert client.get("/actions/pause").status_code == 405, "GET never changes state"
    done = client.post("/actions/pause", data={"queue": "q1", "csrf": csrf, "next": "/"})
    assert done.status_code == 303 and paused_queues(queue.client) == {"q1"}
    client.post("/actions/pause", data={"queue": "q1", "csrf": csrf, "action": "continue"})
    assert paused_queues(queue.client) == frozenset()


def test_user_data_is_rendered_escaped(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    evil = "<script>alert(1)</script>"
    job_id = failed_job(queue, f"app:{evil}", exception=f"ValueError: {evil}")
    fake_master(queue, f"h1:{evil}", evil)
    for path in ("/", "/failed", f"/failed/default/{job_id}", f"/jobs/{job_id}",
                 "/queues/default"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


def test_failed_jobs_retry_one_forget_selected_and_all(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    ids = [failed_job(queue, "app:job") for _ in range(4)]
    csrf = csrf_of(client.get("/failed").text)
    one = client.post("/actions/failed", data={"csrf": csrf, "action": "retry",
                                               "job": f"default/{ids[0]}", "next": "/failed"})
    assert one.status_code == 303 and "1+of+1" in one.headers["location"]
    assert queue.counts("default")["ready"] == 1
    client.post("/actions/failed", data={"csrf": csrf, "action": "forget",
                                         "job": [f"default/{ids[1]}", f"default/{ids[2]}"]})
    assert [r["id"] for r in queue.failed_records()] == [ids[3]]
    client.post("/actions/failed", data={"csrf": csrf, "action": "forget", "scope": "all"})
    assert queue.failed_records() == []


def test_failed_list_pages_newest_first(redis_url: str) -> None:
    """250 failed jobs: three pages of at most 100, each job on exactly one, links
    between them; the queue page shows the newest 100 and links to the rest."""
    client, queue = client_for(redis_url)
    ids = [failed_job(queue, "app:job") for _ in range(250)]
    pages = [client.get(f"/failed?page={n}").text for n in (1, 2, 3)]
    assert "Failed jobs (250)" in pages[0] and "page 1 of 3" in pages[0]
    shown = [{i for i in ids if i in page} for page in pages]
    assert [len(s) for s in shown] == [100, 100, 50]
    assert set.union(*shown) == set(ids)
    assert "?page=2" in pages[0] and "?page=2" in pages[2] and "?page=4" not in pages[2]
    assert "page 1 of 3" in client.get("/failed?page=x").text  # a bad page: the first
    queue_page = client.get("/queues/default").text
    assert "Failed jobs (250, the newest 100" in queue_page


def test_scale_goes_to_the_masters_inbox(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    fake_master(queue, "h1:1:aa", "emails")
    csrf = csrf_of(client.get("/").text)
    sent = client.post("/actions/scale", data={"csrf": csrf, "master": "h1:1:aa",
                                               "program": "emails", "numprocs": "3"})
    assert sent.status_code == 303
    assert inbox.take(queue.client, "h1:1:aa") == [("scale", {"program": "emails",
                                                              "numprocs": 3})]
    client.post("/actions/scale", data={"csrf": csrf, "master": "h1:1:aa",
                                        "program": "emails", "numprocs": "-2"})
    assert inbox.take(queue.client, "h1:1:aa") == [], "a bad size is refused, not sent"


def test_nonsense_actions_get_a_clear_error(redis_url: str) -> None:
    """The trial: a scale for a master that is not live said "sent"; a retry with no or
    malformed job ids said "0 of 0 queued again"."""
    client, queue = client_for(redis_url)
    fake_master(queue, "h1:1:aa", "emails")
    csrf = csrf_of(client.get("/").text)
    for master, program, expected in (("h9:9:zz", "emails", "is+not+live"),
                                      ("h1:1:aa", "nope", "runs+no+program+nope")):
        sent = client.post("/actions/scale", data={"csrf": csrf, "master": master,
                                                   "program": program, "numprocs": "3"})
        assert expected in sent.headers["location"], sent.headers["location"]
        assert inbox.take(queue.client, master) == []
    for jobs, expected in (([], "no+failed+job+selected"), (["no-slash"], "malformed+job"),
                           (["default/no-such-id"], "no+such+failed+job")):
        answer = client.post("/actions/failed", data={"csrf": csrf, "action": "retry",
                                                      "scope": "selected", "job": jobs})
        assert expected in answer.headers["location"], answer.headers["location"]


def test_batches_and_job_search(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    job_id = failed_job(queue, "app:job")
    found = client.get("/jobs", params={"id": job_id})
    assert found.status_code == 303
    assert client.get(found.headers["location"]).status_code == 200
    assert client.get("/jobs/no-such-id").status_code == 404
    assert client.get("/batches").status_code == 200


def test_sigterm_stops_the_dashboard_with_exit_code_0(redis_url: str) -> None:
    """uvicorn shuts down on SIGTERM and then raises the signal again with the handler it
    found: the dashboard's exit is clean (0), not "killed by signal 15" in a master's log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                             "dashboard", "--bind", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def serving() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status > 0
            except OSError:
                return proc.poll() is not None  # ends the wait; the assertion below says why
        wait_until(serving, timeout=20, message="the dashboard serves")
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

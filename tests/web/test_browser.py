"""The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`),
driven by selenium, against a real master running example-like programs on the test's
Redis, with the dashboard itself as one of its command programs (as in conf.d/)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue
from tests.helpers import wait_until
from tests.masters import Master

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
                       reason="headless browser test: needs Debian's chromium and "
                              "chromium-driver (apt-get install chromium chromium-driver; "
                              ".ci/run does this as root)"),
]
WORKER = """\
queues: [{queue}]
import: [tests.jobmods.basic]
numprocs: 1
tries: 1
startsecs: 0.2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="sq-chromium-") as profile:
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        driver.implicitly_wait(0)
        try:
            yield driver
        finally:
            driver.quit()


def push(queue: RedisQueue, name: str, queue_name: str) -> str:
    p = payloads.build(name, queue_name, [], {})
    queue.push(queue_name, p.id, payloads.encode(p))
    return p.id


def shows(driver: object, url: str, css: str, text: str | None = None) -> bool:
    """Load url; True when an element matching css (containing text) is on the page."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return any(text is None or text in e.text for e in found)


def test_dashboard_in_a_real_browser(short_tmp: Path, redis_url: str, browser: object) -> None:
    from selenium.webdriver.common.by import By

    queue = RedisQueue(redis.Redis.from_url(redis_url))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    for _ in range(3):
        push(queue, "tests.noop", "images")  # no worker: a depth of 3
    failing = push(queue, "tests.boom", "emails")
    programs = {"emails": WORKER.format(queue="emails"),
                "dashboard": f"command: python -m supervisor_q dashboard --bind "
                             f"127.0.0.1:{port}\nstartsecs: 1\n"}
    with Master(short_tmp, redis_url, programs) as master:
        master.wait_running("emails", 1)
        wait_until(lambda: queue.counts("emails")["failed"] == 1, timeout=15,
                   message="the boom job failed")
        wait_until(lambda: _answers(base), timeout=20, message=f"dashboard up: {master.tail()}")
        # overview: the programs and a queue depth
        wait_until(lambda: shows(browser, base + "/", 'tr.program[data-program="emails"]'),
                   timeout=15, interval=0.5, message="emails program on the overview")
        assert browser.find_elements(By.CSS_SELECTOR, 'tr.program[data-program="dashboard"]')
        [images] = browser.find_elements(By.CSS_SELECTOR, 'tr.queue[data-queue="images"] .ready')
        assert images.text == "3"
        # scale emails to 0 from its row: nothing takes the job retried below
        scale(browser, "emails", 0)
        wait_until(lambda: master.program("emails")["state"] == "stopped", timeout=10,
                   message="emails scaled to 0")
        # open the failed job, retry it: it leaves the failed list
        browser.get(base + "/failed")
        browser.find_element(By.LINK_TEXT, failing).click()
        assert "RuntimeError: boom" in browser.find_element(By.CSS_SELECTOR, "pre").text
        browser.find_element(By.ID, "retry").click()
        wait_until(lambda: "1 of 1 failed job(s) queued again" in browser.page_source,
                   timeout=10)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Failed jobs (0)"
        assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-id="{failing}"]')
        # pause the emails queue from its row, scale back to 1: the worker leaves it
        browser.get(base + "/")
        browser.find_element(
            By.CSS_SELECTOR, 'tr.queue[data-queue="emails"] button[value="pause"]').click()
        wait_until(lambda: "paused on every host" in browser.page_source, timeout=10)
        scale(browser, "emails", 1)
        master.wait_running("emails", 1, timeout=10)
        _stays_ready(queue, "emails", 2.5)  # paused: no worker takes it
        # continue the queue: the worker takes the job (which fails again)
        browser.find_element(
            By.CSS_SELECTOR, 'tr.queue[data-queue="emails"] button[value="continue"]').click()
        wait_until(lambda: queue.counts("emails")["ready"] == 0, timeout=10,
                   message="the worker takes the job once continued")
        # the charts: the master's metrics flush (every 5 s) feeds the per-minute series
        wait_until(lambda: _chart_drawn(browser, base), timeout=15, interval=0.2,
                   message="a uPlot chart on the overview")


def scale(browser: object, program: str, numprocs: int) -> None:
    """Set the program's size in its overview row and press Scale."""
    from selenium.webdriver.common.by import By

    row = f'tr.program[data-program="{program}"]'
    field = browser.find_element(By.CSS_SELECTOR, f'{row} input[name="numprocs"]')
    field.clear()
    field.send_keys(str(numprocs))
    browser.find_element(By.CSS_SELECTOR, f"{row} button").click()
    wait_until(lambda: f"scale to {numprocs} sent" in browser.page_source, timeout=10)


def _chart_drawn(browser: object, base: str) -> bool:
    """Load the overview, wait for its chart script to finish (it fetches after load and
    marks <body data-charts="done">); True if it drew a chart."""
    from selenium.webdriver.common.by import By

    browser.get(base + "/")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, 'body[data-charts="done"]'),
               timeout=5, message="the chart script ran")
    return bool(browser.find_elements(By.CSS_SELECTOR, ".chart .uplot canvas"))


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _stays_ready(queue: RedisQueue, name: str, seconds: float) -> None:
    """A negative check, so bounded by time: the job stays ready for seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert queue.counts(name)["ready"] == 1, "a worker took a job of a paused queue"
        time.sleep(0.1)

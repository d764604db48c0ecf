"""Example jobs for the programs in conf.d/: what a real application's jobs module looks like."""

from __future__ import annotations

import logging
import random
import time

from supervisor_q import current_job, job

log = logging.getLogger("examples.demo_jobs")


@job(queue="emails", tries=3, timeout=30, backoff=[2, 10])
def send_welcome(user_id: int) -> None:
    """Pretend to send an email; fails now and then to show retries."""
    time.sleep(random.uniform(0.01, 0.2))
    ctx = current_job()
    if random.random() < 0.05:
        raise ConnectionError("smtp server hung up")
    log.info("welcome mail sent to user %s (attempt %s)", user_id, ctx.attempts if ctx else "?")


@job(queue="images", timeout=120)
def resize_image(path: str, width: int = 800) -> None:
    """Pretend to resize an image: CPU for a little while."""
    deadline = time.monotonic() + random.uniform(0.2, 1.0)
    while time.monotonic() < deadline:
        sum(range(1000))
    log.info("resized %s to %dpx", path, width)

"""Webhook delivery off the master loop: one daemon thread, a bounded queue, a short
timeout per POST. `send` never blocks: a full queue drops the notification (logged once
until the queue has room again). A failing or slow URL is logged once per episode (when
it starts failing, and when it works again); only its scheme and host are logged, since
webhook URLs (Slack's, for one) carry their secret in the path.

The thread starts with the first notification that has somewhere to go, so a master
without webhooks has none. Imports nothing of supervisor_q.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("supervisor_q.alerts")

TIMEOUT = 3.0  # seconds per POST, connect and read each
CAPACITY = 100  # notifications waiting for the thread


def redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebhookSender:
    def __init__(self, timeout: float = TIMEOUT, capacity: int = CAPACITY) -> None:
        self.timeout = timeout
        self.queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(capacity)
        self.thread: threading.Thread | None = None
        self.failing: set[str] = set()  # URLs whose last POST failed (touched by the thread)
        self.overflowing = False

    def send(self, urls: Iterable[str], body: dict[str, Any]) -> None:
        """Queue body for each URL; returns at once."""
        data = json.dumps(body).encode()
        for url in urls:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="sq-webhooks",
                                               daemon=True)
                self.thread.start()
            try:
                self.queue.put_nowait((url, data))
                self.overflowing = False
            except queue.Full:
                if not self.overflowing:
                    self.overflowing = True
                    log.warning("alerts: webhook queue full (%d waiting): notifications "
                                "dropped until it drains", self.queue.maxsize)

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            self._post(*item)

    def _post(self, url: str, data: bytes) -> None:
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "supervisor-q"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                reply.read(65536)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if url not in self.failing:
                self.failing.add(url)
                log.warning("alerts: webhook %s failed (%s); not logged again until it "
                            "works", redacted(url), str(exc)[:200])
            return
        if url in self.failing:
            self.failing.discard(url)
            log.info("alerts: webhook %s works again", redacted(url))

    def close(self, wait: float = 1.0) -> None:
        """At the master's exit: what is queued gets up to `wait` seconds."""
        if self.thread is None:
            return
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            return
        self.thread.join(wait)

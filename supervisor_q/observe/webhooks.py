"""Webhook delivery: a JSON POST with a short timeout, a failing URL logged once per
episode (when it starts failing, and when it works again), and the loop of the process
that delivers them (master/hookproc.py forks it and feeds it JSON lines over a pipe, so
the master loop never waits on a webhook and never runs a thread). Only a URL's scheme
and host are logged: webhook URLs (Slack's, for one) carry their secret in the path.
Imports nothing of supervisor_q.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import urllib.request
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("supervisor_q.alerts")

TIMEOUT = 3.0  # seconds per POST, connect and read each


def redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class Delivery:
    """POSTs bodies; remembers which URLs are failing, to log each episode once."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.failing: set[str] = set()

    def post(self, url: str, body: dict[str, Any]) -> bool:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "supervisor-q"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                reply.read(65536)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if url not in self.failing:
                self.failing.add(url)
                log.warning("alerts: webhook %s failed (%s); not logged again until it "
                            "works", redacted(url), " ".join(str(exc).split())[:200])
            return False
        if url in self.failing:
            self.failing.discard(url)
            log.info("alerts: webhook %s works again", redacted(url))
        return True


def serve(read_fd: int, timeout: float = TIMEOUT) -> None:
    """The delivery process' loop: one JSON line {"urls": [...], "body": {...}} per
    notification, until EOF (the master closed its end, or died)."""
    delivery = Delivery(timeout)
    buffer = b""
    while chunk := os.read(read_fd, 65536):
        lines = (buffer + chunk).split(b"\n")
        buffer = lines.pop()
        for line in lines:
            try:
                message = json.loads(line)
                urls, body = message["urls"], message["body"]
            except (ValueError, KeyError, TypeError):
                continue
            for url in urls:
                delivery.post(url, body)

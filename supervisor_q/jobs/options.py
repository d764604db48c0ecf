"""JobOptions: a job's declared settings, carried in each payload and published to Redis
for dispatch by name from processes that cannot import the job (registry.py).

Imports only the payload module (the default queue).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor_q.queue.payload import DEFAULT_QUEUE


@dataclass(frozen=True)
class JobOptions:
    """Per-job settings carried in each payload; None means the program's setting."""

    queue: str = DEFAULT_QUEUE
    tries: int | None = None
    timeout: float | None = None
    backoff: tuple[int, ...] | None = None
    # epoch seconds, or a callable returning them, evaluated at each dispatch; beats tries
    retry_until: float | Callable[[], float] | None = None
    retry_for: float | None = None  # seconds from dispatch; the relative retry_until
    max_exceptions: int | None = None
    fail_on_timeout: bool = False
    delay: float = 0.0
    middleware: tuple[Any, ...] = ()  # see middleware.py / controls.py
    encrypted: bool = False  # args, kwargs and extras stored encrypted (encryption.py)
    unique_for: float | None = None  # seconds; set = unique job (unique.acquire_unique)
    unique_id: Callable[..., Any] | None = None  # (*args, **kwargs) -> id; default: none
    unique_until: str = "finished"  # or "processing": when the unique lock is freed
    keep_result: float | None = None  # seconds its JSON return value is kept (job lookup)
    # (reason, *args, **kwargs) once the job failed for good (worker/lifecycle.failed)
    on_failure: Callable[..., Any] | None = None

    def retry_deadline(self, dispatched_at: float) -> float | None:
        """The epoch retry_until of a job dispatched at dispatched_at (None: tries rule)."""
        if self.retry_for is not None:
            return dispatched_at + self.retry_for
        if callable(self.retry_until):
            return float(self.retry_until())
        return self.retry_until

    def declared(self) -> dict[str, Any]:
        """The JSON-able options, as workers publish them for dispatch by name elsewhere.
        A callable retry_until or middleware cannot cross processes and is left out;
        unique_id says only whether a function computes the unique id."""
        return {"queue": self.queue, "tries": self.tries, "timeout": self.timeout,
                "backoff": list(self.backoff) if self.backoff is not None else None,
                "retry_until": None if callable(self.retry_until) else self.retry_until,
                "retry_for": self.retry_for, "max_exceptions": self.max_exceptions,
                "fail_on_timeout": self.fail_on_timeout, "delay": self.delay,
                "encrypted": self.encrypted, "unique_for": self.unique_for,
                "unique_id": self.unique_id is not None, "unique_until": self.unique_until}

    @classmethod
    def from_declared(cls, body: dict[str, Any]) -> JobOptions:
        """Options from a published declaration (see declared())."""
        backoff = body.get("backoff")
        return cls(queue=str(body.get("queue") or DEFAULT_QUEUE), tries=body.get("tries"),
                   timeout=body.get("timeout"),
                   backoff=tuple(backoff) if isinstance(backoff, list) and backoff else None,
                   retry_until=body.get("retry_until"), retry_for=body.get("retry_for"),
                   max_exceptions=body.get("max_exceptions"),
                   fail_on_timeout=bool(body.get("fail_on_timeout")),
                   delay=float(body.get("delay") or 0.0),
                   encrypted=bool(body.get("encrypted")), unique_for=body.get("unique_for"),
                   unique_until=str(body.get("unique_until") or "finished"))

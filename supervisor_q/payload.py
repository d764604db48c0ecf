"""The JSON job payload: build it at dispatch, parse and validate it in the worker.

JSON only, never pickle: a payload names a job by string and carries plain data.
Imports nothing else from the package.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_VERSION = 1


class MalformedPayload(ValueError):
    """A payload that is not valid JSON or lacks required fields."""


class NotSerialisable(TypeError):
    """Job arguments that JSON cannot carry."""


@dataclass(frozen=True)
class Payload:
    """A decoded payload. Options left None fall back to the program's settings."""

    id: str
    job: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    tries: int | None = None
    backoff: list[int] | None = None
    retry_until: float | None = None
    max_exceptions: int | None = None
    fail_on_timeout: bool = False
    dispatched_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # chain, batch, middleware state


def new_job_id() -> str:
    return str(uuid.uuid4())


def encode(payload: Payload) -> str:
    """Compact JSON whose head is {"v":1,"timeout":N — the reserve script reads it there."""
    body: dict[str, Any] = {"v": PAYLOAD_VERSION, "timeout": payload.timeout,
                            "id": payload.id, "job": payload.job, "queue": payload.queue,
                            "args": payload.args, "kwargs": payload.kwargs, "attempts": 0,
                            "tries": payload.tries, "backoff": payload.backoff,
                            "retry_until": payload.retry_until,
                            "max_exceptions": payload.max_exceptions,
                            "fail_on_timeout": payload.fail_on_timeout,
                            "dispatched_at": payload.dispatched_at}
    if payload.extra:
        body["extra"] = payload.extra
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotSerialisable(
            f"arguments of {payload.job} must be JSON-serialisable "
            f"(str, int, float, bool, None, list, dict): {exc}"
        ) from None


def build(job: str, queue: str, args: tuple | list, kwargs: dict, *, timeout: float | None = None,
          tries: int | None = None, backoff: list[int] | None = None,
          retry_until: float | None = None, max_exceptions: int | None = None,
          fail_on_timeout: bool = False, extra: dict | None = None,
          job_id: str | None = None) -> Payload:
    return Payload(id=job_id or new_job_id(), job=job, queue=queue, args=list(args),
                   kwargs=dict(kwargs), timeout=timeout, tries=tries, backoff=backoff,
                   retry_until=retry_until, max_exceptions=max_exceptions,
                   fail_on_timeout=fail_on_timeout, dispatched_at=time.time(),
                   extra=dict(extra or {}))


_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "timeout": (int, float), "tries": (int,), "backoff": (list,), "retry_until": (int, float),
    "max_exceptions": (int,),
}


def decode(raw: str | bytes) -> Payload:
    """Parse and validate; raise MalformedPayload with a reason a person can act on."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedPayload(f"payload is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedPayload("payload is not a JSON object")
    missing = [name for name in ("id", "job", "queue") if not isinstance(body.get(name), str)]
    if missing:
        raise MalformedPayload(f"payload lacks required string field(s): {', '.join(missing)}")
    args = body.get("args", [])
    kwargs = body.get("kwargs", {})
    if not isinstance(args, list):
        raise MalformedPayload("payload field 'args' must be a list")
    if not isinstance(kwargs, dict):
        raise MalformedPayload("payload field 'kwargs' must be an object")
    for name, types in _OPTIONAL_TYPES.items():
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise MalformedPayload(f"payload field '{name}' has the wrong type")
    extra = body.get("extra") or {}
    if not isinstance(extra, dict):
        raise MalformedPayload("payload field 'extra' must be an object")
    return Payload(id=body["id"], job=body["job"], queue=body["queue"], args=args, kwargs=kwargs,
                   timeout=body.get("timeout"), tries=body.get("tries"),
                   backoff=body.get("backoff"), retry_until=body.get("retry_until"),
                   max_exceptions=body.get("max_exceptions"),
                   fail_on_timeout=bool(body.get("fail_on_timeout", False)),
                   dispatched_at=float(body.get("dispatched_at") or 0.0), extra=extra)


def peek(raw: str | bytes) -> dict[str, Any]:
    """Best-effort fields of a possibly broken payload, for failed records."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}

"""The JSON job payload: build it at dispatch, parse and validate it in the worker.

JSON only, never pickle: a payload names a job by string and carries plain data.
Imports only keys (the queue-name rule), ids (the shown form of ids) and flowstate (the
shape of a chain's and a batch's state in extra) from the package.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from supervisor_q.queue import flowstate, ids
from supervisor_q.queue.flowstate import MAX_SECONDS
from supervisor_q.queue.keys import check_queue_name

PAYLOAD_VERSION = 2  # 1: every field written; 2: defaults left out (same keys)
# Longest job id a worker runs: ids travel in every report line to the master, which
# must stay short (dispatch makes 36-character UUIDs). Longer ids are failed.
MAX_ID_LENGTH = 1024


def delay_ms(seconds: float) -> int:
    """A delay as the scripts take it, in whole ms, within 0..MAX_SECONDS (a job's own
    release(delay) is not checked before it gets here)."""
    return max(0, int(min(seconds, MAX_SECONDS) * 1000)) if seconds == seconds else 0


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


# The variant nibble of a UUID4 (RFC 4122: binary 10xx) for each random hex digit.
UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_job_id() -> str:
    """A random UUID4 in the text form of str(uuid.uuid4()), built from os.urandom
    without a UUID object (half the time)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def encode(payload: Payload) -> str:
    """Compact JSON (version 2): only the fields that differ from their defaults. A job
    with a timeout starts {"v":2,"timeout":N (the reserve script reads it there); one
    without starts {"id": (no "v": version 1 always wrote one). The keys are version
    1's, so a worker that reads version 1 reads this too: its decode() already took a
    missing field as its default (README, "Deploys")."""
    body: dict[str, Any] = {}
    if payload.timeout is not None:
        body.update(v=PAYLOAD_VERSION, timeout=payload.timeout)
    body.update(id=payload.id, job=payload.job, queue=payload.queue)
    for name, value in (("args", payload.args), ("kwargs", payload.kwargs),
                        ("tries", payload.tries), ("backoff", payload.backoff),
                        ("retry_until", payload.retry_until),
                        ("max_exceptions", payload.max_exceptions),
                        ("fail_on_timeout", payload.fail_on_timeout),
                        ("dispatched_at", payload.dispatched_at), ("extra", payload.extra)):
        if value is not None and value is not False and value != _EMPTY.get(name):
            body[name] = value
    return _dumps(body, payload.job)


# A field equal to its default is left out of the payload (None and False always are).
_EMPTY: dict[str, Any] = {"args": [], "kwargs": {}, "extra": {}, "dispatched_at": 0.0}


def encode_v1(payload: Payload) -> str:
    """The full version-1 form (every field, nulls and defaults included), as releases
    before the compact payload wrote it: for tests and bench/payload_memory.py."""
    body: dict[str, Any] = {"v": 1, "timeout": payload.timeout,
                            "id": payload.id, "job": payload.job, "queue": payload.queue,
                            "args": payload.args, "kwargs": payload.kwargs, "attempts": 0,
                            "tries": payload.tries, "backoff": payload.backoff,
                            "retry_until": payload.retry_until,
                            "max_exceptions": payload.max_exceptions,
                            "fail_on_timeout": payload.fail_on_timeout,
                            "dispatched_at": payload.dispatched_at}
    if payload.extra:
        body["extra"] = payload.extra
    return _dumps(body, payload.job)


# One encoder for every payload: json.dumps with these arguments would build a new one
# per call. Its output is json.dumps(value, separators=(",", ":"), allow_nan=False)'s.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def to_json(value: Any, job: str) -> str:
    """value as a payload writes it; NotSerialisable (naming job) when JSON cannot."""
    return _dumps(value, job)


def _dumps(body: Any, job: str) -> str:
    try:
        return _ENCODER.encode(body)
    except RecursionError:
        raise NotSerialisable(f"arguments of {job} are nested too deeply for JSON") \
            from None
    except (TypeError, ValueError) as exc:
        raise NotSerialisable(
            f"arguments of {job} must be JSON-serialisable "
            f"(str, int, float, bool, None, list, dict): {exc}"
        ) from None


DEFAULT_QUEUE = "default"  # the queue of a job that names none


def build(job: str, queue: str, args: tuple | list, kwargs: dict, *, timeout: float | None = None,
          tries: int | None = None, backoff: list[int] | None = None,
          retry_until: float | None = None, max_exceptions: int | None = None,
          fail_on_timeout: bool = False, extra: dict | None = None,
          job_id: str | None = None) -> Payload:
    """A new payload; ValueError for a queue name no program could declare."""
    return Payload(id=job_id or new_job_id(), job=job, queue=check_queue_name(queue),
                   args=list(args), kwargs=dict(kwargs), timeout=timeout, tries=tries,
                   backoff=backoff,
                   retry_until=retry_until, max_exceptions=max_exceptions,
                   fail_on_timeout=fail_on_timeout,
                   dispatched_at=round(time.time(), 3),
                   extra=dict(extra or {}))


_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "timeout": (int, float), "tries": (int,), "backoff": (list,), "retry_until": (int, float),
    "max_exceptions": (int,), "dispatched_at": (int, float),
}


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; 1e400 would be inf: refused as NaN is
    (a Python call per such number only: integers and strings stay in the C scanner)."""
    value = float(text)
    if value in _INFINITIES:
        raise ValueError("number out of range")
    return value


_INFINITIES = (math.inf, -math.inf)

# One decoder for every payload: json.loads(..., parse_constant=...) builds a new one
# per call, which cost as much as parsing a small payload.
_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_decode_json = _decoder.decode
# Its C scanner alone: decode() is two Python calls and two whitespace matches around it.
_scan = _decoder.scan_once


def _loads(raw: str | bytes) -> Any:
    """json.loads that raises only ValueError: NaN/Infinity are refused (not JSON), so is
    a number too large for a float (1e400); nesting too deep for the parser and an
    integer too long for int() are one-line ValueErrors too."""
    try:
        if isinstance(raw, str):  # bytes that were not UTF-8 arrive surrogate-escaped
            raw.encode("utf-8")
            try:
                body, end = _scan(raw, 0)
            except StopIteration:  # not a value at 0 (e.g. whitespace): decode() says
                end = -1
            if end == len(raw):  # one value, nothing around it: as decode() returns it
                return body
            return _decode_json(raw)  # whitespace around it, or not JSON: decode's verdict
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeError:
        raise ValueError("not UTF-8") from None
    except ValueError as exc:  # int()'s limit (4300 digits) advises set_int_max_str_digits
        if "int_max_str_digits" in str(exc):
            raise ValueError("integer too long") from None
        raise


# The fields of a payload without options (what most dispatches write): such a payload
# is checked field by field here, without the general path's look at every option.
# "extra" (a chain's, a batch's or middleware's state) is checked to be an object, and
# its chain, chain_catch and batch id (when it has any) to be of the shape they are
# written in (flowstate.py); middleware's state is its own business.
_PLAIN_FIELDS = frozenset(("id", "job", "queue", "args", "kwargs", "dispatched_at", "extra"))


def _plain(body: dict[str, Any]) -> Payload | None:
    """body as a Payload when it has only _PLAIN_FIELDS, each of its right type; None
    for the general path (which says what is wrong, if anything)."""
    job_id, job, queue = body.get("id"), body.get("job"), body.get("queue")
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    at, extra = body.get("dispatched_at", 0.0), body.get("extra", _NO_EXTRA)
    if not (type(job_id) is str and type(job) is str and type(queue) is str
            and type(args) is list and type(kwargs) is dict and type(extra) is dict
            and (type(at) is float and math.isfinite(at) or type(at) is int)):
        return None
    if extra is _NO_EXTRA:
        extra = {}  # each payload its own: lifecycle code may add to it
    else:
        _check_flow(extra)
    return Payload(job_id, job, queue, args, kwargs, dispatched_at=float(at), extra=extra)


_NO_EXTRA: dict[str, Any] = {}


def _check_flow(extra: dict[str, Any]) -> None:
    """MalformedPayload when extra's chain, chain_catch or batch id has a wrong shape."""
    if CHAIN in extra or BATCH in extra or CATCH in extra:
        try:
            flowstate.check(extra)
        except ValueError as exc:
            raise MalformedPayload(f"payload field {exc}") from None


CHAIN, CATCH, BATCH = flowstate.CHAIN, flowstate.CATCH, flowstate.BATCH


def decode(raw: str | bytes) -> Payload:
    """Parse and validate; raise MalformedPayload with a reason a person can act on."""
    try:
        body = _loads(raw)
    except ValueError as exc:
        raise MalformedPayload(f"payload is not valid JSON: {exc}") from None
    if type(body) is dict and body.keys() <= _PLAIN_FIELDS:
        plain = _plain(body)
        if plain is not None:
            return plain
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
    _check_limits(body)
    extra = body.get("extra") or {}
    if not isinstance(extra, dict):
        raise MalformedPayload("payload field 'extra' must be an object")
    _check_flow(extra)
    return Payload(id=body["id"], job=body["job"], queue=body["queue"], args=args, kwargs=kwargs,
                   timeout=body.get("timeout"), tries=body.get("tries"),
                   backoff=body.get("backoff"), retry_until=body.get("retry_until"),
                   max_exceptions=body.get("max_exceptions"),
                   fail_on_timeout=bool(body.get("fail_on_timeout", False)),
                   dispatched_at=float(body.get("dispatched_at") or 0.0), extra=extra)


def _check_limits(body: dict[str, Any]) -> None:
    """Values the worker and the master compute deadlines and retries from must be sane:
    a timeout of 0, -1 or 1e300 would switch the hard timeout off, tries of -1 would
    fail the job as out of attempts before it ran."""
    tries, max_exceptions = body.get("tries"), body.get("max_exceptions")
    if tries is not None and tries < 1:  # (as @job(tries=) is refused below 1)
        raise MalformedPayload("payload field 'tries' must be a whole number >= 1")
    if max_exceptions is not None and max_exceptions < 0:
        raise MalformedPayload("payload field 'max_exceptions' must be a whole number >= 0")
    timeout = body.get("timeout")
    if timeout is not None and not 0 < timeout < MAX_SECONDS:
        raise MalformedPayload("payload field 'timeout' must be a positive number of seconds")
    backoff = body.get("backoff")
    if backoff is not None and not all(
            isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < MAX_SECONDS
            for b in backoff):
        raise MalformedPayload("payload field 'backoff' must list seconds >= 0")
    for name in ("retry_until", "dispatched_at"):
        value = body.get(name)
        if value is not None and not math.isfinite(value):
            raise MalformedPayload(f"payload field '{name}' must be a finite number")


# The first "job" key of a payload: the job's name in every payload encode() writes (it
# comes before args, kwargs and extra), found without parsing. Inside a JSON string a
# quote is always escaped, so the pattern only meets keys.
_JOB_NAME = re.compile(r'"job":"([^"\\]*)"')


def job_name_of(raw: str) -> str | None:
    """The job's name read off the raw payload, or None (none there, or escaped): a hint
    for the worker before decode(), which alone is authoritative."""
    found = _JOB_NAME.search(raw)
    return found.group(1) if found else None


def peek(raw: str | bytes) -> dict[str, Any]:
    """Best-effort fields of a possibly broken payload, for failed records."""
    try:
        body = _loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def printable(text: str, limit: int | None = None) -> str:
    """text as a person or a strict JSON parser can take it: bytes that were not UTF-8
    (kept in ids and payloads as surrogate escapes) shown as \\xNN; cut at limit."""
    try:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that came from a JSON \\udXXX escape
        shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(shown) > limit:
        return shown[:limit] + f"... ({len(shown)} characters)"
    return shown


def loggable(value: object, limit: int = 200) -> str:
    """A job id, name, queue or reason from a payload, for a log line: printable(), cut
    at limit, and on one line (control characters escaped)."""
    if isinstance(value, str) and len(value) <= limit and value.isascii() and value.isprintable():
        return value  # (a usual id or name: nothing to escape, checked in C)
    text = printable(value, limit) if isinstance(value, str) else str(value)
    return text.translate(ids.CONTROLS)


def from_printable(shown: str) -> str:
    """The id printable() or loggable() showed (\\xNN, \\n...), back to the string that
    names it in Redis: ids.unshown(), the one rule of queue/ids.py."""
    return ids.unshown(shown)

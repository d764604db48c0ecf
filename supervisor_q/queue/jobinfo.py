"""Job lookup: where a job is and what became of it, by id (`supervisor-q job ID`).

The state comes from the queue's own keys (payload, reserved, delayed, attempts, the
failed store) plus three kept for lookup only, all in the queue's hash tag:
`running` (the worker and the reservation time, written by the RESERVE script from the
worker's fragment), and `recent`/`recent_records` (done records, written by the ack in
the same script call: no extra round trip per job). Done records are forgotten after
their keep time, and at most `cap` are kept per queue (trimmed in the ack, and both keys
expire when a queue goes quiet). A job is found without its queue by asking every queue
of `sq:queues` (HEXISTS, single-key commands only, so it works on Redis Cluster).
Imports keys, lua, ids and payload.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import redis

from supervisor_q.queue import lua
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.ids import candidates, raw, shown, text
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys

DEFAULT_KEEP = 3600.0  # seconds a finished job stays findable (program key keep_jobs)
DEFAULT_CAP = 10_000  # most done records kept per queue (program key keep_jobs_max)
MAX_RESULT = 65_536  # characters of a kept result's JSON; a longer one is an error
STATES = ("queued", "delayed", "running", "released", "done", "failed")
LISTED_STATES = ("running", "done", "failed")  # what recent_jobs can list


class Done(NamedTuple):
    """A finished job to ack with its done record (kept keep_ms, 0 = not kept)."""

    id: str
    keep_ms: int
    record: str


def ack_args(items: Any) -> list:
    """Three script arguments per finished job: id, keep ms, record ('' = none)."""
    out: list = []
    for item in items:
        if isinstance(item, Done):
            out += [raw(item.id), item.keep_ms, item.record]
        else:
            out += [raw(item), 0, ""]
    return out


def who(host: str, pid: int) -> str:
    """The worker as the JSON fragment RESERVE writes into each running entry."""
    return json.dumps({"host": host, "pid": pid}, separators=(",", ":"))[1:-1]


def result_fields(value: Any, keep: float, now: float) -> dict[str, Any]:
    """A job's return value as kept in its done record; a value JSON cannot carry (or
    too large) becomes an error string, never an exception."""
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return {"result_error": f"not JSON-serialisable: {type(exc).__name__}: {exc}"[:500]}
    if len(encoded) > MAX_RESULT:
        return {"result_error": f"result too large to keep ({len(encoded)} characters)"}
    return {"result": value, "result_until": now + keep}


@dataclass(frozen=True)
class JobStatus:
    """What is known of one job. Times are epoch seconds; runtime is seconds so far (a
    running job) or in all (a done one)."""

    id: str
    queue: str
    state: str  # one of STATES
    name: str | None = None
    attempts: int = 0
    exceptions: int = 0
    dispatched_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    runtime: float | None = None
    due_at: float | None = None  # a delayed or released job's next run
    host: str | None = None
    pid: int | None = None
    exception: str | None = None  # why it failed, with its traceback when there was one
    result: Any = None  # the kept return value (@job(keep_result=...)), else None
    result_error: str | None = None
    chain: tuple[str, ...] | None = None  # jobs of its chain still to run after it
    batch: str | None = None  # the id of its batch

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["id"] = shown(self.id)
        body["chain"] = list(self.chain) if self.chain is not None else None
        return body


def _membership(extra: Any) -> dict[str, Any]:
    if not isinstance(extra, dict):
        return {}
    out: dict[str, Any] = {}
    chain = extra.get("chain")
    if isinstance(chain, list):
        out["chain"] = tuple(str(s.get("job")) for s in chain if isinstance(s, dict))
    if isinstance(extra.get("batch"), str):
        out["batch"] = extra["batch"]
    return out


def _json(value: bytes | None) -> dict[str, Any]:
    return payloads.peek(text(value)) if value is not None else {}


def _num(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def _from_payload(job_id: str, queue: str, info: list, now: float) -> JobStatus:
    body = _json(info[1])
    attempts = int(info[4] or 0)
    run = _json(info[6])
    if info[2] is not None:
        state, due = "running", None
    else:
        due = float(info[3]) / 1000 if info[3] is not None else None
        state = "released" if attempts > 0 else ("delayed" if due is not None else "queued")
    started = _num(run.get("reserved_at"))
    started = started / 1000 if started is not None else None
    return JobStatus(job_id, queue, state, name=body.get("job"), attempts=attempts,
                     exceptions=int(info[5] or 0), dispatched_at=_num(body.get("dispatched_at")),
                     started_at=started, due_at=due, host=run.get("host"), pid=run.get("pid"),
                     runtime=now - started if state == "running" and started else None,
                     **_membership(body.get("extra")))


def _from_failed(job_id: str, queue: str, record: dict[str, Any]) -> JobStatus:
    body = payloads.peek(record.get("payload") or "")
    reason, trace = record.get("reason"), record.get("exception")
    shown = f"{reason}\n{trace}" if reason and trace else (reason or trace)
    pid = record.get("pid")  # where and when it ran: the worker's, when it started it
    return JobStatus(job_id, queue, "failed", name=record.get("job") or body.get("job"),
                     attempts=int(record.get("attempts") or 0),
                     exceptions=int(_num(record.get("exceptions")) or 0),
                     dispatched_at=_num(body.get("dispatched_at")),
                     started_at=_num(record.get("started_at")), runtime=_num(record.get("runtime")),
                     host=record.get("host") if isinstance(record.get("host"), str) else None,
                     pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                     ended_at=_num(record.get("failed_at")), exception=shown,
                     **_membership(body.get("extra")))


def _from_done(job_id: str, queue: str, record: dict[str, Any], now: float) -> JobStatus:
    started, ended = _num(record.get("started_at")), _num(record.get("ended_at"))
    keep_result = (_num(record.get("result_until")) or 0) > now
    chain = record.get("chain")
    return JobStatus(job_id, queue, "done", name=record.get("job"),
                     attempts=int(record.get("attempts") or 0),
                     dispatched_at=_num(record.get("dispatched_at")), started_at=started,
                     ended_at=ended, runtime=ended - started if started and ended else None,
                     host=record.get("host"), pid=record.get("pid"),
                     result=record.get("result") if keep_result else None,
                     result_error=record.get("result_error"),
                     chain=tuple(chain) if isinstance(chain, list) else None,
                     batch=record.get("batch"))


def status_in(client: redis.Redis, queue: str, job_id: str) -> JobStatus | None:
    """The job's status in one queue (one script call, one instant), or None."""
    k = QueueKeys(queue)
    info = client.register_script(lua.JOB_INFO)(
        keys=[k.payloads, k.reserved, k.delayed, k.attempts, k.exceptions, k.running,
              k.recent, k.recent_records, k.failed_records], args=[raw(job_id)])
    now = int(info[0]) / 1000
    if info[1] is not None:
        return _from_payload(job_id, queue, info, now)
    if info[9] is not None:
        return _from_failed(job_id, queue, _json(info[9]))
    if info[8] is not None and info[7] is not None and int(info[7]) / 1000 > now:
        return _from_done(job_id, queue, _json(info[8]), now)
    return None


def queues_holding(client: redis.Redis, job_id: str) -> list[str]:
    """The known queues that hold anything of job_id (one HEXISTS per key and queue,
    pipelined; single-key commands, so a cluster pipeline splits them by node)."""
    queues = sorted(text(q) for q in client.smembers(QUEUES_KEY))
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        k = QueueKeys(queue)
        for key in (k.payloads, k.failed_records, k.recent_records):
            pipe.hexists(key, raw(job_id))
    found = pipe.execute() if queues else []
    return [q for i, q in enumerate(queues) if any(found[3 * i:3 * i + 3])]


def job_status(client: redis.Redis, job_id: bytes | str,
               queue: str | None = None) -> JobStatus | None:
    """Where job_id is and what became of it, or None if no queue knows it (never
    queued, or finished longer ago than it is kept). job_id is the stored id (bytes or
    str) or its shown form (ids.shown: \\xNN, \\n...), as commands and pages print it."""
    for each in candidates(job_id):
        for name in [queue] if queue is not None else queues_holding(client, each):
            found = status_in(client, name, each)
            if found is not None:
                return found
    return None


def _queue_recent(client: redis.Redis, queue: str, limit: int, state: str | None,
                  now: float) -> list[JobStatus]:
    """Up to limit of one queue's running, done and failed jobs (commands on one hash
    tag each)."""
    k = QueueKeys(queue)
    out: list[JobStatus] = []
    if state in (None, "running"):
        running = client.hgetall(k.running)
        ids = list(running)
        held = client.zmscore(k.reserved, ids) if ids else []
        for job_id, score in zip(ids, held, strict=True):
            if score is not None:
                found = status_in(client, queue, text(job_id))
                out += [found] if found is not None and found.state == "running" else []
    if state in (None, "done"):
        # newest first: the forget-at score is the end time plus the (common) keep time
        ids = client.zrevrangebyscore(k.recent, "+inf", int(now * 1000), start=0, num=limit)
        records = client.hmget(k.recent_records, ids) if ids else []
        out += [_from_done(text(i), queue, _json(r), now)
                for i, r in zip(ids, records, strict=True) if r is not None]
    if state in (None, "failed"):
        ids = client.zrevrange(k.failed, 0, limit - 1)
        records = client.hmget(k.failed_records, ids) if ids else []
        out += [_from_failed(text(i), queue, _json(r))
                for i, r in zip(ids, records, strict=True) if r is not None]
    return out


def recent_jobs(client: redis.Redis, queue: str | None = None, limit: int = 50,
                state: str | None = None) -> list[JobStatus]:
    """The newest running, done and failed jobs (of one queue, or of every known queue),
    newest first (by end, else start); state narrows to one of LISTED_STATES. Each
    command touches one queue's keys, so it works on Redis Cluster."""
    if state is not None and state not in LISTED_STATES:
        raise ValueError(f"state must be one of {', '.join(LISTED_STATES)}")
    if limit < 1:
        return []
    queues = [queue] if queue is not None else sorted(
        text(q) for q in client.smembers(QUEUES_KEY))
    now = _server_now(client)
    found = [s for q in queues for s in _queue_recent(client, q, limit, state, now)]
    found.sort(key=lambda s: s.ended_at or s.started_at or 0.0, reverse=True)
    return found[:limit]


def _server_now(client: redis.Redis) -> float:
    """Epoch seconds by the server's clock (the clock done records expire by)."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000

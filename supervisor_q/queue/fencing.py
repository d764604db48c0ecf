"""Reservation tokens (fencing): which reservation a worker's ack, release or fail is for.

A worker names its holder at reserve: "<master id>|<pid>.<random>", where the master id
comes from SUPERVISOR_Q_MASTER_ID (set by a fleet master for the children it forks, and
to "work:<random>" by a standalone `work`'s guard for its worker: worker/boot.py).
RESERVE stores "<holder>|<attempts>" per job (lua._FENCE) and this mixin keeps the
same token per reserved job, so the ack, release and fail of that job pass it back: once
the reservation expired or a dead-declared master's jobs were handed back, they delete
and move nothing, and the stale ack is logged. A mixin of
RedisQueue (backend.py). Imports keys, lua, ids, jobinfo and payload (loggable).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence

import redis
from redis.commands.core import Script

from supervisor_q import procid
from supervisor_q.queue import lua
from supervisor_q.queue.ids import raw as _raw
from supervisor_q.queue.jobinfo import Done
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys
from supervisor_q.queue.payload import loggable

log = logging.getLogger("supervisor_q.queue")

MASTER_ID_ENV = "SUPERVISOR_Q_MASTER_ID"


class Fencing:
    """Tokens of the jobs this process reserved, keyed by (queue, id)."""

    client: redis.Redis
    _tokens: dict[tuple[str, str], str]
    # (queue, id) of acks sent again because the reply of the call that carried them was
    # lost: finding such a job gone most likely means that first call did land.
    resent: set[tuple[str, str]]
    _holder: tuple[int, str]  # (pid, holder) so a forked child names itself afresh

    def keys(self, queue: str) -> QueueKeys:
        raise NotImplementedError

    def script(self, source: str) -> Script:
        raise NotImplementedError

    def holder(self) -> str:
        """This process's holder name (made once per process)."""
        pid = procid.pid()
        if self._holder[0] != pid:
            self._tokens = {}
            self._holder = (pid, f"{os.environ.get(MASTER_ID_ENV, '')}|{pid}."
                                 f"{secrets.token_hex(3)}")
        return self._holder[1]

    def remember(self, queue: str, job_id: str, attempts: int) -> None:
        self._tokens[(queue, job_id)] = f"{self.holder()}|{attempts}"

    def adopt(self, queue: str, job_id: str, holder: str) -> bool:
        """Take over the token of a dead worker's reservation of job_id, named by its
        holder ("<master id>|<pid>."), so this process's release or fail of the job is
        fenced as the worker's own would be. False when another holder's token holds it
        now; True, adopting nothing, when the job carries no token."""
        token = self.client.hget(self.keys(queue).holders, _raw(job_id))
        if token is None:
            return True
        text = token.decode() if isinstance(token, bytes) else str(token)
        if not text.startswith(holder):
            return False
        self._tokens[(queue, job_id)] = text
        return True

    def token(self, queue: str, job_id: str) -> str:
        """The token of our reservation of job_id ('' when we did not reserve it)."""
        return self._tokens.get((queue, job_id), "")

    def forget(self, queue: str, *job_ids: str) -> None:
        for job_id in job_ids:
            self._tokens.pop((queue, job_id), None)

    def ack_args(self, queue: str, items: Sequence[str | Done]) -> list:
        """Four script arguments per finished job, as ACK and RESERVE take them: id,
        token, ms its done record is kept (0 = none), done record ('' = none)."""
        out: list = []
        for item in items:
            job_id, keep_ms, record = item if isinstance(item, Done) else (item, 0, "")
            out += [_raw(job_id), self.token(queue, job_id), keep_ms, record]
        return out

    def stale_acks(self, queue: str, items: Sequence[str | Done], acked: int) -> None:
        """Log acks that deleted nothing: the reservation was no longer ours. The tokens
        are kept until then, so a later release or fail of a lost job is fenced too."""
        if acked == len(items) and not self.resent:  # all landed (the usual case)
            self.forget(queue, *(item.id if isinstance(item, Done) else item
                                 for item in items))
            return
        job_ids = [item.id if isinstance(item, Done) else item for item in items]
        again = self.resent and [j for j in job_ids if (queue, j) in self.resent]
        if again:
            self.resent.difference_update((queue, j) for j in again)
        if acked == len(job_ids):
            self.forget(queue, *job_ids)
        elif again and len(again) == len(job_ids):
            self.forget(queue, *job_ids)
            log.info("ack of job %s sent again after a lost reply found it gone: the first "
                     "one landed", ", ".join(loggable(j, 100) for j in job_ids[:5]))
        else:
            shown = ", ".join(loggable(j, 100) for j in job_ids[:5])
            log.warning("stale ack ignored on queue %s (job %s): its reservation expired or "
                        "was handed back, so the job is left to the worker that holds it now",
                        queue, shown)

    def reclaim_unknown(self, queues: Sequence[str]) -> int:
        """Make ready again the jobs this process holds on queues without knowing it: a
        RESERVE that ran while its reply was lost to a connection fault. Called once a
        Redis outage ends; otherwise such a job would wait for its reservation to expire."""
        prefix = f"{self.holder()}|"
        return sum(self._hand_back(queue, prefix, [_raw(job_id) for (q, job_id)
                                                   in self._tokens if q == queue])
                   for queue in queues)

    def hand_back_held(self, master_prefix: str) -> int:
        """Make every job reserved by holders named master_prefix ("<master id>|") ready
        again, its attempt given back, on every known queue; how many were."""
        return sum(self._hand_back(raw.decode() if isinstance(raw, bytes) else str(raw),
                                   master_prefix)
                   for raw in self.client.smembers(QUEUES_KEY))

    def _hand_back(self, queue: str, prefix: str, keep: Sequence[bytes] = ()) -> int:
        """HAND_BACK_HELD on one queue: its jobs held under prefix, but those in keep."""
        k = self.keys(queue)
        return int(self.script(lua.HAND_BACK_HELD)(
            keys=[k.ready, k.notify, k.reserved, k.attempts, k.enqueued, k.holders],
            args=[prefix, *keep]))

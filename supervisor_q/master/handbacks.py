"""The jobs of reaped children, settled in Redis (worker/handback.py: released or failed):
at once while Redis answers, else kept until the master's probe finds it back, so a
Redis that hangs never stalls the loop on a dead child's job. Kept ones are bounded
(MAX_KEPT); one left over waits for its reservation to expire, as before.
A child that stopped itself at its fleet lease's end (exit FENCED, worker/fence.py) gets
every job it held handed back by its holder name, attempt given back; so does one killed
by a signal, for the jobs it held besides the one it ran (settled first).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import deque

import redis

from supervisor_q import exitcodes
from supervisor_q.config.loading import WorkerProgram
from supervisor_q.master.process import ChildProcess
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.faults import Gate
from supervisor_q.queue.payload import loggable
from supervisor_q.worker import handback

log = logging.getLogger("supervisor_q.arbiter")

MAX_KEPT = 1000  # settles waiting for Redis; the oldest beyond is left to expiry


class Handbacks:
    def __init__(self, queue: RedisQueue, gate: Gate) -> None:
        self.queue = queue
        self.gate = gate
        self.kept: deque[tuple[str, WorkerProgram, handback.Handback]] = deque()

    def reaped(self, child: ChildProcess, program: WorkerProgram,
               back: handback.Handback | None, status: int) -> None:
        """A reaped worker child: its job (back), or for a fenced child all it held.
        Either is settled only while the child's own reservation holds it (its holder
        name: the master id it was forked under and its pid), never a job a fleet claim
        handed back and another worker reserved since."""
        holder = f"{child.master_id}|{child.pid}."
        fenced = os.WIFEXITED(status) and os.WEXITSTATUS(status) == exitcodes.FENCED
        # Killed by a signal, it handed nothing back itself: the jobs it had reserved but
        # not started (prefetched, fetched ahead) go back at once, attempt given back,
        # instead of waiting for their reservations to expire.
        sweep = os.WIFSIGNALED(status) and bool(child.master_id)
        if fenced and child.master_id:  # (never empty in a fleet master)
            job = back.job if back is not None else handback.LostJob("", "")
            back = handback.Handback(job, back.attempts if back else 0, "fenced",
                                     "stopped at its fleet lease's end", holder)
        elif back is not None:
            back = dataclasses.replace(back, holder=holder, sweep=sweep)
        elif sweep:  # no job running: what it held was not started
            back = handback.Handback(handback.LostJob("", ""), 0, "idle",
                                     f"killed by signal {os.WTERMSIG(status)}", holder)
        if back is not None:
            self.add(child.name, program, back)

    def add(self, name: str, program: WorkerProgram, back: handback.Handback) -> None:
        """A reaped child's job: settled now, or once Redis answers again."""
        self.kept.append((name, program, back))
        if len(self.kept) > MAX_KEPT:
            old_name, _, old = self.kept.popleft()
            log.warning("%s: job %s left to its reservation's expiry (%d settles wait for "
                        "Redis)", old_name, loggable(old.job.id), MAX_KEPT)
        if not self.gate.open:
            log.warning("%s: job %s (%s) interrupted (%s, %s): settled once Redis answers",
                        name, loggable(back.job.id), loggable(back.job.name), back.why,
                        back.how)
        self.settle()

    def settle(self) -> None:
        """Settle the kept jobs in order while Redis is open; a fault keeps the rest."""
        while self.kept and self.gate.open:
            name, program, back = self.kept[0]
            try:
                done = handback.attempt(self.queue, program, back)
            except redis.RedisError as exc:
                if self.gate.fault(exc, log, "handback"):
                    continue  # kept; the gate is closed now
                done = "left to reservation expiry"
            self.kept.popleft()
            if not back.job.id:  # fenced or idle: what it held, no job of its own
                if not done.startswith(f"{back.why}: 0 "):
                    log.warning("%s: %s (%s): %s", name, back.how, back.why, loggable(done, 400))
                continue
            log.warning("%s: job %s (%s) interrupted (%s, %s): %s", name, loggable(back.job.id),
                        loggable(back.job.name), back.why, back.how, loggable(done, 400))

"""worker/fence.py with real forks: the lease a parent renews is what its forked child
reads, and a fenced child ends with FENCED, its process group's other members killed."""

from __future__ import annotations

import os
import subprocess
import time

import psutil

from supervisor_q import exitcodes
from supervisor_q.worker import fence
from tests.helpers import wait_until


def test_a_forked_child_reads_the_deadline_its_parent_renews_later() -> None:
    lease = fence.Lease()
    assert lease.until() == 0.0 and not lease.expired()  # no lease yet: no fence
    read_fd, write_fd = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: wait for the parent's renewal, report what it reads
        os.read(go_r, 1)
        os.write(write_fd, f"{lease.until()} {lease.expired()}".encode())
        os._exit(0)
    until = fence.now() - 1.0  # already past, so expired
    lease.renew(until)
    os.write(go_w, b"x")
    seen = os.read(read_fd, 100).decode().split()
    os.waitpid(pid, 0)
    assert float(seen[0]) == until and seen[1] == "True"
    lease.renew(fence.now() + 60)
    assert not lease.expired()
    for fd in (read_fd, write_fd, go_r, go_w):
        os.close(fd)


def test_a_held_job_past_the_fence_ends_its_worker_and_the_jobs_subprocesses() -> None:
    lease = fence.Lease()
    lease.renew(fence.now() + 0.3)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker child: its own group, a job with a subprocess, held
        try:
            os.setpgid(0, 0)
            helper = subprocess.Popen(["sleep", "600"])
            os.write(write_fd, str(helper.pid).encode())
            fence.watch(lease, lambda: True)
            time.sleep(30)  # the job: the watchdog must end it
        finally:
            os._exit(1)
    helper = int(os.read(read_fd, 20))
    started = time.monotonic()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == exitcodes.FENCED
    assert time.monotonic() - started < 5
    wait_until(lambda: not psutil.pid_exists(helper)
               or psutil.Process(helper).status() == psutil.STATUS_ZOMBIE, timeout=5,
               message="the job's subprocess was killed with it")
    os.close(read_fd)
    os.close(write_fd)

"""Pool policy over a fake spawner: no processes, every decision checked step by step."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest

from supervisor_q import exitcodes
from supervisor_q.config.schema import CommandProgram, WorkerProgram
from supervisor_q.master.deadlines import KILL_GRACE, TERM_GRACE
from supervisor_q.master.pool import FATAL_RETRY, Pool
from supervisor_q.master.process import State
from supervisor_q.master.spawn import Spawned


def exited(code: int) -> int:
    return code << 8


def killed(sig: int) -> int:
    return sig


class FakeSpawner:
    """Hands out made-up pids and records signals; forks nothing."""

    def __init__(self) -> None:
        self.next_pid = 1000
        self.spawned: list[tuple[str, int]] = []
        self.kills: list[tuple[int, int]] = []

    def spawn(self, program, child, paused) -> Spawned:
        self.next_pid += 1
        self.last = child
        self.spawned.append((child.name, self.next_pid))
        return Spawned(self.next_pid, self.next_pid, None)

    def kill(self, pgid: int, sig: int) -> None:
        self.kills.append((pgid, sig))

    def ready(self, pool, now) -> bool:
        return True


def worker(**overrides) -> WorkerProgram:
    base = {"name": "emails", "queues": ["emails"], "startsecs": 1, "startretries": 3,
            "stopwaitsecs": 10}
    return WorkerProgram.model_validate({**base, **overrides})


@pytest.fixture
def spawner() -> FakeSpawner:
    return FakeSpawner()


class ReadyPool(Pool):
    """Children report ready as soon as they are spawned (the import succeeded)."""

    def _spawn(self, child, now, reason) -> None:
        super()._spawn(child, now, reason)
        self.child_ready(child, None)


def make_pool(spawner: FakeSpawner, target: int = 2, **overrides) -> Pool:
    return ReadyPool(worker(**overrides), spawner, target=target)


def test_tick_spawns_up_to_target_in_numbered_slots(spawner) -> None:
    pool = make_pool(spawner, 3)
    pool.tick(0.0)
    assert [name for name, _ in spawner.spawned] == ["emails#1", "emails#2", "emails#3"]
    assert {c.state for c in pool.children} == {State.STARTING}
    pool.tick(1.0)
    assert {c.state for c in pool.children} == {State.RUNNING}
    pool.tick(2.0)
    assert len(spawner.spawned) == 3, "nothing more once at target"


@pytest.mark.parametrize("code", sorted(exitcodes.EXPECTED))
def test_expected_exits_are_replaced_at_once_and_never_count(spawner, code) -> None:
    pool = make_pool(spawner, 1)
    pool.tick(0.0)
    [child] = pool.children
    pool.reaped(child, exited(code), 0.2)  # even within startsecs
    assert child.state is State.EXITED and child.failures == 0
    pool.tick(0.3)
    assert len(spawner.spawned) == 2


def test_quick_failures_back_off_then_fatal_then_retry_later(spawner) -> None:
    pool = make_pool(spawner, 1, startretries=3)
    now = 0.0
    pool.tick(now)
    [child] = pool.children
    delays = []
    for attempt in range(1, 4):
        pool.reaped(child, exited(1), now + 0.1)
        if attempt < 3:
            assert child.state is State.BACKOFF
            retry_at = pool.run_of(child).retry_at
            delays.append(retry_at - (now + 0.1))
            pool.tick(retry_at - 0.01)
            assert len(spawner.spawned) == attempt, "no respawn before the backoff is over"
            now = retry_at
            pool.tick(now)
            assert child.state is State.STARTING
    assert child.state is State.FATAL
    assert delays[1] >= delays[0] * 0.9, "backoff grows (jittered)"
    fatal_at = now + 0.1
    pool.tick(fatal_at + FATAL_RETRY - 1)
    assert len(spawner.spawned) == 3
    pool.tick(fatal_at + FATAL_RETRY)
    assert child.state is State.STARTING and len(spawner.spawned) == 4


def test_worker_is_running_only_after_its_ready_report(spawner) -> None:
    """A slow import that then fails is a failed start, however long it took."""
    pool = Pool(worker(), spawner, target=1)
    pool.tick(0.0)
    pool.tick(5.0)
    [child] = pool.children
    assert child.state is State.STARTING, "no ready report yet"
    pool.reaped(child, exited(exitcodes.BOOT_ERROR), 5.1)
    assert child.state is State.BACKOFF
    retry_at = pool.run_of(child).retry_at
    pool.tick(retry_at)
    assert child.state is State.STARTING
    pool.child_ready(child, 123.0)
    pool.tick(retry_at + 1.0)
    assert child.state is State.RUNNING and child.generation == 123.0


def test_crash_of_a_running_child_is_replaced_and_its_job_handed_back(spawner) -> None:
    pool = make_pool(spawner, 1)
    pool.tick(0.0)
    pool.tick(2.0)
    [child] = pool.children
    pool.job_started(child, "job-1", "tests.segfault", "emails", 30.0, 1, 2.5)
    back = pool.reaped(child, killed(signal.SIGSEGV), 3.0)
    assert back is not None and back.why == "lost" and back.job.id == "job-1"
    assert back.attempts == 1 and "signal 11" in back.how
    assert child.state is State.EXITED
    pool.tick(3.0)
    assert len(spawner.spawned) == 2


def test_scale_down_stops_idle_children_first_then_kills_after_stopwaitsecs(spawner) -> None:
    pool = make_pool(spawner, 3, stopwaitsecs=10)
    pool.tick(0.0)
    pool.tick(2.0)
    busy = pool.children[0]
    pool.job_started(busy, "j", "n", "emails", 60.0, 1, 2.0)
    pool.target = 1
    pool.tick(3.0)
    stopping = [c for c in pool.children if c.state is State.STOPPING]
    assert busy not in stopping and len(stopping) == 2
    assert sorted(spawner.kills) == sorted((c.pgid, signal.SIGTERM) for c in stopping)
    spawner.kills.clear()
    pool.tick(12.9)
    assert spawner.kills == []
    pool.tick(13.0)
    assert sorted(spawner.kills) == sorted((c.pgid, signal.SIGKILL) for c in stopping)


def test_deadline_escalates_sigterm_then_sigkill_and_hands_back_as_timeout(spawner) -> None:
    pool = make_pool(spawner, 1)
    pool.tick(0.0)
    [child] = pool.children
    pool.job_started(child, "j", "stuck", "emails", 5.0, 2, 1.0)
    pool.enforce_deadlines(6.0 + TERM_GRACE - 0.01)
    assert spawner.kills == []
    pool.enforce_deadlines(6.0 + TERM_GRACE)
    assert spawner.kills == [(child.pgid, signal.SIGTERM)]
    pool.enforce_deadlines(6.0 + TERM_GRACE + KILL_GRACE)
    assert spawner.kills[-1] == (child.pgid, signal.SIGKILL)
    back = pool.reaped(child, killed(signal.SIGKILL), 8.0)
    assert back.why == "timeout" and back.attempts == 2
    assert child.state is State.EXITED, "a timeout kill is no crash"


def test_reaped_children_are_never_signalled(spawner) -> None:
    pool = make_pool(spawner, 1)
    pool.tick(0.0)
    [child] = pool.children
    pool.job_started(child, "j", "n", "emails", 1.0, 1, 0.0)
    pool.reaped(child, exited(0), 0.5)
    pool.enforce_deadlines(100.0)
    pool.signal_all(signal.SIGUSR1)
    pool.signal(child, signal.SIGKILL)
    assert spawner.kills == []


def test_command_program_without_autorestart_stays_down(spawner) -> None:
    program = CommandProgram.model_validate(
        {"name": "once", "command": "true", "autorestart": False, "startsecs": 0})
    pool = Pool(program, spawner, target=1)
    pool.tick(0.0)
    pool.tick(0.1)
    [child] = pool.children
    pool.reaped(child, exited(0), 0.2)
    for moment in (0.3, 5.0, 100.0):
        pool.tick(moment)
    assert len(spawner.spawned) == 1


def test_unexpected_exit_restarts_command_with_autorestart_unexpected(spawner) -> None:
    program = CommandProgram.model_validate(
        {"name": "c", "command": "true", "autorestart": "unexpected", "startsecs": 0,
         "exitcodes": [0]})
    pool = Pool(program, spawner, target=1)
    pool.tick(0.0)
    pool.tick(0.1)
    pool.reaped(pool.children[0], exited(2), 0.2)
    pool.tick(0.3)
    assert len(spawner.spawned) == 2
    pool.tick(0.5)
    pool.reaped(pool.children[0], exited(0), 0.6)
    pool.tick(0.7)
    assert len(spawner.spawned) == 2, "an expected exit stays down"


def test_start_retries_a_fatal_program_at_once(spawner) -> None:
    pool = make_pool(spawner, 1, startretries=1)
    pool.tick(0.0)
    [child] = pool.children
    pool.reaped(child, exited(1), 0.1)
    assert child.state is State.FATAL
    pool.retry_fatal_now(0.2)
    pool.tick(0.2)
    assert child.state is State.STARTING


def test_lifecycle_mode_decides_what_the_tick_keeps(spawner) -> None:
    pool = make_pool(spawner, 2)
    pool.tick(0.0)
    pool.stop(1.0)
    assert pool.mode == "stopped" and pool.want == 0 and pool.target == 2
    assert all(c.state is State.STOPPING for c in pool.children)
    pool.start(2.0)
    assert pool.mode == "running" and pool.want == 2
    pool.remove(3.0)
    pool.start(4.0)  # a removed program stays removed
    assert pool.mode == "removing" and pool.want == 0


def test_scale_to_and_scale_by_set_an_override_the_next_update_applies(spawner) -> None:
    now = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    pool = make_pool(spawner, 0, numprocs=2)
    pool.update_target(now, None)
    assert (pool.target, pool.target_reason) == (2, "numprocs")
    pool.stop(0.0)
    pool.scale_to(5, now)  # `scale` also starts a stopped pool
    pool.update_target(now, None)
    assert (pool.want, pool.target_reason) == (5, "manual scale")
    pool.scale_by(-1, now)
    pool.update_target(now, None)
    assert pool.target == 4
    pool.reconfigure(worker(numprocs=3), 1.0)  # a reload re-applies the config
    pool.update_target(now, None)
    assert (pool.target, pool.target_reason) == (3, "numprocs")


def test_a_restart_keeps_slot_numbers_rolling_for_workers(spawner) -> None:
    """A worker's replacement starts at once (no gap) in its predecessor's slot."""
    pool = make_pool(spawner, 2)
    pool.tick(0.0)
    pool.tick(1.0)
    old = list(pool.children)
    pool.restart(2.0)
    pool.tick(2.0)
    assert [name for name, _ in spawner.spawned[2:]] == ["emails#1", "emails#2"]
    for child in old:
        assert child.state is State.STOPPING
        pool.reaped(child, exited(0), 3.0)
    pool.tick(3.0)
    assert sorted(c.name for c in pool.children) == ["emails#1", "emails#2"]
    assert len(spawner.spawned) == 4


def test_a_restart_of_a_command_program_is_stop_then_start_in_the_same_slot(spawner) -> None:
    """Its successor (same {process_num}, same port) starts only once it has exited."""
    program = CommandProgram.model_validate(
        {"name": "web", "command": "true", "startsecs": 0, "numprocs": 2})
    pool = Pool(program, spawner, target=2)
    pool.tick(0.0)
    pool.tick(0.1)
    first, second = pool.children
    pool.restart(1.0)
    pool.tick(1.0)
    assert len(spawner.spawned) == 2, "nothing starts while the old ones run"
    pool.reaped(first, exited(0), 1.5)
    pool.tick(1.5)
    assert [name for name, _ in spawner.spawned[2:]] == ["web#1"]
    pool.reaped(second, exited(0), 2.0)
    pool.tick(2.0)
    assert [name for name, _ in spawner.spawned[2:]] == ["web#1", "web#2"]

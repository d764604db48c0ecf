"""State machine, ChildProcess record, backoff and exit reasons (pure, no processes)."""

from __future__ import annotations

import itertools
import logging
import os
import signal

import pytest

from supervisor_q.master.process import (
    ALIVE_STATES,
    ALLOWED,
    DEAD_STATES,
    SIGNALLABLE_STATES,
    STOPPABLE_STATES,
    ChildProcess,
    CurrentJob,
    InvalidTransition,
    State,
    backoff_delay,
    exit_reason,
)

# The whole contract, spelled out once more so a change to ALLOWED must be a
# deliberate change to this table too.
EXPECTED_EDGES = {
    (State.STARTING, State.RUNNING),
    (State.STARTING, State.BACKOFF),
    (State.STARTING, State.STOPPING),
    (State.STARTING, State.EXITED),
    (State.RUNNING, State.STOPPING),
    (State.RUNNING, State.EXITED),
    (State.BACKOFF, State.STARTING),
    (State.BACKOFF, State.FATAL),
    (State.BACKOFF, State.EXITED),
    (State.STOPPING, State.EXITED),
    (State.EXITED, State.STARTING),
    (State.FATAL, State.STARTING),
    (State.FATAL, State.EXITED),
}
ALL_PAIRS = list(itertools.product(State, State))
FORBIDDEN_EDGES = [pair for pair in ALL_PAIRS if pair not in EXPECTED_EDGES]


def _child(state: State) -> ChildProcess:
    """A record that has been through some state before (a fresh one: test below)."""
    return ChildProcess(program="emails", slot=3, pid=812, pgid=812, state=state,
                        state_changed_at=0.0)


def test_a_fresh_records_first_start_is_logged_as_new(caplog: pytest.LogCaptureFixture) -> None:
    child = ChildProcess(program="emails", slot=3)
    with caplog.at_level(logging.INFO, logger="supervisor_q.process"):
        child.spawned(812, 812, None, now=1.0, reason="start")
    assert [r.getMessage() for r in caplog.records] == [
        "emails#3 pid=812 new -> starting (start)"]


def test_enum_values_are_the_status_strings() -> None:
    assert [s.value for s in State] == [
        "starting", "running", "backoff", "stopping", "exited", "fatal"]
    assert State("running") is State.RUNNING
    assert str(State.FATAL) == "fatal"


def test_allowed_is_exactly_the_expected_table() -> None:
    assert set(ALLOWED) == set(State)
    actual = {(old, new) for old, targets in ALLOWED.items() for new in targets}
    assert actual == EXPECTED_EDGES


@pytest.mark.parametrize(("old", "new"), sorted(EXPECTED_EDGES), ids=lambda s: s.value)
def test_allowed_edge_moves_stamps_and_logs(old: State, new: State,
                                            caplog: pytest.LogCaptureFixture) -> None:
    child = _child(old)
    with caplog.at_level(logging.INFO, logger="supervisor_q.process"):
        child.move_to(new, "scale down", now=123.5)
    assert child.state is new
    assert child.state_changed_at == 123.5
    assert [r.getMessage() for r in caplog.records] == [
        f"emails#3 pid=812 {old.value} -> {new.value} (scale down)"]


@pytest.mark.parametrize(("old", "new"), FORBIDDEN_EDGES, ids=lambda s: s.value)
def test_forbidden_edge_raises_and_changes_nothing(old: State, new: State,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    child = _child(old)
    child.state_changed_at = 1.0
    with caplog.at_level(logging.INFO, logger="supervisor_q.process"):
        with pytest.raises(InvalidTransition) as info:
            child.move_to(new, "nope", now=2.0)
    assert (info.value.old, info.value.new) == (old, new)
    assert "emails#3" in str(info.value)
    assert child.state is old
    assert child.state_changed_at == 1.0
    assert caplog.records == []


def test_named_groups() -> None:
    assert ALIVE_STATES == {State.STARTING, State.RUNNING, State.STOPPING}
    assert SIGNALLABLE_STATES == ALIVE_STATES
    assert DEAD_STATES == {State.BACKOFF, State.EXITED, State.FATAL}
    assert STOPPABLE_STATES == {State.STARTING, State.RUNNING, State.BACKOFF, State.FATAL}
    # Every stoppable state can actually reach a stopped state in one move.
    for state in STOPPABLE_STATES:
        assert ALLOWED[state] & {State.STOPPING, State.EXITED}


def test_lifecycle_through_spawned_and_record_exit() -> None:
    child = ChildProcess(program="emails", slot=1)
    assert child.state is State.EXITED and not child.signallable
    child.jobs_done = 7
    child.spawned(pid=900, pgid=900, generation=1712.5, now=10.0)
    assert (child.state, child.pid, child.pgid, child.generation) == (
        State.STARTING, 900, 900, 1712.5)
    assert child.jobs_done == 0 and child.started_at == 10.0 and child.signallable
    child.move_to(State.RUNNING, "startsecs reached", now=11.0)
    child.job = CurrentJob(id="j1", name="app:send", queue="emails", started_at=12.0,
                           deadline=72.0)
    assert child.uptime(now=15.0) == 5.0
    child.move_to(State.STOPPING, "shutdown", now=16.0)
    status = 9  # raw wait status of a SIGKILLed child
    assert child.record_exit(status) == "killed by signal 9"
    assert child.reaped and child.job is None and child.pid == 900
    assert not child.signallable  # reaped pids are never signalled, whatever the state
    child.move_to(State.EXITED, "killed by signal 9", now=17.0)
    assert child.uptime(now=20.0) == 0.0
    child.spawned(pid=901, pgid=901, generation=None, now=30.0)
    assert child.reaped is False and child.pid == 901


def test_spawned_from_a_live_state_raises_before_touching_the_record() -> None:
    child = _child(State.RUNNING)
    with pytest.raises(InvalidTransition):
        child.spawned(pid=1, pgid=1, generation=None, now=0.0)
    assert child.pid == 812 and child.state is State.RUNNING


@pytest.mark.parametrize(("failures", "expected"), [
    (-1, 0.0), (0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (10_000, 60.0),
])
def test_backoff_delay_without_jitter(failures: int, expected: float) -> None:
    assert backoff_delay(failures, jitter=None) == expected


def test_backoff_delay_base_cap_and_jitter() -> None:
    assert backoff_delay(3, base=0.5, cap=1.5, jitter=None) == 1.5
    assert backoff_delay(3, jitter=lambda: 0.0) == 4.0
    assert backoff_delay(3, jitter=lambda: 0.5) == 3.0
    assert backoff_delay(3, jitter=lambda: 1.0) == 2.0  # never below half
    assert backoff_delay(3, jitter=lambda: 7.0) == 2.0  # a bad jitter source is clamped
    assert backoff_delay(50, jitter=lambda: 0.999) <= 60.0  # jitter never exceeds the cap
    samples = {backoff_delay(20) for _ in range(50)}  # default: random jitter
    assert all(30.0 <= s <= 60.0 for s in samples) and len(samples) > 1


def _wait_status_of(action: str) -> int:
    """A real waitpid status from a forked child."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    return status


def test_exit_reason_from_real_statuses() -> None:
    assert exit_reason(_wait_status_of("exit")) == "exited with 3"
    assert exit_reason(_wait_status_of("kill")) == "killed by signal 9"
    assert exit_reason(0) == "exited with 0"
    assert exit_reason(15) == "killed by signal 15"

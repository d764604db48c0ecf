"""Alerts without a master: the rate limit and the clear (AlertBook), the per-minute rate,
the thresholds' precedence, webhook delivery (once-per-episode logging, a send that never
blocks) and the fleet claim that lets one master of several notify a queue condition."""

from __future__ import annotations

import logging
import os
import time

import pytest

from supervisor_q.config.schema import WorkerProgram
from supervisor_q.config.settings import AlertsSettings
from supervisor_q.master.alerting import Alerting, effective_rules
from supervisor_q.master.hookproc import WebhookProcess
from supervisor_q.observe.alerts import AlertBook, Notification, RateWindow, Reading
from supervisor_q.observe.webhooks import Delivery
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.observe.hooks import HookServer


def reading(firing: bool, cid: str = "queue_size:q", fleet: bool = False) -> Reading:
    return Reading(cid, "queue_size", "q", firing, "text", 5 if firing else 0, 2, fleet)


def test_book_notifies_once_per_period_and_once_when_cleared() -> None:
    book = AlertBook()
    events = []
    for now, firing in ((0, True), (1, True), (59, True), (60, True), (61, True),
                        (62, False), (63, False), (64, True), (119, True), (120, True)):
        events += [(now, n.event) for n in book.update([reading(firing)], now, 60)]
    # the re-fire at 64 is within the period of the reminder at 60: held until 120
    assert events == [(0, "firing"), (60, "reminder"), (62, "cleared"), (120, "firing")]
    assert book.update([], 200, 60) == []  # not measured: no change either way
    assert book.texts == ["text"]
    retired = book.retire({"other"})  # its program removed, or its threshold unset
    assert [(n.event, n.reading.text) for n in retired] == [("cleared",
                                                              "text: no longer checked")]
    assert book.active == {} and book.texts == []


def test_a_flapping_condition_notifies_one_firing_and_one_clear_per_period() -> None:
    """The trial's flap: period 60, a check every 2 s, over and under 4 times in 46 s."""
    book = AlertBook()
    events = []
    for now in range(0, 47, 2):
        firing = (now // 6) % 2 == 0  # over for 6 s, under for 6 s
        events += [(now, n.event) for n in book.update([reading(firing)], now, 60)]
    assert events == [(0, "firing"), (6, "cleared")]
    assert book.texts == []  # under at 46 s; the suppressed re-fires ended silently
    assert [n.event for n in book.update([reading(True)], 60, 60)] == ["firing"]


def test_rate_window_counts_the_last_minute() -> None:
    window = RateWindow()
    assert window.add(0, 0) == 0
    assert window.add(10, 3) == 3
    assert window.add(59, 5) == 5
    assert window.add(70, 6) == 3  # 6 now, 3 at t=10 (the sample 60 s before)
    assert window.add(200, 6) == 0


def test_program_alerts_override_monitor_which_overrides_the_file() -> None:
    settings = AlertsSettings(max_size=100, max_wait=60, failures_per_minute=10)
    program = WorkerProgram.model_validate({
        "name": "w", "queues": ["q"], "monitor": {"max_size": 50, "max_wait": 30},
        "alerts": {"max_wait": 5, "fatal": False}})
    rules = effective_rules(settings, program)
    assert (rules["max_size"], rules["max_wait"], rules["failures_per_minute"],
            rules["fatal"]) == (50, 5, 10, False)
    assert effective_rules(AlertsSettings(), WorkerProgram(name="x", queues=("q",)))["fatal"]
    off = WorkerProgram.model_validate({"name": "o", "queues": ["q"],
                                        "alerts": {"max_size": None}})
    assert effective_rules(settings, off)["max_size"] is None  # null: the file's is off


def test_a_failing_webhook_is_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "supervisor_q.alerts")
    with HookServer("error") as hook:
        delivery = Delivery(timeout=2)
        url = hook.url + "?secret=s3cret"
        assert [delivery.post(url, {"text": str(n)}) for n in range(3)] == [False] * 3
        hook.mode = "ok"
        assert delivery.post(url, {"text": "ok"})
    assert len(hook.bodies) == 4 and hook.bodies[3] == {"text": "ok"}
    assert caplog.text.count("failed") == 1 and "HTTP Error 500" in caplog.text
    assert caplog.text.count("works again") == 1
    assert "s3cret" not in caplog.text and "/hook" not in caplog.text


def test_the_delivery_process_posts_and_never_blocks_the_sender(
        caplog: pytest.LogCaptureFixture) -> None:
    with HookServer("hang") as hung, HookServer() as hook:
        process = WebhookProcess(timeout=5)
        process.send([hook.url], {"text": "first"})
        wait_until(lambda: hook.bodies == [{"text": "first"}], timeout=5)
        started = time.monotonic()
        for n in range(500):  # far more than the pipe holds while the POST hangs
            process.send([hung.url], {"text": str(n), "pad": "x" * 400})
        assert time.monotonic() - started < 0.5
        # Logged when the pipe fills, not per dropped notification (it fills again if
        # the process drained a pipeful before its first POST hung).
        assert 1 <= caplog.text.count("notifications dropped") <= 3
        pid = process.pid
        process.close(wait=0.2)  # stuck in the hung POST: killed
        assert process.pid is None and pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_one_master_of_two_notifies_a_queue_condition(redis_url: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "supervisor_q.alerts")
    masters = [Alerting(RedisQueue(connect(redis_url)), name) for name in ("m1", "m2")]
    settings = AlertsSettings(period=60)
    for event, firing in (("firing", True), ("cleared", False), ("firing", True)):
        for master in masters:
            master.notify(Notification(event, reading(firing, fleet=True)), settings)
    # Each change once, fleet-wide; a firing again within the period is held back.
    assert caplog.text.count("ALERT text") == 1 and caplog.text.count("ALERT CLEARED") == 1
    for master in masters:  # a master's own condition is never claimed: both notify
        master.notify(Notification("firing", reading(True, cid="fatal:w:x")), settings)
    assert caplog.text.count("ALERT text") == 3


def test_a_failure_limit_that_arrives_by_reload_counts_only_the_last_minute(
        redis_url: str) -> None:
    from supervisor_q.master.pool import Pool
    from supervisor_q.observe.counters import Counters

    class NoFork:
        def ready(self, pool, now) -> bool:  # noqa: ANN001
            return True

    alerting = Alerting(RedisQueue(connect(redis_url)), "m1")
    counters = Counters()
    pools = [Pool(WorkerProgram.model_validate({"name": "w", "queues": ["q"]}), NoFork(),
                  target=1)]
    before = {"w": effective_rules(AlertsSettings(), pools[0].program)}
    for _ in range(6):
        counters.finished("q", "j", "failed", 0.1, 1)
    assert alerting.rate_readings(pools, before, counters, 1000.0) == []  # no limit yet
    alerting.rate_readings(pools, before, counters, 1030.0)
    after = {"w": effective_rules(AlertsSettings(failures_per_minute=3), pools[0].program)}
    counters.finished("q", "j", "failed", 0.1, 2)  # 66 s later: one failure in the minute
    [failures] = [r for r in alerting.rate_readings(pools, after, counters, 1066.0)
                  if r.kind == "failures"]
    assert (failures.value, failures.firing) == (1, False)

"""The buckets on Redis Cluster: queues in different slots flushed and read back."""

from __future__ import annotations

import time

import pytest
from redis.cluster import key_slot

from supervisor_q.observe.buckets import bucket_key, fleet_totals, flush, read_series
from supervisor_q.observe.counters import Counters
from supervisor_q.queue.connection import connect
from tests.clusters import running_cluster


@pytest.mark.slow
def test_buckets_of_queues_in_different_slots() -> None:
    queues = ["emails", "sms", "reports"]
    minute = int(time.time()) // 60
    assert len({key_slot(bucket_key(q, minute // 60).encode()) for q in queues}) == 3
    with running_cluster() as cluster:
        client = connect(cluster.url)
        counters = Counters()
        for n, queue in enumerate(queues, start=1):
            for _ in range(n):
                counters.finished(queue, "j", "done", 0.01, minute)
        flush(client, counters.take_pending(), retention=60)
        # Read as of the minute counted: the cluster's start may cross a minute.
        at = minute * 60 + 30
        assert [fleet_totals(client, q, 1, now=at) for q in queues] == [
            {"done": 1}, {"done": 2}, {"done": 3}]
        assert read_series(client, "sms", 1, now=at)[-1].outcome("done") == 2
        client.close()

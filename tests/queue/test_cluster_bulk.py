"""On a real 3-primary Redis Cluster: the failed list paged over queues in different
slots, chunked retry and prune, dispatch_many and batch dispatch in chunks per queue,
and single dispatch over kept per-node connections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from supervisor_q.jobs import dispatching
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import QueueKeys
from supervisor_q.workflows.batches import batch
from tests.clusters import LocalCluster, running_cluster
from tests.jobs.test_bulk import add
from tests.queue.test_cluster import spread
from tests.queue.test_failed_store import seed, shown

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with running_cluster() as found:
        yield found


@pytest.fixture
def queue(cluster: LocalCluster) -> Iterator[RedisQueue]:
    client = cluster.client()
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    dispatching._queues.clear()
    found = dispatching.queue_for(cluster.url)
    yield found
    dispatching._queues.clear()


def test_failed_pages_retry_and_prune_over_slots(queue: RedisQueue) -> None:
    names = spread(queue.client, 3)
    want = seed(queue.client, names)
    for start in (0, 5, 17, 33, 36):
        page, total = queue.failed_page(None, start, 5)
        assert total == 37 and shown(page) == want[start:start + 5], start
    assert queue.prune_failed((1_700_000_000_000 + 7 - 1) / 1000, chunk=2) == 4
    assert queue.retry_all_failed(chunk=4) == 33
    assert sum(queue.size(name) for name in names) == 33


def test_dispatch_many_and_batches_in_chunks_per_slot(queue: RedisQueue,
                                                      cluster: LocalCluster) -> None:
    names = spread(queue.client, 3)
    ids = add.dispatch_many([(n,) for n in range(7)], queue=names[0], chunk=3,
                            connection=cluster.url)
    assert [i.decode() for i in queue.client.lrange(QueueKeys(names[0]).ready, 0, -1)] == ids
    batch([add.s(n).on(names[n % 3]) for n in range(30)]).dispatch(connection=cluster.url)
    assert [queue.size(name) for name in names] == [17, 10, 10]


def test_single_dispatch_over_kept_node_connections(cluster: LocalCluster,
                                                    queue: RedisQueue) -> None:
    names = spread(queue.client, 3)
    own = RedisQueue(connect(cluster.url))
    for n in range(30):
        own.push(names[n % 3], f"j{n}", "{}")
    assert [queue.size(name) for name in names] == [10, 10, 10]
    kept = own._kept()
    assert kept.nodes is not None and len(kept.nodes.conns) == 3

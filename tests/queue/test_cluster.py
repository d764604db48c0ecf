"""Redis Cluster for real: 3 primaries + 3 replicas on loopback (tests/clusters.py), with
queues chosen to live on different primaries. The job API, workflows, middleware, CLI
and a real master, all through redis+cluster:// URLs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from supervisor_q.jobs import dispatching
from supervisor_q.paths import BadRedisUrl
from supervisor_q.queue import lua_limits
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.batchack import BatchCount
from supervisor_q.queue.cluster import cluster_client
from supervisor_q.queue.keys import QUEUES_KEY, RESTART_KEY, QueueKeys, batch_keys
from supervisor_q.queue.restart import read_generation
from supervisor_q.workflows import batches
from supervisor_q.workflows.batches import batch
from supervisor_q.workflows.chains import chain
from tests.clusters import LocalCluster, free_ports, running_cluster
from tests.helpers import wait_until
from tests.jobmods.basic import boom, record_job, release_once
from tests.jobmods.flows import (
    bjob,
    finally_cb,
    overlap_job,
    step,
    then_cb,
    throttled,
    unique_job,
)
from tests.masters import Master


@pytest.mark.parametrize("url, problem", [
    ("redis+cluster://", "no host:port"),
    ("redis+cluster://127.0.0.1", "is not host:port"),
    ("redis+cluster://127.0.0.1:99999", "is not host:port"),
    ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
    ("redis+sentinel://127.0.0.1:7000", "scheme must be"),
])
def test_bad_cluster_urls_fail_in_one_line(url: str, problem: str) -> None:
    with pytest.raises(BadRedisUrl) as caught:
        cluster_client(url)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_an_unreachable_cluster_is_one_line_and_exit_1() -> None:
    [port] = free_ports(1)  # nothing listens there
    done = cli(f"redis+cluster://127.0.0.1:{port}", "queue", "size", "q")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot be connected" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with running_cluster() as found:
        yield found


@pytest.fixture
def url(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The cluster's URL (also SUPERVISOR_Q_REDIS_URL), on an emptied cluster."""
    client = cluster.client()
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", cluster.url)
    dispatching._queues.clear()  # cached queues remember which queues they indexed
    yield cluster.url
    dispatching._queues.clear()


def spread(client: RedisCluster, count: int = 3, prefix: str = "q") -> list[str]:
    """count queue names whose keys live on count different primaries."""
    found: dict[str, str] = {}
    n = 0
    while len(found) < count:
        name = f"{prefix}{n}"
        node = client.get_node_from_key(QueueKeys(name).ready).name
        found.setdefault(node, name)
        n += 1
    return list(found.values())


def results(client: RedisCluster, kind: str | None = None) -> list[dict]:
    found = [json.loads(r) for r in client.lrange("results", 0, -1)]
    return [r for r in found if kind is None or r.get("kind") == kind]


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", url, *args],
                          capture_output=True, text=True, timeout=30)


def work(url: str, queues: list[str], *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", url, "work", "--quiet",
         "--queue", ",".join(queues), "--import", "tests.jobmods.flows", "--sleep", "0.2",
         *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(15)


@pytest.mark.slow
def test_jobs_on_three_nodes_run_delay_release_fail_and_retry(url: str) -> None:
    client = cluster_client(url)
    q = spread(client)
    ids = [record_job.dispatch(f"r{i}", queue=name) for i, name in enumerate(q)]
    record_job.dispatch("late", queue=q[1], delay=0.5)
    release_once.dispatch(0.3, queue=q[2])
    failed_id = boom.dispatch("x", queue=q[0])
    assert sorted(client.smembers(QUEUES_KEY)) == sorted(n.encode() for n in q)
    proc = work(url, q, "--tries", "1")
    try:
        wait_until(lambda: len(results(client)) == 7, timeout=15,
                   message=f"7 runs; {results(client)}")
        wait_until(lambda: cli(url, "failed", "list").stdout.count(failed_id) == 1, timeout=5)
    finally:
        stop(proc)
    runs = results(client)
    assert {r["queue"] for r in runs} == set(q)
    assert {r["id"] for r in runs} >= set(ids)
    assert [r["attempts"] for r in runs if r["id"] != failed_id and r.get("value") is None] \
        == [1, 2], "release_once ran twice: released, then done"
    queue = RedisQueue(client)
    assert [queue.counts(n)["reserved"] for n in q] == [0, 0, 0]
    assert queue.counts(q[0])["failed"] == 1
    retried = cli(url, "failed", "retry", failed_id)
    assert retried.returncode == 0, retried.stderr
    assert queue.counts(q[0]) == {"ready": 1, "delayed": 0, "reserved": 0, "failed": 0}


@pytest.mark.slow
def test_cli_through_a_node_that_owns_none_of_the_keys(cluster: LocalCluster, url: str) -> None:
    client = cluster.client()
    [name] = spread(client, 1)
    owner = cluster.primary_of(QueueKeys(name).ready)
    restart_owner = cluster.primary_of(RESTART_KEY)
    other = next(p for p in cluster.ports[:3] if p not in (owner, restart_owner)
                 and p != cluster.primary_of(QUEUES_KEY))
    one_node = f"redis+cluster://127.0.0.1:{other}"
    done = cli(one_node, "dispatch", "tests.noop", "--queue", name)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert job_id and "\n" not in job_id, "the id is printed once it is queued"
    assert client.hget(QueueKeys(name).payloads, job_id) is not None
    assert cli(one_node, "queue", "size", name).stdout.strip() == "1"
    before = read_generation(client)
    signalled = cli(one_node, "restart-workers")
    assert signalled.returncode == 0, signalled.stderr
    for port in cluster.ports[:3]:  # read from every node: never a silent "no signal"
        reader = RedisCluster(host="127.0.0.1", port=port)
        assert (read_generation(reader) or 0) > (before or 0)
        reader.close()


@pytest.mark.slow
def test_chains_batches_unique_and_middleware_across_nodes(url: str) -> None:
    client = cluster_client(url)
    q = spread(client)
    chain([step.s("c1").on(q[0]), step.s("c2").on(q[1]), step.s("c3").on(q[2])]).dispatch()
    made = batch([bjob.s(1).on(q[0]), bjob.s(2).on(q[1]), bjob.s(3).on(q[2])],
                 then=then_cb.s().on(q[1]), finally_=finally_cb.s().on(q[2])).dispatch()
    assert unique_job.dispatch("u", queue=q[0]) is not None
    assert unique_job.dispatch("u", queue=q[0]) is None, "the unique lock holds on a cluster"
    for i in range(6):
        throttled.dispatch(i, queue=q[1])
    for i in range(3):
        overlap_job.dispatch("k", i, 0.1, queue=q[2])
    procs = [work(url, q) for _ in range(2)]
    try:
        wait_until(lambda: len(results(client, "throttled")) == 6
                   and len(results(client, "then")) == 1 and len(results(client, "finally")) == 1
                   and len([r for r in results(client, "overlap") if r["phase"] == "end"]) == 3,
                   timeout=20, message=f"everything ran; {results(client)}")
    finally:
        stop(*procs)
    assert [r["value"] for r in results(client, "step")] == ["c1", "c2", "c3"]
    assert sorted(r["value"] for r in results(client, "bjob")) == [1, 2, 3]
    assert made.progress().finished
    assert [r["value"] for r in results(client, "unique")] == ["u"]
    starts = sorted(r["at"] for r in results(client, "throttled"))
    assert starts[3] - starts[0] >= 0.95, f"more than 3 starts within 1 s: {starts}"
    spans = sorted((r["at"], r["phase"]) for r in results(client, "overlap"))
    assert [p for _, p in spans] == ["start", "end"] * 3, "one key never ran twice at once"
    assert RedisQueue(client).failed_records() == [], "no topology error failed a job"


@pytest.mark.slow
def test_master_program_with_two_queues_on_two_nodes(url: str, tmp_path: Path) -> None:
    client = cluster_client(url)
    q = spread(client, 2)
    master = Master(tmp_path, url, {"two": f"""
        queues: [{q[0]}, {q[1]}]
        import: [tests.jobmods.basic]
        numprocs: 2
        startsecs: 0.2
        """})
    with master:
        pids = master.wait_running("two", 2)
        for i in range(10):
            record_job.dispatch(i, queue=q[i % 2])
        wait_until(lambda: len(results(client)) == 10, timeout=15, message=master.tail())
        assert {r["queue"] for r in results(client)} == set(q)
        assert cli(url, "restart-workers").returncode == 0
        wait_until(lambda: set(master.pids("two")).isdisjoint(pids)
                   and len(master.pids("two")) == 2, timeout=20,
                   message=f"children restarted; {master.tail()}")
        record_job.dispatch("after", queue=q[1])
        wait_until(lambda: len(results(client)) == 11, timeout=10, message=master.tail())


def test_queue_index_is_read_through_any_node(cluster: LocalCluster, url: str) -> None:
    queue = RedisQueue(connect(url))
    q = spread(queue.client)  # type: ignore[arg-type]
    for name in q:
        queue.push(name, f"id-{name}", '{"v":1}')
    for port in cluster.ports[:3]:
        assert RedisQueue(RedisCluster(host="127.0.0.1", port=port)).known_queues() == sorted(q)


def test_restart_signal_through_a_plain_client_on_the_wrong_node_is_never_no_signal(
        cluster: LocalCluster, url: str) -> None:
    """A plain redis:// client on a node that does not own sq:restart gets MOVED: that is
    "unknown, ask again" (a ConnectionError the callers retry), never "no signal"."""
    import redis

    from supervisor_q.queue.restart import signal_restart

    signal_restart(cluster.client())
    owner = cluster.primary_of(RESTART_KEY)
    wrong = next(p for p in cluster.ports[:3] if p != owner)
    with pytest.raises(redis.ConnectionError, match="restart signal unreadable") as caught:
        read_generation(redis.Redis(port=wrong))
    assert isinstance(caught.value.__cause__, redis.exceptions.MovedError)
    assert read_generation(redis.Redis(port=owner)) is not None


@pytest.mark.slow
def test_job_lookup_and_recent_jobs_across_nodes(url: str) -> None:
    from supervisor_q import job_status
    from supervisor_q.jobs.registry import dispatch
    from supervisor_q.queue.jobinfo import recent_jobs

    client = cluster_client(url)
    q = spread(client, prefix="look")
    done = [dispatch("look.ret", i, queue=name) for i, name in enumerate(q)]
    failed = dispatch("look.boom", queue=q[2])
    queued = dispatch("look.ret", "later", queue=q[1], delay=300)
    proc = work(url, q, "--import", "tests.jobmods.lookupjobs")
    try:
        wait_until(lambda: [job_status(i).state for i in done] == ["done"] * 3, timeout=15)
        wait_until(lambda: job_status(failed).state == "failed", timeout=10)
    finally:
        stop(proc)
    assert [job_status(i).result for i in done] == [{"got": 0}, {"got": 1}, {"got": 2}]
    assert job_status(queued).state == "delayed" and job_status(queued).queue == q[1]
    listed = recent_jobs(client)
    assert {s.id: s.state for s in listed} == {**dict.fromkeys(done, "done"), failed: "failed"}
    shown = cli(url, "job", done[1], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["queue"] == q[1]


def blpop_calls(cluster: LocalCluster) -> int:
    """BLPOP commands served so far by the three primaries (INFO commandstats)."""
    import redis

    total = 0
    for port in cluster.ports:
        stats = redis.Redis(port=port).info("commandstats")
        total += int(stats.get("cmdstat_blpop", {}).get("calls", 0))
    return total


def blocked(cluster: LocalCluster) -> int:
    import redis

    return sum(int(redis.Redis(port=p).info("clients")["blocked_clients"]) for p in cluster.ports)


@pytest.mark.slow
def test_an_idle_worker_on_three_nodes_wakes_at_once_without_polling(
        cluster: LocalCluster, url: str) -> None:
    """One wait per slot, all at once: a job on any node starts within milliseconds, and
    an idle second costs one BLPOP per node (no slices, no reserve rounds)."""
    import statistics
    import threading
    import time

    worker, producer = RedisQueue(connect(url)), RedisQueue(connect(url))
    q = spread(producer.client)  # type: ignore[arg-type]
    worker.reserve(q[0], default_timeout=60)  # the scripts are loaded
    wait_until(lambda: blocked(cluster) == 0, timeout=10, message="no other waiter left")
    before = blpop_calls(cluster)
    started = time.monotonic()
    assert worker.wait_and_reserve(q, 1.0, default_timeout=60).jobs == []  # type: ignore[union-attr]
    assert time.monotonic() - started >= 0.9, "the wait lasted its timeout"
    assert blpop_calls(cluster) - before == 3, "one BLPOP per node, no polling"
    latencies = []
    for i in range(12):
        target = q[1 + i % 2]  # the queues the first BLPOP cannot watch
        got: list = []
        thread = threading.Thread(target=lambda got=got: got.append(
            (worker.wait_and_reserve(q, 5.0, default_timeout=60), time.perf_counter())))
        thread.start()
        wait_until(lambda: blocked(cluster) == 3, timeout=5, message="worker blocked x3")
        pushed = time.perf_counter()
        producer.push(target, f"j{i}", '{"v":1,"timeout":60}')
        thread.join(10)
        result, seen = got[0]
        assert [(j.queue, j.id) for j in result.jobs] == [(target, f"j{i}")]
        worker.ack(target, f"j{i}")
        latencies.append(seen - pushed)
    # Woken by the push, not by a poll (the old slice was 100 ms); bench/cluster_figures.py
    # prints the figure (p50 about 4 ms on a quiet machine): this bound leaves room for load.
    assert statistics.median(latencies) < 0.040, latencies
    assert blocked(cluster) == 0, "every other wait was ended, none left behind"


@pytest.mark.slow
def test_the_higher_priority_queue_wins_and_the_other_token_is_given_back(url: str) -> None:
    queue = RedisQueue(connect(url))
    q = spread(queue.client)  # type: ignore[arg-type]
    queue.push(q[2], "low", '{"v":1,"timeout":60}')
    queue.push(q[1], "high", '{"v":1,"timeout":60}')
    result = queue.wait_and_reserve(q, 5.0, default_timeout=60)
    assert [j.id for j in result.jobs] == ["high"]  # type: ignore[union-attr]
    client = queue.client
    assert client.llen(QueueKeys(q[2]).notify) == 1, "the token of the job left is back"
    assert client.llen(QueueKeys(q[1]).notify) == 0
    assert [j.id for j in queue.wait_and_reserve(q, 5.0, default_timeout=60).jobs] == ["low"]  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_signal_ends_a_wait_on_three_nodes_at_once(cluster: LocalCluster, url: str) -> None:
    """A stop (a byte on the wake-up pipe, then leave() true) ends every slot's wait
    promptly, and no BLPOP is left blocked on any node."""
    import os
    import threading
    import time

    queue = RedisQueue(connect(url))
    q = spread(queue.client)  # type: ignore[arg-type]
    queue.reserve(q[0], default_timeout=60)  # the scripts are loaded
    wait_until(lambda: blocked(cluster) == 0, timeout=10, message="no other waiter left")
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    leaving = threading.Event()
    got: list = []
    thread = threading.Thread(target=lambda: got.append(queue.wait_and_reserve(
        q, 30.0, default_timeout=60, wake_fd=read_fd, leave=leaving.is_set)))
    thread.start()
    wait_until(lambda: blocked(cluster) == 3, timeout=5, message="blocked on 3 nodes")
    started = time.monotonic()
    leaving.set()
    os.write(write_fd, b"x")
    thread.join(10)
    assert time.monotonic() - started < 1.0 and got and got[0].jobs == []
    assert blocked(cluster) == 0
    os.close(read_fd)
    os.close(write_fd)


@pytest.mark.slow
def test_a_batch_count_on_another_node_rides_with_the_reserve(url: str) -> None:
    """The batch's keys and the queue's on different primaries: the count goes to the
    batch's node and the ack-and-reserve to the queue's, both sent before either reply
    is read (queue/batchack.py); each lands once."""
    client = cluster_client(url)
    [q] = spread(client, 1)
    home = client.get_node_from_key(QueueKeys(q).ready).name
    made = batch([bjob.s(1).on(q)]).dispatch()
    while client.get_node_from_key(batch_keys(made.id)[0]).name == home:
        made = batch([bjob.s(1).on(q)]).dispatch()  # until the batch lives elsewhere
    queue = RedisQueue(client)
    [job] = [j for j in queue.reserve(q, default_timeout=10, count=100)[1].jobs
             if made.id in j.payload]
    acked, after = queue.reserve(q, default_timeout=10, ack_ids=[job.id],
                                 counts=[BatchCount(made.id, job.id)])
    assert acked == 1 and [c.counted for c in after.counted] == [True]
    assert after.counted[0].fire_finally, "the answer came back from the batch's node"
    p = made.progress()
    assert p is not None and (p.pending, p.processed, p.finished) == (0, 1, True)


def test_the_batch_callbacks_sweep_reads_batches_on_every_node(url: str) -> None:
    """Batches spread over the primaries, their then and finally won long ago by a
    worker that was lost: one sweep (workflows/callbacks.py) claims and dispatches each
    once, whichever node holds the batch."""
    client = cluster_client(url)
    [q] = spread(client, 1)
    queue = RedisQueue(client)
    made = [batch([bjob.s(i).on(q)], then=then_cb.s().on(q), finally_=finally_cb.s().on(q)
                  ).dispatch() for i in range(6)]
    assert len({client.get_node_from_key(batch_keys(b.id)[0]).name for b in made}) > 1
    client.delete(QueueKeys(q).ready)  # the jobs themselves: counted by hand below
    script = queue.script(lua_limits.BATCH_SUCCEEDED)
    for n, b in enumerate(made):
        script(keys=batch_keys(b.id), args=[f"job-{n}", "", ""])
        client.hset(batch_keys(b.id)[0], mapping={"then_at": 1, "finished_at": 1})
    batches.sweep(queue)
    batches.sweep(queue)
    names = [json.loads(client.hget(QueueKeys(q).payloads, i))["job"]
             for i in client.lrange(QueueKeys(q).ready, 0, -1)]
    assert sorted(names) == ["flows.finally"] * 6 + ["flows.then"] * 6

"""Jobs for the Redis Cluster tests: each records into keys that share one hash tag
(so a test can read them in one slot, on a node it does not kill)."""

from __future__ import annotations

from supervisor_q import job
from supervisor_q.jobs.dispatching import queue_for


@job(name="cluster.mark", timeout=2)
def mark(tag: str, value: str) -> None:
    """Adds value to the set {tag}:set and appends it to the list {tag}:all."""
    client = queue_for().client
    client.rpush(f"{{{tag}}}:all", value)
    client.sadd(f"{{{tag}}}:set", value)

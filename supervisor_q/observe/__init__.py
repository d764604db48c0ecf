"""Metrics: counting in the master, per-minute buckets in Redis, the Prometheus endpoint.

counters.py counts (in memory), buckets.py flushes the counts to Redis and reads them back
(the reader API other tools use), exporter.py serves /metrics, queues.py measures queues.
"""

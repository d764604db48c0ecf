"""Redis Cluster clients (redis+cluster:// URLs): a placeholder until that work lands.

connection.connect calls cluster_client for redis+cluster:// and rediss+cluster://.
"""

from __future__ import annotations

from typing import Any

from supervisor_q.paths import BadRedisUrl


def cluster_client(url: str, **options: Any) -> Any:
    """A client for a cluster URL; not supported yet, so a clear one-line error."""
    raise BadRedisUrl("cluster URLs are not supported yet")

"""A per-master command inbox in Redis, so any host (the dashboard, `scale --all`) can ask
a master to act without reaching its control socket.

    sq:{fleet}:inbox:<master id>   list of JSON commands, oldest first; expires after
                                   INBOX_TTL s, so a gone master's inbox does not linger

Only the commands in ALLOWED are carried; the master takes at most TAKE per slow tick
and applies each like the control socket's command of the same name. Imports only the
registry's key prefix.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from supervisor_q.fleet.registry import TAG

ALLOWED = frozenset({"scale"})
INBOX_TTL = 300  # seconds an unread command waits
TAKE = 20  # commands taken per slow tick


def inbox_key(master_id: str) -> str:
    return f"{TAG}:inbox:{master_id}"


def send(client: redis.Redis, master_id: str, command: str, **args: Any) -> None:
    """Queue one command for a master (it applies it within about a second)."""
    if command not in ALLOWED:
        raise ValueError(f"unknown inbox command {command!r}")
    pipe = client.pipeline(transaction=True)
    pipe.rpush(inbox_key(master_id), json.dumps({"command": command, "args": args}))
    pipe.expire(inbox_key(master_id), INBOX_TTL)
    pipe.execute()


def take(client: redis.Redis, master_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Pop up to TAKE commands; malformed or unknown entries are dropped."""
    raw = client.lpop(inbox_key(master_id), TAKE) or []
    found = []
    for entry in raw:
        try:
            item = json.loads(entry)
        except (ValueError, RecursionError):
            continue
        if (isinstance(item, dict) and item.get("command") in ALLOWED
                and isinstance(item.get("args"), dict)):
            found.append((item["command"], item["args"]))
    return found

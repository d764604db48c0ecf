"""How late after its due time the master queues a periodic entry's job: one master, an
`every: 1s` entry, 20 s, the lag read from the master's own log lines.

    .venv/bin/python bench/periodic_lag.py

The firing runs on the master's one-second slow tick, so the lag is up to about a second
by design; this prints what it is.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor_q.queue.server import RedisServer  # noqa: E402
from tests.masters import Master  # noqa: E402

LINE = re.compile(r"^(\S+) INFO .*cron:tick: due: .*\(due (\S+)\)", re.M)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sqp-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "r").mkdir()
        server = RedisServer(data_dir=root / "r", persistent=True)
        server.start()
        master = Master(root, f"unix://{server.unix_socket}?db=1", {"cron": """
            periodic:
              - {name: tick, job: tests.noop, every: 1s, queue: ptest}
            """}).start()
        time.sleep(20)
        master.stop()
        server.stop()
        lags = [epoch(a) - epoch(b) for a, b in LINE.findall(master.log.read_text())]
    print(f"{len(lags)} firings in 20 s; lag after the due time: median "
          f"{statistics.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")


if __name__ == "__main__":
    main()

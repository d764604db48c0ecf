"""The worst config-dir reloads we can construct, timed: what one reload costs the master's
loop (two content fingerprints, as a file event and Arbiter.reload take them, plus the
full load).

    .venv/bin/python bench/config_worst.py

Each case fills a fresh directory with 500 program files (the most a dir may hold).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor_q.config.loading import (  # noqa: E402
    MAX_FILE_BYTES,
    MAX_FILES,
    config_fingerprint,
    scan_config_dir,
)

KIB = 1024
CASES = {
    "values: 1,999-item flow lists": "queues: [" + ", ".join(["a"] * 1_999) + "]\n",
    "values: 999 unknown keys": "".join(f"k{i}: 1\n" for i in range(999)),
    "values: 1,990 bad exit codes": "command: x\nexitcodes: [" + "-1, " * 1_990 + "]\n",
    "values: 2,500-item lists (refused)": "queues: [" + ", ".join(["a"] * 2_500) + "]\n",
    "bytes: one 255 KiB string": "queues: [" + "a" * (MAX_FILE_BYTES - 20) + "]\n",
    "bytes: 255 KiB comment": "queues: [q]\n#" + "x" * (MAX_FILE_BYTES - 20) + "\n",
    "bytes: oversized files": "queues: [q]\n#" + "x" * (MAX_FILE_BYTES + KIB) + "\n",
    "files: 30 bad keys each": "".join(f"numprocs{i}: -1\n" for i in range(30)),
    "files: small and valid": "queues: [default]\nnumprocs: 0\n",
    "nesting: 20,000 levels": "queues: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "integers: 5,000 digits": "queues: [q]\nnumprocs: " + "9" * 5_000 + "\n",
}


def reload_seconds(directory: Path) -> float:
    start = time.perf_counter()
    config_fingerprint(directory)
    config_fingerprint(directory)
    scan_config_dir(directory)
    return time.perf_counter() - start


def main() -> int:
    worst = 0.0
    for name, text in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            for i in range(MAX_FILES):
                (directory / f"p{i:04}.yaml").write_text(text)
            seconds = min(reload_seconds(directory) for _ in range(3))
        worst = max(worst, seconds)
        print(f"{name:34} {seconds:6.3f} s")
    print(f"{'worst':34} {worst:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The master's cost of capturing a chatty child: one `command:` child writing 100-byte
lines at 10 MB/s for a few seconds, to a log file and then to the master's log; the
master's CPU (psutil, user+system) over the run, the bytes that reached the destination
and the ping round trip on the control socket meanwhile (median, max).

    .venv/bin/python bench/output_cost.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor_q.ctl.protocol import ControlError, request  # noqa: E402

CHATTY = """\
import os, time
chunk = (b"y" * 99 + b"\\n") * 1000  # 100 KB: 10 MB/s at 100 writes a second
while True:
    t = time.monotonic()
    os.write(1, chunk)
    time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))
"""


def run(destination: str, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="sq-out-") as tmp:
        root = Path(tmp)
        (root / "conf.d").mkdir()
        (root / "chatty.py").write_text(CHATTY)
        program = f"command: {sys.executable} {root}/chatty.py\nstartsecs: 0\n"
        if destination == "file":
            program += f"stdout_logfile: {root}/c.log\nlogfile_maxbytes: 0\n"
        (root / "conf.d" / "c.yaml").write_text(program)
        sock = root / "control.sock"
        env = {"SUPERVISOR_Q_SOCKET": str(sock), "SUPERVISOR_Q_RUNTIME_DIR": str(root / "run"),
               "SUPERVISOR_Q_DATA_DIR": str(root / "data"), "PATH": "/usr/bin:/bin"}
        log = open(root / "master.log", "wb")  # noqa: SIM115
        master = subprocess.Popen([sys.executable, "-m", "supervisor_q", "run", "--config",
                                   str(root / "conf.d")], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            return _measure(master, sock, root, destination, seconds)
        finally:
            master.terminate()
            master.wait(30)
            log.close()


def _measure(master: subprocess.Popen, sock: Path, root: Path, destination: str,
             seconds: float) -> dict[str, float]:
    while True:
        try:
            request(sock, "ping", timeout=1)
            break
        except ControlError:
            time.sleep(0.05)
    time.sleep(1)  # the child is up
    target = root / ("c.log" if destination == "file" else "master.log")
    proc = psutil.Process(master.pid)
    cpu0, size0, t0 = sum(proc.cpu_times()[:2]), target.stat().st_size, time.monotonic()
    pings = []
    while time.monotonic() - t0 < seconds:
        p0 = time.monotonic()
        request(sock, "ping")
        pings.append(time.monotonic() - p0)
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    return {"cpu_percent": 100 * cpu / elapsed,
            "mb_per_s": (target.stat().st_size - size0) / elapsed / 1e6,
            "ping_median_ms": 1000 * statistics.median(pings),
            "ping_max_ms": 1000 * max(pings)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"load average before: {psutil.getloadavg()}")
    for destination in ("file", "master-log"):
        found = run(destination, args.seconds)
        print(f"{destination:10}  master CPU {found['cpu_percent']:5.1f}%  "
              f"delivered {found['mb_per_s']:5.2f} MB/s  ping median "
              f"{found['ping_median_ms']:.1f} ms, max {found['ping_max_ms']:.1f} ms")
    print(f"load average after: {psutil.getloadavg()}")


if __name__ == "__main__":
    main()

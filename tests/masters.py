"""A real master in a subprocess, for process tests: temp conf.d, private socket, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil

from supervisor_q.ctl.protocol import ControlError, request
from tests.helpers import wait_until


class Master:
    def __init__(self, tmp: Path, redis_url: str | None, programs: dict[str, str],
                 extra_env: dict[str, str] | None = None,
                 run_args: list[str] | None = None) -> None:
        self.tmp = tmp
        self.confd = tmp / "conf.d"
        self.confd.mkdir(exist_ok=True)
        self.socket = tmp / "control.sock"
        self.log = tmp / "master.log"
        self.redis_url = redis_url
        self.extra_env = extra_env or {}
        self.run_args = run_args or []  # more options of `run`, e.g. --metrics HOST:PORT
        self.proc: subprocess.Popen | None = None
        for name, text in programs.items():
            self.write(name, text)

    def write(self, name: str, text: str) -> None:
        """Write conf.d/<name>.yaml atomically (rename), as a deploy tool would."""
        path = self.confd / f"{name}.yaml"
        tmp = self.confd / f".{name}.tmp"
        tmp.write_text(textwrap.dedent(text))
        tmp.rename(path)

    def remove(self, name: str) -> None:
        (self.confd / f"{name}.yaml").unlink()

    def start(self, wait: bool = True) -> Master:
        # `with Master(...).start()` would start a second master and leak the first
        assert self.proc is None or self.proc.poll() is not None, "this master is running"
        env = {**os.environ, "SUPERVISOR_Q_SOCKET": str(self.socket),
               "SUPERVISOR_Q_RUNTIME_DIR": str(self.tmp / "run"),
               "SUPERVISOR_Q_DATA_DIR": str(self.tmp / "data"), **self.extra_env}
        env.pop("SUPERVISOR_Q_REDIS_URL", None)
        if self.redis_url:
            env["SUPERVISOR_Q_REDIS_URL"] = self.redis_url
        self.logfile = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor_q", "run", "--config", str(self.confd),
             *self.run_args],
            env=env, stdout=self.logfile, stderr=subprocess.STDOUT)
        if wait:
            wait_until(self.answers, timeout=20, message=f"master up; log: {self.tail()}")
        return self

    def answers(self) -> bool:
        try:
            request(self.socket, "ping", timeout=1)
            return True
        except ControlError:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"master exited {self.proc.returncode}: {self.tail()}") from None
            return False

    def call(self, command: str, **args: Any) -> Any:
        return request(self.socket, command, **args)

    def status(self) -> dict:
        return self.call("status")

    def program(self, name: str) -> dict:
        return next(p for p in self.status()["programs"] if p["name"] == name)

    def pids(self, name: str, state: str = "running") -> list[int]:
        return sorted(p["pid"] for p in self.program(name)["processes"]
                      if p["state"] == state and p["pid"])

    def wait_running(self, name: str, count: int, timeout: float = 20) -> list[int]:
        def ready() -> list[int] | None:
            try:
                pids = self.pids(name)
            except StopIteration:
                return None
            alive = all(psutil.pid_exists(pid) for pid in pids)
            return pids if len(pids) == count and alive else None
        return wait_until(ready, timeout=timeout,
                          message=f"{count} running children of {name}")

    def live_children(self, name: str | None = None) -> list[psutil.Process]:
        """The master's real child processes (psutil), excluding the Redis server."""
        if self.proc is None:
            return []
        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        found = []
        for kid in kids:
            try:
                title = " ".join(kid.cmdline())
            except psutil.Error:
                continue
            if "server" in title and "supervisor-q" not in title:
                continue
            if name is None or f" {name}#" in title or title.startswith(f"{name}#"):
                found.append(kid)
        return found

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self.logfile.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Master:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def results(client: Any) -> list[dict]:
    return [json.loads(r) for r in client.lrange("results", 0, -1)]

"""The worker's signal handlers: TERM/INT stop, USR1 pauses, USR2 continues.

The handlers only record, in flags the worker loop reads between Redis calls (see
SignalFlags.install_signals). Imports nothing from the package.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class SignalFlags:
    """What the signals told the worker (the Worker dataclass inherits these flags)."""

    stopping: bool = field(default=False, init=False, repr=False, compare=False)
    # a second TERM/INT: stop waiting for Redis to hand jobs back (outages.py)
    insisted: bool = field(default=False, init=False, repr=False, compare=False)
    paused: bool = field(default=False, init=False, repr=False, compare=False)
    # a job body runs: the only place a signal may raise into
    in_job: bool = field(default=False, init=False, repr=False, compare=False)
    # the signal wake-up pipe's read end (install_signals)
    wake_fd: int | None = field(default=None, init=False, repr=False, compare=False)

    def install_signals(self) -> None:
        """TERM/INT: finish the current job, then exit. A second INT interrupts the job;
        a second TERM or INT while Redis is down gives up handing jobs back (outages.py).

        The handlers only record. Raising out of a handler could land in the middle of
        a Redis read (a pipelined reserve may already have run on the server, and its
        job would be stranded); instead every signal also writes a byte to a wake-up
        pipe, on which an idle blocking wait also waits (hotpath._await_reply)."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self.wake_fd = read_fd
        signal.signal(signal.SIGTERM, self._handle_stop)
        signal.signal(signal.SIGINT, self._handle_stop)
        signal.signal(signal.SIGUSR1, self._handle_pause)
        signal.signal(signal.SIGUSR2, self._handle_continue)
        # (`work`'s guard forks its worker with these blocked: those sent meanwhile now)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT,
                                                    signal.SIGUSR1, signal.SIGUSR2})

    def _handle_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping and signum == signal.SIGINT and self.in_job:
            raise KeyboardInterrupt  # the second Ctrl-C interrupts the job's own code only
        self.insisted = self.stopping
        self.stopping = True

    def _handle_pause(self, signum: int, frame: FrameType | None) -> None:
        self.paused = True

    def _handle_continue(self, signum: int, frame: FrameType | None) -> None:
        self.paused = False

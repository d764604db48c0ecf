"""A demo producer (run as a `command:` program): dispatches a few jobs every second."""

from __future__ import annotations

import itertools
import random
import signal
import time

from examples.demo_jobs import resize_image, send_welcome


def main() -> None:
    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    for n in itertools.count(1):
        if not running:
            break
        send_welcome.dispatch(n)
        if n % 3 == 0:
            send_welcome.dispatch(n, queue="emails-high")
        if n % 2 == 0:
            resize_image.dispatch(f"/uploads/{n}.jpg", width=random.choice([400, 800]))
        time.sleep(1.0)


if __name__ == "__main__":
    main()

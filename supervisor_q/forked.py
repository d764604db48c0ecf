"""The end of a forked child: run its body, then leave with os._exit, never returning
into the code that forked it (the master's loop, the zygote's, the guard's). Anything
that escapes the body is printed as a traceback on the child's stderr (best effort) and
exits ERROR. Lines a log handler held back (logs.LineHandler) are written first.
Imports nothing from the package but exitcodes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import NoReturn

from supervisor_q import exitcodes


def exit_with(body: Callable[[], int],
              before_exit: Callable[[], None] | None = None) -> NoReturn:
    """os._exit(body()); ERROR, with a traceback, if it raised. before_exit (e.g. a flush
    of buffered output, which os._exit skips) runs first in every case."""
    code = exitcodes.ERROR
    try:
        code = body()
    except BaseException:  # noqa: BLE001 - report and exit, whatever it was
        try:
            import traceback  # here: the master itself never needs it

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for handler in logging.getLogger().handlers:  # os._exit skips logging's atexit
            try:
                handler.flush()
            except BaseException:  # noqa: BLE001
                pass
        if before_exit is not None:
            before_exit()
        os._exit(code)

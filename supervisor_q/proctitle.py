"""Process titles (`supervisor-q emails#3 job myapp.jobs:send 12:00:01`), without cost on
the hot path: a title is only written when it changes."""

from __future__ import annotations

import setproctitle

_last: list[str] = [""]


def set_title(title: str) -> None:
    if title != _last[0]:
        _last[0] = title
        setproctitle.setproctitle(title)

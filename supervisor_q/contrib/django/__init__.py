"""Django: `dispatch(..., after_commit=True)` through `transaction.on_commit`.

Add "supervisor_q.contrib.django" to INSTALLED_APPS: its AppConfig (apps.py) installs
the hook when Django starts, in the web process and, with `setup: django:setup`, in
each worker child. Inside `transaction.atomic()` the push waits for the commit and a
rollback drops it; outside one (autocommit) the job is pushed at once. The hook uses
the default database (on_commit's `using=None`).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from supervisor_q.jobs import dispatching


def on_commit(action: Callable[[], object]) -> bool:
    """The commit hook: Django runs action after the commit (at once in autocommit)."""
    transaction.on_commit(action)
    return True


def install() -> None:
    """Use Django's transactions for after_commit dispatches (apps.py calls it)."""
    dispatching.use_commit_hook(on_commit)

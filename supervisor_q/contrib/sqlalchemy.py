"""SQLAlchemy: `dispatch(..., after_commit=True)` through a Session's commit.

    with Session(engine) as session, session_dispatches(session):
        session.add(user)
        send_welcome.dispatch(user.id, after_commit=True)  # pushed by session.commit()
        session.commit()

Inside session_dispatches(session), an after_commit dispatch waits for the session's
commit; a rollback (or closing the session uncommitted) drops it; with no transaction
open it is pushed at once. Savepoints are not tracked apart: a dispatch made inside a
rolled-back begin_nested() still goes when the outer transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from supervisor_q.jobs import dispatching

_PENDING = "supervisor_q.after_commit"  # session.info key: actions waiting for the commit
_current: ContextVar[Session | None] = ContextVar("supervisor_q_session", default=None)


@contextmanager
def session_dispatches(session: Session) -> Iterator[Session]:
    """after_commit dispatches in this block wait for session's commit."""
    if not event.contains(session, "after_commit", _committed):
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_rollback", _rolled_back)
    dispatching.use_commit_hook(on_commit)
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)


def on_commit(action: Callable[[], object]) -> bool:
    """The commit hook: False outside session_dispatches (another hook may apply)."""
    session = _current.get()
    if session is None:
        return False
    if session.in_transaction():
        session.info.setdefault(_PENDING, []).append(action)
    else:
        action()
    return True


def _committed(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the outer commit decides
        return
    for action in session.info.pop(_PENDING, []):
        action()


def _rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)

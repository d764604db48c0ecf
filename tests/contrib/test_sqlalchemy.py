"""SQLAlchemy apps (issue 14): inside session_dispatches(session), an after_commit
dispatch is pushed by the session's commit and dropped by its rollback."""

from __future__ import annotations

import pytest

from tests.helpers import ready_ids

pytest.importorskip("sqlalchemy")

from sqlalchemy import String, create_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

import tests.jobmods.basic as basic  # noqa: E402
from supervisor_q.contrib.sqlalchemy import session_dispatches  # noqa: E402
from supervisor_q.testing import fake_queue  # noqa: E402


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))


def test_commit_dispatches_and_rollback_does_not(redis_url: str, tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session_dispatches(session):
        user = User(email="ada@example.org")
        session.add(user)
        session.flush()
        committed = basic.record_job.dispatch(user.id, after_commit=True)
        assert ready_ids(redis_url) == [], "nothing is pushed before the commit"
        session.commit()
        assert ready_ids(redis_url) == [committed], "pushed at commit, id as returned"

        session.add(User(email="x@example.org"))
        session.flush()
        basic.record_job.dispatch("rolled back", after_commit=True)
        nested = session.begin_nested()
        basic.record_job.dispatch("in a savepoint", after_commit=True)
        nested.commit()  # a savepoint's release is no commit
        assert ready_ids(redis_url) == [committed]
        session.rollback()
        session.commit()  # an empty commit later pushes nothing that was dropped
        assert ready_ids(redis_url) == [committed], "a rollback dispatches nothing"

        at_once = basic.record_job.dispatch("no transaction", after_commit=True)
        assert ready_ids(redis_url) == [committed, at_once]
    assert session.query(User).count() == 1


def test_after_commit_without_a_hook_is_refused(redis_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor_q.jobs import dispatching

    monkeypatch.setattr(dispatching._state, "commit_hooks", [])  # as in a fresh process
    with pytest.raises(RuntimeError, match="needs a transaction hook"):
        basic.record_job.dispatch("x", after_commit=True)
    assert ready_ids(redis_url) == []
    with fake_queue() as fake:  # an application's tests: recorded at once
        basic.record_job.dispatch("y", after_commit=True)
    fake.assert_dispatched(basic.record_job, lambda value: value == "y")

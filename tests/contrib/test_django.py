"""Django apps (issue 14): a worker child runs `setup: django:setup` before importing a
job module that uses the ORM; after_commit dispatches wait for transaction.atomic()'s
commit and vanish with its rollback. The real framework, its SQLite backend, a real
master and Redis."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ready_ids, wait_until

django = pytest.importorskip("django")

SETTINGS = "tests.contrib.djangoapp.settings"


@pytest.fixture(scope="module")
def django_db() -> Iterator[Path]:
    """Django set up in this test process on a SQLite file, with the app's table."""
    with tempfile.TemporaryDirectory(prefix="sq-django-") as tmp:
        db = Path(tmp) / "app.sqlite3"
        os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
        os.environ["SQ_DJANGO_DB"] = str(db)
        django.setup()
        from django.db import connection

        from tests.contrib.djangoapp.models import Signup
        with connection.schema_editor() as editor:
            editor.create_model(Signup)
        yield db
        connection.close()
        for name in ("DJANGO_SETTINGS_MODULE", "SQ_DJANGO_DB"):  # for later subprocesses
            os.environ.pop(name, None)


@pytest.mark.slow
def test_worker_with_setup_hook_runs_an_orm_job(django_db: Path, master_factory) -> None:
    from tests.contrib.djangoapp.jobs import send_welcome
    from tests.contrib.djangoapp.models import Signup

    signup = Signup.objects.create(email="ada@example.org")
    program = f"""\
        queues: [django]
        import: [tests.contrib.djangoapp.jobs]
        setup: django:setup
        environment: {{DJANGO_SETTINGS_MODULE: {SETTINGS}, SQ_DJANGO_DB: "{django_db}"}}
        startsecs: 0.2
        """
    with master_factory({"web": program}) as master:
        master.wait_running("web", 1)
        send_welcome.dispatch(signup.id)
        wait_until(lambda: Signup.objects.get(id=signup.id).welcomed, timeout=15,
                   message=f"the job updated the row; log: {master.tail()}")
        assert "AppRegistryNotReady" not in master.tail(400)


def test_after_commit_waits_for_the_commit_and_a_rollback_drops_it(
        django_db: Path, redis_url: str) -> None:
    from django.db import transaction

    import supervisor_q
    from tests.contrib.djangoapp.jobs import send_welcome
    from tests.contrib.djangoapp.models import Signup

    with transaction.atomic():
        signup = Signup.objects.create(email="grace@example.org")
        job_id = send_welcome.dispatch(signup.id, after_commit=True)
        by_name = supervisor_q.dispatch("tests.django.welcome", signup.id, after_commit=True)
        assert ready_ids(redis_url, "django") == [], "nothing is pushed before the commit"
    assert ready_ids(redis_url, "django") == [job_id, by_name], "pushed at commit, ids as returned"

    with pytest.raises(RuntimeError), transaction.atomic():
        send_welcome.dispatch(Signup.objects.create(email="x@example.org").id,
                              after_commit=True)
        raise RuntimeError("roll back")
    assert ready_ids(redis_url, "django") == [job_id, by_name], "a rollback dispatches nothing"

    at_once = send_welcome.dispatch(signup.id, after_commit=True)  # no transaction open
    assert ready_ids(redis_url, "django") == [job_id, by_name, at_once]

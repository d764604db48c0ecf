"""A Flask app for tests/contrib/test_flask.py: `setup` pushes its app context in a
worker, the job reads current_app, a view dispatches the job."""

from __future__ import annotations

from flask import Flask, current_app, request

from supervisor_q import job
from tests.jobmods.basic import record

app = Flask(__name__)
app.config["GREETING"] = "Welcome, "


def setup() -> None:
    """The worker's setup hook (`setup: tests.contrib.flaskapp:setup`)."""
    app.app_context().push()


@job(name="tests.flask.greet", queue="flask")
def greet(name: str) -> None:
    record(kind="greeting", value=current_app.config["GREETING"] + name)


@app.post("/signup")
def signup() -> dict[str, str | None]:
    return {"job": greet.dispatch(request.form["name"])}

"""The shipped Grafana dashboard and Prometheus alert rules: they load, and every metric
they name exists in a real scrape of a real master."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import tests.jobmods.basic  # noqa: F401  (registers the job dispatched by name)
from supervisor_q.jobs.registry import dispatch
from tests.helpers import wait_until
from tests.masters import Master
from tests.observe.test_metrics_master import free_port, scrape

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "contrib" / "grafana" / "supervisor-q.json"
RULES = ROOT / "contrib" / "prometheus" / "alerts.yml"
NAME = re.compile(r"\bsupervisorq_[a-z_]+")
WORKER = "queues: [contrib-q]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\n"
FLAKY = "command: sh -c 'exit 3'\nstartsecs: 1\nstartretries: 100\n"


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return exprs


def rule_exprs() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    [group] = rules["groups"]
    assert group["name"] == "supervisor-q"
    names = {rule["alert"] for rule in group["rules"]}
    assert names == {"SupervisorQProgramFatal", "SupervisorQCrashLoop", "SupervisorQLongWait",
                     "SupervisorQFailureRate"}
    for rule in group["rules"]:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    return [rule["expr"] for rule in group["rules"]]


@pytest.mark.slow
def test_dashboard_and_rules_use_only_real_metric_names(tmp_path: Path, redis_url: str) -> None:
    used = {name for expr in dashboard_exprs() + rule_exprs() for name in NAME.findall(expr)}
    assert len(dashboard_exprs()) >= 9 and "supervisorq_queue_jobs" in used
    port = free_port()
    master = Master(tmp_path, redis_url, {"w": WORKER, "flaky": FLAKY})
    master.write("supervisor-q", f"metrics: {{bind: '127.0.0.1:{port}'}}\n")
    with master:
        dispatch("tests.noop", queue="contrib-q")

        wait_until(lambda: used <= {name for name, _ in scrape(port)}, timeout=15,
                   message="every metric the dashboard and the rules name, in a scrape")

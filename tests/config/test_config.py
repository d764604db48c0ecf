"""Program files -> validated configs: error messages, defaults, kinds and reload plans."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest

from supervisor_q.config.loading import (
    CommandProgram,
    ConfigError,
    ReloadPlan,
    WorkerProgram,
    diff_programs,
    load_config_dir,
    load_program_file,
)


@pytest.fixture
def confd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty conf.d/ under a temp cwd, so messages show the relative path users type."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf.d").mkdir()
    return Path("conf.d")


def write(confd: Path, filename: str, text: str) -> Path:
    path = confd / filename
    path.write_text(textwrap.dedent(text))
    return path


def problems_for(confd: Path, filename: str, text: str) -> list[str]:
    write(confd, filename, text)
    with pytest.raises(ConfigError) as caught:
        load_config_dir(confd)
    return caught.value.problems


# (file name, YAML, exact problem lines)
ERROR_CASES = [
    (
        "emails.yaml",
        "queues: [emails]\nnumprocs: -2\n",
        ["conf.d/emails.yaml: numprocs: must be >= 0, got -2"],
    ),
    ("x.yaml", "queues: [q]\nnumprocz: 3\n", ["conf.d/x.yaml: numprocz: unknown key"]),
    ("x.yaml", "", ["conf.d/x.yaml: file is empty; expected a mapping with queues: or command:"]),
    (
        "x.yaml",
        "- queues\n",
        [
            "conf.d/x.yaml: top level must be a mapping of keys (such as queues: or command:), "
            "got list"
        ],
    ),
    (
        "x.yaml",
        "queues: [q]\nname: 'bad name'\n",
        ["conf.d/x.yaml: name: must match [A-Za-z0-9_.-]+, got 'bad name'"],
    ),
    (
        "bad name.yaml",
        "queues: [q]\n",
        [
            "conf.d/bad name.yaml: name: must match [A-Za-z0-9_.-]+, got 'bad name' "
            "(taken from the file name; rename the file or set name:)"
        ],
    ),
    (
        "x.yaml",
        "queues: [q]\ncommand: /bin/true\n",
        [
            "conf.d/x.yaml: command: cannot be combined with queues: (a program is either a worker "
            "with queues: or a plain command:, not both)"
        ],
    ),
    (
        "x.yaml",
        "numprocs: 2\n",
        ["conf.d/x.yaml: queues: required (or command: for a plain program)"],
    ),
    ("x.yaml", "queues: []\n", ["conf.d/x.yaml: queues: must not be empty"]),
    (
        "x.yaml",
        "queues: 'a, b c'\n",
        ["conf.d/x.yaml: queues.1: must match [A-Za-z0-9_.:-]+, got 'b c'"],
    ),
    ("x.yaml", "queues: [a, b, a]\n", ["conf.d/x.yaml: queues: duplicate queue 'a'"]),
    (  # every item bad: those errors only, not also "must not be empty"
        "x.yaml",
        "queues: ['{app}high', '{app}low']\n",
        ["conf.d/x.yaml: queues.0: must match [A-Za-z0-9_.:-]+, got '{app}high'",
         "conf.d/x.yaml: queues.1: must match [A-Za-z0-9_.:-]+, got '{app}low'"],
    ),
    (
        "x.yaml",
        "queues: [q]\nimport: [myapp.jobs, 'my-app']\n",
        [
            "conf.d/x.yaml: import.1: must match "
            "[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*, "
            "got 'my-app'"
        ],
    ),
    ("x.yaml", "queues: [q]\ntimeout: 0\n", ["conf.d/x.yaml: timeout: must be > 0, got 0"]),
    ("x.yaml", "queues: [q]\ntries: 0\n", ["conf.d/x.yaml: tries: must be >= 1, got 0"]),
    (
        "x.yaml",
        "queues: [q]\nbackoff: [2, -1]\n",
        ["conf.d/x.yaml: backoff.1: must be >= 0, got -1"],
    ),
    (
        "x.yaml",
        "queues: [q]\nnumprocs: '4'\n",
        ["conf.d/x.yaml: numprocs: must be an integer, got string '4'"],
    ),
    (
        "x.yaml",
        "queues: [q]\nnumprocs: yes\n",
        ["conf.d/x.yaml: numprocs: must be an integer, got boolean True"],
    ),
    (
        "x.yaml",
        "queues: [q]\nsleep: fast\n",
        ["conf.d/x.yaml: sleep: must be a number, got string 'fast'"],
    ),
    (
        "x.yaml",
        "queues: [q]\nenvironment: {PORT: 8000}\n",
        ["conf.d/x.yaml: environment.PORT: must be a string (quote it), got int 8000"],
    ),
    (
        "x.yaml",
        "queues: [q]\nmemory: 256\nmemory_hard: 200\n",
        ["conf.d/x.yaml: memory_hard: must be > memory (256), got 200"],
    ),
    (
        "x.yaml",
        "queues: [q]\nstopsignal: INT\n",
        [
            "conf.d/x.yaml: stopsignal: workers always stop with TERM (finish the "
            "current job, then "
            "exit), got 'INT'; remove this key"
        ],
    ),
    (
        "x.yaml",
        "queues: [q]\nschedule: [{cron: '0 9 * * 1-5', numprocs: 2}, {cron: '0 25 * * *', "
        "numprocs: 1}]\n",
        ["conf.d/x.yaml: schedule.1.cron: '0 25 * * *' is not a valid cron expression"],
    ),
    (
        "x.yaml",
        "queues: [q]\nschedule: [{cron: '0 0 9 * * *', numprocs: 2}]\n",
        [
            "conf.d/x.yaml: schedule.0.cron: must have 5 fields (minute hour day-of-month month "
            "day-of-week), got 6 in '0 0 9 * * *'"
        ],
    ),
    (
        "x.yaml",
        "queues: [q]\nschedule: [{cron: '0 0 31 2 *', numprocs: 2}]\n",
        ["conf.d/x.yaml: schedule.0.cron: '0 0 31 2 *' never fires (no such date)"],
    ),
    (
        "x.yaml",
        "queues: [q]\nschedule: [{cron: '@daily', numprocs: -1}]\n",
        ["conf.d/x.yaml: schedule.0.numprocs: must be >= 0, got -1"],
    ),
    (
        "x.yaml",
        "queues: [q]\ntimezone: Europe/Berln\n",
        [
            "conf.d/x.yaml: timezone: unknown timezone 'Europe/Berln' (use an IANA name such as "
            "Europe/Berlin or UTC)"
        ],
    ),
    (
        "x.yaml",
        "queues: [q]\nautoscale: {min: 4, max: 2}\n",
        ["conf.d/x.yaml: autoscale.max: must be >= min (4), got 2"],
    ),
    (
        "x.yaml",
        "queues: [q]\nautoscale: {max: 0}\n",
        ["conf.d/x.yaml: autoscale.max: must be >= 1, got 0"],
    ),
    (
        "x.yaml",
        "queues: [q]\nautoscale: {max: 3, by: fast}\n",
        ["conf.d/x.yaml: autoscale.by: must be one of 'size' or 'wait', got 'fast'"],
    ),
    ("x.yaml", "queues: [q]\nautoscale: {min: 1}\n", ["conf.d/x.yaml: autoscale.max: required"]),
    (
        "x.yaml",
        "queues: [q]\nautoscale: {min: 2, max: 4, fleet_max: 1}\n",
        ["conf.d/x.yaml: autoscale.fleet_max: must be >= min (2), got 1"],
    ),
    (
        "x.yaml",
        "queues: [q]\nautoscale: {max: 4}\nschedule: [{cron: '0 9 * * *', numprocs: 6}]\n",
        [
            "conf.d/x.yaml: autoscale: max (4) is below schedule.0.numprocs (6); a "
            "schedule rule sets "
            "the autoscale floor, so raise max or lower the rule"
        ],
    ),
    ("x.yaml", "command: ''\n", ["conf.d/x.yaml: command: must not be empty"]),
    (
        "x.yaml",
        'command: "echo \'hi"\n',
        ["conf.d/x.yaml: command: cannot be split into arguments: No closing quotation"],
    ),
    (
        "x.yaml",
        "command: /bin/true\nstopsignal: STOP\n",
        [
            "conf.d/x.yaml: stopsignal: must be one of 'TERM', 'INT', 'QUIT', "
            "'HUP', 'KILL', 'USR1' "
            "or 'USR2', got 'STOP'"
        ],
    ),
    (
        "x.yaml",
        "command: /bin/true\nautorestart: sometimes\n",
        ["conf.d/x.yaml: autorestart: must be true, false or 'unexpected', got 'sometimes'"],
    ),
    (
        "x.yaml",
        "command: /bin/true\nexitcodes: [0, 256]\n",
        ["conf.d/x.yaml: exitcodes.1: must be <= 255, got 256"],
    ),
    (
        "x.yaml",
        "command: /bin/true\nautoscale: {max: 3}\n",
        ["conf.d/x.yaml: autoscale: only worker programs (queues:) can autoscale"],
    ),
    ("x.yaml", "command: /bin/true\ntimeout: 30\n",
     ["conf.d/x.yaml: timeout: applies to worker programs (queues:) only"]),
    # process counts are capped (MAX_NUMPROCS): a typo must not fork the host to its knees
    ("x.yaml", "queues: [q]\nnumprocs: 100000\n",
     ["conf.d/x.yaml: numprocs: must be <= 1000, got 100000"]),
    ("x.yaml", "command: /bin/true\nnumprocs: 1001\n",
     ["conf.d/x.yaml: numprocs: must be <= 1000, got 1001"]),
    ("x.yaml", "queues: [q]\nautoscale: {max: 100000}\n",
     ["conf.d/x.yaml: autoscale.max: must be <= 1000, got 100000"]),
    ("x.yaml", "queues: [q]\nautoscale: {min: 5000, max: 1000}\n",
     ["conf.d/x.yaml: autoscale.min: must be <= 1000, got 5000"]),
    ("x.yaml", "queues: [q]\nschedule: [{cron: '0 9 * * *', numprocs: 100000}]\n",
     ["conf.d/x.yaml: schedule.0.numprocs: must be <= 1000, got 100000"]),
]


@pytest.mark.parametrize(("filename", "text", "expected"), ERROR_CASES)
def test_each_error_names_file_key_and_problem(confd, filename, text, expected):
    assert problems_for(confd, filename, text) == expected


def test_retry_after_not_above_timeout_plus_margin_explains_double_run(confd):
    [problem] = problems_for(confd, "x.yaml", "queues: [q]\ntimeout: 60\nretry_after: 65\n")
    assert problem.startswith(
        "conf.d/x.yaml: retry_after: must be greater than timeout + 5 (65), got 65: "
    )
    assert "runs twice" in problem
    program = load_program_file(
        write(confd, "ok.yaml", "queues: [q]\ntimeout: 60\nretry_after: 66\n")
    )
    assert program.retry_after == 66


def test_broken_yaml_names_line_and_column(confd):
    [problem] = problems_for(confd, "x.yaml", "queues: [q]\nnumprocs: [1\nsleep: 2\n")
    assert problem.startswith("conf.d/x.yaml: line 3, column 6: invalid YAML: ")


def test_every_problem_of_every_file_is_collected_one_per_line(confd):
    write(confd, "a.yaml", "queues: [q]\nnumprocs: -1\ntimeout: 0\n")
    write(confd, "b.yml", "command: /bin/true\nbogus: 1\n")
    write(confd, "c.yaml", "queues: [fine]\n")
    with pytest.raises(ConfigError) as caught:
        load_config_dir(confd)
    expected = [
        "conf.d/a.yaml: numprocs: must be >= 0, got -1",
        "conf.d/a.yaml: timeout: must be > 0, got 0",
        "conf.d/b.yml: bogus: unknown key",
    ]
    assert caught.value.problems == expected
    assert str(caught.value) == "\n".join(expected)


def test_duplicate_program_names_across_files(confd):
    write(confd, "a.yaml", "name: emails\nqueues: [q]\n")
    write(confd, "emails.yaml", "queues: [q]\n")
    assert problems_for(confd, "z.yaml", "command: /bin/true\nname: emails\n") == [
        "conf.d/emails.yaml: name: duplicate program name 'emails' (also defined by conf.d/a.yaml)",
        "conf.d/z.yaml: name: duplicate program name 'emails' (also defined by conf.d/a.yaml)",
    ]


def test_missing_directory_is_an_error(confd):
    with pytest.raises(ConfigError, match="^nope: not a directory$"):
        load_config_dir("nope")


def test_dir_reads_yaml_and_yml_sorted_names_from_stem_or_name_key(confd):
    write(confd, "b.yml", "queues: [q]\n")
    write(confd, "a.yaml", "name: mailer\ncommand: /bin/true\n")
    write(confd, "notes.txt", "not: [a program\n")
    programs = load_config_dir(confd)
    assert list(programs) == ["mailer", "b"]
    assert programs["mailer"].kind == "command"
    assert programs["b"].kind == "worker"


def test_worker_defaults():
    program = load_worker({"name": "w", "queues": ["q"]})
    assert (program.kind, program.numprocs, program.startsecs, program.startretries) == (
        "worker",
        1,
        1,
        3,
    )
    assert program.schedule == () and program.timezone == "UTC" and program.environment == {}
    assert program.directory is None and program.autoscale is None
    assert program.imports == () and program.max_jobs == 0 and program.max_time == 0
    assert program.timeout == 60 and program.tries == 1 and program.backoff == (0,)
    assert program.memory == 128 and program.memory_hard is None
    assert program.sleep == 3 and program.rest == 0 and program.prefetch == 1
    assert program.retry_after is None and program.stopsignal == "TERM"
    assert program.stopwaitsecs == 70  # timeout + 10: a graceful stop never kills a job


def test_worker_stopwaitsecs_follows_timeout_unless_set():
    assert load_worker({"name": "w", "queues": ["q"], "timeout": 30}).stopwaitsecs == 40
    assert load_worker({"name": "w", "queues": ["q"], "stopwaitsecs": 5}).stopwaitsecs == 5


def test_command_defaults_and_argv():
    program = CommandProgram.model_validate({"name": "c", "command": "sh -c 'echo hi'"})
    assert program.kind == "command"
    assert program.argv == ("sh", "-c", "echo hi")
    assert (program.stopsignal, program.stopwaitsecs) == ("TERM", 10)
    assert (program.autorestart, program.exitcodes, program.autoscale) == (True, (0,), None)


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"queues": "high, low"}, "queues", ("high", "low")),
        ({"queues": ["q"], "import": "a.b, c"}, "imports", ("a.b", "c")),
        ({"queues": ["q"], "backoff": 5}, "backoff", (5,)),
        ({"queues": ["q"], "backoff": [2, 10]}, "backoff", (2, 10)),
        ({"queues": ["q"], "timeout": 2.5}, "timeout", 2.5),
        (
            {"queues": ["q"], "autoscale": {"max": 8}},
            "autoscale",
            {"min": 1, "max": 8, "by": "size", "cooldown": 10, "max_shift": 1, "target_wait": None,
             "fleet_max": None},
        ),
        ({"command": "x", "stopsignal": "sigint"}, "stopsignal", "INT"),
        ({"command": "x", "autorestart": "unexpected"}, "autorestart", "unexpected"),
        ({"command": "x", "exitcodes": 2}, "exitcodes", (2,)),
    ],
)
def test_normalised_values(confd, data, field, expected):
    import yaml

    program = load_program_file(write(confd, "p.yaml", yaml.safe_dump(data)))
    value = getattr(program, field)
    assert (value.model_dump() if isinstance(value, pydantic.BaseModel) else value) == expected


def test_configs_are_frozen():
    program = load_worker({"name": "w", "queues": ["q"]})
    with pytest.raises(pydantic.ValidationError):
        program.numprocs = 5


def load_worker(data: dict) -> WorkerProgram:
    return WorkerProgram.model_validate(data)


BASE = {"name": "p", "queues": ["q"], "timeout": 30}
RULES = [{"cron": "0 9 * * *", "numprocs": 4}]


@pytest.mark.parametrize(
    ("change", "bucket"),
    [
        ({}, "unchanged"),
        ({"numprocs": 3}, "rescaled"),
        ({"schedule": RULES}, "rescaled"),
        ({"schedule": RULES, "timezone": "Europe/Berlin"}, "rescaled"),
        ({"autoscale": {"max": 5}}, "rescaled"),
        ({"timeout": 45}, "replaced"),
        ({"environment": {"A": "1"}}, "replaced"),
        ({"queues": ["q", "r"]}, "replaced"),
        ({"numprocs": 3, "memory": 64}, "replaced"),
    ],
)
def test_diff_programs_buckets(change, bucket):
    old = {"p": load_worker(BASE)}
    new = {"p": load_worker({**BASE, **change})}
    assert getattr(diff_programs(old, new), bucket) == ("p",)


def test_diff_programs_added_removed_and_kind_change():
    old = {
        "a": load_worker({**BASE, "name": "a"}),
        "b": load_worker({**BASE, "name": "b"}),
        "c": load_worker({**BASE, "name": "c"}),
    }
    new = {
        "b": CommandProgram.model_validate({"name": "b", "command": "/bin/true"}),
        "c": old["c"],
        "d": load_worker({**BASE, "name": "d"}),
    }
    assert diff_programs(old, new) == ReloadPlan(
        added=("d",), removed=("a",), replaced=("b",), unchanged=("c",)
    )


def test_the_contracts_example_program_is_valid(confd):
    """The contract's example file lists numprocs beside autoscale: numprocs is then ignored."""
    write(confd, "emails.yaml", textwrap.dedent("""\
        queues: [emails-high, emails]
        import: [myapp.jobs]
        numprocs: 4
        max_jobs: 1000
        max_time: 3600
        timeout: 60
        tries: 3
        backoff: [2, 10]
        memory: 256
        sleep: 3
        stopwaitsecs: 75
        schedule:
          - {cron: "0 9 * * 1-5", numprocs: 8}
          - {cron: "0 18 * * 1-5", numprocs: 2}
        timezone: UTC
        autoscale: {min: 2, max: 16}
    """))
    [program] = load_config_dir(confd).values()
    assert program.autoscale.max == 16 and program.numprocs == 4


def test_the_margin_config_checks_is_the_one_the_queue_reserves_with() -> None:
    """config/schema.py imports nothing from the package, so it keeps its own copy."""
    from supervisor_q.config import schema as config_schema
    from supervisor_q.queue import backend

    assert config_schema.RESERVATION_MARGIN == backend.RESERVATION_MARGIN


def test_config_and_cli_share_the_queue_name_rule_and_process_cap() -> None:
    """config/schema.py and `scale` (which starts fast) keep copies; these keep them equal."""
    from supervisor_q.cli import master as cli_master
    from supervisor_q.config import schema as config_schema
    from supervisor_q.queue import keys

    assert config_schema.QUEUE_PATTERN == keys.QUEUE_PATTERN
    assert cli_master.MAX_NUMPROCS == config_schema.MAX_NUMPROCS

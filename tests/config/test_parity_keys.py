"""Supervisor's program keys in the schema, and the substitution helper."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from supervisor_q.config.loading import ConfigError, diff_programs, load_program_file
from supervisor_q.config.substitute import substitute


def load(tmp_path: Path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return load_program_file(path)


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_supervisor_keys_and_their_defaults(tmp_path: Path) -> None:
    plain = load(tmp_path, "command: sleep 1\n")
    assert (plain.user, plain.umask, plain.priority, plain.autostart, plain.group) == (
        None, None, 999, True, None)
    full = load(tmp_path, """\
        command: sleep 1
        user: root
        umask: '022'
        priority: 5
        autostart: false
        group: web
        """)
    assert (full.user, full.umask, full.priority, full.autostart, full.group) == (
        "root", 0o22, 5, False, "web")
    assert load(tmp_path, "queues: [a]\numask: 0027\n").umask == 0o27  # YAML 1.1 octal
    assert load(tmp_path, "command: sleep 1\nuser: 0\n").user == "0"  # an unquoted uid
    # Unquoted, as written: Supervisor reads umask digits as octal, never decimal.
    assert load(tmp_path, "queues: [a]\numask: 22\n").umask == 0o22
    assert load(tmp_path, "queues: [a]\numask: 0o27\n").umask == 0o27


@pytest.mark.parametrize(("text", "problem"), [
    ("user: no-such-user-xyz\n", "user: no user 'no-such-user-xyz' on this host"),
    ("umask: '089'\n", "umask: must be octal digits such as '022', got '089'"),
    ("umask: '1777'\n", "umask: "),
    ("priority: 'high'\n", "priority: "),
    ("autostart: 'no'\n", "autostart: "),
    ("group: 'a b'\n", "group: "),
])
def test_bad_supervisor_keys_are_one_line_each(tmp_path: Path, text: str, problem: str) -> None:
    found = problems(tmp_path, "command: sleep 1\n" + text)
    assert problem in found and len(found.splitlines()) == 1


def test_priority_group_and_autostart_changes_keep_children(tmp_path: Path) -> None:
    old = {"p": load(tmp_path, "command: sleep 1\n")}
    new = {"p": load(tmp_path, "command: sleep 1\npriority: 1\ngroup: g\nautostart: false\n")}
    assert diff_programs(old, new).rescaled == ("p",)
    assert diff_programs(old, {"p": load(tmp_path, "command: sleep 1\numask: '077'\n")}
                         ).replaced == ("p",)


@pytest.mark.parametrize(("text", "expected"), [
    ("--port 80{process_num}", "--port 803"),
    ("%(program_name)s_%(process_num)02d.log", "emails_03.log"),
    ("%(process_num)s {program_name} 100%%", "3 emails 100%"),
    ("%(unknown)s {other} ${HOME} %s", "%(unknown)s {other} ${HOME} %s"),
    ("%(program_name)d", "%(program_name)d"),
])
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, "emails", 3) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ('command: "sh -c \'echo %(nope)s\'"\n', "command: '%(nope)s' is not a placeholder"),
    ("command: sleep 1\nstdout_logfile: /tmp/x-%(process_num)s-%(bogus)s.log\n",
     "stdout_logfile: '%(bogus)s' is not a placeholder"),
    ('command: sleep 1\nenvironment: {A: "%(ENV_HOME)s"}\n',
     "environment.A: '%(ENV_HOME)s' is not a placeholder"),
    ("command: echo %(process_num)x\n", "command: '%(process_num)x' is not a placeholder"),
])
def test_unknown_placeholders_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    """Supervisor refuses them when it loads; a command would get the text literally."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert problem in str(caught.value)


def test_known_placeholders_and_a_literal_percent_load(tmp_path: Path) -> None:
    program = load(tmp_path, "command: sh -c 'echo 100%% %(program_name)s'\n"
                             "stdout_logfile: /tmp/x-%(process_num)02d.log\n")
    assert program.command.endswith("%(program_name)s'")


def test_a_literal_choice_is_worded_as_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "queues: [a, b]\nbalance: true\n")
    assert "balance: must be one of false, 'simple' or 'auto', got true" in str(caught.value)


def test_a_worker_key_on_a_command_program_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "command: sleep 1\nlog_jobs: false\n")
    assert "log_jobs: applies to worker programs (queues:) only" in str(caught.value)

"""Supervisor's log keys in program files, and {process_num} substitution."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor_q.config.loading import load_program_file
from supervisor_q.config.substitute import substitute
from tests.config.test_config import problems_for, write


@pytest.fixture
def confd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf.d").mkdir()
    return Path("conf.d")


def test_log_keys_take_supervisors_sizes_and_defaults(confd: Path) -> None:
    program = load_program_file(write(confd, "p.yaml", (
        "command: sleep 1\nstdout_logfile: /var/log/p-%(process_num)s.log\n"
        "stderr_logfile: /var/log/p.err\nlogfile_maxbytes: 10KB\n"
        "stderr_logfile_maxbytes: 1GB\nlogfile_backups: 0\n")))
    assert program.logfile("stdout") == "/var/log/p-%(process_num)s.log"
    assert program.logfile("stderr") == "/var/log/p.err"
    assert program.maxbytes("stdout") == 10 * 1024
    assert program.maxbytes("stderr") == 1024 ** 3
    assert program.logfile_backups == 0
    plain = load_program_file(write(confd, "q.yaml", "queues: [q]\n"))
    assert plain.logfile("stdout") is None and plain.maxbytes("stdout") == 50 * 1024 ** 2
    assert plain.logfile_backups == 10 and plain.log_jobs is True


def test_redirect_stderr_sends_stderr_to_the_stdout_file(confd: Path) -> None:
    program = load_program_file(write(confd, "p.yaml", (
        "command: sleep 1\nstdout_logfile: /tmp/p.log\nredirect_stderr: true\n")))
    assert program.logfile("stderr") == "/tmp/p.log"


@pytest.mark.parametrize(("text", "expected"), [
    ("logfile_maxbytes: 10XB\n",
     "conf.d/x.yaml: logfile_maxbytes: must be a size like 50MB, 10KB or a number of "
     "bytes, got '10XB'"),
    ("stdout_logfile: logs/x.log\n",
     "conf.d/x.yaml: stdout_logfile: must be an absolute path, got 'logs/x.log'"),
    ("log_jobs: 'no'\n", "conf.d/x.yaml: log_jobs: "),
])
def test_bad_log_keys_are_one_line_each(confd: Path, text: str, expected: str) -> None:
    [problem] = problems_for(confd, "x.yaml", "queues: [q]\n" + text)
    assert problem.startswith(expected)


def test_substitute_puts_in_the_process_number_and_program_name() -> None:
    text = "/l/{process_num}/%(program_name)s-%(process_num)s.log"
    assert substitute(text, "emails", 3) == "/l/3/emails-3.log"
    assert substitute("/plain.log", "emails", 3) == "/plain.log"

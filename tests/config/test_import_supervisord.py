"""`supervisor-q import-supervisord`: Supervisor's, Laravel's and Celery's supervisord
files (tests/config/supervisord/, in the style of their documentation) become program
files that `check-config` accepts.

Until the parity keys (user, umask, priority, autostart, group, the log keys) are in
the schema, check-config reports exactly those as unknown keys; the round trip accepts
those problems and no other.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from supervisor_q.cli.main import main
from supervisor_q.config.loading import load_program_file
from supervisor_q.config.substitute import substitute

SAMPLES = Path(__file__).parent / "supervisord"


def _import(tmp_path: Path, capsys: pytest.CaptureFixture[str], *files: Path,
            extra: tuple[str, ...] = ()) -> tuple[int, str, str, Path]:
    out = tmp_path / "conf.d"
    code = main(["import-supervisord", *map(str, files), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, out


def _programs(out: Path) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))}


@pytest.fixture
def imported(tmp_path: Path, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, Path]:
    monkeypatch.setenv("SQ_TEST_APP_DIR", "/srv/app/current")
    code, out, err, conf = _import(tmp_path, capsys, SAMPLES / "supervisord.conf")
    assert code == 0, err
    return out, err, conf


def test_samples_round_trip_through_check_config(imported: tuple[str, str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, _, conf = imported
    assert sorted(p.name for p in conf.iterdir()) == [
        "cat.yaml", "celery.yaml", "celerybeat.yaml", "emails.yaml", "laravel-worker.yaml",
        "rq.yaml"]
    code = main(["check-config", str(conf)])
    lines = capsys.readouterr().err.splitlines()
    # The samples' directories (/path/to/project) are not on this host: warnings only.
    problems = [line for line in lines if not line.startswith("warning: ")]
    assert all("does not exist on this host" in line for line in lines
               if line.startswith("warning: "))
    for line in problems:  # the samples' doc users (chrism, forge) are not on this host:
        # check-config checks an imported `user:` like a written one
        if re.fullmatch(r".*\.yaml: user: no user '(chrism|forge)' on this host", line):
            continue
        raise AssertionError(line)
    assert code == (1 if problems else 0)


def test_program_keys_are_converted(imported: tuple[str, str, Path]) -> None:
    programs = _programs(imported[2])
    cat = programs["cat"]
    assert cat["command"] == "/bin/cat"
    assert (cat["directory"], cat["umask"], cat["priority"]) == ("/tmp", "022", 999)
    assert (cat["autostart"], cat["autorestart"], cat["startsecs"]) == (True, "unexpected", 1)
    assert (cat["exitcodes"], cat["stopsignal"], cat["stopwaitsecs"]) == ([0, 2], "QUIT", 10)
    assert (cat["user"], cat["redirect_stderr"], cat["stdout_logfile"]) == (
        "chrism", True, "/a/path")
    assert (cat["stdout_logfile_maxbytes"], cat["logfile_backups"]) == (1024 ** 2, 10)
    assert cat["environment"] == {"A": "1", "B": "2", "HOME": str(SAMPLES.resolve())}
    laravel = programs["laravel-worker"]
    assert laravel["command"] == ("php /home/forge/app.com/artisan queue:work sqs --sleep=3 "
                                  "--tries=3 --max-time=3600")
    assert (laravel["numprocs"], laravel["user"], laravel["stopwaitsecs"]) == (8, "forge", 3600)
    celery = programs["celery"]
    assert celery["stdout_logfile"] == celery["stderr_logfile"] == "/var/log/celery/worker.log"
    assert (celery["priority"], celery["startsecs"], celery["directory"]) == (
        1000, 10, "/path/to/project")
    rq = programs["rq"]
    assert rq["stdout_logfile"] == "/var/log/rq/rq-%(process_num)s.log"  # read as written
    assert rq["numprocs_start"] == 0  # Supervisor's numbering: the same files
    assert rq["stdout_logfile_maxbytes"] == 50 * 1024 ** 2
    emails = programs["emails"]
    assert emails["directory"] == "/srv/app/current"  # %(ENV_SQ_TEST_APP_DIR)s
    assert emails["environment"] == {"SUPERVISOR_Q_REDIS_URL": "redis://127.0.0.1:6379/0",
                                     "APP_ENV": "production"}


def test_groups_and_includes(imported: tuple[str, str, Path]) -> None:
    programs = _programs(imported[2])
    assert programs["cat"]["group"] == programs["emails"]["group"] == "thegroupname"
    assert "group" not in programs["celery"]
    assert "[group:thegroupname]: priority" in imported[1]


def test_unknown_options_become_comments_and_warnings(imported: tuple[str, str, Path]) -> None:
    _, err, conf = imported
    text = (conf / "cat.yaml").read_text()
    assert "# Not converted (no supervisor-q equivalent):\n# stdout_capture_maxbytes=1MB" in text
    assert "# serverurl=AUTO" in text
    assert "supervisord.conf [program:cat]: stdout_events_enabled: no equivalent" in err
    assert "stopasgroup=false: supervisor-q always signals the whole process group" in err
    assert "[eventlistener:memmon]: not converted" in err
    assert "process_num" not in err  # %(process_num)02d is kept: supervisor-q reads it
    assert "stopasgroup" not in (conf / "celery.yaml").read_text()  # true = the default


def test_queue_workers_stay_commands_with_a_suggestion(
        imported: tuple[str, str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out, _, conf = imported
    for name in ("laravel-worker", "celery", "rq", "emails"):
        assert "command" in _programs(conf)[name]
        assert f"{name}: kept as a command program" in out
    assert "celerybeat: kept" not in out
    blocks = dict(re.findall(r"(?m)^([\w-]+): kept as a command program.*\n((?:    .*\n)+)",
                             out))
    laravel = yaml.safe_load(blocks["laravel-worker"])
    assert laravel == {"name": "laravel-worker-sq", "queues": ["default"], "tries": 3,
                       "sleep": 3.0, "max_time": 3600, "numprocs": 8}
    assert yaml.safe_load(blocks["celery"])["queues"] == ["high", "low"]
    assert yaml.safe_load(blocks["rq"])["queues"] == ["high", "default"]
    emails = yaml.safe_load(blocks["emails"])
    assert emails == {"name": "emails", "queues": ["emails-high", "emails"],
                      "import": ["tests.jobmods.basic"], "tries": 3, "timeout": 30,
                      "sleep": 1.0, "numprocs": 2}
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    (worker_dir / "emails.yaml").write_text(blocks["emails"])
    assert main(["check-config", str(worker_dir)]) == 0, capsys.readouterr().err


def test_env_expansion_missing_variable_is_kept_and_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQ_TEST_APP_DIR", raising=False)
    code, _, err, conf = _import(tmp_path, capsys, SAMPLES / "conf.d" / "workers.conf")
    assert code == 0
    assert _programs(conf)["emails"]["directory"] == "%(ENV_SQ_TEST_APP_DIR)s"
    assert "directory: %(ENV_SQ_TEST_APP_DIR)s has no value here, kept as is" in err


def test_bad_input_is_one_line_and_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text("command=/bin/true\n[program:x\n")
    code, _, err, conf = _import(tmp_path, capsys, broken)
    assert code == 1 and len(err.splitlines()) == 1 and "not an INI file" in err
    assert not conf.exists()
    code, _, err, _ = _import(tmp_path, capsys, tmp_path / "missing.conf")
    assert code == 1 and err.strip().endswith("cannot read: No such file or directory")


def test_existing_files_need_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "one.conf"
    shutil.copy(SAMPLES / "conf.d" / "laravel-worker.conf", sample)
    assert _import(tmp_path, capsys, sample)[0] == 0
    (tmp_path / "conf.d" / "laravel-worker.yaml").write_text("# mine\n")
    code, _, err, conf = _import(tmp_path, capsys, sample)
    assert code == 1 and "already exist" in err
    assert (conf / "laravel-worker.yaml").read_text() == "# mine\n"
    assert _import(tmp_path, capsys, sample, extra=("--force",))[0] == 0
    assert "command:" in (conf / "laravel-worker.yaml").read_text()


def test_odd_values_names_and_signals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "odd.conf"
    sample.write_text("[program:my app]\ncommand=/bin/sleep 1000\nnumprocs=" + "x" * 500
                      + "\nstopsignal=SIGINT\nnumprocs_start=1\nautostart=maybe\n")
    code, _, err, conf = _import(tmp_path, capsys, sample)
    assert code == 0
    program = _programs(conf)["my-app"]
    assert program == {"command": "/bin/sleep 1000", "stopsignal": "INT", "numprocs_start": 1,
                       "autorestart": "unexpected"}  # Supervisor's default, written out
    text = (conf / "my-app.yaml").read_text()
    assert "# autostart=maybe" in text
    assert f"numprocs: {'x' * 40!r} is not a whole number" in err
    lines = err.splitlines()
    assert "name 'my app' becomes 'my-app'" in err
    assert "autostart: not a boolean: 'maybe'; kept as a comment" in err
    assert all(len(line) <= 300 for line in lines)


def test_duplicates_missing_includes_and_bad_umask(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A section written twice is refused (as Supervisor does); an include matching no
    file and an impossible umask are warnings; %(process_num) keeps Supervisor's numbers."""
    twice = tmp_path / "twice.conf"
    twice.write_text("[program:web]\ncommand=a\n\n[program:web]\ncommand=b\n")
    code, _, err, _ = _import(tmp_path, capsys, twice)
    assert code == 1 and "[program:web] is written twice (line 4)" in err
    other = tmp_path / "other.conf"  # across an [include]: refused as well
    other.write_text("[program:web]\ncommand=b\n")
    main_conf = tmp_path / "main.conf"
    main_conf.write_text(f"[include]\nfiles = {other.name}\n\n[program:web]\ncommand=a\n")
    code, _, err, _ = _import(tmp_path, capsys, main_conf)
    assert code == 1 and "program web is defined twice" in err and "nothing written" in err
    sample = tmp_path / "one.conf"
    sample.write_text("[include]\nfiles = nowhere/*.conf\n\n[program:web]\n"
                      "command=serve --port 80%(process_num)02d\nnumprocs=2\numask=999\n")
    code, _, err, conf = _import(tmp_path, capsys, sample, extra=("--force",))
    assert code == 0
    assert "[include]: no file matches" in err and "nowhere/*.conf" in err
    assert "umask: '999' is not an octal umask" in err
    web = _programs(conf)["web"]
    assert "umask" not in web and web["numprocs_start"] == 0
    loaded = load_program_file(conf / "web.yaml")
    assert [substitute(loaded.argv[-1], "web", loaded.process_num(n)) for n in (1, 2)] == [
        "8000", "8001"]

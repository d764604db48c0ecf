"""Which pools a control command means, Supervisor-style, and the commands built on it.

A target is a program name, `all`, `GROUP:*` (every program with `group: GROUP`),
`GROUP:NAME`, or a shell glob over program names (`emails*`, `GROUP:em*`). Pools are
kept in `priority` order (lower first, then by name): starts follow it, stops go in
reverse. `signal` and `pid` are the two commands that only address processes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from supervisor_q.ctl.protocol import ControlError
from supervisor_q.master.pool import Pool
from supervisor_q.master.process import ACTIVE_STATES

if TYPE_CHECKING:
    from supervisor_q.master.arbiter import Arbiter

MAX_TARGET = 200  # a target longer than this is refused, not echoed back


def by_priority(pools: Mapping[str, Pool]) -> dict[str, Pool]:
    """The pools in start order: `priority` ascending, then name."""
    return dict(sorted(pools.items(), key=lambda item: (item[1].program.priority, item[0])))


def resolve(pools: Mapping[str, Pool], target: object) -> list[Pool]:
    """The pools `target` names, in priority order; ControlError when none matches."""
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET:
        raise ControlError("give a program name, GROUP:*, all, or a glob such as 'emails*'")
    if target in pools:
        return [pools[target]]
    if target == "all":
        found = list(pools.values())
    elif ":" in target:
        group, _, name = target.partition(":")
        found = [p for p in pools.values() if p.program.group is not None
                 and fnmatchcase(p.program.group, group) and fnmatchcase(p.name, name or "*")]
    else:
        found = [p for p in pools.values() if fnmatchcase(p.name, target)]
    if not found:
        known = ", ".join(sorted(pools)) or "none"
        raise ControlError(f"no program matches {target!r} (programs: {known})")
    return found


def is_single(pools: Mapping[str, Pool], target: object) -> bool:
    """`target` is one program's own name (not a group, a glob or all)."""
    return isinstance(target, str) and target in pools


NOTHING_SIGNALLED = ": no running process to signal"  # `signal` then exits 1


def parse_signal(value: object) -> signal.Signals:
    """HUP, SIGHUP, hup or 1 -> signal.SIGHUP; ControlError for anything else."""
    text = str(value).strip().upper() if isinstance(value, str | int) else ""
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else "SIG" + text]
    except (KeyError, ValueError):
        raise ControlError(f"unknown signal {str(value)[:40]!r} (use a name such as HUP, "
                           "USR1 or TERM, or a number)") from None


def send_signal(arbiter: Arbiter, args: dict[str, Any]) -> str:
    """`signal SIG TARGET`: the signal to each running child's process group."""
    sig = parse_signal(args.get("signal"))
    sent = []
    for pool in resolve(arbiter.pools, args.get("program")):
        for child in pool.children:
            if child.state in ACTIVE_STATES and child.signallable:
                pool.signal(child, sig)
                sent.append(f"{child.name} ({child.pid})")
    if not sent:
        return f"{sig.name}{NOTHING_SIGNALLED}"
    return f"{sig.name} sent to {', '.join(sent)}"


def pids(arbiter: Arbiter, args: dict[str, Any]) -> list[dict[str, Any]]:
    """`pid [TARGET]`: the master's own pid, or each live child's of the target."""
    if not args.get("program"):
        return [{"name": "master", "pid": os.getpid()}]
    return [{"name": child.name, "pid": child.pid}
            for pool in resolve(arbiter.pools, args.get("program"))
            for child in pool.children if child.state in ACTIVE_STATES and child.signallable]

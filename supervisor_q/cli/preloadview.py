"""The lines plain `status` prints for a `preload: true` program: its zygote (ready,
importing, or none) and the last preload error, as `status --json`'s "preload" has
them. Imports ids (the shown form of the error text)."""

from __future__ import annotations

from supervisor_q.queue.ids import shown


def preload_lines(preload: dict | None) -> list[str]:
    """[] for a program without preload; else the zygote's line, and the error's."""
    if not preload:
        return []
    ready, importing = preload.get("zygote_pid"), preload.get("importing_pid")
    state = "ready" if ready else "importing" if importing else "none"
    more = f" importing pid={importing}" if ready and importing else ""
    lines = [f"  {'zygote':<18} pid={ready or importing or '-':<7} {state}{more}"]
    if preload.get("error"):
        lines.append(f"  {'preload error':<18} {shown(str(preload['error']))[:300]}")
    return lines

"""Time by pipeline stage: where a message's time goes, for the benchmark to print.

Off unless `enable()` is called (bench/e2e.py does, in the gateway process it starts): then
`begin()` is 0.0 and `end()` returns at once, so a hot path pays two calls. On, each stage
sums the wall time of the synchronous sections marked with it. Sections never span an
`await`, so on the event loop's thread their time is that thread's own work; the writer
thread's operations are timed by `gateway.store.sqlite` under "store." names.

Stages are written by one thread each (the loop's names and the writer's differ), so the
unlocked read-add-write below cannot lose an update.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from time import perf_counter

__all__ = ["add", "begin", "enable", "enabled", "end", "reset", "snapshot", "thread_cpu"]

_on = False
_seconds: dict[str, float] = {}
_calls: dict[str, int] = {}


def enable() -> None:
    global _on  # noqa: PLW0603 - one switch for the process
    _on = True


def enabled() -> bool:
    return _on


def reset() -> None:
    _seconds.clear()
    _calls.clear()


def begin() -> float:
    """The start of a section: pass it to `end` (0.0 when timing is off)."""
    return perf_counter() if _on else 0.0


def end(stage: str, started: float) -> None:
    if started:
        _seconds[stage] = _seconds.get(stage, 0.0) + (perf_counter() - started)
        _calls[stage] = _calls.get(stage, 0) + 1


def add(stage: str, seconds: float, calls: int = 1) -> None:
    _seconds[stage] = _seconds.get(stage, 0.0) + seconds
    _calls[stage] = _calls.get(stage, 0) + calls


def snapshot() -> dict[str, dict[str, float]]:
    """{stage: {"seconds": total, "calls": sections}} so far."""
    return {
        stage: {"seconds": seconds, "calls": _calls.get(stage, 0)}
        for stage, seconds in sorted(_seconds.items())
    }


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each of this process's threads, by thread name
    (Linux; empty elsewhere). Threads of one name are summed."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {}
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        name = names.get(int(task.name)) or stat[stat.index("(") + 1 : stat.rindex(")")]
        out[name] = out.get(name, 0.0) + cpu
    return out

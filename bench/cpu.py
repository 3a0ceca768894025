"""Where the CPU went during a measurement: server workers, PostgreSQL backends, the bench itself.

Read from /proc (Linux only; elsewhere the figures are simply absent). Cumulative CPU ticks are
sampled before and after a phase; the difference over the wall time is in cores (2.0 = both of
a 2-core machine busy).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    server: float
    postgres: float
    bench: float


@dataclass(frozen=True)
class CpuUse:
    """Cores used on average during a phase."""

    server: float
    postgres: float
    bench: float

    def describe(self) -> str:
        return f"server {self.server:.2f} + postgres {self.postgres:.2f} + bench {self.bench:.2f} cores"


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds) for every readable process."""
    found: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / _TICKS)
    return found


def _tree_cpu(processes: dict[int, tuple[int, str, float]], root: int) -> float:
    members, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in processes.items() if ppid == parent and pid not in members]
        members.update(children)
        frontier.extend(children)
    return sum(processes[pid][2] for pid in members if pid in processes)


def snapshot(server_pid: int) -> CpuSnapshot:
    times = os.times()
    if not Path("/proc/self/stat").exists():
        return CpuSnapshot(time.perf_counter(), 0.0, 0.0, times.user + times.system)
    processes = _processes()
    postgres = sum(cpu for _, name, cpu in processes.values() if name.startswith("postgres"))
    return CpuSnapshot(time.perf_counter(), _tree_cpu(processes, server_pid), postgres, times.user + times.system)


def usage(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    wall = max(after.at - before.at, 1e-9)
    return CpuUse(
        (after.server - before.server) / wall,
        (after.postgres - before.postgres) / wall,
        (after.bench - before.bench) / wall,
    )

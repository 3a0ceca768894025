"""Where the CPU went during a measurement: server workers, PostgreSQL, the bench, everything else.

Read from /proc (Linux only; elsewhere the figures stay zero). Cumulative CPU times are sampled
before and after a phase; the difference over the wall time is in cores (2.0 = both cores of a
2-core machine busy). `other` is whatever else ran on the machine meanwhile (a disturbed run),
and the per-worker split shows whether keep-alive connections were spread over the workers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    server: float = 0.0  # the whole server process tree
    workers: dict[int, float] = field(default_factory=dict)  # pid -> seconds
    postgres: dict[int, float] = field(default_factory=dict)  # pid -> seconds
    bench: float = 0.0
    busy: float = 0.0  # the whole machine


@dataclass(frozen=True)
class CpuUse:
    """Cores used on average during a phase."""

    server: float
    workers: tuple[float, ...]
    postgres: float
    bench: float
    other: float

    def describe(self) -> str:
        split = "/".join(f"{worker:.2f}" for worker in self.workers)
        return (
            f"server {self.server:.2f} (workers {split}) + postgres {self.postgres:.2f} + bench {self.bench:.2f}"
            f" + other {self.other:.2f} cores"
        )


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds) for every readable process."""
    found: dict[int, tuple[int, str, float]] = {}
    for entry in _PROC.iterdir():
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


def _tree(processes: dict[int, tuple[int, str, float]], root: int) -> dict[int, float]:
    members, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in processes.items() if ppid == parent and pid not in members]
        members.update(children)
        frontier.extend(children)
    return {pid: processes[pid][2] for pid in members if pid in processes}


def _workers(tree: dict[int, float], root: int) -> dict[int, float]:
    """uvicorn's worker processes (multiprocessing spawn children), or the server itself with one worker."""
    spawned = {}
    for pid, seconds in tree.items():
        try:
            if b"spawn_main" in (_PROC / str(pid) / "cmdline").read_bytes():
                spawned[pid] = seconds
        except OSError:
            continue
    return spawned or {pid: seconds for pid, seconds in tree.items() if pid == root}


def worker_pids(server_pid: int) -> tuple[int, ...]:
    """The pids of uvicorn's workers (the server itself when it runs one), sorted; empty off Linux."""
    if not (_PROC / "stat").exists():
        return ()
    return tuple(sorted(_workers(_tree(_processes(), server_pid), server_pid)))


def _machine_busy() -> float:
    fields = [int(value) for value in (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / _TICKS  # all but idle and iowait


def snapshot(server_pid: int) -> CpuSnapshot:
    times = os.times()
    if not (_PROC / "stat").exists():
        return CpuSnapshot(time.perf_counter(), bench=times.user + times.system)
    processes = _processes()
    postgres = {pid: cpu for pid, (_, name, cpu) in processes.items() if name.startswith("postgres")}
    tree = _tree(processes, server_pid)
    return CpuSnapshot(
        time.perf_counter(),
        sum(tree.values()),
        _workers(tree, server_pid),
        postgres,
        times.user + times.system,
        _machine_busy(),
    )


def usage(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    wall = max(after.at - before.at, 1e-9)
    workers = tuple((seconds - before.workers.get(pid, 0.0)) / wall for pid, seconds in after.workers.items())
    server = (after.server - before.server) / wall
    # Backends that ended during the phase are lost; those that started count from zero.
    postgres = sum(seconds - before.postgres.get(pid, 0.0) for pid, seconds in after.postgres.items()) / wall
    bench = (after.bench - before.bench) / wall
    other = (after.busy - before.busy) / wall - server - postgres - bench
    return CpuUse(server, workers, postgres, bench, max(other, 0.0))

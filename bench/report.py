"""The results table: one column per backend, the issue's targets beside each figure."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.workloads import Phase

RESULTS_DIR = Path(__file__).resolve().parent / "results"
OTHER_LOAD_LIMIT = 0.25  # cores used by unrelated processes beyond which a phase is called disturbed


@dataclass
class BackendRun:
    backend: str
    phases: dict[str, Phase] = field(default_factory=dict)
    problem: str | None = None  # why the backend was skipped or failed part-way

    @property
    def errors(self) -> int:
        return sum(phase.errors for phase in self.phases.values())


@dataclass(frozen=True)
class Row:
    label: str
    phase: str
    value: Callable[[Phase], float]
    target: str = ""
    met: Callable[[float], bool] | None = None
    digits: int = 0


def rows(create_clients: int, read_connections: int, in_flight: int) -> list[Row]:
    def rate(phase: Phase) -> float:
        return phase.rate

    return [
        Row("Patient create/s, 1 client", "create1", rate),
        Row(f"Patient create/s, {create_clients} clients", "createN", rate, ">= 2,000", lambda v: v >= 2000),
        Row(f"read by id/s, {read_connections} connections", "read", rate, ">= 5,000", lambda v: v >= 5000),
        Row("  read p50 ms", "read", lambda p: p.percentile(0.50), digits=1),
        Row("  read p99 ms", "read", lambda p: p.percentile(0.99), "< 20", lambda v: v < 20, digits=1),
        Row(f"Synthea ingest resources/s, {in_flight} in flight", "ingest", rate, ">= 5,000", lambda v: v >= 5000),
    ]


def _cell(run: BackendRun, row: Row, judge: bool) -> str:
    phase = run.phases.get(row.phase)
    if phase is None:
        if not run.phases:
            return "skipped"
        return "failed" if run.problem else "not run"  # not run: left out (bench.rest --reads-only)
    value = row.value(phase)
    text = "n/a" if math.isnan(value) else f"{value:,.{row.digits}f}"
    if phase.errors:
        text += " ERR"
    elif judge and row.met is not None and not math.isnan(value):
        text += " ok" if row.met(value) else " MISS"
    return text


def table(runs: list[BackendRun], table_rows: list[Row]) -> str:
    header = ["measurement", "target (PostgreSQL)", *(run.backend for run in runs)]
    body = [
        [row.label, row.target, *(_cell(run, row, run.backend == "postgresql") for run in runs)] for row in table_rows
    ]
    body.append(["errors (all phases)", "0", *(str(run.errors) if run.phases else "-" for run in runs)])
    return "\n".join(render_table(header, body))


def render_table(header: list[str], body: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, the rest right-aligned."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = []
    for line in [header, None, *body]:
        if line is None:
            lines.append("  ".join("-" * width for width in widths))
        else:
            cells = [line[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))]
            lines.append("  ".join(cells))
    return lines


def spread_note(phase: Phase) -> str:
    return f"; connections per worker {'/'.join(map(str, phase.spread))}" if phase.spread else ""


def cpu_lines(runs: list[BackendRun]) -> list[str]:
    lines = [f"CPU during each measured phase (cores; this machine has {os.cpu_count()}):"]
    for run in runs:
        for phase in run.phases.values():
            if phase.cpu is not None:
                lines.append(f"  {run.backend:<10} {phase.name:<26} {phase.cpu.describe()}{spread_note(phase)}")
    return lines


def problem_lines(runs: list[BackendRun]) -> list[str]:
    lines = []
    for run in runs:
        if run.problem:
            lines.append(f"!!! {run.backend}: {run.problem}")
        for phase in run.phases.values():
            if phase.cpu is not None and phase.cpu.other > OTHER_LOAD_LIMIT:
                lines.append(
                    f"!!! {run.backend} {phase.name}: other processes used {phase.cpu.other:.2f} cores meanwhile;"
                    " the figure is disturbed"
                )
            if phase.spread and max(phase.spread) - min(phase.spread) > 1:
                lines.append(
                    f"!!! {run.backend} {phase.name}: connections unevenly spread over the workers"
                    f" ({'/'.join(map(str, phase.spread))}); the figure understates the server"
                )
            if phase.errors:
                lines.append(
                    f"!!! {run.backend} {phase.name}: {phase.errors} ERRORS of {phase.count}; first: "
                    f"{phase.first_error}"
                )
    return lines


def heading(settings: str, kind: str = "REST") -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"FHIR {kind} benchmark, {now}; {settings}; {os.cpu_count()} CPUs, Python {platform.python_version()}"


def write(text: str, stamp: str, prefix: str = "rest") -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{prefix}-{stamp}.txt"
    path.write_text(text + "\n")
    return path

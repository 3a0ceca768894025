"""The search benchmark's results: latency and throughput tables, table sizes, the result file."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import OTHER_LOAD_LIMIT, RESULTS_DIR, render_table, spread_note  # noqa: F401 - RESULTS_DIR is used via this module
from bench.report import heading as shared_heading
from bench.report import write as shared_write
from bench.search_load import LoadResult
from bench.search_queries import Query
from bench.workloads import Phase

P50_TARGET_MS, P95_TARGET_MS, NAME_RATE_TARGET = 20.0, 100.0, 2000.0
TABLES = (
    "resource",
    "resource_version",
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
)


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: dict[str, int]  # resource type -> rows
    heap: int  # bytes, table with TOAST
    indexes: int
    total: int  # pg_total_relation_size

    @property
    def row_count(self) -> int:
        return sum(self.rows.values())


@dataclass
class SearchRun:
    queries: list[Query] = field(default_factory=list)
    latency: dict[str, Phase] = field(default_factory=dict)  # query key -> measured phase
    throughput: list[tuple[str, str, int, Phase]] = field(default_factory=list)  # (query key, label, clients, phase)
    checks: list[Phase] = field(default_factory=list)  # verification and warm-up phases: their errors count
    deep_walks: list[float] = field(default_factory=list)  # seconds to reach the deep page, per walk
    deep_pages: int = 0
    walk: Phase | None = None  # the pages before the deep one, as the walks went
    load: LoadResult | None = None
    vacuum_seconds: float | None = None
    sizes: list[TableSize] = field(default_factory=list)
    explain: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def phases(self) -> list[Phase]:
        walk = [self.walk] if self.walk is not None else []
        return [*self.checks, *walk, *self.latency.values(), *(phase for *_, phase in self.throughput)]

    @property
    def errors(self) -> int:
        return sum(phase.errors for phase in self.phases)


def _fmt(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _judge(value: float, met: bool, errors: int) -> str:
    if errors:
        return "ERR"
    return "" if math.isnan(value) else ("ok" if met else "MISS")


def latency_table(run: SearchRun) -> list[str]:
    header = ["search (1 client, sequential)", "p50 ms", "", "p95 ms", "", "requests", "avg total", "avg entries"]
    body = []
    for query in run.queries:
        phase = run.latency.get(query.key)
        if query.key == "deep-nototal" and run.walk is not None and run.walk.count:
            walk = run.walk
            p50, p95 = walk.percentile(0.50), walk.percentile(0.95)
            body.append(
                [
                    f"  pages 1-{run.deep_pages - 1}, walking there",
                    _fmt(p50, 1),
                    "",
                    _fmt(p95, 1),
                    "",
                    f"{walk.count:,}",
                    "",
                    "",
                ]
            )
        if phase is None:
            body.append([query.label, "-", "", "-", "", "-", "", ""])
            continue
        p50, p95 = phase.percentile(0.50), phase.percentile(0.95)
        total = sum(query.totals) / len(query.totals) if query.totals else float("nan")
        entries = sum(query.entries) / len(query.entries) if query.entries else float("nan")
        body.append(
            [
                query.label,
                _fmt(p50, 1),
                _judge(p50, p50 < P50_TARGET_MS, phase.errors),
                _fmt(p95, 1),
                _judge(p95, p95 < P95_TARGET_MS, phase.errors),
                f"{phase.count:,}",
                _fmt(total, 1),
                _fmt(entries, 1),
            ]
        )
    return render_table(header, body)


def throughput_table(run: SearchRun) -> list[str]:
    header = ["search throughput", "connections", "searches/s", "", "p50 ms", "p95 ms", "requests"]
    body = []
    for key, label, clients, phase in run.throughput:
        judged = (
            _judge(phase.rate, phase.rate >= NAME_RATE_TARGET, phase.errors)
            if key == "name" and clients >= 16
            else ("ERR" if phase.errors else "")
        )
        body.append(
            [
                label,
                str(clients),
                _fmt(phase.rate, 0),
                judged,
                _fmt(phase.percentile(0.50), 1),
                _fmt(phase.percentile(0.95), 1),
                f"{phase.count:,}",
            ]
        )
    return render_table(header, body)


def _bytes(size: int) -> str:
    return f"{size / 2**20:,.0f} MB"


def size_table(run: SearchRun) -> list[str]:
    header = ["table", "rows", "Patient rows", "Observation rows", "table+toast", "indexes", "total"]
    body = []
    for size in run.sizes:
        body.append(
            [
                size.name,
                f"{size.row_count:,}",
                f"{size.rows.get('Patient', 0):,}",
                f"{size.rows.get('Observation', 0):,}",
                _bytes(size.heap),
                _bytes(size.indexes),
                _bytes(size.total),
            ]
        )
    if run.sizes:
        body.append(
            [
                "all",
                "",
                "",
                "",
                _bytes(sum(s.heap for s in run.sizes)),
                _bytes(sum(s.indexes for s in run.sizes)),
                _bytes(sum(s.total for s in run.sizes)),
            ]
        )
    return render_table(header, body)


def index_rows_line(run: SearchRun) -> str:
    stored = next((s for s in run.sizes if s.name == "resource"), None)
    if stored is None or not stored.row_count:
        return ""
    index = [s for s in run.sizes if s.name.startswith("idx_")]
    parts = []
    for kind in ("Patient", "Observation"):
        resources = stored.rows.get(kind, 0)
        if resources:
            parts.append(f"{kind} {sum(s.rows.get(kind, 0) for s in index) / resources:.1f}")
    total = sum(s.row_count for s in index)
    return f"index rows per resource: {total / stored.row_count:.1f} ({', '.join(parts)}); {total:,} index rows in all"


def cpu_lines(run: SearchRun) -> list[str]:
    lines = [f"CPU during each measured phase (cores; this machine has {os.cpu_count()}):"]
    measured = [(phase.name, phase) for phase in run.latency.values()] + [
        (phase.name, phase) for *_, phase in run.throughput
    ]
    for name, phase in measured:
        if phase.cpu is not None:
            lines.append(f"  {name:<52} {phase.cpu.describe()}{spread_note(phase)}")
    return lines


def problem_lines(run: SearchRun) -> list[str]:
    lines = [f"!!! {run.problem}"] if run.problem else []
    for phase in run.phases:
        if phase.cpu is not None and phase.cpu.other > OTHER_LOAD_LIMIT:
            lines.append(
                f"!!! {phase.name}: other processes used {phase.cpu.other:.2f} cores meanwhile; the figure is disturbed"
            )
        if phase.spread and max(phase.spread) - min(phase.spread) > 1:
            lines.append(
                f"!!! {phase.name}: connections unevenly spread over the workers ({'/'.join(map(str, phase.spread))})"
            )
        if phase.errors:
            lines.append(f"!!! {phase.name}: {phase.errors} ERRORS of {phase.count}; first: {phase.first_error}")
    if run.load is not None and run.load.cpu is not None and run.load.cpu.other > OTHER_LOAD_LIMIT:
        lines.append(
            f"!!! load: other processes used {run.load.cpu.other:.2f} cores meanwhile; the load rate is disturbed"
        )
    return lines


def heading(settings: str) -> str:
    return shared_heading(settings, "search")


def write(text: str, stamp: str) -> Path:
    return shared_write(text, stamp, "search")


def render(title: str, run: SearchRun) -> str:
    from bench.search_load import describe

    lines = [title, ""]
    if run.load is not None:
        lines.extend(describe(run.load))
    if run.vacuum_seconds is not None:
        lines.append(f"VACUUM (ANALYZE) after the load: {run.vacuum_seconds:.1f} s")
    if line := index_rows_line(run):
        lines.append(line)
    lines += [
        "",
        f"targets: p50 < {P50_TARGET_MS:g} ms, p95 < {P95_TARGET_MS:g} ms each;"
        f" Patient?name= >= {NAME_RATE_TARGET:,.0f}/s with 16 connections",
        "",
    ]
    lines.extend(latency_table(run))
    if run.deep_walks:
        mean = sum(run.deep_walks) / len(run.deep_walks)
        lines.append(
            f"(page {run.deep_pages}: reached by following next links, {mean:.1f} s per walk of"
            f" {run.deep_pages - 1} pages, {len(run.deep_walks)} walks over the most common codes)"
        )
    lines.append("")
    lines.extend(throughput_table(run))
    lines.append("")
    lines.extend(size_table(run))
    lines.append("")
    lines.extend(cpu_lines(run))
    lines.extend(problem_lines(run))
    lines.extend(run.explain)
    return "\n".join(lines)

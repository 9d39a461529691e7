"""The benchmarks' tables: printed with rich, written as Markdown, with the machine they ran on."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

TEXT_COLUMNS = ("clock", "variant", "command", "brought in (most modules first)")  # left-aligned, as the first column


@dataclass
class Report:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def machine() -> list[str]:
    """The platform, CPU, GPU, Python, torch and torchvision, and the threads: one line each."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"{platform.platform()}, {cpu}, {os.cpu_count()} logical CPUs, GPU: {gpu}",
        f"Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}",
        f"torch.set_num_threads({torch.get_num_threads()}); OMP_NUM_THREADS={torch.get_num_threads()} in subprocesses",
    ]


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x"


# How the summaries pick one figure out of the repetitions of a variant.
CLOCKS: tuple[tuple[str, Callable], ...] = (
    ("wall, median", lambda row: row.median),
    ("CPU, median", lambda row: row.cpu_median),
    ("wall, best", lambda row: row.best),
)


def print_reports(console: Console, reports: list[Report]) -> None:
    """Each report as a rich table, its note as the caption."""
    for report in reports:
        table = Table(
            title=escape(report.title),
            title_justify="left",
            caption=escape(report.note) if report.note else None,
            caption_justify="left",
            min_width=min(console.width, 100),
        )
        for index, name in enumerate(report.header):
            table.add_column(name, justify="left" if index == 0 or name in TEXT_COLUMNS else "right")
        for row in report.rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)


def markdown(reports: list[Report]) -> str:
    """Each report as a Markdown table under a heading, its note below."""
    parts = []
    for report in reports:
        parts += [f"### {report.title}", ""]
        aligns = ["---" if i == 0 or name in TEXT_COLUMNS else "--:" for i, name in enumerate(report.header)]
        parts.append("| " + " | ".join(report.header) + " |")
        parts.append("|" + "|".join(aligns) + "|")
        parts += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in report.rows]
        parts += ["", report.note, ""] if report.note else [""]
    return "\n".join(parts)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages: on a machine of N cores, near N or above means busy."""
    return ", ".join(f"{load:.1f}" for load in os.getloadavg())


def write_results(
    path: Path, title: str, settings: str, method: str, reports: list[Report], *, took: float, load_before: str
) -> None:
    """The command that ran with its date and settings, the machine and its load, where the method is, the tables."""
    ran = f"`python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`"
    when = f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    load = f"load average (1, 5, 15 min) before: {load_before}; after: {load_average()}"
    heading = [f"# {title}", "", f"{ran}, {when}, took {took:.0f} s ({settings}).", ""]
    path.write_text(
        "\n".join([*heading, *(f"- {line}" for line in [*machine(), load]), "", method, "", markdown(reports)])
    )

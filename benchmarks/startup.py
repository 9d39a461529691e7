"""Section 2: the time of the `dlrun` console script to its first step and to its exit, against plain PyTorch's."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from import_times import import_breakdown
from report import CLOCKS, Report, ratio

HERE = Path(__file__).resolve().parent
DLRUN = Path(sys.executable).with_name("dlrun")
PLAIN_FIRST_STEP = HERE / "plain_first_step.py"  # a hand-written PyTorch script's way to its first step


# What some dlrun subprocesses get besides dlrun_args: callbacks of benchmarks/startup_callbacks.py (on their
# PYTHONPATH), added through dlrun's and Hydra's own callback options; the command is the real console script.
def first_step_args(marker: Path) -> list[str]:
    """End the process after its first optimizer step, writing the time to marker."""
    return ["+callbacks.first_step._target_=startup_callbacks.FirstStep", f"+callbacks.first_step.marker={marker}"]


EXIT_AFTER_JOB_ARGS = ["+hydra.callbacks.exit_after_job._target_=startup_callbacks.ExitAfterJob"]


@dataclass
class StartRow:
    label: str
    seconds: list[float] = field(default_factory=list)  # wall
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)


def dlrun_args(run_dir: str) -> list[str]:
    """The dlrun run timed: the default config on the CPU, one batch of each split, quiet, in run_dir."""
    return [
        "trainer.device=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_batches=1",
        "quiet=true",
        "print_config=false",
        f"hydra.run.dir={run_dir}",
    ]


DLRUN_COMMAND = f"dlrun {' '.join(dlrun_args('<tmp dir>'))}"


def timed_process(argv: list[str], env: dict[str, str], cwd: str, marker: Path | None = None) -> tuple[float, float]:
    """Wall and CPU seconds from spawning argv to its exit, or to the point where it writes
    "<time.monotonic()> <time.process_time()>" into marker."""
    if marker is not None:
        marker.unlink(missing_ok=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    end = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    if marker is None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        return end - start, cpu
    if not marker.is_file():
        raise RuntimeError(
            f"{' '.join(argv)} never reached its first step:\n{done.stdout[-1000:]}{done.stderr[-1000:]}"
        )
    at, cpu = (float(value) for value in marker.read_text().split())
    return at - start, cpu


def bench_startup(
    reps: int, threads: int, say: Callable[[str], None]
) -> tuple[dict[str, StartRow], list[tuple[str, float, str]]]:
    """Each command's rows over `reps` interleaved repetitions after one warm-up, and the import table of a run."""
    python, dlrun = sys.executable, str(DLRUN)
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-start-") as tmp:
        marker = Path(tmp, "first_step")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": str(threads)}
        with_callbacks = env | {"PYTHONPATH": str(HERE)}  # startup_callbacks.py
        counter = iter(range(10**6))

        def run_dir() -> str:
            return str(Path(tmp, f"run{next(counter)}"))

        rows = {
            "pass": StartRow("python -c pass"),
            "torch": StartRow('python -c "import torch"'),
            "plain": StartRow("plain PyTorch script, spawn to end of 1st step"),
            "first": StartRow("dlrun, spawn to end of 1st optimizer step"),
            "whole": StartRow("dlrun, whole process (1 batch per split)"),
            "no_teardown": StartRow("dlrun, same, os._exit(0) when run() returns"),
        }
        commands: dict[str, Callable[[], tuple[float, float]]] = {
            "pass": lambda: timed_process([python, "-c", "pass"], env, tmp),
            "torch": lambda: timed_process([python, "-c", "import torch"], env, tmp),
            "plain": lambda: timed_process([python, str(PLAIN_FIRST_STEP), str(marker)], env, tmp, marker),
            "first": lambda: timed_process(
                [dlrun, *dlrun_args(run_dir()), *first_step_args(marker)], with_callbacks, tmp, marker
            ),
            "whole": lambda: timed_process([dlrun, *dlrun_args(run_dir())], env, tmp),
            "no_teardown": lambda: timed_process(
                [dlrun, *dlrun_args(run_dir()), *EXIT_AFTER_JOB_ARGS], with_callbacks, tmp
            ),
        }
        commands["whole"]()  # warm-up, untimed: puts torch's and dlrun's files in the OS file cache
        for rep in range(reps):
            order = list(commands) if rep % 2 == 0 else list(commands)[::-1]
            for key in order:
                wall, cpu = commands[key]()
                rows[key].seconds.append(wall)
                rows[key].cpu_seconds.append(cpu)
            say(f"start-up rep {rep + 1}/{reps}: " + "  ".join(f"{k} {rows[k].seconds[-1]:.2f}s" for k in commands))
        imports = import_breakdown([dlrun, *dlrun_args(run_dir())], env, tmp)
    return rows, imports


def paired(after: StartRow, before: StartRow) -> float:
    """Median of the differences within each repetition (the two ran back to back)."""
    return statistics.median(a - b for a, b in zip(after.seconds, before.seconds, strict=True))


def startup_reports(rows: dict[str, StartRow], imports: list[tuple[str, float, str]], reps: int) -> list[Report]:
    torch_row, plain, first, whole, no_teardown = (rows[k] for k in ("torch", "plain", "first", "whole", "no_teardown"))

    def both(row: StartRow, reference: StartRow) -> list[str]:
        return [ratio(row.median, reference.median), ratio(row.cpu_median, reference.cpu_median)]

    def every(row: StartRow, reference: StartRow) -> list[str]:
        return [ratio(pick(row), pick(reference)) for _, pick in CLOCKS]

    summary = [
        ["dlrun to 1st step / import torch", *every(first, torch_row)],
        ["dlrun to 1st step / plain script to 1st step", *every(first, plain)],
        ["dlrun whole 1-batch run / import torch", *every(whole, torch_row)],
        ["dlrun whole run / the same ended when run() returns", *every(whole, no_teardown)],
    ]
    table = [
        [row.label, f"{row.median:.2f}", f"{row.cpu_median:.2f}", *both(row, torch_row), *both(row, plain)]
        for row in rows.values()
    ]
    shown = [[name, f"{seconds:.2f}", ratio(seconds, first.median), brought] for name, seconds, brought in imports[:8]]
    return [
        Report(
            f"Start-up: ratios (subprocesses, medians of {reps})",
            ["ratio", *(clock for clock, _ in CLOCKS)],
            summary,
            f"dlrun runs as: {DLRUN_COMMAND}; its 1st step is timed by a callback (see README). "
            f"From its 1st step to its exit dlrun takes a further {paired(whole, first):.2f} s, and "
            f"{paired(whole, no_teardown):.2f} s pass between run() returning and the process ending "
            "(wall, medians of paired differences).",
        ),
        Report(
            "Start-up: each command (spawn to exit unless said)",
            ["command", "wall s", "CPU s", "/ import torch", "(CPU)", "/ plain 1st step", "(CPU)"],
            table,
        ),
        Report(
            "Start-up: importing dlrun's modules (one whole run)",
            ["module", "wall s", "/ dlrun to 1st step (wall)", "brought in (most modules first)"],
            shown,
            "The time of each dlrun module's import (python -X importtime), less the dlrun modules it imports "
            "itself; modules "
            "imported by hydra's instantiate count too. Imports made later inside functions (torch._dynamo by the "
            "first optimizer, tensorboard by the TensorBoard callback) are not in this table.",
        ),
    ]

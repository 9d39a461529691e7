"""dlrun against plain PyTorch on the same work, reported as ratios (no pass/fail timing thresholds)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from gpu import gpu_section
from report import Report, load_average, machine, print_reports, write_results
from rich.console import Console
from startup import bench_startup, startup_reports
from training import MODELS, bench_training, training_reports

from dlrun.config import register_schemas

RESULTS = Path(__file__).resolve().parent / "results.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30, help="epochs per training run (dlrun's default: 30)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant; medians are reported")
    parser.add_argument("--startup-reps", type=int, default=3, help="repetitions of each start-up command")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (and OMP_NUM_THREADS)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model configs (mlp,cnn)")
    parser.add_argument("--breakdown", action="store_true", help="also time dlrun with each callback alone")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: train,startup,gpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check of the script, not figures")
    parser.add_argument("--write", action="store_true", help=f"write the figures to benchmarks/{RESULTS.name}")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.startup_reps = 2, 1, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began, load_before = time.perf_counter(), load_average()
    torch.set_num_threads(args.threads)
    register_schemas()
    console = Console(log_path=False) if sys.stdout.isatty() else Console(log_path=False, width=120)
    skip = set(filter(None, args.skip.split(",")))
    say = console.log
    for line in [*machine(), f"load average (1, 5, 15 min): {load_before}"]:
        console.print(line, style="dim")
    reports: list[Report] = []
    if "train" not in skip:
        models = tuple(filter(None, args.models.split(",")))
        results = bench_training(models, args.epochs, args.rounds, args.breakdown, say)
        reports += training_reports(results, args.epochs, args.rounds)
    if "startup" not in skip:
        rows, imports = bench_startup(args.startup_reps, args.threads, say)
        reports += startup_reports(rows, imports, args.startup_reps)
    if "gpu" not in skip:
        reports += gpu_section(args.quick, say)
    print_reports(console, reports)
    if args.write:
        settings = f"{args.epochs} epochs, {args.rounds} rounds, {args.startup_reps} start-up repetitions"
        method = (
            "Each summary gives ratios of medians (wall, then CPU time) and of best wall times; how each figure is "
            "measured: [README.md](README.md)."
        )
        took = time.perf_counter() - began
        write_results(RESULTS, "dlrun benchmark results", settings, method, reports, took=took, load_before=load_before)
        console.print(f"wrote {RESULTS}")
    console.print(f"took {time.perf_counter() - began:.0f} s", style="dim")


if __name__ == "__main__":
    main()

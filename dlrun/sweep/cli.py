"""`dlrun-summary [DIR]`: the results table of any sweep dir, finished, running or interrupted (DIR defaults to the
newest under outputs/multirun); it also rewrites DIR/summary.csv and DIR/summary.json. Imports no torch."""

import argparse
import sys
from pathlib import Path

from dlrun.errors import EXIT_BAD_INPUT
from dlrun.sweep.summary import collect, write
from dlrun.sweep.table import show


def newest_sweep(outputs: Path = Path("outputs/multirun")) -> Path | None:
    sweeps = [path for path in outputs.glob("*") if path.is_dir()]
    return max(sweeps, key=lambda path: path.stat().st_mtime) if sweeps else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dlrun-summary",
        description="The results table of a sweep dir (finished, running or interrupted); "
        "also rewrites its summary.csv and summary.json.",
    )
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a sweep dir (default: the newest in outputs/multirun)")
    parser.add_argument("--sort", action="store_true", help="best first, instead of by job number")
    args = parser.parse_args(argv)
    sweep_dir = args.sweep_dir or newest_sweep()
    if sweep_dir is None or not sweep_dir.is_dir():
        _bad_input(f"{sweep_dir or 'outputs/multirun'}: no such sweep dir; type the dir `dlrun -m` wrote")
    summary = collect(sweep_dir)
    if not summary.jobs:
        _bad_input(f"{sweep_dir}: no jobs in it (a sweep dir holds one subdir per job)")
    show(summary, sort=args.sort)
    try:
        write(summary)
    except OSError as error:
        print(f"dlrun-summary: summary files not rewritten: {error}", file=sys.stderr)


def _bad_input(message: str) -> None:
    print(f"dlrun-summary: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()

"""The results table of a sweep on the terminal: one row per job, the best starred, what every job shares below."""

import math

from dlrun.provenance import PROVENANCE_FILE
from dlrun.sweep.record import COMPLETED, FAILED, INTERRUPTED, NOT_RUN, PRUNED, RUNNING
from dlrun.sweep.repeats import SEED, Stat
from dlrun.sweep.summary import SUMMARY_CSV, SUMMARY_JSON, Job, Summary

STATUS_STYLES = {
    COMPLETED: "green",
    PRUNED: "yellow",
    RUNNING: "cyan",
    INTERRUPTED: "magenta",
    FAILED: "bold red",
    NOT_RUN: "dim",
}


def table(summary: Summary, sort: bool = False, tests: bool = True, notes: bool = True):
    """The rich Table; tests and notes false leave out the test metrics and the notes, for a narrow terminal."""
    from rich.table import Table

    jobs = summary.jobs
    if sort:
        jobs = sorted(jobs, key=_sort_key)
    metrics = {(job.metric, job.mode) for job in jobs}
    if len(metrics) == 1:
        metric, mode = next(iter(metrics))
        value_header = f"{metric} {'↓' if mode == 'min' else '↑'}"
    else:
        value_header = "monitored"
    test_names = sorted({name for job in jobs for name in job.metrics if name.startswith("test/")}) if tests else []

    result = Table(title=f"sweep {summary.sweep_dir}", caption=_caption(summary), caption_justify="left")
    result.add_column("job", justify="right", no_wrap=True)
    for header in _short_names(summary.varying):
        result.add_column(header, overflow="fold", min_width=min(len(header), 10))
    result.add_column("status", no_wrap=True, min_width=9)
    result.add_column(value_header, justify="right", no_wrap=True)
    for name in test_names:
        result.add_column(name, justify="right", no_wrap=True)
    result.add_column("time", justify="right", no_wrap=True)
    if notes:
        result.add_column("note", no_wrap=True, overflow="ellipsis", max_width=48)
    for job in jobs:
        value = _number(job.value)
        if len(metrics) > 1 and job.value is not None:
            value = f"{job.metric} {value}"
        result.add_row(
            f"{job.num if job.num is not None else job.dir.name}{' ★' if job.best else ''}",
            *(_param(job.params.get(key)) for key in summary.varying),
            f"[{STATUS_STYLES.get(job.status, '')}]{job.status}[/]",
            value,
            *(_number(job.metrics.get(name)) for name in test_names),
            _duration(job.duration_s),
            *([_note(job)] if notes else []),
            style="bold" if job.best else None,
        )
    return result


def repeats_table(summary: Summary):
    """One row per configuration of a sweep with repeats: mean ± std over its completed seeds, and their count n."""
    from rich.table import Table

    repeats = summary.repeats
    others = [key for key in summary.varying if key != SEED]
    metrics = {(repeat.metric, repeat.mode) for repeat in repeats}
    metric, mode = next(iter(metrics))
    value_header = f"{metric} {'↓' if mode == 'min' else '↑'}" if len(metrics) == 1 else "monitored"
    test_names = sorted({name for repeat in repeats for name in repeat.metrics if name.startswith("test/")})
    result = Table(title="mean ± std over the seeds (sample std), per configuration")
    result.add_column("config", justify="right", no_wrap=True)
    for header in _short_names(others):
        result.add_column(header, overflow="fold", min_width=min(len(header), 10))
    result.add_column("n", justify="right", no_wrap=True)
    result.add_column("seeds", overflow="fold")
    for header in (value_header, *test_names):
        result.add_column(header, justify="right", no_wrap=True)
    for repeat in repeats:
        result.add_row(
            f"{repeat.config}{' ★' if repeat.best else ''}",
            *(_param(repeat.params.get(key)) for key in others),
            _count(repeat),
            " ".join(repeat.seeds),
            _spread(repeat.value),
            *(_spread(repeat.metrics.get(name)) for name in test_names),
            style="bold" if repeat.best else None,
        )
    return result


def differences(summary: Summary) -> str:
    """The provenance.json keys in which the jobs differ, each value with the job dirs that had it."""
    from rich.markup import escape

    lines = [f"[yellow]the jobs differ in their {PROVENANCE_FILE}:[/]"]
    for key, by_value in summary.differences.items():
        values = "; ".join(f"{_json_text(value)} in {', '.join(dirs)}" for value, dirs in by_value.items())
        lines.append(f"  {escape(key)}: {escape(values)}")
    return "\n".join(lines)


def _json_text(value: str) -> str:
    """A value as provenance.differences keeps it (JSON), strings without their quotes."""
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def _count(repeat) -> str:
    """n: the completed jobs the statistics are over, "2 of 3" when a seed failed or has not run yet."""
    done, jobs = len(repeat.completed), len(repeat.jobs)
    return str(done) if done == jobs else f"{done} of {jobs}"


def _spread(stat: Stat | None) -> str:
    if stat is None:
        return "—"
    return _number(stat.mean) if stat.std is None else f"{_number(stat.mean)} ± {stat.std:.2g}"


def _short_names(keys: list[str]) -> list[str]:
    """Column headers: optimizer.lr as lr, model.hidden as hidden, unless two keys would read the same."""
    short = [key.rsplit(".", 1)[-1] for key in keys]
    return [name if short.count(name) == 1 else key for name, key in zip(short, keys, strict=True)]


def _sort_key(job: Job):
    """Best first: completed jobs by value, then pruned, then the rest."""
    rank = {COMPLETED: 0, PRUNED: 1}.get(job.status, 2)
    value = job.value if _finite(job.value) else math.inf
    return rank, value if job.mode == "min" else -value


def _caption(summary: Summary) -> str:
    counts = ", ".join(f"{count} {status}" for status, count in summary.counts().items())
    of = f" of {summary.expected}" if summary.expected and summary.expected > len(summary.jobs) else ""
    lines = [f"{len(summary.jobs)}{of} jobs: {counts or 'none yet'}"]
    if summary.fixed:
        lines.append("every job: " + " ".join(summary.fixed))
    best = summary.best
    if best is not None:
        params = " ".join(f"{key}={best.params.get(key)}" for key in summary.varying)
        lines.append(f"best ★ job {best.num}: {best.metric} {_number(best.value)}  {params}".rstrip())
    elif any(job.status == COMPLETED for job in summary.jobs):
        lines.append("no best marked: the completed jobs monitor different metrics or datasets")
    lines.append(f"files: {summary.sweep_dir / SUMMARY_CSV}, {SUMMARY_JSON}; tensorboard --logdir {summary.sweep_dir}")
    if summary.resume:
        lines.append(f"to finish it (finished jobs are skipped): {summary.resume}")
    return "\n".join(lines)


def _note(job: Job) -> str:
    from rich.markup import escape

    text = job.error.splitlines()[0] if job.error else job.note or ""
    text = text.removeprefix("ConfigError: ")
    return escape(text if len(text) <= 90 else text[:89] + "…")


def _param(text: str | None) -> str:
    """An override's value, long floats (an Optuna trial's) shortened to 4 significant digits."""
    from rich.markup import escape

    if text is None:
        return "—"
    try:
        number = float(text)
    except ValueError:
        return escape(text)
    return f"{number:.4g}" if len(text) > 8 and not text.isdigit() else escape(text)


def _number(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, int | float) else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def show(summary: Summary, sort: bool = False) -> None:
    """Print the table; in a terminal too narrow for it all, without the test metrics, then without the notes."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console()
    for tests, notes in ((True, True), (False, True), (False, False)):
        shown = table(summary, sort=sort, tests=tests, notes=notes)
        caption, shown.caption = shown.caption, None  # the caption wraps; the columns must fit
        fits = Measurement.get(console, console.options.update_width(10_000), shown).maximum <= console.width
        shown.caption = caption
        if fits:
            break
    console.print(shown)
    if summary.repeats:
        console.print(repeats_table(summary))
    if summary.differences:
        console.print(differences(summary), soft_wrap=True)


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)

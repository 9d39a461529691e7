"""Sweeps with the real `dlrun -m`: one dir per job, the results table and files, failures that do not end the sweep,
parallel jobs, resuming an interrupted sweep, TensorBoard's HParams view, and dlrun-summary."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from test_sweep_helpers import (
    HELPERS_ENV,
    TINY,
    barrier,
    finished_sweep,
    job_record,
    one_line,
    only_sweep_dir,
    overlap,
    summary_rows,
)

from dlrun.sweep import cli, hparams, resources, summary
from dlrun.sweep.record import JobRecord

from conftest import run_cli


@pytest.fixture
def dlrun_summary(capsys, monkeypatch):
    """`dlrun-summary ARGS` (dlrun.sweep.cli:main, the console script's function), run here: its exit code and
    output."""
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args) -> subprocess.CompletedProcess:
        try:
            cli.main([str(arg) for arg in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["dlrun-summary", *args], code, out, err)

    return run


@pytest.fixture(scope="module")
def four_jobs(tmp_path_factory):
    """2 optimizers x 2 learning rates on digits."""
    return finished_sweep(tmp_path_factory.mktemp("four"), "optimizer=adam,sgd", "optimizer.lr=1e-3,1e-2")


def test_each_job_has_its_numbered_dir_with_all_a_run_holds(four_jobs):
    _, sweep_dir = four_jobs
    assert sorted(path.name for path in sweep_dir.iterdir() if path.is_dir()) == ["0", "1", "2", "3"]
    for job in range(4):
        job_dir = sweep_dir / str(job)
        for name in (".hydra/config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "model.pt", "metrics.json"):
            assert (job_dir / name).is_file(), (job, name)
        assert list((job_dir / "tensorboard").glob("events.out.tfevents.*"))
        record = job_record(job_dir)
        assert (record["num"], record["status"], record["attempts"]) == (job, "completed", 1)
    assert "optimizer=sgd" in job_record(sweep_dir / "3")["overrides"]


def test_the_sweep_ends_with_the_table_and_its_csv_and_json(four_jobs):
    result, sweep_dir = four_jobs
    rows = summary_rows(sweep_dir)
    assert [row["job"] for row in rows] == ["0", "1", "2", "3"]
    assert {row["status"] for row in rows} == {"completed"}
    assert [(row["optimizer"], row["optimizer.lr"]) for row in rows] == [
        ("adam", "0.001"),
        ("adam", "0.01"),
        ("sgd", "0.001"),
        ("sgd", "0.01"),
    ]
    values = {row["job"]: float(row["value"]) for row in rows}
    best = min(values, key=values.get)  # val/loss: lower is better
    assert [row["job"] for row in rows if row["best"] == "True"] == [best]
    assert all(float(row["test/acc"]) >= 0 and float(row["duration_s"]) > 0 for row in rows)

    data = json.loads((sweep_dir / "summary.json").read_text())
    assert data["best"]["job"] == int(best) and data["best"]["metric"] == "val/loss"
    assert data["counts"] == {"completed": 4} and data["varying"] == ["optimizer", "optimizer.lr"]
    assert "trainer.max_epochs=1" in data["fixed_overrides"]
    assert {"val/loss", "test/loss", "test/acc"} <= set(data["jobs"][0]["metrics"])

    out = one_line(result.stdout)
    assert f"sweep {sweep_dir.relative_to(sweep_dir.parents[2])}" in out
    assert f"{best} ★" in out and "val/loss ↓" in out and "test/acc" in out
    assert "4 jobs: 4 completed" in out and "to finish it" not in out


def test_dlrun_summary_prints_the_table_again(four_jobs, dlrun_summary):
    result, sweep_dir = four_jobs
    best = json.loads((sweep_dir / "summary.json").read_text())["best"]["job"]
    (sweep_dir / "summary.csv").unlink()
    again = dlrun_summary(sweep_dir)
    assert again.returncode == 0, again.stderr
    rows = data_rows(again.stdout)
    assert rows == data_rows(result.stdout)  # the table the sweep ended with
    assert len(rows) == 4 and all("completed" in row for row in rows) and f"{best} ★" in rows[best]
    assert len(summary_rows(sweep_dir)) == 4  # rewritten

    ranked = data_rows(dlrun_summary(sweep_dir, "--sort").stdout)
    assert "★" in ranked[0] and sorted(ranked) == sorted(rows)


def data_rows(out: str) -> list[str]:
    """The rows of the table printed in out, between its header rule and its bottom line."""
    lines = out.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("┡"))
    end = next(index for index, line in enumerate(lines) if line.startswith("└"))
    return lines[start + 1 : end]


def test_dlrun_summary_runs_as_a_module(four_jobs):
    _, sweep_dir = four_jobs
    command = [sys.executable, "-m", "dlrun.sweep.cli", str(sweep_dir)]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ | {"COLUMNS": "200"})
    assert shown.returncode == 0 and "4 jobs: 4 completed" in one_line(shown.stdout)


def test_tensorboard_over_the_sweep_dir_compares_the_jobs_hyperparameters(four_jobs):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    _, sweep_dir = four_jobs
    # every job is a run of its own, with its hyperparameters
    lrs = {hparams.session_hparams(sweep_dir / str(job))["optimizer.lr"].number_value for job in range(4)}
    assert lrs == {0.001, 0.01}
    # the sweep dir's experiment lists what the jobs differ in, against their final metrics
    (events,) = sweep_dir.glob(f"events.out.tfevents.*{hparams.EVENTS_SUFFIX}")
    values = [value for event in EventFileLoader(str(events)).Load() for value in event.summary.value]
    (experiment,) = [
        metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
        for value in values
        if value.tag == metadata.EXPERIMENT_TAG
    ]
    names = {info.name for info in experiment.hparam_infos}
    assert {"optimizer._target_", "optimizer.lr", "optimizer.momentum"} <= names
    assert "trainer.max_epochs" not in names and all(info.differs for info in experiment.hparam_infos)
    assert {info.name.tag for info in experiment.metric_infos} >= {"val/loss", "test/acc", "test/loss"}


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    # job 0: bad input (no such model builder); job 1: a bug in the model's code; job 2: fine
    models = "model._target_=nope.mlp,test_sweep_helpers.broken_model,dlrun.models.mlp.mlp"
    result = run_cli("-m", models, *TINY, cwd=tmp_path, env=HELPERS_ENV)
    assert result.returncode == 1, result.stderr  # a bug among the failures: exit 1, as a single run would
    sweep_dir = only_sweep_dir(tmp_path)
    records = [job_record(sweep_dir / str(job)) for job in range(3)]
    assert [record["status"] for record in records] == ["failed", "failed", "completed"]
    assert records[0]["error"].startswith("ConfigError: model: could not build nope.mlp")
    assert records[0]["exit_code"] == 2 and records[0]["traceback"] is None
    assert records[1]["error"] == "RuntimeError: a bug in this job's model, on purpose"
    assert records[1]["exit_code"] == 1 and "test_sweep_helpers.py" in records[1]["traceback"]
    assert (sweep_dir / "2" / "metrics.json").is_file()
    assert "dlrun: bad configuration" in result.stderr and "Traceback" in result.stderr

    rows = summary_rows(sweep_dir)
    assert [row["status"] for row in rows] == ["failed", "failed", "completed"]
    assert rows[2]["best"] == "True" and rows[1]["error"] == records[1]["error"]
    out = one_line(result.stdout)
    assert "3 jobs: 1 completed, 2 failed" in out
    assert "model: could not build nope.mlp" in out and "RuntimeError: a bug in this job's model" in out
    assert "to finish it (finished jobs are skipped): dlrun -m model._target_=nope.mlp," in out


def test_stop_on_failure_ends_the_sweep_at_the_first_failed_job(tmp_path):
    stop = "hydra.callbacks.sweep.stop_on_failure=true"
    result = run_cli("-m", "optimizer.lr=0,1e-3,1e-2", stop, *TINY, cwd=tmp_path)
    assert result.returncode == 2, result.stderr  # bad input only
    sweep_dir = only_sweep_dir(tmp_path)
    assert [job_record(sweep_dir / str(job))["status"] for job in range(3)] == ["failed", "not run", "not run"]
    assert not list(sweep_dir.glob("*/metrics.json"))
    assert "the sweep stopped at the first failure" in one_line(result.stdout)

    # The same sweep dir with other overrides: its jobs are not mixed up with the ones there.
    other = run_cli("-m", "optimizer.lr=1e-2,1e-3", f"hydra.sweep.dir={sweep_dir}", stop, *TINY, cwd=tmp_path)
    assert other.returncode == 2
    error = job_record(sweep_dir / "0")["error"]
    assert f"hydra.sweep.dir = {sweep_dir}: job 0 there ran optimizer.lr=0, not optimizer.lr=0.01; resume" in error


def test_joblib_runs_jobs_at_once_in_processes_sharing_the_cpus_each_on_its_device(tmp_path):
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.device=auto"]  # after TINY's cpu
    together = barrier(tmp_path / "barrier")  # each job waits in its training start until both train
    result = run_cli("-m", "optimizer.lr=1e-3,1e-2", *TINY, *launcher, *together, cwd=tmp_path, env=HELPERS_ENV)
    assert result.returncode == 0, result.stderr
    sweep_dir = only_sweep_dir(tmp_path)
    records = [job_record(sweep_dir / str(job)) for job in range(2)]
    assert [record["status"] for record in records] == ["completed", "completed"], [r["error"] for r in records]
    assert len({record["pid"] for record in records} | {os.getpid()}) == 3  # two worker processes
    assert overlap(records) > 0  # their job.json times show it too
    # The device each took, from its job dir: a GPU each where there are two or more, else the one device shared
    # (CPU-only here: both cpu; the per-GPU claim itself: test_sweep_parallel.py, across real processes).
    gpus = torch.cuda.device_count()
    expected = ["cuda:0", "cuda:1"] if gpus > 1 else ["cuda"] * 2 if gpus == 1 else ["cpu"] * 2
    assert sorted(record["device"] for record in records) == expected
    expected_threads = max(1, resources.available_cpus() // 2)
    assert [record["torch_threads"] for record in records] == [expected_threads] * 2
    assert len(summary_rows(sweep_dir)) == 2 and "2 jobs: 2 completed" in one_line(result.stdout)


def test_an_interrupted_sweep_resumes_only_what_is_missing(tmp_path, dlrun_summary):
    interrupt = [
        "+callbacks.interrupt._target_=test_sweep_helpers.InterruptOnce",
        "+callbacks.interrupt.job=1",
        f"+callbacks.interrupt.marker={tmp_path / 'interrupted'}",
    ]
    args = ["-m", "optimizer.lr=1e-3,3e-3,1e-2", *interrupt, *TINY]
    first = run_cli(*args, cwd=tmp_path, env=HELPERS_ENV)
    assert first.returncode == 130, first.stderr  # Ctrl-C ends the sweep, with the table so far
    sweep_dir = only_sweep_dir(tmp_path)
    assert [job_record(sweep_dir / str(job))["status"] for job in range(2)] == ["completed", "interrupted"]
    assert not (sweep_dir / "2").exists()
    assert "2 of 3 jobs: 1 completed, 1 interrupted" in one_line(first.stdout)

    shown = dlrun_summary(sweep_dir)
    assert shown.returncode == 0 and "2 of 3 jobs" in one_line(shown.stdout)
    resume = json.loads((sweep_dir / "summary.json").read_text())["resume"]
    assert resume.startswith("dlrun -m optimizer.lr=1e-3,3e-3,1e-2 ") and f"hydra.sweep.dir={sweep_dir}" in resume

    done_before = (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns
    second = run_cli(*args, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=HELPERS_ENV)
    assert second.returncode == 0, second.stderr
    records = [job_record(sweep_dir / str(job)) for job in range(3)]
    assert [record["status"] for record in records] == ["completed"] * 3
    assert [record["attempts"] for record in records] == [1, 2, 1]  # 0 skipped, 1 resumed, 2 run
    assert (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns == done_before
    assert "resumed from its last.pt" in records[1]["note"]
    assert "job 0 finished before" in second.stdout + second.stderr
    rows = summary_rows(sweep_dir)
    assert len(rows) == 3 and {row["status"] for row in rows} == {"completed"}


# -- dlrun-summary on sweeps in any state, and the parts without a subprocess ----------------------------


def write_job(sweep_dir, num, **fields):
    job_dir = sweep_dir / str(num)
    job_dir.mkdir(parents=True)
    JobRecord(num=num, overrides=[f"optimizer.lr={num}"], **fields).save(job_dir)
    return job_dir


def test_dlrun_summary_of_a_running_sweep_and_of_a_killed_one(tmp_path, dlrun_summary):
    write_job(tmp_path, 0, status="running", started=time.time())  # this test's own process: alive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_job(tmp_path, 1, status="running", pid=dead.pid)  # killed: its process is gone
    write_job(tmp_path, 2, status="running", pid=dead.pid, host="another-host")  # on a cluster node: can't tell
    jobs = summary.collect(tmp_path).jobs
    assert [job.status for job in jobs] == ["running", "interrupted", "running"]
    assert socket.gethostname() != "another-host"
    shown = dlrun_summary(tmp_path)
    assert shown.returncode == 0 and "3 jobs: 2 running, 1 interrupted" in one_line(shown.stdout)


def test_dlrun_summary_of_a_dir_that_is_no_sweep_exits_2(tmp_path, dlrun_summary):
    for args in ([tmp_path / "nowhere"], [tmp_path]):
        shown = dlrun_summary(*args)
        assert shown.returncode == 2 and "dlrun-summary:" in shown.stderr


@pytest.mark.parametrize(
    ("n_jobs", "cpus", "parallel", "threads"),
    [(None, 8, 1, None), (2, 8, 2, 4), (4, 2, 4, 1), (-1, 8, 8, 1), (-2, 8, 7, 1), (3, 16, 3, 5)],
)
def test_parallel_jobs_share_the_cpus(n_jobs, cpus, parallel, threads):
    target = resources.JOBLIB_LAUNCHER if n_jobs is not None else "BasicLauncher"
    assert resources.parallel_jobs(target, n_jobs, cpus) == parallel
    assert resources.threads_per_job(cpus, parallel) == threads
    assert resources.threads_per_job(cpus, parallel, slurm_cpus="6") == 6


def test_parallel_jobs_take_one_gpu_each_while_there_are_enough(tmp_path):
    with (
        resources.claimed_gpu(tmp_path, 2, job_num=0) as first,
        resources.claimed_gpu(tmp_path, 2, job_num=1) as second,
    ):
        assert {first, second} == {0, 1}
        with resources.claimed_gpu(tmp_path, 2, job_num=5) as third:
            assert third == 1  # none free: shared, by job number
    with resources.claimed_gpu(tmp_path, 2, job_num=7) as again:
        assert again == 0  # released

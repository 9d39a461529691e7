"""Parallel sweeps on this machine with the real joblib launcher: two Optuna trials that train at once (a barrier in
their training start passes only then; two plain jobs: test_sweep.py), the per-GPU claims across real processes,
and a job dir that another process holds."""

import subprocess
import sys
import textwrap

import yaml
from test_sweep_helpers import HELPERS_ENV, TINY, barrier, job_record, one_line, only_sweep_dir, overlap

from conftest import run_cli

PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def test_two_optuna_trials_run_at_once_with_the_joblib_launcher(tmp_path):
    search = ["hparams_search=digits_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]
    args = ["-m", *search, *PARALLEL, *TINY, *barrier(tmp_path / "barrier")]
    result = run_cli(*args, cwd=tmp_path, env=HELPERS_ENV)
    assert result.returncode == 0, result.stderr
    sweep_dir = only_sweep_dir(tmp_path)
    records = [job_record(sweep_dir / str(trial)) for trial in range(2)]
    assert [record["status"] for record in records] == ["completed"] * 2, [record["error"] for record in records]
    assert len({record["pid"] for record in records}) == 2 and overlap(records) > 0
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(record["value"] for record in records)


CLAIM = """
import sys, time
from pathlib import Path
from dlrun.sweep import resources
with resources.claimed_gpu(Path(sys.argv[1]), 2, job_num=int(sys.argv[2])) as index:
    print(index, flush=True)
    while not Path(sys.argv[1], "release").exists():
        time.sleep(0.01)
"""


def claim(sweep_dir, job_num: int) -> tuple[subprocess.Popen, int]:
    """A process that claims a GPU of 2 for job job_num and holds it until sweep_dir/release exists."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CLAIM), str(sweep_dir), str(job_num)], stdout=subprocess.PIPE, text=True
    )
    return process, int(process.stdout.readline())


def test_gpu_claims_hold_across_processes_and_a_killed_job_frees_its_gpu(tmp_path):
    first, first_gpu = claim(tmp_path, 0)
    second, second_gpu = claim(tmp_path, 1)
    third, third_gpu = claim(tmp_path, 5)
    assert {first_gpu, second_gpu} == {0, 1} and third_gpu == 1  # none left: shared by job number
    first.kill()
    first.wait()
    fourth, fourth_gpu = claim(tmp_path, 7)
    assert fourth_gpu == first_gpu  # the OS dropped the killed job's lock
    (tmp_path / "release").touch()
    for process in (second, third, fourth):
        assert process.wait(timeout=30) == 0


HOLD = """
import sys, time
from pathlib import Path
from dlrun.run_dir import lock
lock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


def test_a_sweep_job_dir_held_by_another_process_is_named_and_left_alone(tmp_path):
    sweep_dir = tmp_path / "sweep"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(sweep_dir / "0")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        result = run_cli("-m", "optimizer.lr=1e-3,1e-2", f"hydra.sweep.dir={sweep_dir}", *TINY, cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0, result.stderr
    message = f"job 0 of hydra.sweep.dir = {sweep_dir / '0'}: in use by dlrun process {holder.pid}"
    assert message in one_line(result.stderr + result.stdout)
    assert not (sweep_dir / "0" / "job.json").exists() and not (sweep_dir / "0" / "checkpoints").exists()
    assert job_record(sweep_dir / "1")["status"] == "completed"  # the sweep went on

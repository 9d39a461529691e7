"""A sweep job under submitit's local executor (`hydra/launcher=submitit_local`) is warned by the executor's own
timeout, saves its last.pt, is requeued by submitit and resumes from it: real `dlrun -m` subprocesses, no mocks.

The local executor's controller sends SIGUSR2 `SUBMITIT_LOCAL_SIGNAL_DELAY_S` seconds before the job's time limit,
`SUBMITIT_LOCAL_TIMEOUT_S`, and starts the job again when it exits with submitit's requeue code. The launcher takes
whole minutes (timeout_min is an int) and sets no signal delay (30 s), so the test's launcher `setup` line, the
shell lines the executor runs before its controller, sets both in seconds. The job pauses at a training step
(dlrun.pause) until the warning comes, so that the warning lands mid-training, not during start-up.
"""

import json
import os
import subprocess

import pytest
import torch

from conftest import DLRUN

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs hydra-submitit-launcher (dlrun[slurm])")

# 2 epochs of 20 steps; the warned job pauses at step 25, in its second epoch.
JOB = ["trainer.device=cpu", "quiet=true", "print_config=false", "trainer.max_epochs=2", "trainer.limit_batches=20"]
JOB += ["dataset.batch_size=8", "trainer.deterministic=true", "seed=1"]
LAUNCHER = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1"]
WARNED_AT_S, TIMEOUT_S = 12, 40  # the executor warns the job 12 s after it starts (40 s limit, 28 s before it)
EXPORTS = f"SUBMITIT_LOCAL_TIMEOUT_S={TIMEOUT_S} SUBMITIT_LOCAL_SIGNAL_DELAY_S={TIMEOUT_S - WARNED_AT_S}"
SHORT_TIMEOUT = f'+hydra.launcher.setup=["export {EXPORTS}"]'


def sweep(sweep_dir, *launcher, env=None):
    command = [DLRUN, "-m", *LAUNCHER, *launcher, *JOB, f"hydra.sweep.dir={sweep_dir}"]
    env = os.environ | {"COLUMNS": "200"} | (env or {})
    return subprocess.Popen(command, cwd=sweep_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(process):
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err.decode()


def submitit_log(sweep_dir):
    """What submitit logged in the job (its log file per job id), all attempts together."""
    return "".join(path.read_text() for path in sorted((sweep_dir / ".submitit").glob("*/*_log.*")))


def state_dict(path):
    saved = torch.load(path, weights_only=True)
    return saved.get("model", saved)


def assert_same_weights(expected, actual):
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


@pytest.mark.slow
def test_a_job_warned_by_the_local_executor_is_requeued_and_ends_as_an_uninterrupted_one(tmp_path):
    straight_dir, warned_dir, pause_file = tmp_path / "straight", tmp_path / "warned", tmp_path / "paused"
    warned = sweep(
        warned_dir, SHORT_TIMEOUT, env={"DLRUN_PAUSE_AT": "train_step@25", "DLRUN_PAUSE_FILE": str(pause_file)}
    )
    straight = sweep(straight_dir)  # at the same time, to keep the test short; warned at 30 s, it ends before
    finished(warned), finished(straight)

    assert pause_file.exists()  # the first attempt reached step 25 and waited there for the warning
    log = submitit_log(warned_dir)  # the job's own stdout and stderr
    assert "SIGUSR2: stopped after step 25 (epoch 2, batch 5)" in log  # dlrun saved last.pt and handed it on
    assert "Caught signal SIGUSR2" in log and "this job is timed-out" in log  # sent by the executor's timeout
    assert "Requeued job" in log  # submitit's requeue, then the controller started the job again
    record = json.loads((warned_dir / "0" / "job.json").read_text())
    assert record["status"] == "completed" and record["attempts"] >= 2, record
    assert record["note"].startswith("resumed from its last.pt"), record
    assert "Requeued job" not in submitit_log(straight_dir) and "stopped after" not in submitit_log(straight_dir)

    for name in ("model.pt", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert_same_weights(state_dict(straight_dir / "0" / name), state_dict(warned_dir / "0" / name))
    assert (straight_dir / "0" / "metrics.json").read_text() == (warned_dir / "0" / "metrics.json").read_text()

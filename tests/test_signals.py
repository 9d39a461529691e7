"""A signal at every moment of a run: real signals sent to a real `dlrun` subprocess, paused at the moment by
dlrun.pause (DLRUN_PAUSE_AT); each leaves a loadable last.pt or none, and a resume completes with the weights and
metrics of a run never stopped. The stopped runs start together (their imports overlap with the other tests); the
resumes run in-process: the CLI is under test only in the stopped runs."""

import json
import os
import signal
import subprocess

import pytest
import torch

from dlrun.checkpoint import load
from dlrun.run import run

from conftest import DLRUN, SMALL, compose_config, wait_for

TINY = ["trainer.max_epochs=2", "trainer.deterministic=true", "callbacks.checkpoint.save_interval_s=0"]


# Where each stopped run pauses (dlrun.pause): the first SIGTERM at step 30 (epoch 2) of the last one, the second
# while the last.pt that the first asked for is being written; "write:last.pt": epoch 1's, written, not yet renamed.
PAUSES = ["startup", "validation@2", "test", "write:last.pt", "train_step@30,write:last.pt@2"]


def start(run_dir, pause_at):
    """dlrun in run_dir, pausing at pause_at with its PID in run_dir/../pause."""
    env = os.environ | {"DLRUN_PAUSE_AT": pause_at, "DLRUN_PAUSE_FILE": str(run_dir.parent / "pause")}
    command = [DLRUN, *SMALL, *TINY, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """Each pause's run: (process, run dir, pause file)."""
    runs = {}
    for pause_at in PAUSES:
        folder = tmp_path_factory.mktemp("stopped")
        runs[pause_at] = start(folder / "run", pause_at), folder / "run", folder / "pause"
    yield runs
    for process, _, _ in runs.values():
        if process.poll() is None:  # a failed test left it paused
            process.kill()
            process.communicate()


def signal_at_pause(process, pause_file, signum):
    wait_for(pause_file, process)
    assert int(pause_file.read_text()) == process.pid
    process.send_signal(signum)


def resume(run_dir):
    run(compose_config(*TINY, "resume=auto"), run_dir)
    return final(run_dir)


def final(run_dir):
    """The trained weights (last.pt's) and metrics.json of a finished run."""
    return load(run_dir / "checkpoints" / "last.pt")["model"], json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    run(compose_config(*TINY), run_dir)
    return final(run_dir)


def assert_same_run(expected, actual):
    (expected_weights, expected_metrics), (weights, metrics) = expected, actual
    assert expected_weights.keys() == weights.keys()
    for name in expected_weights:
        assert torch.equal(expected_weights[name], weights[name]), name
    assert metrics == expected_metrics


@pytest.mark.parametrize(
    ("pause_at", "signum", "message", "saved_epoch"),
    [
        ("startup", signal.SIGTERM, "SIGTERM: stopped before training; nothing was written", None),
        ("validation@2", signal.SIGINT, "SIGINT: stopped during epoch 2's validation, its training done (step 40)", 1),
        ("test", signal.SIGINT, "SIGINT: stopped during the final test; training is done and saved in", 2),
    ],
)
def test_a_signal_in_a_phase_stops_there_and_resume_completes(
    started, uninterrupted, pause_at, signum, message, saved_epoch
):
    process, run_dir, pause_file = started[pause_at]
    signal_at_pause(process, pause_file, signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert message in err
    assert f"resume with:  dlrun resume=auto hydra.run.dir={run_dir}" in err
    assert "Traceback" not in err
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model.pt").exists()
    last = run_dir / "checkpoints" / "last.pt"
    if saved_epoch is None:
        assert not last.exists()
    else:
        saved = load(last)
        assert saved["epoch"] == saved_epoch
        if pause_at.startswith("validation"):  # its training done: a resume validates it, with its training metrics
            assert saved["batch"] == 20 and saved["epoch_sums"]["counts"]["loss"] == 20
    assert_same_run(uninterrupted, resume(run_dir))


def test_a_signal_during_a_checkpoint_write_saves_a_whole_last_pt(started, uninterrupted):
    process, run_dir, pause_file = started["write:last.pt"]
    signal_at_pause(process, pause_file, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "SIGINT: stopped" in err and "Traceback" not in err
    assert load(run_dir / "checkpoints" / "last.pt")["epoch"] >= 1
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    assert_same_run(uninterrupted, resume(run_dir))


def test_a_second_signal_during_the_save_leaves_the_previous_last_pt(started, uninterrupted):
    process, run_dir, pause_file = started["train_step@30,write:last.pt@2"]
    signal_at_pause(process, pause_file, signal.SIGTERM)
    signal_at_pause(process, pause_file.with_name("pause.2"), signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGTERM  # ended at once, by the signal
    checkpoints = run_dir / "checkpoints"
    assert load(checkpoints / "last.pt")["epoch"] == 1  # epoch 1's, whole; the new one never replaced it
    assert list(checkpoints.glob(".last.pt.*.tmp"))  # the unfinished write, left by the killed process
    assert_same_run(uninterrupted, resume(run_dir))
    assert not list(checkpoints.glob(".*.tmp"))  # removed by the resume

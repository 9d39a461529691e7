"""A run stopped mid-epoch by a real SIGTERM and resumed with resume=auto logs the same training metrics for the
resumed epoch as a run never stopped (issue 17 point 10): last.pt holds the epoch's sums so far. In-process: the run
pauses at a step (dlrun.pause) and a thread sends this process the signal there."""

import os
import signal
import threading
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun import pause
from dlrun.checkpoint import load
from dlrun.run import run

from conftest import compose_config

# 2 epochs of 6 batches (steps 1-6, 7-12); the sums are read every 4 steps (at 4, 8, 12).
TINY = [
    "trainer.max_epochs=2",
    "trainer.limit_batches=6",
    "trainer.log_every_n_steps=4",
    "dataset.batch_size=64",
    "trainer.deterministic=true",
    "callbacks.checkpoint.save_interval_s=0",
]
# Step 9: epoch 2's third batch, with steps 7-8 in the sums read at step 8 and step 9 not read yet.
STOP_AT_STEP = 9
EPOCH_METRICS = ("train/loss_epoch", "train/acc")


def epoch_metrics(run_dir) -> dict[str, dict[int, float]]:
    """Each epoch metric by step, read back from the run's TensorBoard event files (the stopped run's and the
    resumed run's)."""
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: {event.step: event.value for event in events.Scalars(tag)} for tag in EPOCH_METRICS}


def signal_at_pause(pause_file, timeout=120.0) -> None:
    """Wait in a thread for the run to pause, then send this process SIGTERM."""
    deadline = time.monotonic() + timeout
    while not pause_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_resumed_epoch_logs_the_training_metrics_of_a_run_never_stopped(tmp_path, monkeypatch):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run(compose_config(*TINY), straight)

    pause_file = tmp_path / "pause"
    monkeypatch.setattr(pause, "_reached", {})  # this process's counts of pause points: from zero for this run
    monkeypatch.setenv("DLRUN_PAUSE_AT", f"train_step@{STOP_AT_STEP}")
    monkeypatch.setenv("DLRUN_PAUSE_FILE", str(pause_file))
    sender = threading.Thread(target=signal_at_pause, args=(pause_file,))
    sender.start()
    with pytest.raises(SystemExit) as stop:
        run(compose_config(*TINY), stopped)
    sender.join()
    assert stop.value.code == 128 + signal.SIGTERM
    saved = load(stopped / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["step"], saved["batch"]) == (1, STOP_AT_STEP, 3)  # mid-epoch 2
    sums = saved["epoch_sums"]  # epoch 2's 3 batches: the losses of steps 7-8 summed, step 9's still apart
    assert sums["counts"] == {"loss": 2, "acc": 3 * 64} and [set(step) for step in sums["pending"]] == [{"loss"}]
    assert {tag: sorted(steps) for tag, steps in epoch_metrics(stopped).items()} == {tag: [6] for tag in EPOCH_METRICS}
    monkeypatch.delenv("DLRUN_PAUSE_AT")

    run(compose_config(*TINY, "resume=auto"), stopped)

    expected, resumed = epoch_metrics(straight), epoch_metrics(stopped)
    for tag in EPOCH_METRICS:
        assert sorted(expected[tag]) == [6, 12], tag
        assert resumed[tag] == expected[tag], tag  # epoch 1 from the stopped run, epoch 2 from the resumed one
    weights, expected_weights = (torch.load(path / "model.pt", weights_only=True) for path in (stopped, straight))
    assert weights.keys() == expected_weights.keys()
    assert all(torch.equal(weights[name], expected_weights[name]) for name in weights)
    last, expected_last = load(stopped / "checkpoints" / "last.pt"), load(straight / "checkpoints" / "last.pt")
    assert all(torch.equal(last["model"][name], expected_last["model"][name]) for name in last["model"])

"""Runs that survive interruption: real signals sent to a real `dlrun` subprocess; the uninterrupted run and the
resumes run in-process (the CLI is under test only in the stopped runs)."""

import signal
import subprocess
import time

import pytest
import torch

from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import DLRUN, compose_config, wait_for

# Enough steps an epoch (batch size 8: 158 steps) that a signal lands mid-epoch.
SLOW = ["dataset.batch_size=8", "trainer.max_epochs=3", "trainer.deterministic=true", "trainer.device=cpu"]
QUIET = ["quiet=true", "print_config=false"]


def start(run_dir, *overrides):
    return subprocess.Popen(
        [DLRUN, *SLOW, *QUIET, f"hydra.run.dir={run_dir}", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def resume(run_dir):
    run(compose_config(*SLOW, "resume=auto"), run_dir)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    run(compose_config(*SLOW), run_dir)
    return weights(run_dir)


def assert_same_weights(expected, actual):
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_last_pt_and_resume_ends_with_the_same_weights(tmp_path, uninterrupted, signum, exit_code):
    process = start(tmp_path)
    wait_for(tmp_path / "checkpoints" / "last.pt", process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == exit_code, err
    assert "resume with:  dlrun resume=auto hydra.run.dir=" in err
    assert "Traceback" not in err
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["epoch"] >= 1 and saved["batch"] > 0  # stopped mid-epoch, right after a whole step
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))

    resume(tmp_path)
    assert_same_weights(uninterrupted, weights(tmp_path))


def test_sigkill_mid_epoch_then_resume_ends_with_the_same_weights(tmp_path, uninterrupted):
    process = start(tmp_path)
    wait_for(tmp_path / "checkpoints" / "last.pt", process)
    time.sleep(0.3)  # into the second epoch
    process.kill()
    process.wait(timeout=60)
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["epoch"] >= 1  # still a valid file
    resume(tmp_path)
    assert_same_weights(uninterrupted, weights(tmp_path))


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    process = start(tmp_path, "trainer.max_epochs=50")
    wait_for(tmp_path / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode != 0


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(run_dir):
    diverging = ["optimizer=sgd", "optimizer.lr=1e6", "optimizer.momentum=0.99"]
    with pytest.raises(
        ConfigError, match=r"NaN or infinite at (step|one of steps) [\d-]+ \(epoch 1\).*trainer.nonfinite_loss=skip"
    ):
        run(compose_config(*diverging, "trainer.max_epochs=2"), run_dir)
    assert not (run_dir / "checkpoints" / "last.pt").exists()  # nothing diverged was saved


def test_skip_mode_skips_nonfinite_batches(run_dir):
    # A class weight of inf gives every batch holding a 9 an infinite loss; batches of 4 often hold none.
    inf_weight = "loss.criterion.class_weights=[1,1,1,1,1,1,1,1,1,inf]"
    run(
        compose_config(inf_weight, "trainer.nonfinite_loss=skip", "trainer.max_epochs=1", "dataset.batch_size=4"),
        run_dir,
    )
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    batches = -(-int(1797 * 0.7) // 4)
    assert 0 < checkpoint["step"] < batches
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())

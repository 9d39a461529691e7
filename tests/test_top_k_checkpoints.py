"""callbacks.checkpoint.save_top_k: the k best epochs by the monitor kept as epoch=E-<monitor>=V.pt, in real fits and
real runs, across a resume."""

import re

import pytest
import torch
from test_checkpoint_saving import EPOCHS, JUMPY, DiskProbe, train

from dlrun.callbacks.checkpoint import Checkpoint
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config

TOP_K = 3


def top_k_files(run_dir) -> list[str]:
    return sorted(path.name for path in (run_dir / "checkpoints").glob("epoch=*.pt"))


@pytest.mark.parametrize("save_interval_s", [0, 3600])  # every epoch written, or all held in memory till the end
def test_the_k_best_epochs_are_kept_and_the_others_deleted(run_dir, save_interval_s):
    checkpoint = Checkpoint(run_dir=run_dir, config={}, save_interval_s=save_interval_s, save_top_k=TOP_K)
    probe = DiskProbe(checkpoint)
    train(checkpoint, probe)
    losses = probe.val_losses
    best_epochs = sorted(range(1, EPOCHS + 1), key=lambda epoch: losses[epoch - 1])[:TOP_K]
    assert sorted(best_epochs) != list(range(EPOCHS - TOP_K + 1, EPOCHS + 1)), losses  # not just the last k
    expected = sorted(f"epoch={epoch}-val_loss={losses[epoch - 1]:.4f}.pt" for epoch in best_epochs)
    assert top_k_files(run_dir) == expected
    for name in expected:
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        epoch = int(re.match(r"epoch=(\d+)-", name)[1])
        assert state["epoch"] == epoch
        for key, tensor in probe.weights[epoch - 1].items():
            assert torch.equal(state["model"][key], tensor), key
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_a_metric_name_is_made_safe_for_a_file_name(run_dir):
    train(Checkpoint(run_dir=run_dir, config={}, monitor="val/acc", mode="max", save_top_k=2))
    names = top_k_files(run_dir)
    assert len(names) == 2 and all(re.fullmatch(r"epoch=\d+-val_acc=0\.\d{4}\.pt", name) for name in names), names
    accuracies = [float(re.search(r"val_acc=([\d.]+)\.pt", name)[1]) for name in names]
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["callbacks"]["Checkpoint"]["best"]
    assert max(accuracies) == pytest.approx(best, abs=1e-4)


def test_off_by_default_only_last_and_best(run_dir):
    train(Checkpoint(run_dir=run_dir, config={}))
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize("k", [-1, 1.5])
def test_a_k_that_is_not_a_whole_number_is_a_config_error(run_dir, k):
    with pytest.raises(ConfigError, match=f"callbacks.checkpoint.save_top_k = {k}: must be a whole number >= 0"):
        Checkpoint(run_dir=run_dir, config={}, save_top_k=k)


def test_a_resumed_run_keeps_the_same_k_best_as_an_uninterrupted_one(tmp_path):
    settings = [*JUMPY, "trainer.limit_batches=4", f"callbacks.checkpoint.save_top_k={TOP_K}"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(compose_config(*settings, "trainer.max_epochs=8"), straight)
    run(compose_config(*settings, "trainer.max_epochs=4"), resumed)
    first_half = top_k_files(resumed)
    run(compose_config(*settings, "trainer.max_epochs=8", "resume=auto"), resumed)
    assert len(top_k_files(straight)) == TOP_K
    assert top_k_files(resumed) == top_k_files(straight)
    assert set(first_half) - set(top_k_files(resumed))  # a file of the first half was pushed out after the resume

"""The checkpoint callback's saving schedule in real fits: every epoch, or epochs saved together within
save_interval_s, with the best epoch's state kept in memory until it is written."""

import math
from collections import namedtuple

import pytest
import torch

from dlrun import build
from dlrun.callbacks.base import Callback
from dlrun.callbacks.checkpoint import Checkpoint
from dlrun.checkpoint import load, snapshot
from dlrun.errors import ConfigError
from dlrun.run import seed_everything
from dlrun.trainer import NonFiniteLoss

from conftest import compose_config, make_trainer

EPOCHS = 6
# Plain SGD this fast makes the validation loss go up and down: its best epoch is neither the first nor the last.
JUMPY = ["optimizer=sgd", "optimizer.lr=0.5"]


class DiskProbe(Callback):
    """After each epoch, once the checkpoint's writes are done: the epoch last.pt holds, the metric and weights."""

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.epochs_on_disk, self.val_losses, self.weights = [], [], []

    def on_epoch_end(self, trainer, metrics) -> None:
        self.checkpoint.writer.wait()
        path = self.checkpoint.last_path
        self.epochs_on_disk.append(load(path)["epoch"] if path.exists() else None)
        self.val_losses.append(metrics["val/loss"])
        self.weights.append({name: tensor.clone() for name, tensor in trainer.network.state_dict().items()})


class Poison(Callback):
    """Makes a weight NaN after each batch of epoch `epoch`: training diverges there."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_end(self, trainer) -> None:
        if trainer.state.epoch + 1 == self.epoch:
            with torch.no_grad():
                next(trainer.network.parameters()).fill_(float("nan"))


class Crash(Poison):
    """Fails after the first forward and backward of epoch `epoch`, before its first optimizer step."""

    def on_train_batch_end(self, trainer) -> None:
        if trainer.state.epoch + 1 == self.epoch:
            raise RuntimeError("out of memory, say")


def fit(run_dir, save_interval_s: float, *callbacks: Callback) -> tuple[Checkpoint, DiskProbe]:
    checkpoint = Checkpoint(run_dir=run_dir, config={}, save_interval_s=save_interval_s)
    probe = DiskProbe(checkpoint)
    train(checkpoint, probe, *callbacks)
    return checkpoint, probe


def train(*callbacks: Callback) -> None:
    cfg = compose_config(*JUMPY)
    seed_everything(cfg.seed)
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    trainer = make_trainer(max_epochs=EPOCHS, limit_batches=4, device="cpu", callbacks=list(callbacks))
    trainer.fit(task, data, task.configure_optimizers(build.optimizer_factory(cfg)))


def test_interval_zero_saves_every_epoch(run_dir):
    checkpoint, probe = fit(run_dir, save_interval_s=0)
    assert probe.epochs_on_disk == list(range(1, EPOCHS + 1))


@pytest.fixture(scope="module")
def saved_together(tmp_path_factory) -> tuple[Checkpoint, DiskProbe]:
    """A fit whose epochs all end within the interval after the first save."""
    return fit(tmp_path_factory.mktemp("run"), save_interval_s=3600)


def test_epochs_within_the_interval_are_saved_together_at_the_end(saved_together):
    checkpoint, probe = saved_together
    assert probe.epochs_on_disk == [1] * EPOCHS  # the first epoch is saved at once, the others wait
    assert load(checkpoint.last_path)["epoch"] == EPOCHS  # training's end saved the newest state


def test_the_best_epoch_kept_in_memory_is_the_one_best_pt_gets(saved_together):
    checkpoint, probe = saved_together
    best_epoch = min(range(EPOCHS), key=probe.val_losses.__getitem__)
    assert 0 < best_epoch < EPOCHS - 1, probe.val_losses  # a middle epoch: kept in memory, then written
    best = load(checkpoint.best_path)
    assert best["epoch"] == best_epoch + 1
    assert best["callbacks"]["Checkpoint"]["best"] == probe.val_losses[best_epoch]
    for name, tensor in probe.weights[best_epoch].items():
        assert torch.equal(best["model"][name], tensor), name
    last = load(checkpoint.last_path)
    for name, tensor in probe.weights[-1].items():
        assert torch.equal(last["model"][name], tensor), name


def test_a_negative_interval_names_the_key(run_dir):
    with pytest.raises(ConfigError, match="callbacks.checkpoint.save_interval_s = -1"):
        Checkpoint(run_dir=run_dir, config={}, save_interval_s=-1)


def test_a_snapshot_does_not_change_with_the_state():
    Pair = namedtuple("Pair", ["weights", "count"])
    state = {"model": {"w": torch.ones(3)}, "pair": Pair(torch.zeros(2), 1), "rng": (3, (1, 2, 3), None), "tags": ["a"]}
    kept = snapshot(state)
    state["model"]["w"].add_(1)
    state["pair"].weights.add_(1)
    state["tags"].append("b")
    assert torch.equal(kept["model"]["w"], torch.ones(3)) and torch.equal(kept["pair"].weights, torch.zeros(2))
    assert type(kept["pair"]) is Pair and kept["pair"].count == 1
    assert kept["rng"] == (3, (1, 2, 3), None) and kept["tags"] == ["a"]


@pytest.mark.parametrize(("failure", "error"), [(Poison, NonFiniteLoss), (Crash, RuntimeError)])
def test_a_run_failing_mid_epoch_keeps_the_newest_good_state_it_held(run_dir, failure, error):
    """Diverging in epoch 5, or failing there before its first optimizer step (the forward pass has changed the
    RNG, a batch norm's statistics): last.pt gets the newest state copied in memory (the last epoch that
    improved), not the live state nor epoch 4's, which was never copied (it did not improve, and training went
    on)."""
    checkpoint = Checkpoint(run_dir=run_dir, config={}, save_interval_s=3600)
    probe = DiskProbe(checkpoint)
    with pytest.raises(error):
        train(checkpoint, probe, failure(epoch=5))
    losses = probe.val_losses
    assert len(losses) == 4
    improved = [epoch + 1 for epoch in range(4) if losses[epoch] < min(losses[:epoch], default=math.inf)]
    assert improved[-1] < 4, losses  # epoch 4 did not improve: it was only owed, never copied
    last, best = load(checkpoint.last_path), load(checkpoint.best_path)
    assert last["epoch"] == best["epoch"] == improved[-1]
    for name, tensor in probe.weights[improved[-1] - 1].items():
        assert torch.equal(last["model"][name], tensor), name


@pytest.mark.parametrize("interval", [0, -5])
def test_a_mid_epoch_interval_that_is_not_positive_is_a_config_error(tmp_path, interval):
    with pytest.raises(ConfigError, match=f"callbacks.checkpoint.mid_epoch_interval_s = {interval}: must be > 0"):
        Checkpoint(run_dir=tmp_path, config={}, mid_epoch_interval_s=interval)

"""callbacks.ema: an exponential moving average of the weights, scored by validation, held by best.pt and model.pt,
and continued exactly by a resume. Real training on digits."""

import os
import signal

import pytest
import torch

from dlrun import build
from dlrun.callbacks.base import Callback
from dlrun.callbacks.checkpoint import Checkpoint
from dlrun.callbacks.ema import EMA
from dlrun.errors import ConfigError
from dlrun.run import run, seed_everything
from dlrun.trainer import Trainer

from conftest import compose_config, make_trainer

DECAY = 0.8
SHORT = ["trainer.limit_batches=4", "trainer.max_epochs=3"]


class Recorder(Callback):
    """The raw weights after every optimizer step; after each validation the trainer's val/loss, and the val metrics
    of the raw weights and of the evaluation model, scored here directly."""

    def __init__(self):
        self.steps: list[tuple[int, dict]] = []
        self.val_losses, self.raw_metrics, self.scored_metrics, self.averages = [], [], [], []

    def on_train_step_end(self, trainer) -> None:
        self.steps.append((trainer.state.step, weights_of(trainer.network)))

    def on_epoch_end(self, trainer, metrics) -> None:
        task, data = trainer.task, trainer.data
        self.val_losses.append(metrics["val/loss"])
        self.raw_metrics.append(trainer.evaluate(task, data, "val"))
        task.model = trainer.evaluation_model
        self.scored_metrics.append(trainer.evaluate(task, data, "val"))
        task.model = trainer.network
        self.averages.append(weights_of(trainer.evaluation_model))


def weights_of(module: torch.nn.Module) -> dict:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def fit(run_dir, every_n_steps: int = 1, checkpointed: bool = True) -> tuple[Trainer, Recorder]:
    """Three short epochs with the EMA before the checkpoint (as conf/callbacks/default.yaml lists them)."""
    cfg = compose_config(*SHORT)
    seed_everything(cfg.seed)
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    recorder = Recorder()
    checkpoint = [Checkpoint(run_dir=run_dir, config={})] if checkpointed else []
    callbacks = [EMA(decay=DECAY, every_n_steps=every_n_steps), *checkpoint, recorder]
    trainer = make_trainer(max_epochs=3, limit_batches=4, device="cpu", callbacks=callbacks)
    trainer.fit(task, data, task.configure_optimizers(build.optimizer_factory(cfg)))
    return trainer, recorder


@pytest.mark.parametrize("every_n_steps", [1, 3])
def test_the_average_follows_the_ema_formula_over_the_steps(run_dir, every_n_steps):
    trainer, recorder = fit(run_dir, every_n_steps)
    averaged = [weights for step, weights in recorder.steps if step % every_n_steps == 0]
    expected = {name: tensor.double() for name, tensor in averaged[0].items()}  # the first update copies
    for weights in averaged[1:]:
        for name, tensor in weights.items():
            if tensor.is_floating_point():
                expected[name] = DECAY * expected[name] + (1 - DECAY) * tensor.double()
    actual = weights_of(trainer.evaluation_model)
    for name, tensor in expected.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(actual[name].double(), tensor, rtol=1e-5, atol=1e-6)
    assert not torch.equal(actual["1.weight"], recorder.steps[-1][1]["1.weight"])  # not the raw weights


def test_validation_scores_the_average_and_best_pt_holds_it(run_dir):
    _, recorder = fit(run_dir)
    val_losses = recorder.val_losses
    assert val_losses == [scored["val/loss"] for scored in recorder.scored_metrics]
    assert all(raw["val/loss"] != loss for raw, loss in zip(recorder.raw_metrics, val_losses, strict=True))
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert best["callbacks"]["Checkpoint"]["best"] == min(val_losses)  # the monitor read the average's val/loss
    for name, tensor in recorder.averages[best["epoch"] - 1].items():
        assert torch.equal(best["model"][name], tensor), name
    for name, tensor in recorder.steps[-1][1].items():  # last.pt: the trained weights, to resume from
        assert torch.equal(last["model"][name], tensor), name


def test_a_run_tests_and_saves_the_average(run_dir):
    run(compose_config(*SHORT, f"callbacks.ema.decay={DECAY}", "callbacks.checkpoint.save_top_k=1"), run_dir)
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    (top,) = (run_dir / "checkpoints").glob("epoch=*.pt")
    model = torch.load(run_dir / "model.pt", weights_only=True)
    average = best["callbacks"]["EMA"]
    for name, tensor in model.items():
        assert torch.equal(tensor, best["model"][name]) and torch.equal(tensor, average[f"module.{name}"]), name
        assert torch.equal(tensor, torch.load(top, weights_only=True)["model"][name]), name


def test_without_checkpoints_the_test_scores_the_average(run_dir):
    trainer, recorder = fit(run_dir, checkpointed=False)
    metrics = trainer.test(trainer.task, trainer.data)
    assert metrics["val/loss"] == recorder.val_losses[-1]
    for name, tensor in recorder.averages[-1].items():
        assert torch.equal(trainer.network.state_dict()[name], tensor), name


def test_off_by_default(run_dir):
    cfg = compose_config(*SHORT)
    assert cfg.callbacks.ema.decay is None
    run(cfg, run_dir)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["callbacks"]["EMA"] == {}
    model = torch.load(run_dir / "model.pt", weights_only=True)
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert all(torch.equal(tensor, best["model"][name]) for name, tensor in model.items())


class InterruptAt(Callback):
    """Sends this process SIGINT after optimizer step `step`: the trainer stops there, mid-epoch, and saves."""

    def __init__(self, step: int):
        self.step = step

    def on_train_step_end(self, trainer) -> None:
        if trainer.state.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


class CrashAt(InterruptAt):
    """Fails after optimizer step `step`, as a lost node would: what resumes is the last mid-epoch save."""

    def on_train_step_end(self, trainer) -> None:
        if trainer.state.step == self.step:
            raise RuntimeError("the node is gone")


@pytest.mark.parametrize(
    ("stop", "error"),
    [
        ("InterruptAt", SystemExit),  # SIGINT: last.pt saved after the step
        ("CrashAt", RuntimeError),  # last.pt saved mid-epoch after every step, the average updated before it
    ],
)
def test_an_interrupted_and_resumed_run_ends_with_the_same_average(tmp_path, stop, error):
    settings = [*SHORT, f"callbacks.ema.decay={DECAY}", "callbacks.ema.every_n_steps=2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(compose_config(*settings), straight)
    stopping = [f"+callbacks.stop._target_=test_ema.{stop}", "+callbacks.stop.step=6"]
    with pytest.raises(error):
        run(compose_config(*settings, *stopping, "callbacks.checkpoint.mid_epoch_interval_s=1e-6"), resumed)
    saved = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["batch"], saved["step"]) == (1, 2, 6)  # mid-epoch, just after an update
    assert int(saved["callbacks"]["EMA"]["n_averaged"]) == 3  # steps 2, 4 and 6
    run(compose_config(*settings, "resume=auto"), resumed)
    expected = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["callbacks"]["EMA"]
    actual = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["callbacks"]["EMA"]
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    model, straight_model = (torch.load(d / "model.pt", weights_only=True) for d in (resumed, straight))
    assert all(torch.equal(tensor, straight_model[name]) for name, tensor in model.items())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"decay": 1.5}, "callbacks.ema.decay = 1.5: must be between 0 and 1"),
        ({"decay": 0.9, "every_n_steps": 0}, "callbacks.ema.every_n_steps = 0: must be a whole number >= 1"),
    ],
)
def test_impossible_settings_name_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        EMA(**settings)

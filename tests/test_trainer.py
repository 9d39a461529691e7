"""The central trainer on real data: checkpoints, resume, early stopping, accumulation, precision."""

import json

import pytest
import torch

from dlrun import build
from dlrun.run import run
from dlrun.tasks.base import Task

from conftest import compose_config, make_trainer, model_for

SHORT = ["trainer.limit_batches=4"]


def last_checkpoint(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def test_a_run_writes_checkpoints_model_and_metrics(run_dir):
    run(compose_config("trainer.max_epochs=2", *SHORT), run_dir)
    checkpoint = last_checkpoint(run_dir)
    expected = {"model", "optimizers", "schedulers", "scaler", "epoch", "step", "rng", "callbacks", "config"}
    assert expected | {"preprocessing"} <= set(checkpoint)
    assert checkpoint["preprocessing"]["input_mean"].shape == (1, 1, 1)  # one channel of 8x8 images
    assert checkpoint["preprocessing"]["class_names"] == [str(digit) for digit in range(10)]
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 8
    assert checkpoint["config"]["optimizer"]["lr"] == 0.001
    assert set(checkpoint["callbacks"]) == {
        "EarlyStopping",
        "EMA",
        "Checkpoint",
        "TensorBoard",
        "ClassificationReport",
        "Progress",
    }
    network = model_for(compose_config())
    network.load_state_dict(torch.load(run_dir / "model.pt"))  # a plain state_dict, the primer's way
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["callbacks"]["Checkpoint"]["best"] == pytest.approx(metrics["val/loss"], rel=1e-5)
    assert set(metrics.pop("baselines")) == {"majority_class"}
    assert set(metrics) == {"val/loss", "val/acc", "val/top5_acc", "test/loss", "test/acc", "test/top5_acc"}


def test_model_pt_holds_the_best_checkpoints_weights(run_dir):
    run(compose_config("trainer.max_epochs=3", *SHORT), run_dir)
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    final = torch.load(run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(best[name], final[name]) for name in best)


@pytest.mark.parametrize("scheduler", ["none", "step"])
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, scheduler):
    overrides = [f"scheduler={scheduler}", "model.dropout=0.3", "trainer.limit_batches=6"]
    if scheduler == "step":
        overrides.append("scheduler.step_size=1")
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    run(compose_config("trainer.max_epochs=4", *overrides), straight)
    run(compose_config("trainer.max_epochs=2", *overrides), first)
    run(
        compose_config("trainer.max_epochs=4", f"ckpt_path={first / 'checkpoints' / 'last.pt'}", *overrides),
        resumed,
    )
    expected, actual = last_checkpoint(straight), last_checkpoint(resumed)
    assert actual["epoch"] == expected["epoch"] == 4
    assert actual["step"] == expected["step"]
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][name]), name
    assert (
        actual["optimizers"]["model"]["param_groups"][0]["lr"]
        == expected["optimizers"]["model"]["param_groups"][0]["lr"]
    )
    assert json.loads((straight / "metrics.json").read_text()) == json.loads((resumed / "metrics.json").read_text())


def test_early_stopping_ends_training(run_dir):
    # min_delta=10 makes every epoch after the first a non-improvement.
    run(
        compose_config(
            "trainer.max_epochs=20", "callbacks.early_stopping.patience=2", "callbacks.early_stopping.min_delta=10"
        ),
        run_dir,
    )
    checkpoint = last_checkpoint(run_dir)
    assert checkpoint["epoch"] == 3
    assert checkpoint["callbacks"]["EarlyStopping"]["wait"] == 2


def test_gradient_accumulation_takes_fewer_optimizer_steps(run_dir):
    run(compose_config("trainer.max_epochs=1", "trainer.accumulate_grad_batches=4"), run_dir)
    batches = -(-int(1797 * 0.7) // 64)  # training batches of digits at batch size 64
    assert last_checkpoint(run_dir)["step"] == -(-batches // 4)


def test_fast_dev_run_is_one_short_epoch(run_dir):
    run(compose_config("trainer.fast_dev_run=true", "trainer.max_epochs=50"), run_dir)
    checkpoint = last_checkpoint(run_dir)
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 2)


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_trains(precision, run_dir):
    run(compose_config(f"trainer.precision={precision}", "trainer.max_epochs=1", *SHORT), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/loss"] == metrics["test/loss"]  # not NaN
    assert last_checkpoint(run_dir)["scaler"] or precision == "bf16"


def test_gradient_clipping_bounds_the_update(tmp_path):
    # With a huge learning rate, clipping to a tiny norm keeps SGD's first step tiny.
    overrides = ["optimizer=sgd", "optimizer.lr=100", "optimizer.momentum=0", "trainer.max_epochs=1"]
    run(compose_config(*overrides, "trainer.limit_batches=1", "trainer.gradient_clip_val=1e-6"), tmp_path / "a")
    torch.manual_seed(42)  # the run's seed: the same initial weights
    initial = model_for(compose_config(*overrides))
    trained = last_checkpoint(tmp_path / "a")["model"]
    change = torch.cat([(trained[n] - p).flatten() for n, p in initial.state_dict().items()]).norm()
    assert 0 < change <= 100 * 1e-6 * 1.01


def test_deterministic_runs_repeat_exactly(tmp_path):
    overrides = ["model=cnn", "trainer.deterministic=true", "trainer.max_epochs=1", *SHORT]
    run(compose_config(*overrides), tmp_path / "a")
    run(compose_config(*overrides), tmp_path / "b")
    first, second = last_checkpoint(tmp_path / "a")["model"], last_checkpoint(tmp_path / "b")["model"]
    assert all(torch.equal(first[name], second[name]) for name in first)
    torch.use_deterministic_algorithms(False)


def test_validation_interval(run_dir):
    run(compose_config("trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2", *SHORT), run_dir)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    # epochs 2 and 3: every second epoch, and always the last one
    assert len(events.Scalars("val/loss")) == 2
    assert len(events.Scalars("train/loss_epoch")) == 3


def test_resume_auto_continues_from_the_run_dirs_own_last_pt(run_dir):
    run(compose_config("trainer.max_epochs=2", "resume=auto", *SHORT), run_dir)  # nothing to resume: starts fresh
    assert last_checkpoint(run_dir)["epoch"] == 2
    run(compose_config("trainer.max_epochs=3", "resume=auto", *SHORT), run_dir)
    assert (last_checkpoint(run_dir)["epoch"], last_checkpoint(run_dir)["step"]) == (3, 12)


@pytest.mark.slow
def test_channels_last_and_compile_train(run_dir):
    """Through aot_eager: torch.compile's graph capture and autograd without inductor's minute of C++ codegen on a
    CPU (inductor itself: test_cuda.py, on a GPU)."""
    channels_last_compiled = ["trainer.channels_last=true", "trainer.compile=true", "trainer.compile_backend=aot_eager"]
    run(compose_config("model=cnn", *channels_last_compiled, "trainer.fast_dev_run=true"), run_dir)
    assert last_checkpoint(run_dir)["step"] == 2
    assert not any(name.startswith("_orig_mod") for name in last_checkpoint(run_dir)["model"])  # plain keys


class DivergingManualTask(Task):
    """Steps its own optimizer (like a GAN or DQN); its one reported metric turns NaN at the third step."""

    manual_optimization = True

    def __init__(self, model):
        self.model, self.calls = model, 0

    def configure_optimizers(self, build_optimizer):
        return {"model": build_optimizer(params=list(self.model.parameters()))}

    def training_step(self, batch, optimize):
        self.calls += 1
        inputs, _ = batch
        loss = self.model(inputs).pow(2).mean()
        optimize(loss, "model")
        return {"d_loss": loss.detach() * (float("nan") if self.calls == 3 else 1.0)}

    def evaluation_step(self, batch):
        inputs, targets = batch
        return {"output": self.model(inputs), "target": targets}

    def metric_names(self):
        return []

    def compute_metrics(self, outputs, targets):
        return {}


def test_a_task_stepping_itself_is_stopped_by_any_nonfinite_metric_and_cannot_skip(tmp_path):
    from dlrun.errors import ConfigError
    from dlrun.trainer import NonFiniteLoss

    cfg = compose_config("trainer.max_epochs=1")
    data = build.data(cfg)
    model = build.model(cfg, data.spec)
    task = DivergingManualTask(model)
    optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
    with pytest.raises(NonFiniteLoss, match=r"train/d_loss became NaN or infinite at one of steps 1-10"):
        make_trainer(device="cpu", max_epochs=1, log_every_n_steps=10).fit(task, data, optimizers)
    assert task.calls == 10  # found when the sums are read, at the first log step
    with pytest.raises(ConfigError, match="trainer.nonfinite_loss = skip: this task steps its optimizers itself"):
        make_trainer(device="cpu", nonfinite_loss="skip").fit(task, data, optimizers)


@pytest.mark.parametrize(("log_every_n_steps", "batch_size"), [(3, 100), (50, 100), (1000, 16)])
def test_training_accuracy_is_the_share_of_correct_training_predictions(log_every_n_steps, batch_size):
    """train/acc counts every training sample once, whether its step's outputs were summed at log steps (every 3
    steps: several sums an epoch, the last one partial), at the epoch's end, or every KEPT_STEPS steps (79 steps
    of 16, no log step); with lr=0 the weights stay those the accuracy is computed with here."""

    cfg = compose_config("optimizer.lr=0.0", "model.dropout=0.0", f"dataset.batch_size={batch_size}")
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    inputs, targets = data.train
    assert len(targets) % batch_size != 0  # a last, smaller batch
    with torch.no_grad():
        expected = (task.model(inputs).argmax(dim=1) == targets).float().mean().item()
    trainer = make_trainer(device="cpu", max_epochs=1, log_every_n_steps=log_every_n_steps)
    state = trainer.fit(task, data, task.configure_optimizers(build.optimizer_factory(cfg)))
    assert state.metrics["train/acc"] == pytest.approx(expected, abs=1e-6)

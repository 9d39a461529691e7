"""task=autoencoder and task=vae: shapes, the real CLI (TensorBoard images, scalars and projector, checkpoints and
resume, the anomaly CSV) and the wrong combinations."""

import csv
import json

import pytest
import torch
from sklearn.metrics import roc_auc_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun import build
from dlrun.cli import train
from dlrun.errors import ConfigError
from dlrun.models.autoencoder import autoencoder, vae
from dlrun.run import run

from conftest import compose_config, make_trainer, only_run_dir, run_cli

# A short CLI run on one thread: 5 training batches an epoch; validation and test whole (5 batches of 64 each).
QUICK = ["trainer.device=cpu", "trainer.limit_batches=5", "quiet=true"]
IMAGE_SHAPES = [[1, 8, 8], [1, 28, 28], [3, 32, 32]]


@pytest.mark.parametrize("build_model", [autoencoder, vae])
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_reconstructions_have_the_input_shape(build_model, architecture, shape):
    model = build_model(in_shape=shape, architecture=architecture, latent_dim=4, hidden=[32], channels=[8, 16, 16])
    inputs = torch.randn(3, *shape)
    output = model(inputs)
    reconstruction = output[0] if isinstance(output, tuple) else output
    assert reconstruction.shape == inputs.shape
    assert model.encode(inputs).shape == (3, 4)


def test_vae_samples_from_the_prior_with_a_generator():
    model = vae(in_shape=[3, 32, 32], architecture="conv", latent_dim=4, channels=[8, 16])
    first = model.sample(5, generator=torch.Generator().manual_seed(1))
    again = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert first.shape == (5, 3, 32, 32)
    assert torch.equal(first, again)
    assert not torch.equal(first, model.sample(5, generator=torch.Generator().manual_seed(2)))


def test_conv_architecture_refuses_tabular_data():
    with pytest.raises(ConfigError, match="model.architecture = conv needs images .* type model.architecture=mlp"):
        autoencoder(in_shape=[4], architecture="conv")


def test_denoising_trains_on_noisy_inputs_against_the_clean_ones():
    cfg = compose_config("experiment=autoencoder", "task.noise_std=0.3")
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    inputs, targets = data.train[0][:16], data.train[1][:16]
    torch.manual_seed(0)
    loss = task.training_step((inputs, targets))["loss"]
    torch.manual_seed(0)
    noisy = inputs + 0.3 * torch.randn_like(inputs)
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(task.model(noisy), inputs).item())


def test_the_schedule_is_sized_without_the_anomaly_class():
    cfg = compose_config("experiment=autoencoder", "task.anomaly_class=7", "scheduler=onecycle", "trainer.max_epochs=3")
    data = build.data(cfg)
    train_targets = data.train[1].clone()
    task = build.task(cfg, build.model(cfg, data.spec), data)
    kept = int((train_targets != 7).sum())
    assert len(data.train[1]) == kept < len(train_targets) and not (data.val[1] == 7).any()
    optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
    (scheduled,) = build.schedulers(cfg, optimizers, make_trainer(device="cpu").optimizer_steps_per_epoch(data))
    assert scheduled.scheduler.total_steps == 3 * -(-kept // cfg.dataset.batch_size)


def _run(*args, cwd):
    result = run_cli(*args, *QUICK, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return only_run_dir(cwd / "outputs")


def _events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator


def _run_and_resume(*overrides, cwd) -> tuple:
    """(run dir of 1 epoch through the CLI, run dir of its resumption from last.pt to 2 epochs, in-process)."""
    first = _run(*overrides, "trainer.max_epochs=1", cwd=cwd / "first")
    resumed = cwd / "resumed"
    run(
        compose_config(*overrides, *QUICK, "trainer.max_epochs=2", f"ckpt_path={first / 'checkpoints' / 'last.pt'}"),
        resumed,
    )
    return first, resumed


# One test per task, so that its runs are made once also when pytest-xdist spreads the tests over workers.
def test_autoencoder_through_the_cli(tmp_path):
    (tmp_path / "first").mkdir()
    first, resumed = _run_and_resume("experiment=autoencoder", "task.anomaly_class=0", cwd=tmp_path)
    events = _events(first)
    assert events.Tags()["images"] == ["images/reconstructions"]
    (grid,) = events.Images("images/reconstructions")
    assert (grid.width, grid.height) == (4 * 2 * (8 + 2) + 2, 4 * (8 + 2) + 2)  # 16 pairs of 8x8 images, 8 a row
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_epoch", "val/mse", "val/pca_mse", "test/mse", "test/pca_mse", "test/anomaly_auroc"} <= scalars
    assert_resumed(first, resumed)
    assert_projector_holds_the_test_codes(first / "tensorboard", step=5)
    assert_anomaly_scores_match_the_metrics(first)


def test_vae_through_the_cli(tmp_path):
    (tmp_path / "first").mkdir()
    first, resumed = _run_and_resume("experiment=vae", "model.architecture=conv", cwd=tmp_path)
    events = _events(first)
    assert set(events.Tags()["images"]) == {"images/reconstructions", "images/samples"}
    scalars = set(events.Tags()["scalars"])
    assert {"train/elbo", "train/kl", "val/elbo", "val/kl", "val/reconstruction", "val/mse", "test/elbo"} <= scalars
    metrics = json.loads((first / "metrics.json").read_text())
    assert metrics["test/elbo"] == pytest.approx(-(metrics["test/reconstruction"] + metrics["test/kl"]), rel=1e-5)
    assert_resumed(first, resumed)
    # The likelihood's variance lives in the weights and carries on from where the first run left it.
    before = torch.load(first / "checkpoints" / "last.pt", weights_only=True)["model"]["log_noise_var"]
    after = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["model"]["log_noise_var"]
    assert before != 0 and after != before
    assert_projector_holds_the_test_codes(first / "tensorboard", step=5, latent_dim=8)


def assert_resumed(first, resumed):
    assert torch.load(first / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    checkpoint = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (2, 10)
    assert [event.value for event in _events(resumed).Scalars("epoch")] == [2]  # the resumed run logs epoch 2 only


def assert_projector_holds_the_test_codes(tensorboard, *, step: int, latent_dim: int = 16):
    folder = tensorboard / f"{step:05d}" / "latent_codes"
    config = (tensorboard / "projector_config.pbtxt").read_text()
    assert f'tensor_path: "{step:05d}/latent_codes/tensors.tsv"' in config and "sprite" in config
    codes = (folder / "tensors.tsv").read_text().splitlines()
    labels = (folder / "metadata.tsv").read_text().splitlines()
    assert len(codes) == len(labels) == 270  # the whole test split of digits
    assert len(codes[0].split("\t")) == latent_dim
    assert set(labels) == {str(digit) for digit in range(10)}
    assert (folder / "sprite.png").stat().st_size > 0  # the images beside the codes


def assert_anomaly_scores_match_the_metrics(run_dir):
    with (run_dir / "anomaly_scores.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["index", "label", "error", "anomalous", "is_anomaly_class"]
    assert [int(row["index"]) for row in rows] == list(range(270))
    assert all(row["is_anomaly_class"] == str(int(row["label"] == "0")) for row in rows)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    threshold = metrics["test/anomaly_threshold"]
    assert all(row["anomalous"] == str(int(float(row["error"]) > threshold)) for row in rows)
    flagged = sum(row["anomalous"] == "1" for row in rows) / len(rows)
    assert flagged == pytest.approx(metrics["test/anomaly_flagged"])
    scores = [float(row["error"]) for row in rows]
    is_anomaly = [int(row["is_anomaly_class"]) for row in rows]
    assert metrics["test/anomaly_auroc"] == pytest.approx(roc_auc_score(is_anomaly, scores), abs=1e-4)
    assert "val/anomaly_auroc" not in metrics  # validation holds no anomalies


def test_a_wrong_combination_exits_2_with_the_key_named(tmp_path):
    result = run_cli("task=autoencoder", "model=mlp", *QUICK, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    output = " ".join((result.stdout + result.stderr).split())  # undo the panel's line wrapping
    assert "model: task=autoencoder trains an encoder and decoder, which this model" in output
    assert "type model=autoencoder" in output and "Traceback" not in output


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task=autoencoder", "model=mlp"], "type model=autoencoder"),
        (["task=autoencoder", "model=vae"], "type model=autoencoder"),
        (["task=vae", "model=autoencoder"], "type model=vae"),
        (
            ["model=autoencoder"],
            "model = autoencoder reconstructs its inputs, which this task does not train; type task",
        ),
        (["task=vae", "model=vae", "loss=mse"], "not regression targets; type loss=reconstruction"),
        (["experiment=autoencoder", "loss=cross_entropy"], "not classification targets; type loss=reconstruction"),
        (["experiment=autoencoder", "loss.criterion._target_=torch.nn.L1Loss"], "not L1Loss; type loss=reconstruction"),
        (["experiment=autoencoder", "task.anomaly_class=10"], "task.anomaly_class = 10: not a class of this dataset"),
        (
            ["experiment=vae", "task.anomaly_class=ten"],
            "task.anomaly_class = ten: not a class of this dataset; type one of 0,",
        ),
        (["experiment=autoencoder", "dataset=diabetes", "task.anomaly_class=0"], "type task.anomaly_class=null"),
        (["experiment=autoencoder", "dataset=iris", "model.architecture=conv"], "type model.architecture=mlp"),
        (["experiment=autoencoder", "dataset=text"], "task=autoencoder reconstructs real-valued inputs"),
        (["experiment=vae", "task.beta=-1"], "task.beta = -1: cannot be negative"),
        (["experiment=autoencoder", "task.noise_std=-0.1"], "task.noise_std = -0.1: cannot be negative"),
        (["experiment=autoencoder", "task.anomaly_percentile=0"], "task.anomaly_percentile = 0: must be in (0, 100]"),
    ],
)
def test_wrong_combinations_are_named(overrides, expected, run_dir):
    with pytest.raises(ConfigError) as raised:
        train(compose_config(*overrides, "trainer.fast_dev_run=true"), run_dir)
    assert expected in str(raised.value)

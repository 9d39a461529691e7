"""task=gan: both variants through the real CLI (TensorBoard scalars and sample grids, checkpoints with both networks
and both optimizers), resuming, discriminator steps, output shapes, and the combinations that cannot work."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun.errors import ConfigError
from dlrun.run import run
from dlrun.tasks.gan import GANTask

from conftest import compose_config, model_for, only_run_dir, run_cli

TINY = ["experiment=gan", "trainer.limit_batches=3", "task.scored_samples=100"]
GRID_SIDE = 8 * (8 + 2) + 2  # 64 samples of 8x8, 8 a row, 2 pixels of padding around each
SCALARS = [
    "train/d_loss",
    "train/g_loss",
    "train/d_real",
    "train/d_fake",
    "train/lr_generator",
    "train/lr_discriminator",
    "val/d_loss",
    "val/g_loss",
    "val/d_real",
    "val/d_fake",
    "val/classes_covered",
    "val/mean_top_probability",
    "val/inception_score",
]


@pytest.fixture(scope="module", params=["dcgan", "mlp_gan"])
def cli_run(request, tmp_path_factory):
    cwd = tmp_path_factory.mktemp(request.param)
    result = run_cli(
        *TINY,
        f"model={request.param}",
        "trainer.max_epochs=2",
        "trainer.device=cpu",
        "quiet=true",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return only_run_dir(cwd / "outputs")


def test_tensorboard_holds_the_losses_and_a_grid_of_samples_each_epoch(cli_run):
    events = EventAccumulator(str(cli_run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert set(SCALARS) <= set(events.Tags()["scalars"])
    for tag in SCALARS:
        values = [event.value for event in events.Scalars(tag)]
        assert len(values) == 2 and all(torch.isfinite(torch.tensor(values))), tag
    assert all(0 < event.value < 1 for tag in ("train/d_real", "val/d_fake") for event in events.Scalars(tag))
    assert all(1 <= event.value <= 10 for event in events.Scalars("val/inception_score"))
    grids = events.Images("images/samples")
    assert [grid.step for grid in grids] == [3, 6]  # after each epoch of 3 steps
    assert all((grid.width, grid.height) == (GRID_SIDE, GRID_SIDE) for grid in grids)


def test_checkpoint_holds_both_networks_and_both_optimizers(cli_run):
    checkpoint = torch.load(cli_run / "checkpoints" / "last.pt", weights_only=True)
    networks = {name.split(".")[0] for name in checkpoint["model"]}
    assert networks == {"generator", "discriminator", "data_low", "data_high"}
    assert set(checkpoint["optimizers"]) == {"generator", "discriminator"}
    for optimizer in checkpoint["optimizers"].values():
        assert optimizer["param_groups"][0]["betas"] == (0.5, 0.999)
        assert all(state["step"] == 6 for state in optimizer["state"].values())
    assert checkpoint["config"]["callbacks"]["checkpoint"]["monitor"] == "val/inception_score"


def test_results_table_scores_the_samples(cli_run):
    metrics = json.loads((cli_run / "metrics.json").read_text())
    assert 1 <= metrics["test/classes_covered"] <= 10
    assert 0.1 <= metrics["test/mean_top_probability"] <= 1
    assert set(metrics) >= {"val/d_loss", "test/d_real", "test/d_fake", "test/inception_score"}


def test_resumed_run_continues_as_one_uninterrupted_run(tmp_path):
    straight, first, resumed = (tmp_path / name for name in ("straight", "first", "resumed"))
    run(compose_config(*TINY, "trainer.max_epochs=2"), straight)
    run(compose_config(*TINY, "trainer.max_epochs=1"), first)
    run(compose_config(*TINY, "trainer.max_epochs=2", f"ckpt_path={first / 'checkpoints' / 'last.pt'}"), resumed)
    expected = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    got = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert (got["epoch"], got["step"]) == (2, 6)
    assert all(torch.equal(got["model"][name], weights) for name, weights in expected["model"].items())


def test_discriminator_steps_per_generator_step(run_dir):
    run(compose_config(*TINY, "trainer.max_epochs=1", "task.discriminator_steps=3"), run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    steps = {
        name: {int(s["step"]) for s in optimizer["state"].values()}
        for name, optimizer in checkpoint["optimizers"].items()
    }
    assert steps == {"generator": {3}, "discriminator": {9}}


def test_mlp_gan_generates_feature_vectors(run_dir):
    """iris: 97 training rows, the last batch of 16 holds one (batch norm needs two generated ones)."""
    run(compose_config("experiment=gan", "model=mlp_gan", "dataset=iris", "trainer.max_epochs=1"), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 1 <= metrics["test/classes_covered"] <= 3
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert events.Tags()["images"] == []  # no image grids of feature vectors


@pytest.mark.parametrize(
    ("dataset", "in_shape"),
    [("digits", [1, 8, 8]), ("mnist", [1, 28, 28]), ("cifar10", [3, 32, 32]), ("cifar10", [2, 30, 27])],
)
@pytest.mark.parametrize("model", ["dcgan", "mlp_gan"])
def test_generated_images_have_the_dataset_shape(model, dataset, in_shape):
    network = model_for(
        compose_config(
            "task=gan", f"model={model}", f"dataset={dataset}", f"dataset.in_shape=[{','.join(map(str, in_shape))}]"
        )
    ).eval()
    samples = network.sample(3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, *in_shape)
    assert network.discriminator(samples).shape == (3, 1)


def test_a_classifier_with_task_gan_exits_2_and_names_the_gan_models(tmp_path):
    result = run_cli("task=gan", "model=mlp", "trainer.device=cpu", cwd=tmp_path)
    assert result.returncode == 2
    assert "task=gan needs a GAN: type model=dcgan" in " ".join(result.stderr.replace("│", " ").split())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment=gan", "dataset=iris"], "model=dcgan needs images .* type model=mlp_gan"),
        (["model=dcgan"], "a GAN does not map inputs to outputs.* type task=gan"),
        (["experiment=gan", "task.discriminator_steps=0"], "task.discriminator_steps = 0: must be a whole number >= 1"),
        (["task=gan", "model=mlp_gan", "dataset=diabetes"], "the data holds 0 classes"),
        (["experiment=gan", "task.discriminator_optimizer.lr=-1"], "task.discriminator_optimizer: could not build it"),
    ],
)
def test_impossible_combinations_are_named(overrides, message, run_dir):
    with pytest.raises(ConfigError, match=message):
        run(compose_config(*overrides, "trainer.fast_dev_run=true"), run_dir)


def test_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    network = model_for(compose_config("experiment=gan"))
    with pytest.raises(ConfigError, match="task=gan trains its generator and discriminator in one process"):
        GANTask(model=network, discriminator_optimizer=torch.optim.Adam, num_classes=10)

"""Every model, optimizer, scheduler and loss option builds and trains a few real steps."""

import json

import pytest
import torch

from dlrun.errors import ConfigError
from dlrun.models.layers import ACTIVATIONS
from dlrun.models.vision import FAMILIES, RESNETS
from dlrun.run import run

from conftest import compose_config, model_for, option_names

EMBEDDED = ["digits", "iris", "wine", "breast_cancer", "diabetes"]
RECURRENT = ["rnn", "lstm", "gru"]
IMAGE_MODELS = ["cnn", *FAMILIES, *RECURRENT]
FAST = ["trainer.fast_dev_run=true"]
# Every variant of the torchvision families trains a step in test_cnn_families.py; through run() here go those
# whose path differs: auxiliary outputs (googlenet), a resize in the data (inception, at its smallest size), the
# small-input stems of resnet and mobilenet. Each on a few images.
THROUGH_RUN = {
    "googlenet": [],
    "inception": ["model.aux_logits=false", "model.input_size=75"],
    "resnet": [],
    "mobilenet": [],
}

OWN_TASK = {  # models that only their own task trains: its preset
    "autoencoder": ["experiment=autoencoder"],
    "vae": ["experiment=vae"],
    "dcgan": ["experiment=gan", "task.scored_samples=50"],
    "mlp_gan": ["experiment=gan", "task.scored_samples=50"],
}


def fits(model: str, dataset: str) -> bool:
    if model in FAMILIES:
        return model in THROUGH_RUN and dataset == "digits"
    return model == "mlp" or dataset == "digits"


@pytest.mark.parametrize(("model", "dataset"), [(m, d) for m in option_names("model") for d in EMBEDDED if fits(m, d)])
def test_every_model_trains_on_every_dataset_that_fits(model, dataset, run_dir):
    smaller = ["dataset.batch_size=4", *THROUGH_RUN[model]] if model in FAMILIES else []
    data = [f"experiment={dataset}"] if dataset == "diabetes" else [f"dataset={dataset}"]  # with its regression loss
    run(compose_config(f"model={model}", *data, *FAST, *smaller, *OWN_TASK.get(model, [])), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    baselines = metrics.pop("baselines", {})  # supervised tasks have some (test_baselines.py), the others none
    assert all(name.split("/")[0] in ("val", "test") for name in metrics)
    assert all(torch.isfinite(torch.tensor(value)) or name.endswith("auroc") for name, value in metrics.items())
    assert all(set(baseline) <= metrics.keys() for baseline in baselines.values())  # the network's test/* names


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_image_models_refuse_tabular_data(model, run_dir):
    needs = "sequences" if model in RECURRENT else "images"
    with pytest.raises(ConfigError, match=f"model={model} needs {needs}"):
        run(compose_config(f"model={model}", "dataset=iris", *FAST), run_dir)


@pytest.mark.parametrize("variant", RESNETS)
def test_every_resnet_variant_builds_for_small_images(variant):
    network = model_for(compose_config("model=resnet", f"model.variant={variant}"))
    assert network(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_large_images_keep_the_imagenet_stem():
    network = model_for(compose_config("model=resnet", "dataset=cifar10", "dataset.in_shape=[1,96,96]"))
    assert network.conv1.stride == (2, 2) and network.conv1.in_channels == 1
    assert network(torch.randn(2, 1, 96, 96)).shape == (2, 10)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_activation(activation, run_dir):
    run(compose_config(f"model.activation={activation}", "model.batch_norm=true", *FAST), run_dir)


def test_cnn_options_shape_the_network():
    network = model_for(
        compose_config("model=cnn", "model.channels=[8,16,32]", "model.kernel_size=5", "model.pooling=avg")
    )
    convs = [m for m in network if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32]
    assert convs[0].kernel_size == (5, 5)
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in network)


@pytest.mark.parametrize("option", option_names("optimizer"))
def test_every_optimizer_takes_steps(option, run_dir):
    cfg = compose_config(f"optimizer={option}", *FAST)
    run(cfg, run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 2
    assert checkpoint["optimizers"]["model"]["param_groups"][0]["lr"] > 0


@pytest.mark.parametrize("option", [o for o in option_names("scheduler") if o != "none"])
def test_every_scheduler_changes_the_learning_rate(option, run_dir):
    overrides = {
        "step": ["scheduler.step_size=1"],
        "cosine": [],
        "onecycle": [],
        "plateau": ["scheduler.patience=0", "scheduler.mode=max", "callbacks.early_stopping=null"],
    }[option]
    cfg = compose_config(f"scheduler={option}", *overrides, "trainer.max_epochs=3", "trainer.limit_batches=2")
    run(cfg, run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    final_lr = checkpoint["optimizers"]["model"]["param_groups"][0]["lr"]
    assert final_lr != cfg.optimizer.lr


def test_warmup_ramps_the_learning_rate_up(run_dir):
    cfg = compose_config(
        "scheduler=cosine", "scheduler.warmup_epochs=2", "trainer.max_epochs=1", "trainer.limit_batches=2"
    )
    run(cfg, run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["optimizers"]["model"]["param_groups"][0]["lr"] < cfg.optimizer.lr


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss=cross_entropy", "loss.criterion.label_smoothing=0.1"],
        ["loss=cross_entropy", "loss.criterion.class_weights=[1,1,1,1,1,1,1,1,1,2]"],
        ["loss=cross_entropy", "loss.l1=1e-5", "loss.l2=1e-4"],
        ["dataset=breast_cancer", "loss=bce", "loss.criterion.pos_weight=2.0"],
        ["dataset=diabetes", "loss=mse"],
    ],
)
def test_every_loss_option_trains(overrides, run_dir):
    run(compose_config(*overrides, *FAST), run_dir)
    assert (run_dir / "metrics.json").is_file()


def test_the_weight_penalty_adds_l1_and_l2_of_the_weights_only():
    from dlrun.losses import with_weight_penalty

    layer = torch.nn.Linear(3, 2)
    loss = torch.tensor(1.0)
    assert with_weight_penalty(loss, layer, l1=0.0, l2=0.0) is loss  # no extra operation when off
    expected = 1.0 + 0.1 * layer.weight.abs().sum() + 0.01 * layer.weight.pow(2).sum()  # the bias is left alone
    assert with_weight_penalty(loss, layer, l1=0.1, l2=0.01).item() == pytest.approx(expected.item())


def test_a_task_target_that_is_not_a_task_is_named(run_dir):
    with pytest.raises(ConfigError, match=r"task._target_ = collections.OrderedDict: makes a OrderedDict.*subclass"):
        run(compose_config("task._target_=collections.OrderedDict", "trainer.max_epochs=1"), run_dir)
    assert not any(run_dir.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.checkpoint.save_interval_s=abc", "callbacks.checkpoint: could not build .*Checkpoint"),
        ("callbacks.checkpoint.save_interval_s=-1", "callbacks.checkpoint.save_interval_s = -1: must be >= 0"),
        ("callbacks.progress.refresh_per_second=0", "callbacks.progress.refresh_per_second = 0: must be > 0"),
        ("task.aux_loss_weight=-1", "task.aux_loss_weight = -1: must be a number >= 0"),
    ],
)
def test_impossible_callback_and_task_values_are_named(override, message, run_dir):
    with pytest.raises(ConfigError, match=message):
        run(compose_config(override, "trainer.max_epochs=1"), run_dir)

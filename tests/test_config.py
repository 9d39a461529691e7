"""Every option of every group composes, and validate() names each impossible value."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from dlrun import build
from dlrun.config import CONFIG_DIR
from dlrun.errors import ConfigError
from dlrun.validation import validate

from conftest import compose_config, option_names

GROUPS = ["model", "dataset", "task", "loss", "optimizer", "scheduler", "trainer", "callbacks"]
# The options of dlrun's groups, the presets (bundles of several groups) and Hydra's own left out.
OPTIONS = [
    str(path.relative_to(CONFIG_DIR))
    for path in sorted(CONFIG_DIR.glob("*/**/*.yaml"))
    if path.relative_to(CONFIG_DIR).parts[0] not in ("experiment", "hparams_search", "hydra")
]


@pytest.mark.parametrize(("group", "option"), [(group, option) for group in GROUPS for option in option_names(group)])
def test_every_option_composes_and_resolves(group, option):
    cfg = compose_config(f"{group}={option}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert group in resolved


def test_defaults_are_the_digits_mlp():
    cfg = compose_config()
    assert cfg.dataset.name == "digits"
    assert cfg.model._target_ == "dlrun.models.mlp.mlp"
    assert build.model_arguments(cfg, build.data(cfg).spec) == {"in_shape": [1, 8, 8], "num_outputs": 10}
    validate(cfg)


def test_the_regression_preset_brings_its_loss_but_the_command_line_wins():
    cfg = compose_config("experiment=diabetes")
    assert cfg.loss.problem == "regression"
    assert build.model_arguments(cfg, build.data(cfg).spec) == {"in_shape": [10], "num_outputs": 1}
    assert compose_config("experiment=diabetes", "loss=cross_entropy").loss.problem == "classification"


@pytest.mark.parametrize("option", OPTIONS)
def test_a_group_option_sets_only_its_own_group(option):
    """Only the presets (experiment=, hparams_search=) choose or set other groups, so the order of conf/config.yaml's
    defaults list means nothing else."""
    text = (CONFIG_DIR / option).read_text()
    assert "@package" not in text and "override /" not in text


def test_binary_loss_gives_one_output():
    cfg = compose_config("dataset=breast_cancer", "loss=bce")
    assert build.model_arguments(cfg, build.data(cfg).spec)["num_outputs"] == 1
    validate(cfg)


def test_trainer_keys_are_typed():
    with pytest.raises(ConfigCompositionException, match="trainer.max_epoch"):
        compose_config("trainer.max_epoch=3")
    with pytest.raises(ConfigCompositionException, match="trainer.max_epochs=many"):
        compose_config("trainer.max_epochs=many")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.lr=0"], "optimizer.lr = 0: must be > 0; type optimizer.lr=0.001"),
        (["optimizer=sgd", "optimizer.lr=-0.1"], "optimizer.lr = -0.1: must be > 0"),
        (["dataset.val_fraction=0.5", "dataset.test_fraction=0.6"], "leaves nothing to train on"),
        (["dataset.test_fraction=1.5"], "dataset.test_fraction = 1.5: must be between 0 and 1"),
        (["dataset.batch_size=0"], "dataset.batch_size = 0: must be a whole number >= 1; type dataset.batch_size=64"),
        (["optimizer.lr=adam"], "optimizer.lr = adam: must be a number; type optimizer.lr=0.001"),
        (["model.hidden=[64,0]"], "model.hidden = [64, 0]: must be a list of whole numbers >= 1"),
        (["model.dropout=1"], "model.dropout = 1: must be in [0, 1)"),
        (["dataset.num_classes=1"], "dataset.num_classes = 1: must be a whole number >= 2"),
        (["loss=bce"], "loss = bce needs 2 classes, dataset digits has 10; type loss=cross_entropy"),
        (["loss=mse"], "loss = mse on dataset digits with 10 classes; type loss=cross_entropy"),
        (["dataset=diabetes", "loss=cross_entropy"], "regression dataset diabetes; type loss=mse"),
        (["dataset=text"], "which this task does not train; type task=language_model model=lstm, or experiment=text"),
        (["loss=reconstruction"], "only task=autoencoder and task=vae reconstruct their inputs; type loss="),
        (["loss.criterion.class_weights=[1,2]"], "needs one number per class (10)"),
        (["loss.l2=-1"], "loss.l2 = -1: cannot be negative"),
        (["~loss.l1"], "loss.l1: removed, but dlrun needs it; leave out ~loss.l1"),
        (["~optimizer"], "optimizer: removed, but dlrun needs one; leave out ~optimizer, or type optimizer=adam"),
        (["~model"], "model: removed, but dlrun needs one; leave out ~model, or type model=mlp"),
        (["~callbacks"], "callbacks: removed, but dlrun needs one"),
        (["~task"], "task: removed, but dlrun needs one"),
        (["+trainer.no_such_key=0"], "trainer.no_such_key: not a trainer key; leave out +trainer.no_such_key"),
        (["dataset.persistent_workers=true"], "only for the DataLoader path; type dataset.num_workers=2 with it"),
        (["trainer.max_epochs=0"], "trainer.max_epochs = 0: must be at least 1"),
        (["trainer.precision=8"], "trainer.precision = 8: unknown; type one of trainer.precision=32|bf16|16"),
        (["trainer.device=tpu"], "trainer.device = tpu: unknown"),
        (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches = 0: must be at least 1"),
        (["trainer.data_on_device=maybe"], "trainer.data_on_device = maybe: unknown; type trainer.data_on_device=auto"),
        (["optimizer=sgd", "optimizer.momentum=0", "optimizer.nesterov=true"], "nesterov = true needs momentum"),
        (["scheduler=step", "scheduler.interval=batch"], "scheduler.interval = batch: unknown"),
        (["ckpt_path=missing/last.pt"], "ckpt_path = missing/last.pt: no such file"),
    ],
)
def test_impossible_values_are_named(overrides, message):
    with pytest.raises(ConfigError) as raised:
        validate(compose_config(*overrides))
    assert message in str(raised.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        validate(compose_config("optimizer.lr=-1", "trainer.max_epochs=0", "loss=bce"))
    assert len(raised.value.problems) == 3


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match="trainer.device = cuda: no CUDA GPU on this machine"):
        validate(compose_config("trainer.device=cuda"))

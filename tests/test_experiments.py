"""The presets: experiment= bundles (each composes, says what it is for, and runs: `-m 'experiment=glob(*)'`),
hparams_search= Optuna searches and the SLURM launcher, checked by composition."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from test_sweep_helpers import job_record, one_line, only_sweep_dir, summary_rows

from dlrun.config import CONFIG_DIR
from dlrun.validation import validate
from hydra_plugins.dlrun_optuna_sweeper.search_space import search_space

from conftest import compose_config, option_names, run_cli
from vision_files import write_cifar10, write_mnist

REQUIRED = {
    "digits_mlp",
    "digits_cnn",
    "mnist_lenet",
    "cifar10_resnet18",
    "iris_mlp",
    "breast_cancer_mlp",
    "diabetes_mlp",
}


def compose_with_hydra(*overrides: str):
    """The config with its hydra node, as `dlrun -m` would compose it."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_every_required_experiment_is_there():
    assert set(option_names("experiment")) >= REQUIRED


@pytest.mark.parametrize("name", option_names("experiment"))
def test_an_experiment_composes_and_says_what_it_is_for(name):
    lines = (CONFIG_DIR / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert lines[1].startswith("# ") and len(lines[1]) > 40, "the second line says what the preset is for"
    assert f"dlrun experiment={name}" in "\n".join(lines), "and how to run it"
    cfg = compose_config(f"experiment={name}")
    validate(cfg)  # no impossible values
    assert OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist_lenet", {"dataset.name": "MNIST", "model.channels": [6, 16], "model.pooling": "avg"}),
        ("cifar10_resnet18", {"model.variant": "resnet18", "optimizer.nesterov": True, "scheduler.max_lr": 0.1}),
        ("breast_cancer_mlp", {"loss.problem": "binary", "callbacks.checkpoint.monitor": "val/auroc"}),
        ("diabetes_mlp", {"loss.problem": "regression", "dataset.num_classes": None, "optimizer.lr": 3e-4}),
        ("digits_cnn", {"model._target_": "dlrun.models.cnn.cnn", "dataset.name": "digits"}),
        ("gan", {"task._target_": "dlrun.tasks.gan.GANTask", "callbacks.checkpoint.monitor": "val/inception_score"}),
        ("vae", {"task._target_": "dlrun.tasks.vae.VAETask", "loss.problem": "reconstruction", "optimizer.lr": 2e-3}),
        ("dqn", {"dataset.name": "environment", "env.id": "CartPole-v1", "callbacks.early_stopping.stop_at": 500}),
        ("text", {"task._target_": "dlrun.tasks.language_model.LanguageModelTask", "dataset.name": "text"}),
    ],
)
def test_an_experiment_sets_what_it_is_about(name, expected):
    cfg = compose_config(f"experiment={name}")
    assert {key: OmegaConf.select(cfg, key) for key in expected} == expected


def test_glob_runs_every_experiment_as_a_smoke_sweep(tmp_path):
    write_mnist(tmp_path / "data", "MNIST", train=120, test=20)  # 12 held out: one per class
    write_cifar10(tmp_path / "data", train=120, test=20)
    fast = ["trainer.fast_dev_run=true", "trainer.device=cpu", "quiet=true"]  # dataset=environment has no batch_size
    result = run_cli("-m", "experiment=glob(*)", *fast, "print_config=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = only_sweep_dir(tmp_path)
    rows = summary_rows(sweep_dir)
    assert sorted(row["experiment"] for row in rows) == option_names("experiment")
    assert {row["status"] for row in rows} == {"completed"}
    assert job_record(sweep_dir / "0")["overrides"][0].startswith("experiment=")
    # experiments on different datasets and metrics are not ranked against each other
    assert "no best marked" in one_line(result.stdout)


@pytest.mark.parametrize("name", option_names("hparams_search"))
def test_a_search_preset_switches_to_dlruns_optuna_sweeper_with_a_search_space(name):
    text = (CONFIG_DIR / "hparams_search" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n# ")
    cfg = compose_with_hydra(f"hparams_search={name}", "hydra.sweep.dir=outputs/multirun/x")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.dlrun_optuna_sweeper.optuna_sweeper.DlrunOptunaSweeper"
    assert sweeper.storage == "sqlite:///outputs/multirun/x/optuna.db"
    assert sweeper.sampler._target_.startswith("optuna.samplers.") and sweeper.pruner._target_.startswith("optuna.")
    assert cfg.callbacks.optuna_pruning.monitor == cfg.callbacks.checkpoint.monitor
    expected = "maximize" if cfg.callbacks.checkpoint.mode == "max" else "minimize"
    assert sweeper.direction == expected, "the direction of the monitored metric"
    space = search_space(OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in sweeper.params.items()]))
    assert len(space.dimensions) >= 4 and not space.fixed
    kinds = {type(dimension.distribution).__name__ for dimension in space.dimensions.values()}
    assert kinds == {"FloatDistribution", "CategoricalDistribution"}
    assert any(getattr(dimension.distribution, "log", False) for dimension in space.dimensions.values())


def test_the_slurm_launcher_preset_composes():
    cfg = compose_with_hydra("hydra/launcher=slurm", "hydra.sweep.dir=outputs/multirun/x")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.cpus_per_task) == (1, 1, 8)
    assert launcher.max_num_timeout == 3 and launcher.submitit_folder == "outputs/multirun/x/.submitit/%j"
    from hydra.utils import instantiate

    built = instantiate(launcher)  # the launcher Hydra would submit with (nothing is submitted here)
    assert type(built).__name__ == "SlurmLauncher" and built.params["partition"] is None

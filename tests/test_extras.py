"""The optional extras: pyproject.toml's lists match dlrun/extras.py's, `make install` installs them all, and a
feature whose extra is missing (its module hidden here) exits 2 naming the `pip install 'dlrun[<extra>]'` to type."""

import os
import re
import subprocess
import sys

import pytest

from dlrun import build, export, extras
from dlrun.errors import ConfigError
from hydra_plugins.dlrun_optuna_sweeper import optuna_sweeper

from conftest import REPO


def hide(monkeypatch, module: str) -> None:
    """An import of module fails as if it were not installed."""
    monkeypatch.setitem(sys.modules, module, None)


def test_the_extras_are_pyprojects_and_not_among_the_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    name = re.compile(r"[A-Za-z0-9._-]+")
    optional = {
        extra: {name.match(requirement)[0] for requirement in requirements}
        for extra, requirements in project["optional-dependencies"].items()
    }
    for extra, modules in extras.EXTRAS.items():
        assert optional[extra] == set(modules.values()), extra
    dependencies = {name.match(requirement)[0] for requirement in project["dependencies"]}
    assert not dependencies & {package for modules in extras.EXTRAS.values() for package in modules.values()}


@pytest.mark.parametrize("extra", extras.EXTRAS)
def test_make_install_installs_every_extra(extra):
    assert extras.missing("a feature", extra) is None


def test_a_missing_package_names_the_extra_that_installs_it(monkeypatch):
    hide(monkeypatch, "onnxruntime")
    assert extras.missing("--format = onnx", "onnx") == (
        "--format = onnx: needs onnxruntime, not installed; type pip install 'dlrun[onnx]'"
    )


def test_onnx_export_without_the_onnx_extra_exits_2(monkeypatch, tmp_path, capsys, wide_terminal):
    hide(monkeypatch, "onnx")
    checkpoint = tmp_path / "best.pt"
    checkpoint.touch()  # refused before it is read
    with pytest.raises(SystemExit) as exit_:
        export.main([str(checkpoint)])
    assert exit_.value.code == 2
    assert "--format = onnx: needs onnx, not installed; type pip install 'dlrun[onnx]', or --format torchscript" in (
        capsys.readouterr().err
    )


def test_an_optuna_search_without_the_optuna_extra_is_a_search_config_error(monkeypatch):
    hide(monkeypatch, "optuna")
    sweeper = optuna_sweeper.DlrunOptunaSweeper(
        direction="minimize",
        metric=None,
        n_trials=1,
        n_jobs=1,
        study_name="study",
        storage=None,
        sampler=None,
        pruner=None,
        params={},
    )
    with pytest.raises(Exception) as error:  # by name: Hydra's plugin scan may have imported the module again
        sweeper.sweep([])
    assert type(error.value).__name__ == "SearchConfigError"
    assert "needs optuna, not installed; type pip install 'dlrun[optuna]'" in str(error.value)


def test_an_environment_without_the_rl_extra_is_a_config_error(monkeypatch):
    hide(monkeypatch, "gymnasium")
    monkeypatch.delitem(sys.modules, "dlrun.data.environment", raising=False)
    with pytest.raises(ConfigError) as error:
        build.instantiate({"_target_": "dlrun.data.environment.load", "env": {"id": "CartPole-v1"}}, "dataset")
    assert error.value.problems == [
        "dataset._target_ = dlrun.data.environment.load: needs gymnasium, not installed; type pip install 'dlrun[rl]'"
    ]


def test_the_slurm_launcher_without_the_slurm_extra_exits_2(tmp_path):
    hidden = "hydra_plugins.hydra_submitit_launcher"
    command = f"import sys; sys.modules[{hidden!r}] = None; from dlrun.cli import command; command()"
    result = subprocess.run(
        [sys.executable, "-c", command, "hydra/launcher=slurm", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"COLUMNS": "500"},
    )
    assert result.returncode == 2, result.stderr
    assert (
        "hydra/launcher = slurm: needs hydra-submitit-launcher, not installed; type pip install 'dlrun[slurm]'"
        in result.stderr
    )

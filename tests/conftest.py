"""Compose the real conf/ with Hydra's compose API, shrunk for tests; run the real CLI as a subprocess."""

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from dlrun import build
from dlrun.config import CONFIG_DIR, register_schemas, trainer_defaults
from dlrun.data.spec import DataSpec
from dlrun.data.transforms import resized_shape
from dlrun.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
DLRUN = str(Path(sys.executable).with_name("dlrun"))
# Settings that keep a test run small and on the CPU; tests add their own overrides after these.
SMALL = ["trainer.device=cpu", "print_config=false", "quiet=true", "name=test"]

register_schemas()
# One torch thread per test process and per subprocess it starts: `make test` runs two workers on two cores,
# and steps this small gain nothing from a second thread that only waits on the other worker.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def compose_config(*overrides: str, small: bool = True) -> DictConfig:
    """The config `dlrun <overrides>` would run, composed from the real conf/."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[*(SMALL if small else []), *overrides])


def make_trainer(**settings) -> Trainer:
    """A Trainer of conf/trainer/default.yaml's settings but for those given."""
    return Trainer(**(trainer_defaults() | settings))


def model_for(cfg: DictConfig):
    """The config's model for the shape and classes its dataset keys state, without reading the dataset."""
    classes = OmegaConf.select(cfg, "dataset.num_classes")
    resize = OmegaConf.select(cfg, "dataset.transforms.resize", default=None)
    shape = resized_shape(list(cfg.dataset.in_shape), resize)
    return build.model(cfg, DataSpec(in_shape=shape, class_names=[str(i) for i in range(classes or 0)]))


def run_cli(*args: str, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed `dlrun` console script, run in cwd (so outputs/ lands there)."""
    env = os.environ | {"COLUMNS": "200"} | (env or {})
    return subprocess.run([DLRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(path, process, timeout=120):
    """Block until path exists (a file the process writes, say), failing if the run ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
# For torchrun's ranks: this checkout's dlrun (not the one the venv installed) and the tests' helpers.
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def torchrun(*args, cwd, timeout=300, env=ENV):
    """The real torchrun (python -m torch.distributed.run) starting 2 processes on this machine."""
    command = [*TORCHRUN, "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def import_benchmark(name: str):
    """benchmarks/<name>.py, imported: a folder of scripts, not a package."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return importlib.import_module(name)


def option_names(group: str) -> list[str]:
    """Every option of a config group: one per YAML file under conf/<group>/."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def only_run_dir(outputs: Path) -> Path:
    """The single run dir a `dlrun` run made under outputs/."""
    run_dirs = [path.parent for path in outputs.glob("*/*/.hydra")]
    assert len(run_dirs) == 1, run_dirs
    return run_dirs[0]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "run"
    directory.mkdir()
    return directory


@pytest.fixture
def wide_terminal(monkeypatch):
    """Long temporary paths stay on one line of the error panel, so that the test can find them whole."""
    monkeypatch.setenv("COLUMNS", "500")

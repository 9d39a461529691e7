"""Schemas for the fixed-shape parts of the config (Hydra structured configs), and where conf/ lives.

The values are checked by dlrun.validation. Imports no torch, so that config errors are reported in a fraction of a
second.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent
# An installed wheel carries the configs inside the package; a source checkout keeps them at the top.
CONFIG_DIR = next(p for p in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf") if p.is_dir())


@dataclass
class TrainerConfig:
    """The trainer keys' types; their values and meaning are conf/trainer/default.yaml's (trainer_defaults)."""

    max_epochs: int = MISSING
    device: str = MISSING
    precision: str = MISSING
    gradient_clip_val: float | None = MISSING
    accumulate_grad_batches: int = MISSING
    check_val_every_n_epoch: int = MISSING
    log_every_n_steps: int = MISSING
    limit_batches: int | None = MISSING
    fast_dev_run: bool = MISSING
    deterministic: bool = MISSING
    nonfinite_loss: str = MISSING
    compile: bool = MISSING
    compile_backend: str = MISSING
    channels_last: bool = MISSING
    data_on_device: Any = MISSING  # auto | true | false
    preemption_signal: str | None = MISSING


@dataclass
class RunConfig:
    """The top-level keys' types; their values and meaning are conf/config.yaml's."""

    dataset: Any = None
    model: Any = None
    task: Any = None
    loss: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: Any = None
    env: Any = None
    name: str = MISSING
    seed: int = MISSING
    repeats: int = MISSING
    ckpt_path: str | None = MISSING
    resume: str = MISSING
    print_config: bool = MISSING
    quiet: bool = MISSING


def trainer_defaults() -> dict:
    """The trainer's settings when no trainer key is overridden: conf/trainer/default.yaml, their one source."""
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml"))


def register_schemas() -> None:
    """Make the schemas available to the defaults lists of conf/."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)

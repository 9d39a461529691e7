"""The task protocol: what one training or evaluation step means. The trainer runs any subclass of Task."""

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn


class Task(ABC):
    model: nn.Module  # every network the task trains
    manual_optimization = False  # True: training_step(batch, optimize) calls optimize(loss, name) for each update
    mixed_labels = False  # True: training targets may be class probabilities (Mixup, CutMix: dlrun/data/mixing.py)

    @abstractmethod
    def configure_optimizers(self, build_optimizer: Callable) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name; build_optimizer(params=...) makes one as the optimizer config says."""

    @abstractmethod
    def training_step(self, batch, *optimize: Callable) -> dict[str, Tensor | float]:
        """{"loss": ..., other per-batch metrics}; with manual_optimization the trainer's optimize comes second.

        A step may add "output" and "target": the trainer hands several steps' of them to training_metrics at once
        (fewer operations per step than a metric computed on every batch). The trainer keeps a few steps' values
        before summing them: detach a metric that backward does not go through, or its graph is kept as well."""

    @abstractmethod
    def evaluation_step(self, batch) -> dict[str, Tensor]:
        """{"loss": ... (when the task has one), "output": ..., "target": ...} of one batch."""

    @abstractmethod
    def metric_names(self) -> list[str]:
        """What compute_metrics returns, plus "loss" when evaluation_step gives one."""

    @abstractmethod
    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        """A whole split's metrics from its outputs and targets, named without the split."""

    # Optional hooks: they do nothing unless a task overrides them.

    def prepare_data(self, data) -> None:  # noqa: B027
        """Change the splits before anything is sized from them (the schedule's steps): called once, by build.task."""

    def training_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, tuple[Tensor, int]]:
        """Metrics of the training steps' "output" and "target", several steps' joined: {name: (sum, count)}; the
        epoch reports each name's sums over its counts (correct predictions over samples: the accuracy)."""
        return {}

    def setup(self, data, device: torch.device) -> None:  # noqa: B027
        """Before training, and before a resume restores the state."""

    def state_dict(self) -> dict:
        """What else a resume needs (a replay buffer), stored under "task" in checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027
        """Restore what state_dict gave."""

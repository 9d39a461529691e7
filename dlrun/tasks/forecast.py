"""Forecasting the next value of a series from a window of past values (dataset=timeseries).

A regression task whose metrics sit beside the naive forecast's, the last value of each window: a model is only
useful where its errors are below the naive ones. MSE and MAE are in the series' own units.
"""

import torch
from torch import Tensor

from dlrun.tasks.supervised import SupervisedTask


class ForecastTask(SupervisedTask):
    def __init__(self, **settings):
        super().__init__(**settings)
        if self.problem != "regression":
            from dlrun.errors import ConfigError

            raise ConfigError(f"loss: a forecast is a number, not a {self.problem} label; type loss=mse")

    def evaluation_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """The target carries the naive forecast beside the true value: (N, 2 * targets)."""
        inputs, targets = batch
        output = self.model(inputs)
        naive = inputs[:, -1, : targets.shape[1]]  # the window's last value of the forecast column(s)
        return {"loss": self._loss(output, targets), "output": output, "target": torch.cat([targets, naive], dim=1)}

    def metric_names(self) -> list[str]:
        return ["loss", "mse", "mae", "naive_mse", "naive_mae"]

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        actual, naive = targets.float().cpu().chunk(2, dim=1)
        actual, naive = self.original_units(actual), self.original_units(naive)
        predicted = self.original_units(outputs.float().cpu())
        return {
            "mse": float((predicted - actual).pow(2).mean()),
            "mae": float((predicted - actual).abs().mean()),
            "naive_mse": float((naive - actual).pow(2).mean()),
            "naive_mae": float((naive - actual).abs().mean()),
        }

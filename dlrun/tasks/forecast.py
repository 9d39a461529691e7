"""Forecasting the next value of a series from a window of past values (dataset=timeseries).

A regression task scored by MSE and MAE in the series' own units; the results table sets them beside the naive
forecast's, the last value of each window (dlrun/baselines.py): a model is only useful where its errors are below
the naive ones.
"""

from torch import Tensor

from dlrun.tasks.supervised import SupervisedTask


class ForecastTask(SupervisedTask):
    def __init__(self, **settings):
        super().__init__(**settings)
        if self.problem != "regression":
            from dlrun.errors import ConfigError

            raise ConfigError(f"loss: a forecast is a number, not a {self.problem} label; type loss=mse")

    def metric_names(self) -> list[str]:
        return ["loss", "mse", "mae"]

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        actual = self.original_units(targets.float().cpu())
        predicted = self.original_units(outputs.float().cpu())
        return {"mse": float((predicted - actual).pow(2).mean()), "mae": float((predicted - actual).abs().mean())}

"""<run dir>/anomaly_scores.csv after the final test: each test sample's reconstruction error and whether it is
flagged anomalous, for task=autoencoder|vae (which add it as callbacks.anomaly_scores).

Columns: index (the sample's position in the test split), label (its class index, or its target value), error (the
squared reconstruction error per value: the anomaly score), anomalous (1 when the error exceeds the threshold, the
task.anomaly_percentile-th percentile of the validation errors), and with task.anomaly_class set, is_anomaly_class
(1 for the samples of that class: the anomalies to find).
"""

import csv
from pathlib import Path

from dlrun.callbacks.base import Callback
from dlrun.errors import ConfigError

FILE_NAME = "anomaly_scores.csv"


class AnomalyScores(Callback):
    def __init__(self, *, run_dir: str | Path, **_config):
        self.path = Path(run_dir) / FILE_NAME

    def on_fit_start(self, trainer) -> None:
        if not callable(getattr(trainer.task, "split_errors", None)):
            raise ConfigError(
                "callbacks.anomaly_scores: this task gives no reconstruction errors to score; "
                "type task=autoencoder or task=vae, or callbacks.anomaly_scores=null"
            )

    def on_test_end(self, trainer, metrics: dict[str, float]) -> None:
        task = trainer.task
        errors, targets = task.split_errors("test")
        threshold = metrics.get("test/anomaly_threshold")  # the one the test metrics used, when they have one
        if threshold is None:
            threshold = task.anomaly_threshold()
        labels = targets.reshape(len(targets), -1)[:, 0].tolist()
        header = ["index", "label", "error", "anomalous"]
        if task.anomaly_index is not None:
            header.append("is_anomaly_class")
        with self.path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            for index, (label, error) in enumerate(zip(labels, errors.tolist(), strict=True)):
                row = [index, label, f"{error:.6g}", int(error > threshold)]
                if task.anomaly_index is not None:
                    row.append(int(label == task.anomaly_index))
                writer.writerow(row)

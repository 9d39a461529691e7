"""Simple models beside the network, so that a results table shows whether the network beats them.

Each baseline is fitted on the training split alone and predicts the whole test split in the task's own output
format, and the task's compute_metrics scores it: its metrics are the network's test/* metrics, under the same names.

- majority_class (classification, binary): the training split's class frequencies as the scores of every sample,
  so the most frequent class is predicted (top-5: the five most frequent) and the AUROC is 0.5.
- mean (regression): the training targets' mean for every sample.
- naive_forecast (task=forecast): the last value of each window.
- logistic_regression, linear_regression (tabular data): scikit-learn's, on the standardised features. Left out for
  images and sequences (a linear model of pixels or time steps is no fair reference there, and slow on large images)
  and for more than MAX_LINEAR_FEATURES features or MAX_LINEAR_SAMPLES training rows (seconds, not minutes).
Other tasks (autoencoders keep their PCA baseline, GANs, DQN, language models) and streamed splits whose labels
are unknown without reading them get none.
"""

import warnings

import torch
from torch import Tensor

from dlrun.data.module import DataModule
from dlrun.tasks.forecast import ForecastTask
from dlrun.tasks.supervised import SupervisedTask

MAX_LINEAR_FEATURES = 1000
MAX_LINEAR_SAMPLES = 100_000
SMALLEST_SHARE = 1e-6  # a class absent from the training split keeps a finite score


def test_metrics(task, data: DataModule) -> dict[str, dict[str, float]]:
    """{baseline: {"test/<metric>": value}} of the baselines that fit the task and the data; {} when none does."""
    if not isinstance(task, SupervisedTask):
        return {}
    train, test = _split(data, "train"), _split(data, "test")
    if train is None or test is None:
        return {}
    predictions = _predictions(task, train, test)
    return {
        name: {f"test/{metric}": value for metric, value in task.compute_metrics(output, test[1]).items()}
        for name, output in predictions.items()
    }


def _predictions(task: SupervisedTask, train: tuple, test: tuple) -> dict[str, Tensor]:
    (train_inputs, train_targets), (test_inputs, test_targets) = train, test
    tabular = _tabular(train_inputs)
    if task.problem == "regression":
        predictions = {"mean": train_targets.float().mean(dim=0).expand(test_targets.shape)}
        if isinstance(task, ForecastTask):
            predictions["naive_forecast"] = test_inputs[:, -1, : test_targets.shape[1]].float()
        if tabular:
            predictions["linear_regression"] = _linear_regression(train_inputs, train_targets, test_inputs).reshape(
                test_targets.shape
            )
        return predictions
    predictions = {"majority_class": _class_frequencies(task, train_targets).expand(len(test_targets), -1)}
    if tabular:
        predictions["logistic_regression"] = _logistic_regression(task, train_inputs, train_targets, test_inputs)
    return predictions


def _split(data: DataModule, split: str) -> tuple[Tensor | None, Tensor] | None:
    """(inputs, targets) on the CPU; a streamed split's inputs are None (its labels only, where it lists them)."""
    held = getattr(data, split)
    if isinstance(held, tuple):
        return held[0].cpu(), held[1].cpu()
    labels = getattr(held, "labels", None)
    return None if labels is None else (None, torch.as_tensor(labels))


def _tabular(inputs: Tensor | None) -> bool:
    """Rows of features, few enough for a linear model in seconds."""
    if inputs is None or inputs.dim() != 2:
        return False
    return inputs.shape[1] <= MAX_LINEAR_FEATURES and inputs.shape[0] <= MAX_LINEAR_SAMPLES


def _class_frequencies(task: SupervisedTask, targets: Tensor) -> Tensor:
    """(1, outputs): the log frequencies of the training classes; for one binary logit, the log-odds of class 1."""
    counts = torch.bincount(targets.long(), minlength=task.num_classes).double()
    shares = (counts / counts.sum()).clamp(SMALLEST_SHARE, 1 - SMALLEST_SHARE)
    if task.problem == "binary":
        return (shares[1] / shares[0]).log().float().reshape(1, 1)
    return shares.log().float().unsqueeze(0)


def _linear_regression(inputs: Tensor, targets: Tensor, test_inputs: Tensor) -> Tensor:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(inputs.double().numpy(), targets.double().numpy())
    return torch.from_numpy(model.predict(test_inputs.double().numpy())).float()


def _logistic_regression(task: SupervisedTask, inputs: Tensor, targets: Tensor, test_inputs: Tensor) -> Tensor:
    """Logits in the network's format: one per class (log-probabilities), or the one binary logit."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    labels = targets.long().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # its fit after max_iter is still a fair reference
        model = LogisticRegression(max_iter=1000).fit(inputs.double().numpy(), labels)
    features = test_inputs.double().numpy()
    if task.problem == "binary":
        return torch.from_numpy(model.decision_function(features)).float().reshape(-1, 1)
    logits = torch.full((len(features), task.num_classes), float(torch.finfo(torch.float32).min))
    logits[:, torch.from_numpy(model.classes_)] = torch.from_numpy(model.predict_log_proba(features)).float()
    return logits

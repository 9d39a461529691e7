"""Baselines beside the network's test metrics: in the results table and in metrics.json, checked against the
data and against scikit-learn fitted here."""

import json
import re

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from dlrun import baselines, build
from dlrun.run import run

from conftest import compose_config

SHOWN = ["quiet=false", "print_config=false", "trainer.fast_dev_run=true"]  # the table is printed


def table_row(printed: str, metric: str) -> list[str]:
    """The cells of the results table's row for metric."""
    (line,) = [line for line in printed.splitlines() if line[:1] in "│┃" and f" {metric} " in line]
    return [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]


def test_digits_shows_the_majority_class_accuracy(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cfg = compose_config(*SHOWN)
    run(cfg, run_dir)
    data = build.data(cfg)
    majority = torch.bincount(data.train[1]).argmax()  # the most frequent class of the training split
    share = float((data.test[1] == majority).float().mean())
    reference = json.loads((run_dir / "metrics.json").read_text())["baselines"]
    assert set(reference) == {"majority_class"}  # images: no logistic regression of pixels
    assert reference["majority_class"]["test/acc"] == pytest.approx(share)
    assert reference["majority_class"]["test/acc"] < 0.2  # ten balanced classes
    printed = capsys.readouterr().out
    assert "majority_class" in printed
    assert table_row(printed, "test/acc")[2] == f"{share:.4f}"  # beside the network's value
    assert table_row(printed, "val/acc")[2:] == [""]  # baselines are scored on the test split only


def test_diabetes_shows_the_mean_and_linear_regression_as_sklearn_scores_them(run_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cfg = compose_config("experiment=diabetes", *SHOWN)
    run(cfg, run_dir)
    data = build.data(cfg)
    (train_x, train_y), (test_x, test_y) = data.train, data.test
    in_units = lambda y: (y * data.spec.target_std + data.spec.target_mean).numpy().ravel()  # noqa: E731
    train_y, test_y = in_units(train_y), in_units(test_y)
    fitted = {
        "mean": np.full_like(test_y, train_y.mean()),
        "linear_regression": LinearRegression().fit(train_x.numpy(), train_y).predict(test_x.numpy()),
    }
    reference = json.loads((run_dir / "metrics.json").read_text())["baselines"]
    assert set(reference) == set(fitted)
    printed = capsys.readouterr().out
    columns = table_row(printed, "metric (best checkpoint)")
    for name, predicted in fitted.items():
        expected = {
            "test/mae": skm.mean_absolute_error(test_y, predicted),
            "test/rmse": skm.root_mean_squared_error(test_y, predicted),
            "test/r2": skm.r2_score(test_y, predicted),
        }
        assert reference[name] == pytest.approx(expected, rel=1e-4, abs=1e-4)
        assert table_row(printed, "test/rmse")[columns.index(name)] == f"{expected['test/rmse']:.4f}"
    assert not (run_dir / "test_per_class.csv").exists()  # callbacks.classification_report: classifiers only


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
def test_tabular_classifiers_get_logistic_regression_and_the_majority_class(dataset):
    loss = "bce" if dataset == "breast_cancer" else "cross_entropy"
    cfg = compose_config(f"dataset={dataset}", f"loss={loss}")
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    reference = baselines.test_metrics(task, data)
    (train_x, train_y), (test_x, test_y) = data.train, data.test
    logistic = LogisticRegression(max_iter=1000).fit(train_x.numpy(), train_y.numpy())
    assert reference["logistic_regression"]["test/acc"] == pytest.approx(logistic.score(test_x.numpy(), test_y))
    majority = torch.bincount(train_y).argmax()
    assert reference["majority_class"]["test/acc"] == pytest.approx(float((test_y == majority).float().mean()))
    if dataset == "breast_cancer":  # binary: the AUROC of one score for all is a coin's
        assert reference["majority_class"]["test/auroc"] == pytest.approx(0.5)
        scores = logistic.decision_function(test_x.numpy())
        assert reference["logistic_regression"]["test/auroc"] == pytest.approx(skm.roc_auc_score(test_y, scores))

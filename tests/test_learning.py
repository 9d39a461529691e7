"""It learns: each option's shipped defaults reach the bar on the real test split (CPU)."""

import json

import pytest

from dlrun.run import run

from conftest import compose_config

BARS = [
    (["dataset=digits"], "test/acc", 0.95),
    (["dataset=digits", "model=cnn"], "test/acc", 0.95),
    (["dataset=iris"], "test/acc", 0.90),
    (["dataset=wine"], "test/acc", 0.90),
    (["dataset=breast_cancer"], "test/acc", 0.93),
    (["dataset=breast_cancer", "loss=bce"], "test/acc", 0.93),
    (["experiment=diabetes"], "test/r2", 0.35),
]
LONG = {"dataset=digits model=cnn"}  # over 20 s on 2 cores (38 s): `make learn` runs it, `make test` does not
CASES = [
    pytest.param(*bar, id=" ".join(bar[0]), marks=[pytest.mark.long] if " ".join(bar[0]) in LONG else [])
    for bar in BARS
]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "metric", "bar"), CASES)
def test_shipped_defaults_reach_the_bar(overrides, metric, bar, run_dir):
    run(compose_config(*overrides), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics[metric] >= bar, metrics


@pytest.mark.slow
def test_binary_and_regression_metrics_are_reported(tmp_path):
    run(compose_config("dataset=breast_cancer", "loss=bce", "trainer.max_epochs=3"), tmp_path / "binary")
    binary = json.loads((tmp_path / "binary" / "metrics.json").read_text())
    assert binary["test/auroc"] > 0.9 and "test/top5_acc" not in binary
    run(compose_config("experiment=diabetes", "trainer.max_epochs=3"), tmp_path / "regression")
    regression = json.loads((tmp_path / "regression" / "metrics.json").read_text())
    # MAE and RMSE are in the target's own units (disease progression, roughly 25 to 346), not standardised.
    assert 20 < regression["test/mae"] < regression["test/rmse"] < 150

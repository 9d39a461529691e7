"""It learns: the network families' shipped defaults on real data that ships offline (test split).

A short character-level language model run is in test_sequences.py.
"""

import json

import pytest

from dlrun.run import run

from conftest import compose_config


@pytest.mark.slow
def test_lstm_reads_digits_row_by_row(run_dir):
    run(compose_config("model=lstm", "dataset=digits"), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.90, metrics


@pytest.mark.long  # over 20 s on 2 cores (27 s): `make learn` runs it, `make test` does not
def test_gru_forecasts_sunspots_better_than_the_last_value(run_dir):
    run(compose_config("experiment=timeseries"), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    naive = metrics["baselines"]["naive_forecast"]
    assert metrics["test/mse"] < 0.9 * naive["test/mse"], metrics
    assert metrics["test/mae"] < naive["test/mae"], metrics


@pytest.mark.slow
@pytest.mark.long  # over 20 s on 2 cores: `make learn` runs it, `make test` does not
def test_resnet_on_digits_reaches_the_bar(run_dir):
    run(compose_config("model=resnet", "dataset=digits"), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.95, metrics

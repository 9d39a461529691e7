"""Recurrent networks (rnn, lstm, gru) on images read row by row, on time series windows (dataset=timeseries) and
as character-level language models (dataset=text), with the text sampled each epoch."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun.callbacks.text_samples import TextSamples
from dlrun.data import text, timeseries
from dlrun.errors import ConfigError
from dlrun.models.rnn import RecurrentNet
from dlrun.run import run
from dlrun.tasks.language_model import LanguageModelTask, sample

from conftest import compose_config, model_for, only_run_dir, option_names, run_cli

RECURRENT = ["rnn", "lstm", "gru"]
FAST = ["trainer.fast_dev_run=true"]


# -- the models ---------------------------------------------------------------------------------------


def test_every_recurrent_option_is_a_model():
    assert set(RECURRENT) <= set(option_names("model"))


@pytest.mark.parametrize("option", RECURRENT)
@pytest.mark.parametrize(("dataset", "steps", "features"), [("digits", 8, 8), ("mnist", 28, 28), ("cifar10", 32, 96)])
def test_images_are_read_row_by_row(option, dataset, steps, features):
    cfg = compose_config(f"model={option}", f"dataset={dataset}", "model.bidirectional=true", "model.num_layers=2")
    network = model_for(cfg)
    seen = []
    network.recurrent.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    images = torch.randn(3, *cfg.dataset.in_shape)
    assert network(images).shape == (3, 10)
    assert seen[0].shape == (3, steps, features)
    torch.testing.assert_close(seen[0][:, 5], images[:, :, 5].flatten(1))  # step 5 is row 5, channel by channel


@pytest.mark.parametrize("option", RECURRENT)
def test_every_recurrent_option_trains_on_digits_and_the_time_series(option, run_dir, tmp_path):
    run(compose_config(f"model={option}", "dataset=digits", *FAST), run_dir)
    assert "test/acc" in json.loads((run_dir / "metrics.json").read_text())
    run(
        compose_config(f"model={option}", "experiment=timeseries", "model.dropout=0.1", "model.num_layers=2", *FAST),
        tmp_path,
    )
    assert "test/mse" in json.loads((tmp_path / "metrics.json").read_text())["baselines"]["naive_forecast"]


def test_bad_recurrent_settings_are_config_errors():
    with pytest.raises(ConfigError, match="model=gru needs sequences"):
        model_for(compose_config("model=gru", "dataset=iris"))
    with pytest.raises(ConfigError, match="model.bidirectional = true: a language model must not read"):
        RecurrentNet(cell="lstm", in_shape=[16], num_outputs=5, vocab_size=5, bidirectional=True)
    with pytest.raises(ConfigError, match="model.hidden_size = 0"):
        RecurrentNet(cell="rnn", in_shape=[8, 1], num_outputs=1, hidden_size=0)


# -- dataset=timeseries -------------------------------------------------------------------------------


def test_the_shipped_series_is_monthly_sunspots():
    series = timeseries.read_series(None, "sunspots")
    assert len(series) == 12 * (2008 - 1749 + 1)
    assert series[0] == 58.0 and series.min() == 0 and 250 < series.max() < 260  # the 1957-58 maximum


def test_windows_forecast_the_next_value_split_in_time(tmp_path):
    values = np.arange(100) ** 1.5
    path = tmp_path / "sales.csv"
    path.write_text("week,units\n" + "\n".join(f"{i},{v}" for i, v in enumerate(values)) + "\n")
    data = timeseries.load(path=str(path), column="units", window=5, in_shape=[5, 1], normalize=False)
    inputs = torch.cat([data.train[0], data.val[0], data.test[0]])
    targets = torch.cat([data.train[1], data.val[1], data.test[1]])
    assert inputs.shape == (95, 5, 1) and targets.shape == (95, 1)
    for i in (0, 50, 94):  # window i holds values i..i+4 and forecasts value i+5
        torch.testing.assert_close(inputs[i, :, 0], torch.tensor(values[i : i + 5], dtype=torch.float32))
        assert targets[i, 0] == pytest.approx(values[i + 5])
    assert (data.size("train"), data.size("val"), data.size("test")) == (67, 14, 14)
    assert data.train[1].max() < data.val[1].min() and data.val[1].max() < data.test[1].min()  # in time order


def test_the_forecast_task_reports_the_naive_forecast_beside_the_model(run_dir):
    cfg = compose_config("experiment=timeseries", "trainer.max_epochs=1")
    assert cfg.loss.problem == "regression" and cfg.task._target_.endswith("ForecastTask")
    run(cfg, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    series = timeseries.read_series(None, "sunspots")
    test_count = round((len(series) - 24) * 0.15)
    actual, previous = series[-test_count:], series[-test_count - 1 : -1]
    naive = metrics["baselines"]["naive_forecast"]  # dlrun/baselines.py
    assert naive["test/mse"] == pytest.approx(np.mean((actual - previous) ** 2), rel=1e-4)
    assert naive["test/mae"] == pytest.approx(np.mean(np.abs(actual - previous)), rel=1e-4)
    assert {"test/mse", "test/mae", "val/mse"} <= metrics.keys()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"column": "units"}, "dataset.column = units: not a column of the shipped sunspots.csv; type one of month"),
        ({"column": "month"}, "dataset.column = month: line 2 holds '1749-01', not a finite number"),
        ({"path": "nowhere.csv"}, "dataset.path = nowhere.csv: no such file"),
        ({"window": 3119, "in_shape": [3119, 1]}, "dataset.window = 3119: the series has 3120 values, too few"),
        ({"in_shape": [24, 2]}, r"dataset.in_shape = \[24, 2\]: windows of one value are \[24, 1\]"),
    ],
)
def test_bad_series_settings_are_config_errors(settings, message):
    arguments = {"path": None, "column": "sunspots", "window": 24, "in_shape": [24, 1]} | settings
    with pytest.raises(ConfigError, match=message):
        timeseries.load(**arguments)


def test_cli_forecasts_a_user_csv_column(tmp_path):
    path = tmp_path / "sales.csv"
    rng = np.random.default_rng(0)
    units = 100 + 20 * np.sin(np.arange(300) / 6) + rng.normal(0, 2, 300)
    path.write_text("day,units\n" + "\n".join(f"{i},{u:.2f}" for i, u in enumerate(units)) + "\n")
    result = run_cli(
        "experiment=timeseries",
        f"dataset.path={path}",
        "dataset.column=units",
        "dataset.window=12",
        "trainer.device=cpu",
        "trainer.max_epochs=2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "naive_forecast" in result.stdout and "test/mse" in result.stdout  # printed beside each other
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    assert metrics["test/mse"] > 0


# -- dataset=text --------------------------------------------------------------------------------------


def test_the_shipped_text_is_macbeth():
    play = text.read_text(None)
    assert play.startswith("Macbeth\n") and "Fair is foul, and foul is fair" in play and len(play) > 100_000


def test_text_becomes_sequences_with_targets_one_character_ahead(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    data = text.load(path=str(path), seq_len=10, in_shape=[10], val_fraction=0.1, test_fraction=0.1)
    vocabulary = data.spec.class_names
    assert vocabulary == sorted(set("the quick brown fox jumps over the lazy dog\n"))
    inputs, targets = data.train
    assert inputs.shape[1] == 10 and inputs.dtype == torch.long
    assert torch.equal(inputs[:, 1:], targets[:, :-1]) and torch.equal(inputs[1:, 0], targets[:-1, -1])
    assert "".join(vocabulary[i] for i in inputs[0].tolist()) == "the quick "


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"path": "missing.txt"}, "dataset.path = missing.txt: no such file"),
        ({"seq_len": 200_000, "in_shape": [200_000]}, "dataset.seq_len = 200000: the train part .* shorter than one"),
        (
            {"vocab_size": 10},
            "dataset.vocab_size = 10: the text has 64 distinct characters; type dataset.vocab_size=auto",
        ),
    ],
)
def test_bad_text_settings_are_config_errors(settings, message):
    arguments = {"path": None, "seq_len": 64, "in_shape": [64]} | settings
    with pytest.raises(ConfigError, match=message):
        text.load(**arguments)


def test_the_language_model_learns_and_samples_text_each_epoch(run_dir, capsys):
    cfg = compose_config(
        "experiment=text",
        "quiet=false",
        "trainer.max_epochs=2",
        "trainer.limit_batches=20",
        "callbacks.text_samples.length=80",
        "callbacks.text_samples.temperature=0.5",
    )
    assert cfg.dataset.vocab_size == "auto"
    run(cfg, run_dir)
    spec = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["preprocessing"]
    assert len(spec["class_names"]) == 64 and spec["tokens"]  # the model's vocabulary, counted from the text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/loss"] < math.log(64) - 1, metrics  # well under the uniform guess

    printed = capsys.readouterr().out
    assert printed.count("sample after epoch") == 2 and "temperature 0.5" in printed
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    samples = events.Tensors("samples/text_summary")
    assert [event.step for event in samples] == [20, 40]
    assert len(samples[-1].tensor_proto.string_val[0].decode()) > 80


def test_sampling_follows_the_temperature():
    torch.manual_seed(0)
    network = RecurrentNet(cell="gru", in_shape=[8], num_outputs=5, vocab_size=5)
    prompt = torch.tensor([0, 1, 2])
    cold = sample(network, prompt, 200, temperature=0.05, generator=torch.Generator().manual_seed(0))
    hot = sample(network, prompt, 200, temperature=5.0, generator=torch.Generator().manual_seed(0))
    assert len(cold) == len(hot) == 200 and network.training  # the model is put back in training mode
    assert len(set(cold.tolist())) < len(set(hot.tolist())) == 5


def test_bad_sampling_settings_are_config_errors():
    with pytest.raises(ConfigError, match="callbacks.text_samples.temperature = 0: must be > 0"):
        TextSamples(temperature=0)
    callback = TextSamples(prompt="Macbeth~")
    with pytest.raises(ConfigError, match=r"prompt = 'Macbeth~': \['~'\] never occur in the text"):
        callback._prompt_tokens(text.load(path=None, seq_len=64, in_shape=[64]).spec.class_names, torch.zeros(1, 64))
    with pytest.raises(ConfigError, match="needs model=lstm | gru | rnn"):
        LanguageModelTask(model=torch.nn.Linear(2, 2), criterion=torch.nn.CrossEntropyLoss(), problem="classification")


def test_a_text_file_of_the_user_trains_through_the_config(tmp_path):
    path = Path(tmp_path) / "notes.txt"
    path.write_text("abcabcabd " * 400)
    cfg = compose_config(
        "experiment=text",
        f"dataset.path={path}",
        "dataset.seq_len=16",
        "model=gru",
        "callbacks.text_samples=null",
        *FAST,
    )
    run(cfg, tmp_path / "run")
    weights = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert len(weights["embedding.weight"]) == 5  # a, b, c, d and the space

"""Bad input that used to pass silently or with a misleading message (issue 17 point 9): each is refused naming the
key or file, and the value the message suggests works."""

import dataclasses
import random
import zipfile

import numpy as np
import pytest
import torch

from dlrun import build, checkpoint, compose, evaluate, predict, sample
from dlrun.cli import train
from dlrun.errors import ConfigError
from dlrun.export import cli as export_cli
from dlrun.trainer import NonFiniteData, NonFiniteLoss
from dlrun.validation import validate

from conftest import compose_config, make_trainer, run_cli

ONE_EPOCH = ["trainer.max_epochs=1", "trainer.limit_batches=2"]


def refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*overrides))
    return str(error.value)


# -- callbacks' and the plateau scheduler's mode -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fix"),
    [
        (["callbacks.checkpoint.mode=foo"], "callbacks.checkpoint.mode=min"),
        (["callbacks.checkpoint.monitor=val/acc", "callbacks.checkpoint.mode=up"], "callbacks.checkpoint.mode=max"),
        (["callbacks.early_stopping.mode=foo"], "callbacks.early_stopping.mode=min"),
        (["scheduler=plateau", "scheduler.mode=foo"], "scheduler.mode=min"),
    ],
)
def test_a_mode_other_than_min_or_max_is_refused(overrides, fix):
    message = refused(*overrides)
    key, _, value = overrides[-1].partition("=")
    assert f"{key} = {value}: must be min" in message and f"type {fix}" in message
    assert len(message.splitlines()) == 1  # early stopping's mode, ${callbacks.checkpoint.mode}, is not named twice
    validate(compose_config(*overrides, fix))


# -- NaN or infinite training data ---------------------------------------------------------------------------------

POISONED_DATASET = '''
from dlrun.data.embedded import load as embedded


def load(*, nan_targets=0, **settings):
    """dlrun's diabetes dataset with the first nan_targets training targets NaN: a user's own dataset builder."""
    splits = embedded(**settings)
    splits.train[1][:nan_targets] = float("nan")
    return splits
'''


def test_nan_targets_are_named_instead_of_the_learning_rate(tmp_path, monkeypatch):
    (tmp_path / "poisoned.py").write_text(POISONED_DATASET)
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = ["experiment=diabetes", "dataset._target_=poisoned.load", "trainer.max_epochs=1"]
    with pytest.raises(NonFiniteData) as error:
        train(compose_config(*overrides, "+dataset.nan_targets=3"), tmp_path / "bad")
    message = str(error.value)
    assert message.startswith("dataset = diabetes: train/loss became NaN or infinite")
    assert "the targets of 3 of the 286 training samples" in message and "fill them in or drop those rows" in message
    assert "optimizer.lr" not in message and "inputs" not in message
    train(compose_config(*overrides, "+dataset.nan_targets=0"), tmp_path / "good")  # the rows dropped: it trains


def test_infinite_inputs_are_named_with_their_column():
    cfg = compose_config("experiment=diabetes", *ONE_EPOCH)
    data = build.data(cfg)
    data.train[0][5:7, 4] = float("inf")
    task = build.task(cfg, build.model(cfg, data.spec), data)
    with pytest.raises(
        NonFiniteData, match=r"\(the inputs of 2 of the 286 training samples, in input column 4, counted from 0\)"
    ):
        make_trainer(device="cpu", max_epochs=1).fit(
            task, data, task.configure_optimizers(build.optimizer_factory(cfg))
        )


def test_streamed_data_are_checked_in_the_batches_the_epoch_read():
    from torch.utils.data import TensorDataset

    from dlrun.trainer.nonfinite_data import nonfinite_values

    data = build.data(compose_config("experiment=diabetes"))
    inputs, targets = data.train
    targets = targets.clone()
    targets[::2] = float("nan")
    streamed = dataclasses.replace(data, train=TensorDataset(inputs, targets))
    assert streamed.streamed
    found = nonfinite_values(streamed, epoch=0, batches_done=3)
    assert found.startswith("the targets of ") and found.endswith(
        " of the 48 training samples of the epoch's first 3 batches"
    )
    clean = dataclasses.replace(data, train=TensorDataset(*data.train))
    assert nonfinite_values(clean, epoch=0, batches_done=3) is None


def test_a_diverging_run_on_finite_data_still_gets_the_learning_rate_advice():
    cfg = compose_config("experiment=diabetes", "optimizer=sgd", "optimizer.lr=1e6", "optimizer.momentum=0")
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    with pytest.raises(NonFiniteLoss) as error:
        make_trainer(device="cpu", max_epochs=3, log_every_n_steps=1).fit(
            task, data, task.configure_optimizers(build.optimizer_factory(cfg))
        )
    assert not isinstance(error.value, NonFiniteData) and "Try a lower optimizer.lr" in str(error.value)


# -- files that are no PyTorch checkpoint --------------------------------------------------------------------------


def corrupt_pickle(path, source):
    """A zip archive laid out as torch.save's, whose pickled data are random bytes."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for name in original.namelist():
            data = original.read(name)
            copy.writestr(
                name, b"\x80\x02" + random.Random(0).randbytes(len(data)) if name.endswith("data.pkl") else data
            )


class Foreign:
    """Not a tensor nor a plain container: weights_only loading refuses it."""


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of plain tensors, in the current and in torch's format before 1.6."""
    state = {"model": {"weight": torch.ones(2)}, "epoch": 1}
    torch.save(state, tmp_path / "good.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    return tmp_path


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "random bytes",
            "not a torch checkpoint (torch.save writes a zip archive): a file of another format, or corrupt",
        ),
        ("corrupt pickle", "not a readable checkpoint, truncated or corrupt (Unsupported operand"),
        ("zip of another kind", "not a readable checkpoint, truncated or corrupt (file in archive is not in a subdir"),
        ("foreign objects", "refused, the file holds objects beyond tensors and plain containers (Unsupported global"),
    ],
)
def test_a_file_that_is_no_checkpoint_is_told_from_one_holding_foreign_objects(saved, kind, expected):
    path = saved / "bad.pt"
    if kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(5000))
    elif kind == "corrupt pickle":
        corrupt_pickle(path, saved / "good.pt")
    elif kind == "zip of another kind":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    else:
        torch.save({"model": {}, "extra": Foreign()}, path, pickle_protocol=2)
    with pytest.raises(ConfigError) as error:
        checkpoint.load(path, key="ckpt_path")
    message = str(error.value)
    assert message.startswith(f"ckpt_path = {path}: {expected}")
    assert "weights_only" not in message
    assert ("objects beyond" in message) == (kind == "foreign objects")
    for good in ("good.pt", "legacy.pt"):  # what the message asks for: a real checkpoint (either format) loads
        assert checkpoint.load(saved / good)["epoch"] == 1


@pytest.mark.usefixtures("wide_terminal")
@pytest.mark.parametrize("tool", ["export", "predict", "sample", "eval"])
def test_every_tool_that_loads_a_checkpoint_says_a_corrupt_one_is_corrupt(saved, tool, capsys):
    path = saved / "bad.pt"
    corrupt_pickle(path, saved / "good.pt")
    np.save(saved / "rows.npy", np.zeros((2, 64), dtype=np.float32))
    main, args = {
        "export": (export_cli.main, []),
        "predict": (predict.main, [str(saved / "rows.npy")]),
        "sample": (sample.main, []),
        "eval": (evaluate.main, []),
    }[tool]
    with pytest.raises(SystemExit) as exit_:
        main([str(path), *args])
    message = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert exit_.value.code == 2
    assert f"CKPT = {path}: not a readable checkpoint, truncated or corrupt" in message
    assert "objects beyond" not in message and "weights_only" not in message


def test_dlrun_eval_reads_a_model_pt_through_the_same_checks(saved):
    path = saved / "model.pt"
    corrupt_pickle(path, saved / "good.pt")
    with pytest.raises(ConfigError) as error:
        evaluate._plain_state_dict(path)
    message = str(error.value)
    assert message.startswith(f"CKPT = {path}: not a readable checkpoint, truncated or corrupt")
    assert message.endswith("type the path of a run's model.pt or checkpoints/best.pt")
    torch.save({"weight": torch.ones(2)}, path)  # a real state_dict there reads
    assert evaluate._plain_state_dict(path)["weight"].tolist() == [1.0, 1.0]


# -- tasks that read one kind of dataset ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fix"),
    [
        (["task=forecast"], ["dataset=timeseries", "loss=mse"]),
        (["task=forecast", "dataset=diabetes", "loss=mse"], ["dataset=timeseries", "loss=mse"]),
        (["task=forecast", "dataset=text"], ["task=language_model", "model=lstm"]),
        (["task=language_model", "model=lstm"], ["dataset=text", "model=lstm"]),
    ],
)
def test_a_task_on_a_dataset_it_cannot_read_gets_one_advice_that_trains(overrides, fix, tmp_path):
    message = refused(*overrides)
    assert len(message.splitlines()) == 1 and f"type {' '.join(fix)}, or experiment=" in message
    train(compose_config(*overrides, *fix, "trainer.fast_dev_run=true"), tmp_path)  # one tiny real run


# -- values Hydra would refuse with OmegaConf's raw message --------------------------------------------------------


def test_values_of_the_wrong_type_name_the_key_and_a_value_of_its_type(tmp_path):
    result = run_cli("trainer.max_epochs=2.5", "trainer.compile=maybe", "seed=x", cwd=tmp_path, env={"COLUMNS": "500"})
    assert result.returncode == 2, result.stderr
    assert "HYDRA_FULL_ERROR" not in result.stderr and not (tmp_path / "outputs").exists()
    fixes = ["trainer.max_epochs=30", "trainer.compile=false", "seed=42"]
    for kind, fix in zip(["a whole number", "true or false", "a whole number"], fixes, strict=True):
        key = fix.partition("=")[0]
        assert f"{key} = " in result.stderr and f": takes {kind}; type e.g. {fix}" in result.stderr
    validate(compose_config(*fixes))


def test_the_tools_that_compose_a_run_give_the_same_typed_messages():
    with pytest.raises(ConfigError) as error:
        compose.compose(["trainer.max_epochs=2.5"])
    assert "trainer.max_epochs = 2.5: takes a whole number; type e.g. trainer.max_epochs=30" in str(error.value)
    with pytest.raises(ConfigError) as error:
        compose.compose(["name=café"])
    assert "type \"name='café'\"" in str(error.value)


def test_an_unquoted_value_beyond_ascii_is_told_how_to_quote_it(tmp_path):
    result = run_cli("name=café", "dataset.target=größe", cwd=tmp_path, env={"COLUMNS": "500"})
    assert result.returncode == 2, result.stderr
    assert "HYDRA_FULL_ERROR" not in result.stderr and "LexerNoViableAlt" not in result.stderr
    assert "name = café: Hydra reads letters beyond ASCII only inside quotes; type \"name='café'\"" in result.stderr
    assert "type \"dataset.target='größe'\"" in result.stderr
    assert compose_config("name='café'").name == "café"  # what the shell hands on of "name='café'"
    cfg = compose_config("dataset=csv", "dataset.target='größe'")
    assert cfg.dataset.target == "größe"


def test_a_quoted_value_beyond_ascii_names_a_real_run(tmp_path):
    table = "größe,x\n" + "".join(f"{i % 2},{i}\n" for i in range(40))
    (tmp_path / "t.csv").write_text(table, encoding="utf-8")
    overrides = ["name='café'", "dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target='größe'"]
    train(compose_config(*overrides, "trainer.fast_dev_run=true"), tmp_path / "run")
    assert (tmp_path / "run" / "model.pt").is_file()

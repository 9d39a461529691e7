"""dlrun-predict on checkpoints of real runs, with real files on disk: PNG digits, CSV rows, .npy and .pt tensors."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from PIL import Image

from dlrun import build
from dlrun.data.splits import split_indices
from dlrun.inputs import load_trained
from dlrun.predict import main, predict
from dlrun.run import run

from conftest import compose_config

PREDICT = str(Path(sys.executable).with_name("dlrun-predict"))
RUNS = {
    "digits": ["dataset=digits", "trainer.max_epochs=3"],  # an MLP trained far enough to read digits (~0.93)
    "binary": ["dataset=breast_cancer", "loss=bce", "trainer.max_epochs=1", "trainer.limit_batches=3"],
    "regression": ["experiment=diabetes", "trainer.max_epochs=1", "trainer.limit_batches=3"],
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    for name, overrides in RUNS.items():
        run(compose_config(*overrides, "callbacks.tensorboard=null"), root / name)
    return {name: root / name / "checkpoints" / "best.pt" for name in RUNS}


def held_out_test_split(checkpoint: Path) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """The raw rows and targets of the run's test split (from scikit-learn), and the same split as training saw it."""
    config = OmegaConf.create(torch.load(checkpoint, weights_only=True)["config"])
    bunch = getattr(sklearn.datasets, f"load_{config.dataset.name}")()
    dataset = config.dataset
    _, _, test = split_indices(
        bunch.target,
        val_fraction=dataset.val_fraction,
        test_fraction=dataset.test_fraction,
        seed=dataset.split_seed,
        stratify=dataset.num_classes is not None,
    )
    return bunch.data[test], bunch.target[test], build.data(config).test[0]


def model_outputs(checkpoint: Path, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return load_trained(checkpoint).model(inputs)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def digit_images(checkpoints, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The digits test split as 8x8 greyscale PNG files (ink 16 -> white 255), named by index and label."""
    folder = tmp_path_factory.mktemp("digit_images")
    raw, targets, _ = held_out_test_split(checkpoints["digits"])
    for index, (row, target) in enumerate(zip(raw, targets, strict=True)):
        pixels = np.round(row.reshape(8, 8) * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}_label{target}.png")
    return folder, targets


def run_predict(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "200"}
    return subprocess.run([PREDICT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_a_folder_of_digit_images_is_read_well(checkpoints, digit_images, tmp_path):
    folder, targets = digit_images
    rows = predict(checkpoints["digits"], [folder], output=tmp_path / "predictions.csv", quiet=True)
    assert read_rows(tmp_path / "predictions.csv") == rows
    assert list(rows[0]) == ["input", "class", "probability"]
    assert [Path(row["input"]).name for row in rows] == sorted(path.name for path in folder.iterdir())
    labels = [Path(row["input"]).stem.split("label")[1] for row in rows]
    accuracy = np.mean([row["class"] == label for row, label in zip(rows, labels, strict=True)])
    assert accuracy >= 0.85, accuracy
    assert all(0.1 <= float(row["probability"]) <= 1 for row in rows)
    # The same classes as the model gives the test split in training form: the PNG path preprocesses alike.
    _, _, training_form = held_out_test_split(checkpoints["digits"])
    expected = model_outputs(checkpoints["digits"], training_form).argmax(dim=1).tolist()
    agreement = np.mean([row["class"] == str(cls) for row, cls in zip(rows, expected, strict=True)])
    assert agreement >= 0.99, agreement
    assert len(rows) == len(targets)


def test_larger_colour_and_inverted_images_are_converted_to_the_models_form(checkpoints, digit_images, tmp_path):
    folder, _ = digit_images
    originals = sorted(folder.iterdir())[:6]
    for path in originals:
        grey = Image.open(path)
        grey.resize((32, 32), Image.Resampling.NEAREST).convert("RGB").save(tmp_path / f"big_{path.name}")
        Image.fromarray(255 - np.asarray(grey)).save(tmp_path / f"inverted_{path.name}")
    same = predict(checkpoints["digits"], originals, output=tmp_path / "a.csv", quiet=True)
    big = predict(checkpoints["digits"], sorted(tmp_path.glob("big_*")), output=tmp_path / "b.csv", quiet=True)
    inverted = predict(
        checkpoints["digits"], sorted(tmp_path.glob("inverted_*")), invert=True, output=tmp_path / "c.csv", quiet=True
    )
    for rows in (big, inverted):
        assert [row["class"] for row in rows] == [row["class"] for row in same]
        for row, original in zip(rows, same, strict=True):
            assert float(row["probability"]) == pytest.approx(float(original["probability"]), abs=1e-5)


def test_images_get_the_resize_the_datasets_transforms_gave_evaluation_batches(digit_images, tmp_path):
    overrides = ["model=cnn", "dataset.transforms.resize=[12,12]", "trainer.max_epochs=2", "callbacks.tensorboard=null"]
    try:
        config = compose_config(*overrides)
    except ConfigCompositionException:
        pytest.skip("this dlrun's datasets have no transforms")
    run(config, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
    assert load_trained(checkpoint).model_shape == (1, 12, 12)
    folder, _ = digit_images
    rows = predict(checkpoint, [folder], output=tmp_path / "predictions.csv", quiet=True)
    data = build.data(OmegaConf.create(torch.load(checkpoint, weights_only=True)["config"]))
    evaluated = torch.cat([inputs for inputs, _ in data.batches("test")])  # resized by the eval transform
    expected = model_outputs(checkpoint, evaluated).argmax(dim=1).tolist()
    agreement = np.mean([row["class"] == str(cls) for row, cls in zip(rows, expected, strict=True)])
    assert agreement >= 0.99, agreement


def test_csv_npy_and_pt_rows_get_the_training_standardisation(checkpoints, tmp_path):
    raw, _, training_form = held_out_test_split(checkpoints["digits"])
    header = ",".join(f"pixel_{i}" for i in range(64))
    np.savetxt(tmp_path / "rows.csv", raw[:4], delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "plain.csv", raw[:4], delimiter=",")
    np.save(tmp_path / "rows.npy", raw[:4].reshape(4, 1, 8, 8))
    torch.save(torch.tensor(raw[0].reshape(1, 8, 8), dtype=torch.float32), tmp_path / "one.pt")
    files = [tmp_path / name for name in ("rows.csv", "plain.csv", "rows.npy", "one.pt")]
    rows = predict(checkpoints["digits"], files, output=tmp_path / "predictions.csv", quiet=True)
    names = [row["input"] for row in rows]
    assert names == [
        *(f"{tmp_path / 'rows.csv'}:{line}" for line in range(2, 6)),  # line 1 is the header
        *(f"{tmp_path / 'plain.csv'}:{line}" for line in range(1, 5)),
        *(f"{tmp_path / 'rows.npy'}[{index}]" for index in range(4)),
        f"{tmp_path / 'one.pt'}[0]",
    ]
    probabilities = model_outputs(checkpoints["digits"], training_form[:4]).softmax(dim=1)
    expected = [*range(4), *range(4), *range(4), 0]  # which test sample each row is
    for row, sample in zip(rows, expected, strict=True):
        assert row["class"] == str(int(probabilities[sample].argmax()))
        assert float(row["probability"]) == pytest.approx(float(probabilities[sample].max()), abs=1e-5)


def test_binary_rows_get_the_class_name_and_its_sigmoid_probability(checkpoints, tmp_path):
    raw, _, training_form = held_out_test_split(checkpoints["binary"])
    with open(tmp_path / "tumours.csv", "w") as file:
        file.write(",".join(sklearn.datasets.load_breast_cancer().feature_names) + "\n")
        np.savetxt(file, raw[:8], delimiter=",")
    rows = predict(checkpoints["binary"], [tmp_path / "tumours.csv"], output=tmp_path / "p.csv", quiet=True)
    logits = model_outputs(checkpoints["binary"], training_form[:8])[:, 0]
    for row, logit in zip(rows, logits.tolist(), strict=True):
        positive = 1 / (1 + np.exp(-logit))
        assert row["class"] == ("benign" if logit > 0 else "malignant")
        assert float(row["probability"]) == pytest.approx(max(positive, 1 - positive), abs=1e-5)


def test_regression_values_are_in_the_targets_own_units(checkpoints, tmp_path):
    raw, _, training_form = held_out_test_split(checkpoints["regression"])
    np.save(tmp_path / "patients.npy", raw[:6].astype(np.float32))
    torch.save(torch.tensor(raw[6], dtype=torch.float32), tmp_path / "patient.pt")
    rows = predict(
        checkpoints["regression"],
        [tmp_path / "patients.npy", tmp_path / "patient.pt"],
        output=tmp_path / "p.csv",
        quiet=True,
    )
    assert list(rows[0]) == ["input", "value"]
    preprocessing = torch.load(checkpoints["regression"], weights_only=True)["preprocessing"]
    standardised = model_outputs(checkpoints["regression"], training_form[:7])[:, 0]
    expected = standardised * preprocessing["target_std"][0] + preprocessing["target_mean"][0]
    assert [float(row["value"]) for row in rows] == pytest.approx(expected.tolist(), abs=1e-3)
    assert float(preprocessing["target_mean"][0]) > 100  # disease progression units, not standardised


def test_the_command_writes_predictions_csv_here_and_prints_a_table(checkpoints, digit_images, tmp_path):
    folder, targets = digit_images
    result = run_predict(str(checkpoints["digits"]), str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"predictions (first 10 of {len(targets)})" in result.stdout
    assert "probability" in result.stdout and "0000_label" in result.stdout
    assert f"wrote {len(targets)} predictions to predictions.csv" in result.stdout
    assert len(read_rows(tmp_path / "predictions.csv")) == len(targets)


def test_bad_arguments_exit_2_naming_each_one_before_loading_torch(tmp_path):
    (tmp_path / "notes.txt").write_text("not an input\n")
    (tmp_path / "empty").mkdir()
    result = run_predict("nowhere/best.pt", "gone.png", "notes.txt", "empty", "--show", "-1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "bad configuration" in result.stderr and "Traceback" not in result.stderr
    message = " ".join(result.stderr.replace("│", " ").split())
    for text in (
        "--show = -1: must be 0 or more",
        "CKPT = nowhere/best.pt: no such file; type the path of a last.pt or best.pt",
        "INPUT = gone.png: no such file or folder; type a folder of images",
        "INPUT = notes.txt: not a kind of file dlrun reads (.txt)",
        "INPUT = empty: a folder with no image files",
    ):
        assert text in message, message


def write_bad_files(folder: Path) -> None:
    np.save(folder / "wrong.npy", np.zeros((3, 64), dtype=np.float32))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "short.csv").write_text("1,2,3\n4,5,6\n")
    (folder / "words.csv").write_text(",".join(["1"] * 30) + "\n" + ",".join(["1"] * 29 + ["big"]) + "\n")
    torch.save({"inputs": torch.zeros(2, 30)}, folder / "dict.pt")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "digit.png")


BAD_FILES = {
    "wrong shape": ("digits", "wrong.npy", ["shape [3, 64] does not fit the model", "[N, 1, 8, 8] (N inputs)"]),
    "pickled objects": ("digits", "objects.npy", ["objects.npy: refused or unreadable"]),
    "unreadable image": ("digits", "broken.png", ["broken.png: cannot be read as an image"]),
    "too few columns": ("binary", "short.csv", ["line 1 has 3 columns", "30 numeric columns per row"]),
    "text in a row": ("binary", "words.csv", ["line 2 holds 'big', not a number"]),
    "not a tensor": ("binary", "dict.pt", ["holds a dict, not a tensor"]),
    "image for a tabular model": ("regression", "digit.png", ["an image file, but the model takes 10 features"]),
}


@pytest.mark.usefixtures("wide_terminal")
@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_exit_2_naming_the_file_and_what_to_type(checkpoints, tmp_path, capsys, case):
    write_bad_files(tmp_path)
    run_name, file_name, expected = BAD_FILES[case]
    with pytest.raises(SystemExit) as exit_:
        main([str(checkpoints[run_name]), str(tmp_path / file_name), "--output", str(tmp_path / "p.csv")])
    assert exit_.value.code == 2
    message = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert f"INPUT = {tmp_path / file_name}" in message
    for text in expected:
        assert text in message, message
    assert not (tmp_path / "p.csv").exists()


def refused_predicting_rows_with(checkpoint: Path, tmp_path: Path, capsys) -> str:
    """dlrun-predict of two rows of 30 features with checkpoint, which must exit 2: its message."""
    np.save(tmp_path / "rows.npy", np.zeros((2, 30), dtype=np.float32))
    with pytest.raises(SystemExit) as exit_:
        main([str(checkpoint), str(tmp_path / "rows.npy"), "--output", str(tmp_path / "p.csv")])
    assert exit_.value.code == 2
    return " ".join(capsys.readouterr().err.replace("│", " ").split())


@pytest.mark.usefixtures("wide_terminal")
@pytest.mark.parametrize(
    ("dropped", "expected"),
    [("preprocessing", "holds no data spec (written by an older dlrun)"), ("config", "holds no run config")],
)
def test_checkpoints_lacking_what_prediction_needs_exit_2(checkpoints, tmp_path, capsys, dropped, expected):
    state = torch.load(checkpoints["binary"], weights_only=True)
    del state[dropped]
    torch.save(state, tmp_path / "old.pt")
    message = refused_predicting_rows_with(tmp_path / "old.pt", tmp_path, capsys)
    assert f"CKPT = {tmp_path / 'old.pt'}: {expected}" in message, message


@pytest.mark.usefixtures("wide_terminal")
@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        (b"", "an empty file (0 bytes), truncated or never written"),
        (bytes(range(256)) * 20, "not a torch checkpoint (torch.save writes a zip archive)"),
    ],
)
def test_an_empty_or_foreign_checkpoint_exits_2_naming_it(tmp_path, capsys, contents, expected):
    (tmp_path / "bad.pt").write_bytes(contents)
    message = refused_predicting_rows_with(tmp_path / "bad.pt", tmp_path, capsys)
    assert f"CKPT = {tmp_path / 'bad.pt'}: {expected}" in message, message
    assert not (tmp_path / "p.csv").exists()

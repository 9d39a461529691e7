"""dataset=csv on a file the tests write: numeric and categorical features, classification or regression as the
loss says, and the errors that name the key to fix."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrun import build
from dlrun.data.tabular import load
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config

TOWNS = ["Avon", "Bath", "Calne"]
ROWS = 120


def write_houses(path: Path, rows: int = ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Houses: rooms and area (numbers; a few areas missing), town (text), price (a number that depends on all three)
    and band (the price's tercile: cheap | mid | dear)."""
    rng = np.random.default_rng(seed)
    rooms = rng.integers(1, 7, rows)
    area = np.round(rng.normal(90, 25, rows), 1)
    town = rng.integers(0, 3, rows)
    price = np.round(50 * rooms + 2 * area + 80 * town + rng.normal(0, 10, rows), 1)
    band = np.digitize(price, np.quantile(price, [1 / 3, 2 / 3]))
    lines = ["rooms,area,town,price,band"]
    for i in range(rows):
        area_cell = "" if i % 17 == 5 else f"{area[i]}"
        lines.append(f"{rooms[i]},{area_cell},{TOWNS[town[i]]},{price[i]},{['cheap', 'mid', 'dear'][band[i]]}")
    path.write_text("\n".join(lines) + "\n")
    return {"rooms": rooms, "area": area, "town": town, "price": price, "band": band}


@pytest.fixture(scope="module")
def houses(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("tables") / "houses.csv"
    return path, write_houses(path)


def test_classification_encodes_numbers_and_one_hot_categories(houses):
    path, columns = houses
    data = load(path=str(path), target="band", features=["rooms", "area", "town"], num_classes="auto")
    assert data.spec.class_names == ["cheap", "dear", "mid"]  # sorted text labels
    inputs = torch.cat([data.train[0], data.val[0], data.test[0]])
    assert inputs.shape == (ROWS, 2 + len(TOWNS))  # two numbers and a one-hot town
    towns = inputs[:, 2:]
    assert torch.equal(towns.sum(dim=1), torch.ones(ROWS)) and set(towns.flatten().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(data.train[0][:, :2].mean(dim=0), torch.zeros(2), atol=0.05, rtol=0)  # standardised
    assert all(data.size(split) > 0 for split in ("train", "val", "test"))
    assert data.train[1].dtype == torch.long


def test_regression_standardises_the_target_and_keeps_its_units(houses):
    path, columns = houses
    data = load(path=str(path), target="price", features=["rooms", "area", "town"], num_classes=None)
    assert data.spec.class_names == [] and data.train[1].shape[1] == 1
    targets = torch.cat([data.train[1], data.val[1], data.test[1]]) * data.spec.target_std + data.spec.target_mean
    assert sorted(targets.flatten().tolist()) == pytest.approx(sorted(columns["price"]), abs=1e-3)


def test_missing_numbers_take_the_training_mean(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("x,y\n" + "\n".join(f"{'' if i == 3 else i},{i % 2}" for i in range(40)) + "\n")
    data = load(path=str(path), target="y", num_classes="auto", normalize=False)
    values = torch.cat([data.train[0], data.val[0], data.test[0]]).flatten()
    assert torch.isfinite(values).all() and len(values) == 40


@pytest.mark.parametrize(
    ("loss", "target", "metric"),
    [("cross_entropy", "band", "test/acc"), ("bce", "town_is_bath", "test/auroc"), ("mse", "price", "test/r2")],
)
def test_training_through_the_config(houses, tmp_path, loss, target, metric):
    path, columns = houses
    if target == "town_is_bath":  # a two-class column for bce
        lines = path.read_text().splitlines()
        path = tmp_path / "bath.csv"
        path.write_text("\n".join([lines[0] + ",town_is_bath"] + [f"{line},{'Bath' in line}" for line in lines[1:]]))
    cfg = compose_config(
        "dataset=csv",
        f"dataset.path={path}",
        f"dataset.target={target}",
        "dataset.features=[rooms,area,town]",
        f"loss={loss}",
        "trainer.max_epochs=20",
    )
    run(cfg, tmp_path / "run")
    spec = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)["preprocessing"]
    assert spec["in_shape"] == [5]  # counted: rooms, area, three towns
    assert len(spec["class_names"]) == {"cross_entropy": 3, "bce": 2, "mse": 0}[loss]
    assert cfg.dataset.in_shape == "auto"  # the config says what the user asked for, the data what it found
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics[metric] > {"test/acc": 0.6, "test/auroc": 0.9, "test/r2": 0.8}[metric], metrics


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"path": None}, "dataset.path = null: type the CSV file to read"),
        ({"path": "nowhere.csv"}, "dataset.path = nowhere.csv: no such file"),
        ({"target": None}, "dataset.target = null: type the column to predict, one of rooms | area | town"),
        ({"target": "cost"}, "dataset.target: cost not a column of .*; its columns are rooms | area | town | price"),
        ({"features": ["rooms", "size"]}, "dataset.features: size not a column"),
        (
            {"target": "town", "num_classes": None},
            "target = town: holds text, not numbers .*type loss=cross_entropy",
        ),
        (
            {"target": "price"},
            "target = price: .* distinct numbers, a quantity .*; type loss=mse",
        ),
        ({"target": "band", "num_classes": 4}, "dataset.num_classes = 4: the target band has 3 classes"),
        ({"target": "band", "num_classes": 2}, "dataset.num_classes = 2: .* has 3 classes .*type loss=cross_entropy"),
        ({"target": "band", "in_shape": [3]}, r"dataset.in_shape = \[3\]: .* encode to 6 numbers"),
        (
            {"target": "band", "max_categories": 2},
            "column town has 3 distinct values .* raise dataset.max_categories",
        ),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(houses, settings, message):
    path, _ = houses
    arguments = {"path": str(path), "target": "band", "num_classes": "auto"} | settings
    with pytest.raises(ConfigError, match=message):
        load(**arguments)


@pytest.mark.parametrize(("row", "cells"), [("4,5", 2), ("4,5,6,7", 4)])
def test_a_ragged_file_names_the_row(tmp_path, row, cells):
    path = tmp_path / "ragged.csv"
    path.write_text(f"a,b,c\n1,2,3\n{row}\n")
    with pytest.raises(
        ConfigError, match=rf"ragged.csv: a row has {cells} cells, the header 3 \({row}\); fix the file"
    ):
        load(path=str(path), target="c", num_classes=None)


def test_missing_markers_are_missing_values_and_column_types_are_inferred(tmp_path):
    path = tmp_path / "markers.csv"
    size = ["1", "NA", "?", "nan", "", "2", "inf", "6"] * 5  # a number column with every missing marker
    colour = ["red", "blue", "NA", "", "red", "?", "blue", "red"] * 5  # a text column with some
    flag = ["true", "false"] * 20  # inferred as true/false: categorical
    label = ["a", "b"] * 20
    rows = zip(size, colour, flag, label, strict=True)
    path.write_text("size, colour ,flag,label\n" + "\n".join(",".join(row) for row in rows) + "\n")
    data = load(path=str(path), target="label", num_classes="auto", normalize=False)
    inputs = torch.cat([data.train[0], data.val[0], data.test[0]])
    assert inputs.shape == (40, 1 + 2 + 2)  # size a number, colour one-hot (blue, red), flag one-hot (false, true)
    sizes = sorted(set(inputs[:, 0].tolist()))
    assert len(sizes) == 4 and {1.0, 2.0, 6.0} <= set(sizes)  # the three numbers, and the training mean elsewhere
    colours = inputs[:, 1:3]
    assert torch.equal(colours.sum(dim=1).unique(), torch.tensor([0.0, 1.0]))  # a missing colour: all zeros
    assert (colours.sum(dim=1) == 0).sum() == 15  # NA, empty and ? in every 8 rows
    assert data.spec.class_names == ["a", "b"]


def test_rows_without_a_target_are_left_out_and_counted(tmp_path, caplog):
    path = tmp_path / "gaps.csv"
    targets = ["yes", "no", "NA", "yes", "?", "no", "", "yes", "no", "nan"] * 4
    path.write_text("x,y\n" + "\n".join(f"{i},{target}" for i, target in enumerate(targets)) + "\n")
    with caplog.at_level("WARNING", logger="dlrun.data"):
        data = load(path=str(path), target="y", num_classes="auto")
    assert data.spec.class_names == ["no", "yes"]  # NA is no class
    assert sum(data.size(split) for split in ("train", "val", "test")) == 24
    assert "dataset.target = y: 16 of 40 rows have no value there (lines 4, 6, 8, 11, 14, ...): left out" in caplog.text


def test_a_one_class_csv_is_refused_naming_the_target(tmp_path):
    path = tmp_path / "one_class.csv"
    path.write_text("x,y\n" + "\n".join(f"{i},{'yes' if i % 3 else 'NA'}" for i in range(30)) + "\n")
    with pytest.raises(
        ConfigError, match="dataset.target = y: one class \\(yes\\) in every row of .* that has a value"
    ):
        build.data(compose_config("dataset=csv", f"dataset.path={path}", "dataset.target=y"))  # exit 2 in dlrun

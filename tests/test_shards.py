"""dlrun-shards packs an image folder into Arrow shards of Hugging Face datasets; dataset=shards trains from them on
the same batches as the folder streamed; bad shard folders and bad destinations are named. On images the tests write."""

import io
import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image

from dlrun import build
from dlrun.data.image_listing import list_images
from dlrun.errors import ConfigError
from dlrun.pack import main as dlrun_shards
from dlrun.run import run

from conftest import SMALL, compose_config, run_cli
from test_image_folder import CLASSES, write_images

DLRUN_SHARDS = str(Path(sys.executable).with_name("dlrun-shards"))
IN_SHAPE = "dataset.in_shape=[3,12,12]"


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    """train/ and test/ folders of class folders, PNGs and JPEGs: val is held out of train/."""
    root = tmp_path_factory.mktemp("pets")
    write_images(root / "train", 20, seed=1)
    write_images(root / "test", 5, seed=2, suffix=".jpg")
    return root


@pytest.fixture(scope="module")
def pets_files(pets) -> dict[str, bytes]:
    return files_of(pets)  # before packing


@pytest.fixture(scope="module")
def packed(pets, pets_files, tmp_path_factory) -> Path:
    shards = tmp_path_factory.mktemp("packed") / "pets-shards"
    result = subprocess.run([DLRUN_SHARDS, str(pets), str(shards)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "packed 75 images of 3 classes" in result.stdout and "train 60, test 15" in result.stdout
    return shards


def shards_config(root: Path, *overrides: str):
    return compose_config("dataset=shards", f"dataset.root={root}", IN_SHAPE, *overrides)


def test_dlrun_shards_packs_each_split_folder_with_its_labels_and_writes_nothing_into_it(pets, pets_files, packed):
    saved = datasets.load_from_disk(str(packed))
    assert sorted(saved) == ["test", "train"]
    for split, files in list_images(pets).items():
        rows = saved[split]
        assert rows.features["label"].names == CLASSES
        assert list(rows["path"]) == [path.relative_to(pets).as_posix() for path, _ in files]  # the folder's order
        assert [CLASSES[label] for label in rows["label"]] == [label for _, label in files]
        assert list(rows["image"]) == [path.read_bytes() for path, _ in files]  # the files' bytes, as they are
    assert files_of(pets) == pets_files  # the folder is byte for byte as it was
    assert [path.name for path in packed.parent.iterdir()] == [packed.name]  # the temporary folder is gone


def test_training_from_shards_gives_the_batches_and_metrics_of_the_streamed_folder(pets, packed, tmp_path):
    folder_overrides = ("dataset=image_folder", f"dataset.root={pets}", IN_SHAPE, "dataset.storage=stream")
    from_shards, from_folder = build.data(shards_config(packed)), build.data(compose_config(*folder_overrides))
    assert from_shards.spec.class_names == from_folder.spec.class_names == CLASSES
    assert torch.equal(from_shards.input_mean, from_folder.input_mean)
    assert torch.equal(from_shards.input_std, from_folder.input_std)
    for split, epoch in (("train", 0), ("train", 1), ("val", 0), ("test", 0)):
        pairs = list(zip(from_shards.batches(split, epoch), from_folder.batches(split, epoch), strict=True))
        assert len(pairs) == from_folder.num_batches(split) > 0
        assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in pairs)
    metrics = {}
    for name, cfg in (
        ("shards", shards_config(packed, "dataset.num_workers=2")),  # the memory-mapped shards in forked workers
        ("folder", compose_config(*folder_overrides)),
    ):
        cfg.trainer.max_epochs = 2
        run(cfg, tmp_path / name)
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["shards"] == metrics["folder"]


def test_max_side_reencodes_larger_images_as_jpeg_and_keeps_smaller_ones_as_they_are(tmp_path, run_dir):
    root, shards = tmp_path / "photos", tmp_path / "shards"
    write_images(root, 10, seed=3, size=(40, 30))  # 40x30 and 44x32: shorter sides 30 and 32
    Image.new("RGB", (14, 12), "red").save(root / "cat" / "small.png")
    dlrun_shards([str(root), str(shards), "--max-side", "16", "--workers", "1"])
    rows = datasets.load_from_disk(str(shards))["train"]
    for path, data in zip(rows["path"], rows["image"], strict=True):
        if path == "cat/small.png":
            assert data == (root / path).read_bytes()
            continue
        with Image.open(io.BytesIO(data)) as packed_image, Image.open(root / path) as original:
            (width, height), (original_width, original_height) = packed_image.size, original.size
            assert packed_image.format == "JPEG" and height == 16  # the shorter side
            assert abs(width / height - original_width / original_height) < 0.05  # the aspect ratio kept
    cfg = shards_config(shards, "dataset.in_shape=[3,16,16]")
    cfg.trainer.max_epochs = 1
    run(cfg, run_dir)
    assert "test/acc" in json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def shard_folders(packed, tmp_path) -> dict[str, Path]:
    """Folders that are not (complete) packed shards, by what is wrong with them."""
    folders = {name: tmp_path / name for name in ("empty", "other files", "incomplete", "truncated", "not images")}
    folders["empty"].mkdir()
    folders["other files"].mkdir()
    (folders["other files"] / "notes.txt").write_text("not shards")
    (folders["other files"] / "data.arrow").write_bytes(b"\x00" * 64)
    for name in ("incomplete", "truncated"):
        shutil.copytree(packed, folders[name])
    (folders["incomplete"] / "train" / "data-00000-of-00001.arrow").unlink()
    arrow = folders["truncated"] / "test" / "data-00000-of-00001.arrow"
    arrow.write_bytes(arrow.read_bytes()[:200])
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1.0, 2.0], "y": [0, 1]})}).save_to_disk(
        str(folders["not images"])
    )
    return folders


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("empty", "not a folder of packed shards (it has no dataset_dict.json); type the folder dlrun-shards wrote"),
        ("other files", "not a folder of packed shards"),
        ("incomplete", "incomplete, 1 file(s) missing (train/data-00000-of-00001.arrow); copy the whole folder again"),
        ("truncated", "cannot be read as Arrow shards ("),
        ("not images", "the train split's columns are x (float64), y (int64); dataset=shards reads image (bytes)"),
    ],
)
def test_a_folder_that_is_not_complete_shards_is_a_config_error_naming_it(shard_folders, folder, message):
    with pytest.raises(ConfigError, match=f"dataset.root = {re.escape(str(shard_folders[folder]))}: .*"):
        build.data(shards_config(shard_folders[folder]))
    with pytest.raises(ConfigError, match=re.escape(message)):
        build.data(shards_config(shard_folders[folder]))


def test_bad_shard_settings_are_config_errors(packed):
    with pytest.raises(ConfigError, match="dataset.root = null: type the folder dlrun-shards packed the images into"):
        build.data(compose_config("dataset=shards"))
    with pytest.raises(ConfigError, match="dataset.num_classes = 5: .* has 3 classes; type dataset.num_classes=3"):
        build.data(shards_config(packed, "dataset.num_classes=5"))


def test_the_dlrun_command_names_a_folder_that_is_not_shards_and_exits_2(tmp_path):
    empty = tmp_path / "not-shards"
    empty.mkdir()
    result = run_cli(*SMALL, "dataset=shards", f"dataset.root={empty}", "trainer.max_epochs=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert str(empty) in result.stderr and "dataset_dict.json" in result.stderr and "dlrun-shards" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("destination not empty", "not empty"),
        ("destination inside the folder", "inside SRC"),
        ("no image folder", "SRC = "),
        ("no images", "no images in class folders"),
    ],
)
def test_dlrun_shards_refuses_bad_paths_with_exit_2_and_writes_nothing(
    pets, pets_files, tmp_path, capsys, monkeypatch, case, message
):
    monkeypatch.setenv("COLUMNS", "300")
    src, dst = pets, tmp_path / "shards"
    if case == "destination not empty":
        dst.mkdir()
        (dst / "keep.txt").write_text("mine")
    elif case == "destination inside the folder":
        dst = pets / "shards"
    elif case == "no image folder":
        src = tmp_path / "missing"
    else:
        src = tmp_path / "empty"
        (src / "cat").mkdir(parents=True)
    before = files_of(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        dlrun_shards([str(src), str(dst), "--workers", "1"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert files_of(tmp_path) == before and files_of(pets) == pets_files
    assert not (pets / "shards").exists()


def test_dlrun_shards_names_every_bad_option(pets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        dlrun_shards([str(pets), str(tmp_path / "s"), "--max-side", "0", "--quality", "101", "--shard-size", "big"])
    stderr = capsys.readouterr().err
    assert "--max-side = 0: must be at least 1" in stderr and "--quality = 101: must be between 1 and 95" in stderr
    assert "--shard-size = big: type a whole number of bytes or units, e.g. 256MB" in stderr
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def with_a_broken_image(pets, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("broken")
    shutil.copytree(pets, root / "pets")
    (root / "pets" / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG not really a png")
    dlrun_shards([str(root / "pets"), str(root / "shards"), "--workers", "1"])
    return root / "shards"


def test_a_corrupt_image_packed_into_shards_is_skipped_and_named(with_a_broken_image):
    data = build.data(shards_config(with_a_broken_image, "dataset.unreadable=skip"))
    for split in ("train", "val", "test"):
        for _ in data.batches(split):
            pass
    assert len(data.unreadable) == 1
    (name,) = data.unreadable
    assert re.fullmatch(rf"{re.escape(str(with_a_broken_image))}/train row \d+ \(train/cat/broken\.png\)", name)


def test_a_corrupt_image_packed_into_shards_stops_the_run_with_unreadable_stop(with_a_broken_image):
    with pytest.raises(ConfigError, match=r"train/cat/broken\.png\) cannot be read as an image"):
        data = build.data(shards_config(with_a_broken_image, "dataset.unreadable=stop"))
        for split in ("train", "val", "test"):
            for _ in data.batches(split):
                pass


def test_a_shard_source_pickled_for_a_spawned_worker_reads_the_same_rows(packed):
    source = build.data(shards_config(packed)).train.source
    copy = pickle.loads(pickle.dumps(source))
    assert [copy.read(i) for i in range(len(copy))] == [source.read(i) for i in range(len(source))]
    assert copy.name(0) == source.name(0)


# -- a CSV file, dataset=shards_table ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory) -> Path:
    """Iris as a CSV file: four number columns (one empty cell), a text column and the species as text."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    lines = ["sepal_length,sepal_width,petal_length,petal_width,note,species"]
    for index, (row, label) in enumerate(zip(iris.data, iris.target, strict=True)):
        cells = [f"{value:g}" for value in row]
        cells[1] = "" if index == 7 else cells[1]
        lines.append(",".join([*cells, f"note {index}", iris.target_names[label]]))
    path = tmp_path_factory.mktemp("iris") / "iris.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def iris_shards(iris_csv) -> Path:
    shards = iris_csv.parent / "iris-shards"
    dlrun_shards([str(iris_csv), str(shards)])
    return shards


def test_a_packed_csv_file_gives_the_inputs_of_dataset_csv_and_trains(iris_csv, iris_shards, run_dir):
    numbers = "dataset.features=[sepal_length,sepal_width,petal_length,petal_width]"
    from_csv = build.data(compose_config("dataset=csv", f"dataset.path={iris_csv}", "dataset.target=species", numbers))
    cfg = compose_config("dataset=shards_table", f"dataset.root={iris_shards}", "dataset.target=species")
    from_shards = build.data(cfg)
    assert from_shards.spec.class_names == from_csv.spec.class_names == ["setosa", "versicolor", "virginica"]
    assert from_shards.spec.in_shape == [4]  # the text column is left out
    for split in ("train", "val", "test"):
        (x1, y1), (x2, y2) = getattr(from_shards, split), getattr(from_csv, split)
        torch.testing.assert_close(x1, x2, atol=1e-6, rtol=0)  # standardised by the training rows, the gap filled
        assert torch.equal(y1, y2)
    cfg.trainer.max_epochs = 10
    run(cfg, run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.8


def test_a_number_target_of_a_packed_csv_file_is_regressed(iris_shards):
    data = build.data(
        compose_config("dataset=shards_table", f"dataset.root={iris_shards}", "dataset.target=petal_width", "loss=mse")
    )
    assert data.spec.in_shape == [3] and data.spec.target_mean is not None and data.train[1].shape[1:] == (1,)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.target=petal_width"], "dataset.target = petal_width: holds numbers; .* type loss=mse"),
        (["dataset.target=species", "loss=mse"], "dataset.target = species: holds text, .* type loss=cross_entropy"),
        (["dataset.target=kind"], "dataset.target = kind: .* has no such column; type one of sepal_length, "),
        ([], "dataset.target = null: type the column to predict"),
    ],
)
def test_bad_table_settings_are_config_errors(iris_shards, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build.data(compose_config("dataset=shards_table", f"dataset.root={iris_shards}", *overrides))


def test_dlrun_shards_names_a_csv_file_it_cannot_parse(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    (tmp_path / "broken.csv").write_text('a,b\n1,2\n"3,4\n')
    with pytest.raises(SystemExit) as exit_info:
        dlrun_shards([str(tmp_path / "broken.csv"), str(tmp_path / "shards")])
    assert exit_info.value.code == 2 and "cannot be read as a CSV file (ParserError" in capsys.readouterr().err
    assert not (tmp_path / "shards").exists()

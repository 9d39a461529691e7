"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read by torchvision's own classes from small files in their real
on-disk formats (written by tests/vision_files.py): loading, splits, normalisation, training through the config,
and the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrun.data.vision import expected_files, load
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config, only_run_dir, run_cli
from vision_files import NUM_CLASSES, write_cifar10, write_cifar100, write_mnist

TRAIN, TEST, VAL_FRACTION = 300, 100, 0.1
VAL = int(TRAIN * VAL_FRACTION)
# config option -> (torchvision class, image shape (C, H, W), first class name)
DATASETS = {
    "mnist": ("MNIST", [1, 28, 28], "0 - zero"),
    "fashion_mnist": ("FashionMNIST", [1, 28, 28], "T-shirt/top"),
    "cifar10": ("CIFAR10", [3, 32, 32], "airplane"),
    "cifar100": ("CIFAR100", [3, 32, 32], "apple"),
}
CLASSES = {"CIFAR100": 100}  # classes in the labels' range (the files use the first NUM_CLASSES); NUM_CLASSES else
FILES = {"CIFAR10": 7, "CIFAR100": 3}  # files torchvision reads (MNIST's: 4)
FAST = ["trainer.fast_dev_run=true", "dataset.batch_size=2"]  # 2 batches of each split: seconds even for a ResNet
SMALL_CNN = ["model.channels=[8,16]", "model.fc=[32]"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, dict]:
    """One root holding all three datasets, and the (N, H, W, C) uint8 images and labels written, by dataset."""
    root = tmp_path_factory.mktemp("vision_data")
    mnist = write_mnist(root, "MNIST", train=TRAIN, test=TEST, seed=0)
    fashion = write_mnist(root, "FashionMNIST", train=TRAIN, test=TEST, seed=10)
    with_channel = {  # MNIST's images have no channel axis on disk
        name: {split: (images[..., None], labels) for split, (images, labels) in splits.items()}
        for name, splits in (("MNIST", mnist), ("FashionMNIST", fashion))
    }
    written = with_channel | {
        "CIFAR10": write_cifar10(root, train=TRAIN, test=TEST, seed=20),
        "CIFAR100": write_cifar100(root, train=TRAIN, test=TEST, seed=30),
    }
    return root, written


def load_written(root: Path, option: str, **settings):
    name, in_shape, _ = DATASETS[option]
    classes = CLASSES.get(name, NUM_CLASSES)
    arguments = dict(root=str(root), download=False, num_classes=classes, val_fraction=VAL_FRACTION)
    return load(**(arguments | {"name": name, "in_shape": in_shape} | settings))


def as_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """Images loaded with normalize=False back to the bytes on disk."""
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def rows(images: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in images)


# -- the files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", DATASETS)
def test_writer_makes_every_file_torchvision_reads(files, option):
    root, _ = files
    name = DATASETS[option][0]
    paths = expected_files(name, root)
    assert len(paths) == FILES.get(name, 4)
    assert all(path.is_file() for path in paths), [path for path in paths if not path.is_file()]


def test_torchvision_reads_the_idx_files_as_written(files):
    from torchvision.datasets import MNIST, FashionMNIST

    root, written = files
    for dataset_class in (MNIST, FashionMNIST):
        for split in ("train", "test"):
            dataset = dataset_class(str(root), train=split == "train", download=False)
            images, labels = written[dataset_class.__name__][split]
            assert np.array_equal(dataset.data.numpy(), images[..., 0])
            assert np.array_equal(dataset.targets.numpy(), labels)


# -- load() ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", DATASETS)
def test_load_splits_val_off_the_training_set_and_tests_on_the_test_set(files, option):
    root, written = files
    name, in_shape, first_class = DATASETS[option]
    data = load_written(root, option, normalize=False)

    for split, size in (("train", TRAIN - VAL), ("val", VAL), ("test", TEST)):
        images, labels = getattr(data, split)
        assert images.shape == (size, *in_shape) and images.dtype == torch.float32
        assert labels.shape == (size,) and labels.dtype == torch.long
        assert images.min() >= 0 and images.max() <= 1
    assert data.spec.class_names[0] == first_class and len(data.spec.class_names) == CLASSES.get(name, NUM_CLASSES)

    test_images, test_labels = written[name]["test"]
    assert np.array_equal(as_uint8_nhwc(data.test[0]), test_images)  # the official test set, in order
    assert np.array_equal(data.test[1].numpy(), test_labels)
    train_images, _ = written[name]["train"]
    held = torch.cat([data.train[0], data.val[0]])
    assert rows(as_uint8_nhwc(held)) == rows(train_images)  # train and val partition the official training set
    assert torch.bincount(data.val[1], minlength=NUM_CLASSES).tolist() == [VAL // NUM_CLASSES] * NUM_CLASSES


def test_load_splits_by_split_seed(files):
    root, _ = files
    first = load_written(root, "mnist", split_seed=0).val[1]
    assert torch.equal(first, load_written(root, "mnist", split_seed=0).val[1])
    assert not torch.equal(first, load_written(root, "mnist", split_seed=1).val[1])


@pytest.mark.parametrize("option", ["mnist", "cifar10"])
def test_load_normalises_each_channel_with_the_training_split_statistics(files, option):
    root, _ = files
    raw = load_written(root, option, normalize=False)
    data = load_written(root, option, normalize=True)
    channels = DATASETS[option][1][0]

    mean = raw.train[0].mean(dim=(0, 2, 3), keepdim=True)
    std = raw.train[0].std(dim=(0, 2, 3), keepdim=True)
    assert mean.numel() == channels
    torch.testing.assert_close(data.train[0].mean(dim=(0, 2, 3)), torch.zeros(channels), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.train[0].std(dim=(0, 2, 3)), torch.ones(channels), atol=1e-5, rtol=0)
    for split in ("val", "test"):  # the training split's statistics, not their own
        torch.testing.assert_close(getattr(data, split)[0], (getattr(raw, split)[0] - mean) / std)
    assert torch.equal(data.test[1], raw.test[1])


# -- bad input: a ConfigError naming the key to change ---------------------------------------------


@pytest.mark.parametrize("option", DATASETS)
def test_missing_files_name_the_root_and_dataset_download(tmp_path, option):
    with pytest.raises(ConfigError) as raised:
        load_written(tmp_path, option)
    message = str(raised.value)
    assert str(tmp_path.resolve()) in message and "dataset.download=true" in message
    assert str(expected_files(DATASETS[option][0], Path("."))[0]) in message  # the first file looked for


def test_a_partial_dataset_names_what_is_missing(tmp_path):
    write_cifar10(tmp_path, train=50, test=20)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(ConfigError, match="missing cifar-10-batches-py/test_batch"):
        load_written(tmp_path, "cifar10")


@pytest.mark.parametrize(
    ("option", "damaged", "content"),
    [
        ("mnist", "MNIST/raw/t10k-labels-idx1-ubyte", b"\x00\x00\x0d\x07 not an idx file"),
        ("cifar10", "cifar-10-batches-py/data_batch_3", b"not a pickle"),
    ],
)
def test_unreadable_files_are_a_config_error(tmp_path, option, damaged, content):
    (write_cifar10 if option == "cifar10" else write_mnist)(tmp_path, train=50, test=20)
    (tmp_path / damaged).write_bytes(content)
    with pytest.raises(ConfigError, match="files there cannot be read") as raised:
        load_written(tmp_path, option)
    assert str(tmp_path.resolve()) in str(raised.value)


def test_wrong_in_shape_and_num_classes_are_config_errors(files):
    root, _ = files
    with pytest.raises(ConfigError, match=r"type dataset.in_shape=\[3, 32, 32\]"):
        load_written(root, "cifar10", in_shape=[1, 32, 32])
    with pytest.raises(ConfigError, match="type dataset.num_classes=10"):
        load_written(root, "mnist", num_classes=5)
    with pytest.raises(ConfigError, match="dataset.val_fraction = 0.01"):  # 3 val images for 10 classes
        load_written(root, "mnist", val_fraction=0.01)
    with pytest.raises(ConfigError, match="dataset.name = SVHN: unknown"):
        load(name="SVHN", root=str(root), download=False, in_shape=[3, 32, 32], num_classes=10, val_fraction=0.1)


# -- training through the real config --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "model"), [("mnist", "mlp"), ("fashion_mnist", "cnn"), ("cifar10", "cnn"), ("cifar100", "cnn")]
)
def test_training_through_the_config_learns_the_classes(files, run_dir, option, model):
    root, _ = files
    shrink = SMALL_CNN if model == "cnn" else []
    cfg = compose_config(
        f"dataset={option}",
        f"dataset.root={root}",
        f"model={model}",
        *shrink,
        "dataset.batch_size=32",
        "trainer.max_epochs=3",
    )
    assert cfg.dataset.name == DATASETS[option][0]
    run(cfg, run_dir)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.5, metrics  # chance is 0.1
    assert (run_dir / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize("option", ["cifar10", "mnist"])
def test_resnet_takes_a_step_on_the_images(files, run_dir, option):
    root, _ = files
    run(compose_config(f"dataset={option}", f"dataset.root={root}", "model=resnet", *FAST), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["test/loss"])
    weights = torch.load(run_dir / "model.pt", weights_only=True)
    assert weights["conv1.weight"].shape[1] == DATASETS[option][1][0]  # the stem takes the dataset's channels


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_without_the_files_exits_2_naming_the_root_and_dataset_download(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("dataset=mnist", f"dataset.root={empty}", "trainer.device=cpu", cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "bad configuration" in result.stderr
    assert str(empty.resolve()) in result.stderr and "dataset.download" in result.stderr
    assert not list((tmp_path / "outputs").glob("*/*/metrics.json"))


def test_cli_trains_on_the_written_files(files, tmp_path):
    root, _ = files
    result = run_cli(
        "dataset=cifar10", f"dataset.root={root}", "model=cnn", *SMALL_CNN, "quiet=true", *FAST, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    assert {"val/acc", "test/acc", "test/loss"} <= metrics.keys()

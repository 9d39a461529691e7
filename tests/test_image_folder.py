"""dataset=image_folder on PNG (and JPEG) files the tests write: one folder per class, flat or in train/val/test."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlrun import build
from dlrun.data.folders import load
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config
from vision_files import NUM_CLASSES, patterned_images

CLASSES = ["cat", "dog", "fox"]
PER_CLASS = 20


def write_images(folder: Path, count: int, *, seed: int, size=(12, 10), suffix: str = ".png") -> None:
    """count images of each class under folder/<class>/, each class its own pattern, sizes varying around size."""
    images, labels = patterned_images(count * NUM_CLASSES, shape=(size[1], size[0], 3), seed=seed)
    mine = labels < len(CLASSES)  # the patterns of the first classes, count images each
    for index, (image, label) in enumerate(zip(images[mine], labels[mine], strict=True)):
        directory = folder / CLASSES[label]
        directory.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if index % 3 == 0:  # not every image at the same size: the loader resizes them all
            picture = picture.resize((size[0] + 4, size[1] + 2))
        picture.save(directory / f"{index}{suffix}")


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    write_images(root, PER_CLASS, seed=0)
    (root / "cat" / "notes.txt").write_text("not an image: skipped")
    return root


@pytest.fixture(scope="module")
def split_folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets_split")
    write_images(root / "train", PER_CLASS, seed=1)
    write_images(root / "test", 5, seed=2, suffix=".jpg")
    return root


def test_class_folders_are_split_by_the_fractions(flat):
    data = load(root=str(flat), in_shape=[3, 8, 8], val_fraction=0.2, test_fraction=0.2, normalize=False)
    assert data.spec.class_names == CLASSES
    sizes = {split: data.size(split) for split in ("train", "val", "test")}
    assert sizes == {"train": 36, "val": 12, "test": 12}
    for split in ("train", "val", "test"):
        images, labels = getattr(data, split)
        assert images.shape[1:] == (3, 8, 8) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
        assert torch.bincount(labels).tolist() == [sizes[split] // 3] * 3  # stratified


def test_train_val_test_folders_are_used_and_a_missing_one_held_out(split_folders):
    data = load(root=str(split_folders), in_shape=[1, 10, 12], val_fraction=0.25)
    assert data.size("test") == 15  # the test/ folder, JPEGs
    assert data.size("val") == 15 and data.size("train") == 45  # 25% of train/ held out: there is no val/
    assert data.train[0].shape[1:] == (1, 10, 12)  # grey, at in_shape's size
    torch.testing.assert_close(data.train[0].mean(dim=(0, 2, 3)), torch.zeros(1), atol=1e-5, rtol=0)


def test_the_pixels_are_the_files(tmp_path):
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    for name in CLASSES[:2]:
        for index in range(10):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(image).save(tmp_path / name / f"{index}.png")
    data = load(root=str(tmp_path), in_shape=[3, 4, 6], normalize=False, val_fraction=0.2, test_fraction=0.2)
    assert torch.equal((data.train[0][0] * 255).round().byte(), torch.from_numpy(image).permute(2, 0, 1))


def test_training_through_the_config_counts_the_classes(flat, run_dir):
    cfg = compose_config(
        "dataset=image_folder",
        f"dataset.root={flat}",
        "dataset.in_shape=[3,16,16]",
        "model=cnn",
        "model.channels=[8,16]",
        "model.fc=[32]",
        "dataset.batch_size=8",
        "trainer.max_epochs=4",
    )
    assert cfg.dataset.num_classes == "auto"
    run(cfg, run_dir)
    weights = list(torch.load(run_dir / "model.pt", weights_only=True).values())
    assert len(weights[-1]) == 3  # the head's bias: one output per class folder, counted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.5, metrics  # chance is 1/3
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["preprocessing"]["class_names"] == CLASSES


def test_a_pretrained_family_on_folders_with_a_resize(flat):
    cfg = compose_config(
        "dataset=image_folder", f"dataset.root={flat}", "model=mobilenet", "dataset.transforms.resize=32"
    )
    data = build.data(cfg)
    network = build.model(cfg, data.spec)
    inputs, _ = next(data.batches("val"))
    assert inputs.shape[-2:] == (32, 32) and network(inputs).shape == (len(inputs), 3)


@pytest.mark.parametrize(
    ("layout", "settings", "message"),
    [
        ("none", {"root": None}, "dataset.root = null: type the folder that holds one folder of images per class"),
        ("missing", {}, "no such folder"),
        ("empty", {}, "no images in class folders under"),
        ("one_class", {}, "classification needs at least 2 class folders, found 1"),
        ("flat", {"num_classes": 5}, "dataset.num_classes = 5: .* has 3 class folders; type dataset.num_classes=3"),
        ("flat", {"in_shape": [2, 8, 8]}, r"dataset.in_shape = \[2, 8, 8\]: type \[channels, height, width\]"),
        ("broken", {}, "broken.png cannot be read as an image"),
        ("stray_class", {}, r"test/ has classes with no training images \(owl\)"),
    ],
)
def test_bad_folders_are_config_errors(tmp_path, layout, settings, message):
    root = tmp_path / "root"
    if layout == "flat":
        write_images(root, 4, seed=0)
    elif layout in ("empty", "one_class", "broken", "stray_class"):
        root.mkdir()
        if layout != "empty":
            write_images(root / "train", 8 if layout == "broken" else 4, seed=0)  # broken: enough to split first
        if layout == "one_class":
            for name in CLASSES[1:]:
                for file in (root / "train" / name).iterdir():
                    file.unlink()
                (root / "train" / name).rmdir()
        if layout == "broken":
            (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
        if layout == "stray_class":
            write_images(root / "test", 2, seed=1)
            (root / "test" / "owl").mkdir()
            Image.new("RGB", (4, 4)).save(root / "test" / "owl" / "0.png")
    arguments = {"root": str(root), "in_shape": [3, 8, 8]} | settings
    with pytest.raises(ConfigError, match=message):
        load(**arguments)


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory) -> Path:
    """2 classes of 6 noise photos, 400x300: their detail survives a read at 224, not an upsampling from 64."""
    root = tmp_path_factory.mktemp("large_photos")
    generator = np.random.default_rng(0)
    for name in CLASSES[:2]:
        (root / name).mkdir()
        for index in range(6):
            pixels = generator.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


@pytest.mark.parametrize("storage", ["memory", "stream"])
def test_a_resize_reads_the_files_at_the_size_the_model_sees(large_photos, storage):
    cfg = compose_config(
        "dataset=image_folder",
        f"dataset.root={large_photos}",
        "dataset.transforms.resize=224",
        "dataset.normalize=false",
        f"dataset.storage={storage}",
        "dataset.val_fraction=0.25",
        "dataset.test_fraction=0.25",
    )
    assert list(cfg.dataset.in_shape) == [3, 64, 64]  # the default, which the resize overrides
    data = build.data(cfg)
    assert data.spec.in_shape == [3, 224, 224] and data.preprocessing()["resize"] is None  # dlrun-predict reads at 224

    def read(path: Path, size: int) -> torch.Tensor:
        picture = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255

    files = sorted(large_photos.glob("*/*.png"))
    direct = torch.stack([read(path, 224) for path in files])
    upsampled = torch.nn.functional.interpolate(
        torch.stack([read(path, 64) for path in files]), size=(224, 224), mode="bilinear", antialias=True
    )
    assert (direct - upsampled).abs().mean() > 0.05  # the blur this test tells apart
    batches = [inputs for split in ("train", "val", "test") for inputs, _ in data.batches(split, whole=True)]
    inputs = torch.cat(batches)
    assert inputs.shape == (len(files), 3, 224, 224)
    distance = (inputs[:, None] - direct[None]).abs().amax(dim=(2, 3, 4))  # every model input against every file
    assert distance.min(dim=1).values.max() < 1e-5  # each input is a file decoded at 224, nothing upsampled
    assert sorted(distance.argmin(dim=1).tolist()) == list(range(len(files)))  # each file once

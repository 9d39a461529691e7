"""Image transforms as config: each augmentation draws its own parameters for every image of a batch, the eval
transform only resizes, and without transforms a batch is plain tensor indexing."""

import json

import pytest
import torch

from dlrun import build
from dlrun.data.module import DataModule
from dlrun.data.spec import DataSpec
from dlrun.data.transforms import Augmentation, BatchTransform, _hsv_to_rgb, _rgb_to_hsv, image_transforms
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config


def same_image(count: int = 64, channels: int = 3, size: int = 8) -> torch.Tensor:
    """count copies of one random image with pixels in [0.1, 0.7] (so no augmentation here clips them at 0 or 1)."""
    image = 0.1 + 0.6 * torch.rand(channels, size, size, generator=torch.Generator().manual_seed(0))
    return image.expand(count, -1, -1, -1).clone()


def augment(images: torch.Tensor, **settings) -> torch.Tensor:
    torch.manual_seed(1)
    return BatchTransform(augmentation=Augmentation(**settings))(images)


def distinct(images: torch.Tensor) -> int:
    return len({tuple(image.flatten().tolist()) for image in images.round(decimals=5)})


def test_no_transforms_keeps_the_indexed_batches():
    data = build.data(compose_config("dataset=digits"))
    assert data.train_transform is None and data.eval_transform is None
    inputs, targets = data.train
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(data.shuffle_seed))
    first_inputs, first_targets = next(data.batches("train"))
    assert torch.equal(first_inputs, inputs[order[: data.batch_size]])
    assert torch.equal(first_targets, targets[order[: data.batch_size]])


def test_crop_padding_shifts_each_image_by_its_own_whole_pixels():
    images = same_image()
    shifted = augment(images, crop_padding=2)
    padded = torch.nn.functional.pad(images[0], (2, 2, 2, 2))
    offsets = set()
    for image in shifted:  # each one a crop of the zero-padded image at some offset, exactly
        found = [
            (dy, dx) for dy in range(5) for dx in range(5) if torch.allclose(image, padded[:, dy : dy + 8, dx : dx + 8])
        ]
        assert found, "not a padded crop"
        offsets.add(found[0])
    assert len(offsets) > 10  # 25 possible offsets, drawn per image


def test_horizontal_flip_mirrors_some_images_and_keeps_the_rest():
    images = same_image()
    flipped = augment(images, horizontal_flip=0.5)
    mirrored = [torch.equal(image, images[0].flip(-1)) for image in flipped]
    kept = [torch.equal(image, images[0]) for image in flipped]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 10 < sum(mirrored) < 54


def test_rotation_draws_an_angle_per_image_and_zero_is_no_rotation():
    images = same_image(size=16)
    rotated = augment(images, rotation=30.0)
    assert distinct(rotated) == len(images)
    assert torch.equal(augment(images, rotation=0.0), images)
    square = torch.zeros(1, 1, 16, 16)
    square[..., 4:12, 4:12] = 1.0
    quarter = BatchTransform(augmentation=Augmentation(rotation=90.0))
    torch.manual_seed(0)
    turned = quarter(square.expand(200, -1, -1, -1))
    # A centred square stays inside the image whatever the angle: rotating moves its ink, it adds or loses little.
    torch.testing.assert_close(turned.sum(dim=(1, 2, 3)), square.sum().expand(200), atol=2.0, rtol=0)
    assert (turned[:, 0, 8, 8] > 0.99).all()  # the centre stays


def test_colour_jitter_draws_factors_per_image_within_their_ranges():
    images = same_image()
    brighter = augment(images, brightness=0.4)
    factors = (brighter / images).flatten(1)
    assert torch.allclose(factors.min(dim=1).values, factors.max(dim=1).values, atol=1e-4)  # one factor per image
    assert factors.min() >= 0.6 - 1e-4 and factors.max() <= 1.4 + 1e-4
    assert distinct(brighter) == len(images)
    for setting in ("contrast", "saturation", "hue"):
        jittered = augment(images, **{setting: 0.3 if setting != "hue" else 0.1})
        assert distinct(jittered) == len(images), setting
        assert jittered.min() >= 0 and jittered.max() <= 1


def test_hsv_round_trip_and_a_full_turn_of_hue_change_nothing():
    pixels = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    hue, saturation, value = _rgb_to_hsv(pixels)
    torch.testing.assert_close(_hsv_to_rgb(hue, saturation, value), pixels)
    torch.testing.assert_close(_hsv_to_rgb((hue + 1.0) % 1.0, saturation, value), pixels, atol=1e-5, rtol=0)


def test_random_erasing_blanks_one_rectangle_per_chosen_image():
    images = same_image(size=32)
    erased = augment(images, random_erasing=1.0)
    boxes = set()
    for image in erased:
        zero = (image == 0).all(dim=0)
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert zero.sum() == height * width  # one solid rectangle
        assert 0.02 * 1024 * 0.5 <= height * width <= 0.33 * 1024 * 1.5
        boxes.add((int(rows[0]), int(cols[0]), height, width))
    assert len(boxes) > 50
    assert torch.equal(augment(images, random_erasing=0.0), images)


def test_augmentations_work_in_pixel_units_of_normalised_images():
    images = same_image()
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    normalised = (images - mean) / std
    torch.manual_seed(1)
    transform = BatchTransform(augmentation=Augmentation(brightness=0.4), mean=mean, std=std)
    brighter = transform(normalised) * std + mean
    torch.testing.assert_close(brighter, augment(images, brightness=0.4))


def test_eval_transform_resizes_and_the_train_transform_also_augments():
    config = {"resize": [16, 12], "train": {"horizontal_flip": 0.5}}
    train, evaluate = image_transforms(config, in_shape=[1, 8, 8], mean=None, std=None)
    images = torch.rand(6, 1, 8, 8)
    assert evaluate(images).shape == train(images).shape == (6, 1, 16, 12)
    assert evaluate.augmentation == Augmentation()
    split = (images, torch.zeros(6, dtype=torch.long))
    spec = DataSpec(in_shape=[1, 16, 12])
    data = DataModule(split, split, split, spec, batch_size=3, train_transform=train, eval_transform=evaluate)
    assert [batch.shape[-2:] for batch, _ in data.batches("test")] == [(16, 12)] * 2
    assert image_transforms({"resize": 8, "train": {}}, in_shape=[1, 8, 8], mean=None, std=None) == (None, None)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"train": {"rotate": 10}}, "dataset.transforms.train.rotate: unknown augmentation; the keys are crop_padding"),
        ({"resize": [0, 4]}, r"dataset.transforms.resize = \[0, 4\]: type one side or \[height, width\]"),
        ({"train": {"horizontal_flip": 2}}, "horizontal_flip = 2: a probability, between 0 and 1"),
        ({"train": {"rotation": -5}}, "rotation = -5: must be a number >= 0"),
        ({"train": {"hue": 0.7}}, "hue = 0.7: at most 0.5"),
        ({"train": {"saturation": 0.2}}, r"saturation = 0.2: needs colour images, these have 1 channel\(s\)"),
        ({"scale": 2}, "dataset.transforms.scale: unknown key"),
    ],
)
def test_bad_transforms_are_config_errors_naming_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        image_transforms(settings, in_shape=[1, 8, 8], mean=None, std=None)


def test_presets_train_through_the_config(run_dir):
    cfg = compose_config("dataset=digits", "dataset/transforms=digits", "model=cnn", "trainer.fast_dev_run=true")
    assert cfg.dataset.transforms.train.rotation == 10.0
    data = build.data(cfg)
    assert data.train_transform is not None and data.eval_transform is None
    run(cfg, run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] >= 0

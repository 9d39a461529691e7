"""Streamed image batches cross from the DataLoader workers as uint8 pixels and are normalised whole in the main
process (ImageSamples.finish): the same values as torchvision's float pipeline per image. On a JPEG folder the test
writes, streamed as files and packed into shards."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from dlrun import build
from dlrun.pack import main as dlrun_shards

from conftest import compose_config
from test_image_folder import write_images

SEED = 7


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """A JPEG folder (larger than the crop, so that the random resized crop has room) and its shards."""
    root = tmp_path_factory.mktemp("photos")
    write_images(root / "folder", 6, seed=3, size=(40, 30), suffix=".jpg")
    dlrun_shards([str(root / "folder"), str(root / "shards"), "--workers", "1"])
    return {"image_folder": root / "folder", "shards": root / "shards"}


def streamed(dataset: str, root: Path):
    overrides = [f"dataset={dataset}", f"dataset.root={root}", "dataset/transforms=imagenet"]
    overrides += ["dataset.in_shape=[3,16,16]", "dataset.num_workers=1", "dataset.batch_size=5", f"seed={SEED}"]
    return build.data(compose_config(*overrides, *(["dataset.storage=stream"] if dataset == "image_folder" else [])))


def float_batch(split, indices: list[int], epoch: int) -> torch.Tensor:
    """What torchvision's float pipeline makes of the same images: the split's per-sample transforms, then ToImage,
    ToDtype(float32, scale=True) and Normalize, image by image, each with the random draws dlrun seeds it with."""
    finish = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    finish.append(v2.Normalize(split.mean.flatten().tolist(), split.std.flatten().tolist()))
    pipeline = v2.Compose([*split.transform.transforms, *finish])
    images = []
    for index in indices:
        image = Image.open(io.BytesIO(split.source.read(index))).convert("RGB")
        torch.manual_seed(int(np.random.SeedSequence([SEED, epoch, index]).generate_state(1)[0]))
        images.append(pipeline(image))
    return torch.stack(images)


@pytest.mark.parametrize("dataset", ["image_folder", "shards"])
def test_streamed_batches_cross_as_uint8_and_equal_the_float_pipeline(photos, dataset):
    data = streamed(dataset, photos[dataset])
    loader = data._loader("train")
    loader.batch_sampler.set(epoch=0, whole=False, start=0)
    (pixels, _labels), unreadable = next(iter(loader))
    assert loader.num_workers == 1 and not unreadable
    assert pixels.dtype == torch.uint8 and pixels.is_shared()  # made in the worker, sent through shared memory
    for split, epoch in (("train", 0), ("train", 1), ("val", 0)):
        order = data._order(split, epoch).tolist()
        batches = list(data.batches(split, epoch))
        assert sum(len(targets) for _, targets in batches) == len(order)
        for number, (inputs, targets) in enumerate(batches):
            indices = order[number * data.batch_size :][: len(targets)]
            assert inputs.dtype == torch.float32 and inputs.shape[1:] == (3, 16, 16)
            assert torch.equal(targets, torch.tensor([getattr(data, split).labels[i] for i in indices]))
            torch.testing.assert_close(inputs, float_batch(getattr(data, split), indices, epoch), atol=1e-5, rtol=0)

"""Mixup and CutMix (dataset.transforms.train.mixup, .cutmix): training batches really mixed, on the indexed and the
DataLoader paths, the same for the same seed; a digits run learns on them; anything but image classification is
refused naming the key."""

import json
import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun import build
from dlrun.data.mixing import batch_mix
from dlrun.errors import ConfigError
from dlrun.run import run
from dlrun.trainer.placement import Placement

from conftest import SMALL, compose_config, run_cli
from test_image_folder import write_images

MIXUP, CUTMIX = "dataset.transforms.train.mixup", "dataset.transforms.train.cutmix"


def first_batch(data, seed: int = 0):
    torch.manual_seed(seed)  # the mixing draws from the global generator, as the run seeds it
    return next(data.batches("train"))


@pytest.fixture(scope="module")
def plain():
    return build.data(compose_config("dataset=digits"))


def test_mixup_blends_each_image_with_the_next_by_the_share_of_its_label(plain):
    mixed = build.data(compose_config("dataset=digits", f"{MIXUP}=0.4"))
    images, probabilities = first_batch(mixed)
    unmixed, labels = next(plain.batches("train"))
    assert probabilities.shape == (len(labels), 10) and probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(len(labels)))
    row = int((labels != labels.roll(1)).nonzero()[0])  # a pair of two classes: the share is that label's
    share = float(probabilities[row, labels[row]])
    assert 0 < share < 1 and probabilities[row].count_nonzero() == 2
    torch.testing.assert_close(images, share * unmixed + (1 - share) * unmixed.roll(1, 0))
    assert not torch.equal(images, unmixed)
    val_images, val_labels = next(mixed.batches("val"))  # evaluation batches stay as they are
    assert val_labels.dim() == 1 and torch.equal(val_images, next(plain.batches("val"))[0])


def test_cutmix_pastes_a_box_of_the_next_image(plain):
    mixed = build.data(compose_config("dataset=digits", f"{CUTMIX}=1.0"))
    images, probabilities = first_batch(mixed, seed=1)
    unmixed, labels = next(plain.batches("train"))
    other = unmixed.roll(1, 0)
    assert ((images == unmixed) | (images == other)).all()  # every pixel its own image's or the next one's
    pasted = (images != unmixed).any(dim=(0, 1))  # the box, where any image took the next one's pixels
    rows, cols = pasted.any(dim=1).nonzero().flatten(), pasted.any(dim=0).nonzero().flatten()
    box = torch.zeros(8, 8, dtype=torch.bool)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    torch.testing.assert_close(images, torch.where(box, other, unmixed))
    row = int((labels != labels.roll(1)).nonzero()[0])
    torch.testing.assert_close(probabilities[row, labels[row]], 1 - box.float().mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(len(labels)))


def test_both_on_mix_each_batch_one_way_or_the_other(plain):
    mixed = build.data(compose_config("dataset=digits", f"{MIXUP}=0.2", f"{CUTMIX}=1.0"))
    torch.manual_seed(0)
    kinds = set()
    for (images, _), (unmixed, _) in zip(mixed.batches("train"), plain.batches("train"), strict=True):
        pasted = ((images == unmixed) | (images == unmixed.roll(1, 0))).all()
        kinds.add("cutmix" if pasted else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_the_same_seed_mixes_the_same_on_both_data_paths():
    settings = ("dataset=digits", f"{MIXUP}=0.2", f"{CUTMIX}=1.0")
    indexed = build.data(compose_config(*settings))
    loaded = build.data(compose_config(*settings, "dataset.num_workers=1"))
    for seed in (0, 1, 2):
        first, again, loader = first_batch(indexed, seed), first_batch(indexed, seed), first_batch(loaded, seed)
        assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(first, again, loader, strict=True))
    assert not torch.equal(first_batch(indexed, 0)[0], first_batch(indexed, 1)[0])


def test_streamed_images_are_mixed_too(tmp_path):
    write_images(tmp_path, 6, seed=0)
    folder = ["dataset=image_folder", f"dataset.root={tmp_path}", "dataset.in_shape=[3,8,8]", "dataset.batch_size=8"]
    data = build.data(compose_config(*folder, "dataset.storage=stream", f"{MIXUP}=0.5"))
    assert data.streamed
    images, probabilities = first_batch(data)
    assert images.shape == (8, 3, 8, 8) and probabilities.shape == (8, len(data.spec.class_names))
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(8))
    assert (probabilities.max(dim=1).values < 1).any()


def test_mixup_and_cutmix_train_on_digits_and_the_loss_falls(run_dir):
    run(compose_config("dataset=digits", f"{MIXUP}=0.2", f"{CUTMIX}=1.0", "trainer.max_epochs=6"), run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    losses = [event.value for event in events.Scalars("train/loss_epoch")]
    accuracies = [event.value for event in events.Scalars("train/acc")]  # against the larger share of each mix
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert accuracies[-1] > accuracies[0] + 0.2
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.85


def test_a_mixed_run_ends_on_the_same_weights_with_the_same_seed(tmp_path):
    settings = ("dataset=digits", f"{MIXUP}=0.2", f"{CUTMIX}=1.0", "trainer.max_epochs=2", "seed=3")
    for again in ("first", "second"):
        (tmp_path / again).mkdir()
        run(compose_config(*settings), tmp_path / again)
    first, second = (torch.load(tmp_path / again / "model.pt") for again in ("first", "second"))
    assert all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.parametrize("experiment", ["autoencoder", "vae", "gan"])
def test_tasks_that_do_not_classify_refuse_mixed_batches(experiment):
    cfg = compose_config(f"experiment={experiment}", f"{MIXUP}=0.2")
    data = build.data(cfg)
    refusal = rf"{MIXUP} = 0.2: .*takes no mixed labels; type {MIXUP}=0, or task=supervised loss=cross_entropy"
    with pytest.raises(ConfigError, match=refusal):
        build.task(cfg, build.model(cfg, data.spec), data)


@pytest.mark.parametrize("alpha", [-1, "high", True])
def test_an_alpha_that_is_not_a_number_above_0_is_refused(alpha):
    with pytest.raises(ConfigError, match=rf"{CUTMIX} = {alpha}: the alpha of a Beta distribution"):
        batch_mix({"cutmix": alpha}, num_classes=10)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["dataset=iris", f"+{MIXUP}=0.2"], f"{MIXUP} = 0.2: .*iris holds no images"),
        (["experiment=timeseries", f"+{CUTMIX}=1.0"], f"{CUTMIX} = 1.0: .*timeseries.load reads no images"),
    ],
)
def test_data_without_images_refuse_mixing_naming_the_key(overrides, reason, tmp_path):
    result = run_cli(*SMALL, *overrides, cwd=tmp_path, env={"COLUMNS": "1000"})  # the message on one line
    assert result.returncode == 2, result.stderr
    assert re.search(rf"{reason}.*pick an image dataset \(dataset=digits", result.stdout + result.stderr)
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").glob("*/*/metrics.json"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_are_mixed_on_the_gpu_where_the_splits_live(run_dir):
    on_gpu = ("trainer.device=cuda", "trainer.precision=bf16", f"{MIXUP}=0.2", f"{CUTMIX}=1.0")
    data = build.data(compose_config(*on_gpu))
    gpu = torch.device("cuda", 0)
    Placement(gpu, precision="bf16", channels_last=False, data_on_device="auto").put_data(data)
    assert data.resident_on == gpu
    images, probabilities = first_batch(data)
    assert images.device == probabilities.device == gpu and probabilities.dim() == 2
    run(compose_config(*on_gpu, "trainer.max_epochs=6"), run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.85

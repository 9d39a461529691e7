"""Streamed image folders (dataset.storage=stream): the same results as in memory, bounded memory, exact resume,
disjoint torchrun shares, per-sample transforms and unreadable files; on real image files the tests write."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dlrun import build
from dlrun.data.storage import MEMORY_SHARE, in_memory
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import DLRUN, SMALL, compose_config, only_run_dir, run_cli, torchrun, wait_for
from test_image_folder import write_images
from test_interrupt import assert_same_weights, weights


def folder_config(root: Path, *overrides: str) -> list[str]:
    return ["dataset=image_folder", f"dataset.root={root}", "dataset.in_shape=[3,12,12]", *overrides]


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    write_images(root, 40, seed=0, size=(16, 12), suffix=".jpg")
    return root


# -- the same data, in memory or streamed -------------------------------------------------------------


def test_streamed_and_in_memory_folders_give_the_same_batches(pets):
    memory, streamed = (
        build.data(compose_config(*folder_config(pets, f"dataset.storage={storage}", "dataset.num_workers=0")))
        for storage in ("memory", "stream")
    )
    assert not memory.streamed and streamed.streamed
    assert torch.equal(memory.input_mean, streamed.input_mean) and torch.equal(memory.input_std, streamed.input_std)
    for split, epoch in (("train", 0), ("train", 3), ("val", 0), ("test", 0)):
        pairs = list(zip(memory.batches(split, epoch), streamed.batches(split, epoch), strict=True))
        assert len(pairs) == memory.num_batches(split)
        assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in pairs)


def test_streamed_and_in_memory_runs_end_on_the_same_metrics(pets, tmp_path):
    results = {}
    for storage, workers in (("memory", 0), ("stream", 2)):
        run_dir = tmp_path / storage
        run(
            compose_config(*folder_config(pets, f"dataset.storage={storage}", f"dataset.num_workers={workers}")),
            run_dir,
        )
        results[storage] = json.loads((run_dir / "metrics.json").read_text())
    assert results["memory"] == results["stream"]
    assert results["stream"]["test/acc"] > 0.8  # and it learnt: three patterns under noise


def test_auto_storage_holds_what_fits_and_streams_the_rest():
    import psutil

    available = psutil.virtual_memory().available
    assert in_memory("auto", nbytes=1_000_000)
    assert not in_memory("auto", nbytes=int(available * MEMORY_SHARE * 2))
    assert not in_memory("auto", nbytes=1_000, stream_only="per-sample transforms")
    assert in_memory("memory", nbytes=10 * available) and not in_memory("stream", nbytes=1)
    with pytest.raises(
        ConfigError, match="dataset.storage = memory: per-sample transforms; type dataset.storage=stream"
    ):
        in_memory("memory", nbytes=1, stream_only="per-sample transforms")
    with pytest.raises(ConfigError, match="dataset.storage = disk: type one of auto, memory, stream"):
        in_memory("disk", nbytes=1)


# -- bounded memory -------------------------------------------------------------------------------------

PEAK_RSS = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); " + (
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # KiB, of the largest process
)


def photos(root: Path, count: int) -> Path:
    """count JPEGs of 96x96 noise in two class folders."""
    rng = np.random.default_rng(count)
    for index in range(count):
        folder = root / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(folder / f"{index}.jpg")
    return root


def peak_rss_mib(root: Path, storage: str, cwd: Path) -> float:
    """The peak memory of a real `dlrun` run on the folder (a training step, val and test), in MiB."""
    overrides = [*SMALL, *folder_config(root, "dataset.in_shape=[3,96,96]", f"dataset.storage={storage}")]
    overrides += ["dataset.num_workers=2", "trainer.max_epochs=1", "trainer.limit_batches=2", "model.hidden=[16]"]
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, DLRUN, *overrides], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return int(result.stdout.split()[-1]) / 1024


def test_a_streamed_folder_takes_the_same_memory_at_four_times_the_images(tmp_path):
    small, large = photos(tmp_path / "small", 250), photos(tmp_path / "large", 1000)
    streamed_small, streamed_large = (peak_rss_mib(root, "stream", tmp_path) for root in (small, large))
    in_memory_large = peak_rss_mib(large, "memory", tmp_path)
    assert streamed_large <= 1.25 * streamed_small, (streamed_small, streamed_large)
    # What the test tells apart: the same images held in memory take 1000 x 110 KB (float32) more.
    assert in_memory_large >= streamed_large + 80, (streamed_large, in_memory_large)


# -- resume and torchrun --------------------------------------------------------------------------------

# 2 epochs of 42 steps, with random per-sample draws (crop, flip, TrivialAugment) decoded in 2 workers.
RESUMABLE = [
    *folder_config("{root}", "dataset/transforms=imagenet", "dataset.num_workers=2", "dataset.batch_size=2"),
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "trainer.device=cpu",
    "quiet=true",
    "print_config=false",
]


def start(root: Path, run_dir: Path, *overrides: str) -> subprocess.Popen:
    settings = [item.replace("{root}", str(root)) for item in RESUMABLE]
    return subprocess.Popen(
        [DLRUN, *settings, f"hydra.run.dir={run_dir}", *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def uninterrupted(pets, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    process = start(pets, run_dir)
    assert process.wait(timeout=300) == 0, process.communicate()
    return weights(run_dir)


def test_a_streamed_run_stopped_by_sigterm_mid_epoch_resumes_to_the_same_weights(pets, tmp_path, uninterrupted):
    """SIGTERM saves the step it stopped at; the resumed epoch skips the batches done, without reading them."""
    process = start(pets, tmp_path)
    wait_for(tmp_path / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 143
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["batch"] > 0  # mid-epoch
    resumed = start(pets, tmp_path, "resume=auto")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert_same_weights(uninterrupted, weights(tmp_path))


def saved_batch(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["batch"]
    except FileNotFoundError:
        return 0


def test_a_streamed_run_killed_mid_epoch_resumes_from_its_mid_epoch_checkpoint(pets, tmp_path, uninterrupted):
    """With callbacks.checkpoint.mid_epoch_interval_s, last.pt is written mid-epoch too: SIGKILL right after such a
    save loses nothing, and the resumed run reads the remaining batches of that epoch."""
    process = start(pets, tmp_path, "callbacks.checkpoint.mid_epoch_interval_s=0.3")
    last = tmp_path / "checkpoints" / "last.pt"
    wait_for(last, process)
    while saved_batch(last) == 0:  # a mid-epoch save (the first one comes after the first step)
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=60)
    assert saved_batch(last) > 0
    resumed = start(pets, tmp_path, "resume=auto")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert_same_weights(uninterrupted, weights(tmp_path))


def numbered_images(root: Path, count: int) -> Path:
    """Image i is one colour that spells i (red + 256 green), lossless: a batch says which samples it holds."""
    for index in range(count):
        folder = root / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([index % 256, index // 256, 0], dtype=np.uint8)
        Image.fromarray(np.tile(colour, (2, 2, 1))).save(folder / f"{index}.png")
    return root


def sample_ids(batches) -> list[int]:
    ids = []
    for inputs, _ in batches:
        pixels = (inputs[:, :, 0, 0] * 255).round().long()
        ids += (pixels[:, 0] + 256 * pixels[:, 1]).tolist()
    return ids


def test_each_rank_streams_a_disjoint_share_and_together_every_sample_once(tmp_path):
    root = numbered_images(tmp_path / "numbered", 101)
    settings = folder_config(root, "dataset.in_shape=[3,2,2]", "dataset.normalize=false", "dataset.storage=stream")
    data = build.data(compose_config(*settings, "dataset.num_workers=2"))
    for split in ("train", "test"):
        shares = []
        for rank in range(3):
            data.shard(rank, 3)
            shares.append(sample_ids(data.batches(split, epoch=1)))
        seen = [sample for share in shares for sample in share]
        assert len(seen) == len(set(seen))  # no sample twice
        size = data.size(split)
        assert len(seen) == (size - size % 3 if split == "train" else size)  # train: equal shares (drop_last)
        assert len({len(share) for share in shares}) == 1 or split == "test"


@pytest.mark.slow
def test_a_two_process_torchrun_job_trains_on_a_streamed_folder(pets, tmp_path):
    result = torchrun(
        "-m",
        "dlrun",
        *SMALL,
        *folder_config(pets, "dataset.storage=stream", "dataset.num_workers=1"),
        "trainer.max_epochs=2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.8


# -- per-sample transforms ------------------------------------------------------------------------------


def test_the_imagenet_transforms_crop_streamed_photos_to_in_shape(pets):
    data = build.data(compose_config(*folder_config(pets, "dataset/transforms=imagenet", "dataset.in_shape=[3,8,8]")))
    assert data.streamed  # per-sample transforms stream the folder whatever its size
    inputs, _ = next(data.batches("train"))
    assert inputs.shape[1:] == (3, 8, 8) and data.spec.in_shape == [3, 8, 8]
    assert torch.equal(data.input_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))  # the preset's statistics
    first, again = (next(data.batches("train", epoch=0))[0] for _ in range(2))
    assert torch.equal(first, again)  # the random draws are seeded by epoch and sample
    assert not torch.equal(first, next(data.batches("train", epoch=1))[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["dataset/transforms=imagenet", "dataset.transforms.per_sample.eval=[]"],
            r"per_sample.eval makes images of shape \[3, 12, 16\], dataset.in_shape is \[3, 12, 12\]",
        ),
        (
            ["dataset/transforms=imagenet", "dataset.storage=memory"],
            "dataset.storage = memory: dataset.transforms.per_sample works on images decoded one at a time",
        ),
        (["dataset.unreadable=maybe"], "dataset.unreadable = maybe: type one of skip, stop"),
        (["dataset.transforms.per_sample.std=[0.5]", "dataset.storage=stream"], "give both, 3 value"),
    ],
)
def test_bad_per_sample_settings_are_config_errors(pets, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build.data(compose_config(*folder_config(pets, *overrides)))


def test_per_sample_transforms_on_data_held_in_memory_are_refused():
    with pytest.raises(ConfigError, match="dataset.transforms.per_sample: these images are held in memory"):
        build.data(compose_config("dataset/transforms=imagenet", "dataset.in_shape=[1,8,8]"))


# -- unreadable files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_a_broken_file(pets, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("broken") / "pets"
    shutil.copytree(pets, root)
    for index in range(3):
        (root / "cat" / f"broken{index}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_an_unreadable_streamed_image_is_skipped_and_named(with_a_broken_file, tmp_path):
    before = sorted(path.name for path in with_a_broken_file.rglob("*"))
    result = run_cli(
        *SMALL, *folder_config(with_a_broken_file, "dataset.storage=stream"), "trainer.max_epochs=1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (only_run_dir(tmp_path / "outputs") / "dlrun.log").read_text()
    skipped = [line for line in log.splitlines() if "cannot be read as an image" in line]
    assert len(skipped) == 3 and all("broken" in line for line in skipped)  # each named once
    assert "3 skipped so far" in skipped[-1]
    assert sorted(path.name for path in with_a_broken_file.rglob("*")) == before  # nothing written into the folder


def test_an_unreadable_streamed_image_stops_the_run_with_unreadable_stop(with_a_broken_file, tmp_path):
    overrides = folder_config(with_a_broken_file, "dataset.storage=stream", "dataset.unreadable=stop")
    result = run_cli(*SMALL, *overrides, "trainer.max_epochs=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "broken" in result.stderr and "cannot be read as an image" in result.stderr
    assert "dataset.unreadable=skip" in result.stderr and "Traceback" not in result.stderr


def test_a_task_that_reads_whole_splits_refuses_a_streamed_folder(pets):
    cfg = compose_config(*folder_config(pets, "dataset.storage=stream"), "experiment=autoencoder")
    data = build.data(cfg)
    with pytest.raises(ConfigError, match="task=autoencoder reads whole splits as tensors.*dataset.storage=memory"):
        build.task(cfg, build.model(cfg, data.spec), data)

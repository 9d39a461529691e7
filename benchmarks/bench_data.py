"""dlrun's streamed image data against torchvision's ImageFolder + DataLoader, as ratios in one run (no thresholds).

1. Throughput: images/s of one whole training epoch (and of the val split's eval pipeline) over a folder of
   photo-like JPEGs, for torchvision's ImageFolder + DataLoader with the transforms of
   conf/dataset/transforms/imagenet.yaml written out by hand (the reference), dlrun streaming the files
   (dataset=image_folder dataset.storage=stream, built by build.data as a run builds it) and dlrun reading the
   same images packed by `dlrun-shards` (dataset=shards), as they are and with --max-side 256.
2. Growth: peak memory, wall time and start-up of real `dlrun` runs, each a fresh process, on N and 10N images
   (the larger folders hard-linked copies of the smallest), streamed and, for contrast, held in memory.

Run `python benchmarks/bench_data.py --help` for the options; benchmarks/README.md says what each row means.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import io
import json
import os
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import report
import torch
from PIL import Image, ImageDraw
from report import Report, load_average, markdown, print_reports, ratio
from rich.console import Console
from training import compose_config

from dlrun import build
from dlrun.config import register_schemas

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results_data.md"
DLRUN = Path(sys.executable).with_name("dlrun")
DLRUN_SHARDS = Path(sys.executable).with_name("dlrun-shards")
DEFAULT_DATA = Path(tempfile.gettempdir()) / "dlrun-bench-data"

PHOTO_SIZE = (500, 375)  # width, height: a typical small photo
QUALITY = 90
CLASSES = 10
MAX_SIDE = 256  # the second packing: `dlrun-shards --max-side 256`
MEMORY_LIMIT = 4e9  # growth: in-memory runs whose images would take more than this are skipped (besides ~0.9 GB)
GROWTH_SHAPE = (3, 64, 64)
# Bytes per pixel and channel an in-memory run took at its peak here (30,000 images of 3x64x64: 4.7 GB, 0.9 GB of
# it the process itself): uint8 while reading, float32, and standardize's float32 copy. dlrun/data/folders.py counts 5.
BYTES_PER_VALUE = 10

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# The variants of section 1.
REFERENCE, FILES, SHARDS, SHARDS_SMALL = "reference", "files", "shards", "shards_256"
LABELS = {  # as the tables name them; benchmarks/README.md says what each is
    REFERENCE: "reference (ImageFolder)",
    FILES: "dlrun files",
    SHARDS: "dlrun shards",
    SHARDS_SMALL: f"dlrun shards {MAX_SIDE}",
}


# -- the photos -------------------------------------------------------------------------------------------


def photo(index: int, width: int, height: int) -> Image.Image:
    """A photo-like RGB image, the same for the same index: smooth colour gradients and blobs, a fine woven texture,
    a few drawn outlines (edges) and sensor-like noise, so that it compresses as a photo does (~45 KB at 500x375)."""
    rng = np.random.default_rng(index)
    # The smooth part (a gradient and gaussian blobs per channel) at 1/8 of the size, enlarged (bicubic).
    small_w, small_h = max(2, width // 8), max(2, height // 8)
    x = (np.arange(small_w, dtype=np.float32) / small_w)[None, :, None]
    y = (np.arange(small_h, dtype=np.float32) / small_h)[:, None, None]
    base, slope_x, slope_y = rng.uniform(40, 200, 3), *rng.uniform(-80, 80, (2, 3))
    smooth = base + slope_x * (x - 0.5) + slope_y * (y - 0.5)
    for _ in range(4):
        centre_x, centre_y = rng.uniform(0, 1, 2)
        sigma, amplitude = rng.uniform(0.08, 0.3), rng.uniform(-90, 90, 3)
        smooth = smooth + amplitude * np.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * sigma**2))
    smooth = Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    # A woven texture at full size: plane waves sin(ax + by + phase), each an outer product of 1-D sines and cosines.
    x = (np.arange(width, dtype=np.float32) / width)[None, :]
    y = (np.arange(height, dtype=np.float32) / height)[:, None]
    texture = np.zeros((height, width), np.float32)
    for _ in range(5):
        frequency, angle, phase = rng.uniform(8, 60), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        along_x = 2 * np.pi * frequency * np.cos(angle) * width / height * x
        along_y = 2 * np.pi * frequency * np.sin(angle) * y + phase
        texture += rng.uniform(3, 10) * (np.sin(along_x) * np.cos(along_y) + np.cos(along_x) * np.sin(along_y))
    texture *= 0.6 + 0.4 * np.sin(3 * x + 2 * y)
    pixels = np.asarray(smooth, dtype=np.int16) + texture.astype(np.int16)[..., None]
    pixels += rng.integers(-8, 9, pixels.shape, dtype=np.int16)  # noise, per pixel and channel
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    scale = min(width, height) / 375
    for _ in range(3):
        left, top = rng.uniform(0, width), rng.uniform(0, height)
        box_w, box_h = rng.uniform(30, 160, 2) * scale
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        shape([left, top, left + box_w, top + box_h], outline=colour, width=max(1, int(rng.integers(2, 8) * scale)))
    return image


def _write_photo(job: tuple[int, str, int, int]) -> int:
    index, path, width, height = job
    photo(index, width, height).save(path, format="JPEG", quality=QUALITY)
    return Path(path).stat().st_size


def split_of(count: int, classes: int) -> dict[str, int]:
    """Images per class in train/, val/ and test/: a tenth each for val and test (at least one), the rest train."""
    per_class = count // classes
    held = max(1, per_class // 10)
    if per_class - 2 * held < 1:
        raise ValueError(f"{count} images in {classes} classes leave none to train on; use at least {3 * classes}")
    return {"train": per_class - 2 * held, "val": held, "test": held}


def make_photos(
    root: Path, count: int, *, size: tuple[int, int] = PHOTO_SIZE, classes: int = CLASSES, say=print
) -> Path:
    """root/{train,val,test}/class<c>/<i>.jpg: count JPEGs (quality 90) in `classes` class folders, made once.

    A stamp file (root/.made) records what was made; a folder with a matching stamp is used as it is."""
    stamp = {"count": count, "size": list(size), "classes": classes, "quality": QUALITY, "version": 2}
    if (root / ".made").is_file() and json.loads((root / ".made").read_text()) == stamp:
        return root
    if root.exists():
        shutil.rmtree(root)
    per_split = split_of(count, classes)
    jobs = []
    for label in range(classes):
        index = label
        for split, per_class in per_split.items():
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                jobs.append((index, str(folder / f"{index:06d}.jpg"), *size))
                index += classes
    began = time.perf_counter()
    if len(jobs) < 100:
        sizes = [_write_photo(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            sizes = list(pool.map(_write_photo, jobs, chunksize=16))
    (root / ".made").write_text(json.dumps(stamp))
    say(
        f"made {len(jobs)} JPEGs of {size[0]}x{size[1]} in {root} ({statistics.median(sizes) / 1e3:.0f} KB median, "
        f"{time.perf_counter() - began:.0f} s)"
    )
    return root


def grow_folder(src: Path, dst: Path, copies: int) -> Path:
    """dst: `copies` hard-linked copies of every image of src under new names (<copy>-<name>), the same layout.

    The files share their data on disk, but each name is opened, read and decoded on its own, as a new image would."""
    stamp = {"src": str(src), "copies": copies, "made": (src / ".made").read_text()}
    if (dst / ".made").is_file() and json.loads((dst / ".made").read_text()) == stamp:
        return dst
    if dst.exists():
        shutil.rmtree(dst)
    for image in sorted(src.glob("*/*/*.jpg")):
        folder = dst / image.parent.relative_to(src)
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            os.link(image, folder / f"{copy:03d}-{image.name}")
    (dst / ".made").write_text(json.dumps(stamp))
    return dst


def count_images(root: Path, split: str) -> int:
    return sum(1 for _ in (root / split).glob("*/*.jpg"))


@dataclass
class Packed:
    root: Path
    megabytes: float
    seconds: float | None  # None: found packed by an earlier run


def pack_shards(src: Path, dst: Path, max_side: int | None = None, workers: int | None = None) -> Packed:
    """The folder packed by the real `dlrun-shards SRC DST [--max-side N]`, once (kept beside the photos)."""
    stamp = {"src": (src / ".made").read_text(), "max_side": max_side}
    seconds = None
    if not ((dst / ".made").is_file() and json.loads((dst / ".made").read_text()) == stamp):
        if dst.exists():
            shutil.rmtree(dst)
        command = [str(DLRUN_SHARDS), str(src), str(dst)]
        command += [] if max_side is None else ["--max-side", str(max_side)]
        command += [] if workers is None else ["--workers", str(workers)]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
        (dst / ".made").write_text(json.dumps(stamp))
    megabytes = sum(path.stat().st_size for path in dst.rglob("*.arrow")) / 1e6
    return Packed(dst, megabytes, seconds)


# -- section 1: throughput ---------------------------------------------------------------------------------


def reference_transforms(crop: int):
    """conf/dataset/transforms/imagenet.yaml written out with torchvision, then what dlrun does after it (to a
    tensor, [0, 1] floats, ImageNet's mean and std): the textbook ImageFolder pipeline."""
    from torchvision.transforms import v2

    finish = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = [
        v2.RandomResizedCrop((crop, crop), antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        v2.TrivialAugmentWide(),
    ]
    evaluation = [v2.Resize(crop, antialias=True), v2.CenterCrop((crop, crop))]
    return v2.Compose(train + finish), v2.Compose(evaluation + finish)


def dlrun_config(dataset: str, root: Path, crop: int, workers: int, batch_size: int):
    """The config `dlrun dataset=<dataset> dataset.root=<root> dataset/transforms=imagenet ...` would run."""
    overrides = [
        f"dataset={dataset}",
        f"dataset.root={root}",
        "dataset/transforms=imagenet",
        f"dataset.in_shape=[3,{crop},{crop}]",
        f"dataset.num_workers={workers}",
        f"dataset.batch_size={batch_size}",
        "trainer.device=cpu",
        "name=bench",
    ]
    if dataset == "image_folder":
        overrides.append("dataset.storage=stream")
    return compose_config(*overrides)


def _shown(transform) -> str:
    """A torchvision transform as it prints, sizes given as lists (from YAML) or tuples alike."""
    return repr(transform).replace("[", "(").replace("]", ")")


@dataclass
class Pipeline:
    """One variant's batches: train(epoch) a training epoch, val() one pass over the val split."""

    name: str
    train: Callable[[int], Iterable]
    val: Callable[[], Iterable]
    train_size: int
    val_size: int
    per_sample: tuple[list[str], list[str]] = ([], [])  # the train and eval transforms, as torchvision prints them


def reference_pipeline(root: Path, crop: int, workers: int, batch_size: int) -> Pipeline:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    train_transform, eval_transform = reference_transforms(crop)
    train_set = ImageFolder(str(root / "train"), transform=train_transform)
    val_set = ImageFolder(str(root / "val"), transform=eval_transform)
    train = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers)
    val = DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=workers)
    shown = tuple(
        [_shown(step) for step in transform.transforms[:-3]] for transform in (train_transform, eval_transform)
    )
    return Pipeline(REFERENCE, lambda epoch: train, lambda: val, len(train_set), len(val_set), shown)


def dlrun_pipeline(name: str, dataset: str, root: Path, crop: int, workers: int, batch_size: int) -> Pipeline:
    """The DataModule a run builds (build.data); its batches("train", epoch) and batches("val")."""
    data = build.data(dlrun_config(dataset, root, crop, workers, batch_size))
    mean, std = data.train.mean.flatten().tolist(), data.train.std.flatten().tolist()
    if not (np.allclose(mean, IMAGENET_MEAN) and np.allclose(std, IMAGENET_STD)):
        raise RuntimeError(f"{name}: normalised with mean {mean} and std {std}, not ImageNet's")
    shown = tuple(
        [_shown(step) for step in split.transform.transforms] if split.transform is not None else []
        for split in (data.train, data.val)
    )
    return Pipeline(
        name,
        lambda epoch: data.batches("train", epoch),
        lambda: data.batches("val"),
        data.size("train"),
        data.size("val"),
        shown,
    )


@dataclass
class Pass:
    """One pass over a split: images, wall seconds from asking for the first batch to receiving the last, and the CPU
    seconds it took in this process and in the DataLoader workers (reaped when the pass ends)."""

    images: int
    seconds: float
    cpu_seconds: float = 0.0
    shapes: set = field(default_factory=set)
    dtypes: set = field(default_factory=set)
    first: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def per_second(self) -> float:
        return self.images / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.images / self.cpu_seconds


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended and been waited for: the
    DataLoader workers, which the loader joins at the end of each pass (not persistent_workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_pass(batches: Iterable, keep_first: bool = False) -> Pass:
    """Consume every batch (nothing else is done with them: the time is the data pipeline's)."""
    result = Pass(0, 0.0)
    began, cpu_began = time.perf_counter(), cpu_seconds()
    for inputs, targets in batches:
        result.images += len(targets)
        result.shapes.add(tuple(inputs.shape[1:]))
        result.dtypes.add(inputs.dtype)
        if keep_first and result.first is None:
            result.first = (inputs.clone(), targets.clone())
    result.seconds, result.cpu_seconds = time.perf_counter() - began, cpu_seconds() - cpu_began
    return result


def eval_passes(pipeline: Pipeline, passes: int, keep_first: bool = False) -> Pass:
    """`passes` passes over the val split, added up (one is too short to time on its own)."""
    total = Pass(0, 0.0)
    for index in range(passes):
        one = run_pass(pipeline.val(), keep_first=keep_first and index == 0)
        total.images += one.images
        total.seconds += one.seconds
        total.cpu_seconds += one.cpu_seconds
        total.shapes |= one.shapes
        total.dtypes |= one.dtypes
        total.first = total.first or one.first
    return total


def check_same_work(pipelines: dict[str, Pipeline], train: dict[str, Pass], val: dict[str, Pass], crop: int) -> None:
    """Every variant: the same transforms as the reference, the same images per epoch, batches of one shape and
    dtype; and the first val batch of the variants that decode the same bytes equal to the reference's."""
    reference = pipelines[REFERENCE]
    problems = []
    for name, pipeline in pipelines.items():
        if pipeline.per_sample != reference.per_sample:
            problems.append(f"{name}: per-sample transforms {pipeline.per_sample}, reference {reference.per_sample}")
        for split, passes, size in (("train", train, "train_size"), ("val", val, "val_size")):
            counted, expected = passes[name].images, passes[REFERENCE].images
            if getattr(pipeline, size) != getattr(reference, size) or counted != expected:
                problems.append(f"{name}: {counted} {split} images a pass, the reference {expected}")
            if passes[name].shapes != {(3, crop, crop)} or passes[name].dtypes != {torch.float32}:
                problems.append(f"{name}: {split} batches {passes[name].shapes} {passes[name].dtypes}")
        if name in (FILES, SHARDS) and val[name].first is not None:  # the same bytes, the same eval transform
            (inputs, targets), (ref_inputs, ref_targets) = val[name].first, val[REFERENCE].first
            if not torch.equal(targets, ref_targets) or not torch.allclose(inputs, ref_inputs, atol=1e-5):
                difference = (inputs - ref_inputs).abs().max().item() if inputs.shape == ref_inputs.shape else None
                problems.append(f"{name}: first val batch differs from the reference's (max |diff| {difference})")
    if problems:
        raise RuntimeError("the variants do not do the same work:\n  " + "\n  ".join(problems))


@dataclass
class ThroughputRow:
    name: str
    train: list[Pass] = field(default_factory=list)
    val: list[Pass] = field(default_factory=list)

    def median(self, split: str) -> float:
        return statistics.median(one.per_second for one in getattr(self, split))

    def cpu_median(self, split: str) -> float:
        """Images per CPU second (this process and the workers): steadier than wall time on a busy machine."""
        return statistics.median(one.per_cpu_second for one in getattr(self, split))

    def cpu_share(self, split: str) -> float:
        """CPU seconds per wall second: about workers + 1 at most; lower when other work takes the cores."""
        return statistics.median(one.cpu_seconds / one.seconds for one in getattr(self, split))

    def best(self, split: str) -> float:
        return max(one.per_second for one in getattr(self, split))


def bench_throughput(
    pipelines: dict[str, Pipeline], *, rounds: int, passes: int, crop: int, say: Callable[[str], None]
) -> dict[str, ThroughputRow]:
    """A warm-up epoch (and val passes) of every variant, checked to do the same work; then `rounds` rounds of one
    training epoch and `passes` val passes each, the order of the variants reversed every other round."""
    names = list(pipelines)
    warm_train = {name: run_pass(pipelines[name].train(0)) for name in names}
    warm_val = {name: eval_passes(pipelines[name], 1, keep_first=True) for name in names}
    check_same_work(pipelines, warm_train, warm_val, crop)
    say(
        "warm-up: "
        + "  ".join(f"{name} {warm_train[name].per_second:.0f}/{warm_val[name].per_second:.0f} img/s" for name in names)
        + f"; same work checked ({warm_train[REFERENCE].images} train, {warm_val[REFERENCE].images} val images a pass)"
    )
    rows = {name: ThroughputRow(name) for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            rows[name].train.append(run_pass(pipelines[name].train(round_ + 1)))
            if passes:
                rows[name].val.append(eval_passes(pipelines[name], passes))
            expected = warm_train[name].images
            if rows[name].train[-1].images != expected:
                raise RuntimeError(f"{name}: {rows[name].train[-1].images} images in an epoch, not {expected}")
        say(
            f"round {round_ + 1}/{rounds}: "
            + "  ".join(
                f"{name} {rows[name].train[-1].per_second:.0f}"
                + (f"/{rows[name].val[-1].per_second:.0f}" if passes else "")
                + " img/s"
                for name in names
            )
        )
    return rows


def make_pipelines(
    root: Path, shards: dict[str, Packed], *, crop: int, workers: int, batch_size: int
) -> dict[str, Pipeline]:
    pipelines = {
        REFERENCE: reference_pipeline(root, crop, workers, batch_size),
        FILES: dlrun_pipeline(FILES, "image_folder", root, crop, workers, batch_size),
    }
    for name, packed in shards.items():
        pipelines[name] = dlrun_pipeline(name, "shards", packed.root, crop, workers, batch_size)
    return pipelines


def profile(pipelines: dict[str, Pipeline], names: Iterable[str], limit: int = 14) -> dict[str, str]:
    """cProfile of one training epoch of each named variant (build them with workers=0: all in this process)."""
    shown = {}
    for name in names:
        profiler = cProfile.Profile()
        profiler.enable()
        run_pass(pipelines[name].train(0))
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(limit)
        shown[name] = text.getvalue()
    return shown


# -- section 2: memory and start-up as the data grows ------------------------------------------------------

# Runs argv and prints the largest resident set of its process tree (ru_maxrss of the waited-for children, KiB)
# and the CPU seconds (user + system) of the whole tree.
PEAK_RSS = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); " + (
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN); print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)"
)


def tree_pss(pid: int) -> int | None:
    """The proportional set size (bytes) of a process and its descendants: shared pages (the libraries, the
    memory-mapped shards, what forked workers share with their parent) are split among the processes that map
    them, so the sum is the memory the tree takes. None where /proc does not tell."""
    import psutil

    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for process in processes:
        with contextlib.suppress(OSError, psutil.Error):
            text = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
            found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
            total += int(found.group(1)) * 1024 if found else 0
    return total


@dataclass
class Run:
    seconds: float  # wall, spawn to exit
    cpu_seconds: float  # user + system, every process of the run
    peak_rss: float  # MiB, the largest process
    peak_pss: float | None  # MiB, the whole process tree, sampled


def measured_run(argv: list[str], cwd: str, interval: float = 0.05) -> Run:
    """argv in a fresh process tree: its wall time, largest peak RSS (getrusage) and peak total PSS (sampled)."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", PEAK_RSS, *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak, done = [None], threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            total = tree_pss(process.pid)
            if total is not None:
                peak[0] = max(peak[0] or 0, total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}:\n{stderr[-3000:]}")
    pss = None if peak[0] is None else peak[0] / 2**20
    max_rss, cpu = stdout.split()[-2:]
    return Run(seconds, float(cpu), int(max_rss) / 1024, pss)


def growth_args(root: Path, storage: str, limit: int, workers: int, run_dir: str, batch_size: int = 64) -> list[str]:
    channels, height, width = GROWTH_SHAPE
    overrides = [
        "dataset=image_folder",
        f"dataset.root={root}",
        f"dataset.in_shape=[{channels},{height},{width}]",
        f"dataset.storage={storage}",
        f"dataset.num_workers={workers}",
        f"dataset.batch_size={batch_size}",
        "model=mlp",
        "model.hidden=[16]",
        "trainer.max_epochs=1",
        f"trainer.limit_batches={limit}",
        "trainer.device=cpu",
        "quiet=true",
        "print_config=false",
        f"hydra.run.dir={run_dir}",
    ]
    if storage == "stream":
        overrides.insert(3, "dataset/transforms=imagenet")
    return [str(DLRUN), *overrides]


STREAM, STARTUP, MEMORY = "stream", "startup", "memory"  # the runs of section 2, per size
GROWTH_LIMIT = 5  # trainer.limit_batches of the growth runs but the start-up's
GROWTH_RUNS = {
    STREAM: ("stream", GROWTH_LIMIT),  # (dataset.storage, trainer.limit_batches)
    STARTUP: ("stream", 1),
    MEMORY: ("memory", GROWTH_LIMIT),
}


@dataclass
class GrowthRow:
    images: int
    batch_size: int = 64
    runs: dict[str, list[Run]] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)

    def median(self, kind: str, what: str) -> float | None:
        values = [getattr(run, what) for run in self.runs.get(kind, [])]
        values = [value for value in values if value is not None]
        return statistics.median(values) if values else None


def growth_batch_size(smallest: Path, workers: int) -> int:
    """The batch size of the growth runs: 64, or less where the smallest folder's val split holds fewer than
    GROWTH_LIMIT batches and the 2 a worker loads ahead of the ones taken (read, then dropped when the run stops at
    limit_batches): then every split of every folder gives its workers the same batches to read."""
    return max(1, min(64, count_images(smallest, "val") // (GROWTH_LIMIT + 2 * max(1, workers))))


def bench_growth(
    folders: dict[int, Path], *, reps: int, workers: int, say: Callable[[str], None]
) -> dict[int, GrowthRow]:
    """Real dlrun runs on each folder: streamed (5 batches of each split), streamed with 1 batch (the start-up), in
    memory (5 batches); one untimed warm-up run first, then `reps` repetitions, the order reversed every other."""
    batch = growth_batch_size(folders[min(folders)], workers)
    rows = {size: GrowthRow(size, batch) for size in folders}
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-data-") as tmp:
        counter = iter(range(10**6))

        def run_dir() -> str:
            return str(Path(tmp, f"run{next(counter)}"))

        smallest = min(folders)
        measured_run(growth_args(folders[smallest], "stream", 1, workers, run_dir(), batch), tmp)  # warm-up, untimed
        jobs = []
        for size, root in folders.items():
            for kind, (storage, limit) in GROWTH_RUNS.items():
                if storage == "memory" and size * int(np.prod(GROWTH_SHAPE)) * BYTES_PER_VALUE > MEMORY_LIMIT:
                    rows[size].skipped.add(kind)
                    continue
                jobs.append((size, kind, growth_args(root, storage, limit, workers, "{run_dir}", batch)))
        for rep in range(reps):
            for size, kind, argv in jobs if rep % 2 == 0 else jobs[::-1]:
                directory = run_dir()
                run = measured_run([arg.replace("{run_dir}", directory) for arg in argv], tmp)
                rows[size].runs.setdefault(kind, []).append(run)
            say(
                f"growth rep {rep + 1}/{reps}: "
                + "  ".join(
                    f"{size} {kind} {rows[size].runs[kind][-1].seconds:.1f}s "
                    f"{rows[size].runs[kind][-1].peak_rss:.0f}MiB"
                    for size, kind, _ in jobs
                )
            )
    return rows


# -- report ----------------------------------------------------------------------------------------------------


def machine() -> list[str]:
    """report's description of the machine, and the Pillow that decodes the photos."""
    import PIL

    return [*report.machine(), f"Pillow {PIL.__version__}"]


def throughput_reports(
    rows: dict[str, ThroughputRow], shards: dict[str, Packed], root: Path, args: argparse.Namespace
) -> list[Report]:
    reference = rows[REFERENCE]
    splits = [("train", "train")] + ([("val", "eval")] if reference.val else [])
    table = []
    for name, row in rows.items():
        for split, label in splits:
            table.append(
                [
                    LABELS[name],
                    label,
                    f"{getattr(row, split)[0].images}",
                    f"{row.median(split):.0f}",
                    ratio(row.median(split), reference.median(split)),
                    f"{row.best(split):.0f}",
                    ratio(row.best(split), reference.best(split)),
                    f"{1000 / row.cpu_median(split):.1f}",
                    ratio(row.cpu_median(split), reference.cpu_median(split)),
                    f"{row.cpu_share(split):.2f}",
                ]
            )
    photos = count_images(root, "train") + count_images(root, "val") + count_images(root, "test")
    megabytes = sum(path.stat().st_size for path in root.rglob("*.jpg")) / 1e6
    stored = [["files (JPEG, quality 90)", f"{megabytes:.1f}", f"{megabytes / photos * 1e3:.0f}", ""]]
    for name, packed in shards.items():
        took = "(packed before)" if packed.seconds is None else f"{packed.seconds:.0f}"
        stored.append([LABELS[name], f"{packed.megabytes:.1f}", f"{packed.megabytes / photos * 1e3:.0f}", took])
    setting = (
        f"{args.workers} workers, batch {args.batch_size}, {args.crop}x{args.crop} crops of "
        f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEGs; medians of {args.rounds} rounds"
    )
    return [
        Report(
            f"Throughput: images/s ({setting})",
            [
                "variant",
                "pass",
                "images",
                "img/s",
                "/ ref",
                "best img/s",
                "/ ref (best)",
                "CPU ms/img",
                "/ ref (CPU)",
                "CPU/wall",
            ],
            table,
            "reference: torchvision's ImageFolder + DataLoader, the transforms written out; dlrun files: "
            "dataset=image_folder dataset.storage=stream; dlrun shards: dataset=shards on the images packed by "
            f"dlrun-shards as they are; dlrun shards {MAX_SIDE}: packed with --max-side {MAX_SIDE}. "
            "train: RandomResizedCrop + flip + ColorJitter + TrivialAugmentWide (conf/dataset/transforms/"
            "imagenet.yaml), one whole epoch of the train split, shuffled, timed from asking for the first batch "
            f"(the workers start) to the last; eval: Resize + CenterCrop, {args.eval_passes} passes over the val split "
            "added up. img/s: medians of wall time (the headline); best: the least disturbed round; CPU: the CPU time "
            "of this process and its DataLoader workers per image, steadier than wall time when other work shares "
            f"the cores (/ ref (CPU) is the reference's CPU time per image over the variant's). CPU/wall: about "
            f"{args.workers} (the workers busy) on an idle machine, lower when the cores are shared. Every variant "
            "was checked to give the same images per pass, of one shape and dtype, through the same transforms, and "
            "(those that decode the same bytes) the same first val batch as the reference.",
        ),
        Report(
            "Stored images",
            ["variant", "MB", "KB/image", "packing s"],
            stored,
            f"{photos} images (train, val and test); shards packed by `dlrun-shards SRC DST [--max-side {MAX_SIDE}]`, "
            "kept with the photos for later runs.",
        ),
    ]


GROWTH_FIGURES = (  # Run's fields as the growth table shows them: (field, column, format)
    ("peak_rss", "peak RSS MiB", "{:.0f}"),
    ("peak_pss", "peak PSS MiB", "{:.0f}"),
    ("seconds", "wall s", "{:.1f}"),
    ("cpu_seconds", "CPU s", "{:.1f}"),
)


def growth_reports(rows: dict[int, GrowthRow], args: argparse.Namespace) -> list[Report]:
    sizes = sorted(rows)
    smallest = rows[sizes[0]]
    batch = smallest.batch_size
    table = []
    for kind, label in ((STREAM, "streamed, 5 batches"), (STARTUP, "streamed, 1 batch"), (MEMORY, "in memory, 5")):
        for size in sizes:
            row = rows[size]
            if kind in row.skipped:
                table.append([label, f"{size}", "skipped: over 4 GB in memory", *[""] * (2 * len(GROWTH_FIGURES) - 1)])
                continue
            cells = [label, f"{size}"]
            for what, _, shown in GROWTH_FIGURES:
                value, base = row.median(kind, what), smallest.median(kind, what)
                cells += (
                    ["", ""] if value is None else [shown.format(value), "" if base is None else ratio(value, base)]
                )
            table.append(cells)
    channels, height, width = GROWTH_SHAPE
    return [
        Report(
            f"Growth: memory and time of a dlrun run by images (medians of {args.growth_reps})",
            ["variant", "images", *(name for _, column, _ in GROWTH_FIGURES for name in (column, f"/ {sizes[0]}"))],
            table,
            f"Each a fresh `dlrun` process: dataset=image_folder dataset.in_shape=[{channels},{height},{width}] "
            f"model=mlp model.hidden=[16] dataset.num_workers={args.workers} dataset.batch_size={batch} "
            "trainer.max_epochs=1 "
            "trainer.limit_batches=5 (1: the start-up row) trainer.device=cpu quiet=true; streamed with "
            "dataset/transforms=imagenet dataset.storage=stream, in memory with the default transforms and "
            "dataset.storage=memory. images: all of them (train, val, test), the larger folders hard-linked copies "
            "of the smallest. peak RSS: the largest process (getrusage of the children); peak PSS: the whole "
            "process tree (the workers too, shared pages split among them), sampled every 50 ms; wall: spawn to "
            "exit; CPU: user + system time of all its processes. Batch size "
            f"{batch}: 64, or less so that the smallest folder's val and test splits (a tenth of the images each) "
            f"hold the {GROWTH_LIMIT} batches taken and the 2 per worker loaded ahead of them (read, then dropped "
            "when the run stops): then the runs read the same batches at every size.",
        )
    ]


def goal_report(throughput: dict[str, ThroughputRow] | None, growth: dict[int, GrowthRow] | None) -> list[Report]:
    rows = []
    if throughput:
        reference = throughput[REFERENCE]
        for name, goal in ((FILES, 1.0), (SHARDS, 1.5), (SHARDS_SMALL, 1.5)):
            if name in throughput:
                row = throughput[name]
                rows.append(
                    [
                        f"{LABELS[name]} / reference, training images/s",
                        ratio(row.median("train"), reference.median("train")),
                        ratio(row.cpu_median("train"), reference.cpu_median("train")),
                        f">= {goal:.1f}x",
                    ]
                )
    if growth and len(growth) > 1:
        sizes = sorted(growth)
        small, large = growth[sizes[0]], growth[sizes[-1]]
        times = f"{sizes[-1] // sizes[0]}x the images" if sizes[-1] % sizes[0] == 0 else f"{sizes[-1]} images"
        for kind, what, label, goal in (
            (STREAM, "peak_rss", "streamed: peak RSS (largest process)", "about 1.0x"),
            (STREAM, "peak_pss", "streamed: peak PSS (all processes)", "about 1.0x"),
            (STARTUP, "seconds", "streamed: 1-batch run (start-up)", "about 1.0x"),
            (MEMORY, "peak_rss", "in memory, for contrast: peak RSS", ""),
        ):
            before, after = small.median(kind, what), large.median(kind, what)
            if before is None or after is None:
                continue
            cpu = ""
            if what == "seconds":
                cpu = ratio(large.median(kind, "cpu_seconds"), small.median(kind, "cpu_seconds"))
            rows.append([f"{label} at {times}", ratio(after, before), cpu, goal])
    if not rows:
        return []
    return [
        Report(
            "Goals (data at real scale)",
            ["measure", "this run", "CPU time", "goal"],
            rows,
            "Throughput: ratios of the median images/s (wall), and of images per CPU second. Growth: the largest "
            "folder's figure over the smallest's (time ratios: CPU time too).",
        )
    ]


def write_results(reports: list[Report], args: argparse.Namespace, elapsed: float, load_before: str) -> None:
    lines = [
        "# dlrun data benchmark results",
        "",
        f"`python benchmarks/bench_data.py {' '.join(sys.argv[1:])}`, "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, took {elapsed:.0f} s "
        f"({args.images} images, {args.rounds} rounds, {args.workers} workers, growth {args.growth}).",
        "",
        *(f"- {line}" for line in machine()),
        f"- load average (1, 5, 15 min) before: {load_before}; after: {load_average()}",
        "",
        "What each figure measures: [README.md](README.md#data-bench_datapy).",
        "",
        markdown(reports),
    ]
    RESULTS.write_text("\n".join(lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="photos in the throughput folder (train/val/test)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="where the photos and shards are kept")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant; medians are reported")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of every variant")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of every variant")
    parser.add_argument("--crop", type=int, default=224, help="crop size (dataset.in_shape [3,crop,crop])")
    parser.add_argument("--eval-passes", type=int, default=2, help="val passes timed per round (0: no eval rows)")
    parser.add_argument("--growth", default="300,3000", help="image counts of the growth runs; multiples of the first")
    parser.add_argument("--growth-reps", type=int, default=2, help="repetitions of each growth run")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out: throughput,shards,growth")
    parser.add_argument("--profile", action="store_true", help="cProfile one epoch of each variant with 0 workers")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check of the script, not figures")
    parser.add_argument("--write", action="store_true", help=f"write the figures to {RESULTS.relative_to(HERE.parent)}")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.rounds, args.eval_passes, args.growth, args.growth_reps = 200, 1, 1, "40,120", 1
    return args


def growth_folders(data: Path, sizes: list[int], say) -> dict[int, Path]:
    first = sizes[0]
    if any(size % first for size in sizes):
        raise SystemExit(f"--growth {','.join(map(str, sizes))}: every count must be a multiple of the first")
    base = make_photos(data / f"photos-{first}", first, say=say)
    return {
        size: base if size == first else grow_folder(base, data / f"photos-{first}x{size // first}", size // first)
        for size in sizes
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began, load_before = time.perf_counter(), load_average()
    torch.set_num_threads(1)  # as DataLoader workers run; the main process only receives batches
    register_schemas()
    console = Console(log_path=False) if sys.stdout.isatty() else Console(log_path=False, width=120)
    skip = set(filter(None, args.skip.split(",")))
    say = console.log
    for line in [*machine(), f"load average (1, 5, 15 min): {load_before}"]:
        console.print(line, style="dim")
    reports: list[Report] = []
    throughput = growth = None
    if "throughput" not in skip:
        root = make_photos(args.data / f"photos-{args.images}", args.images, say=say)
        shards: dict[str, Packed] = {}
        if "shards" not in skip:
            for name, max_side in ((SHARDS, None), (SHARDS_SMALL, MAX_SIDE)):
                suffix = "" if max_side is None else f"-max{max_side}"
                try:
                    shards[name] = pack_shards(root, args.data / f"shards-{args.images}{suffix}", max_side)
                except (RuntimeError, OSError) as error:
                    say(f"{LABELS[name]}: skipped, packing failed: {error}")
        if args.profile:
            pipelines = make_pipelines(root, shards, crop=args.crop, workers=0, batch_size=args.batch_size)
            for name, text in profile(pipelines, pipelines).items():
                console.print(f"[bold]{LABELS[name]}[/bold], workers=0, one epoch:\n{text}")
        pipelines = make_pipelines(root, shards, crop=args.crop, workers=args.workers, batch_size=args.batch_size)
        throughput = bench_throughput(pipelines, rounds=args.rounds, passes=args.eval_passes, crop=args.crop, say=say)
        reports += throughput_reports(throughput, shards, root, args)
    if "growth" not in skip:
        sizes = sorted({int(size) for size in args.growth.split(",")})
        folders = growth_folders(args.data, sizes, say)
        folders = {
            count_images(root, "train") + count_images(root, "val") + count_images(root, "test"): root
            for root in folders.values()
        }
        growth = bench_growth(folders, reps=args.growth_reps, workers=args.workers, say=say)
        reports += growth_reports(growth, args)
    reports = goal_report(throughput, growth) + reports
    print_reports(console, reports)
    if args.write:
        write_results(reports, args, time.perf_counter() - began, load_before)
        console.print(f"wrote {RESULTS}")
    console.print(f"took {time.perf_counter() - began:.0f} s", style="dim")


if __name__ == "__main__":
    main()

"""`dlrun-shards SRC DST`: an image folder (or a CSV file) packed into Arrow shards of Hugging Face `datasets`, to
train from with dataset=shards (dataset=shards_table for a CSV file).

The format is what `datasets.DatasetDict.save_to_disk` writes: DST/dataset_dict.json names the splits (train, and
val and test where SRC has those folders), and each DST/<split>/ holds state.json (its data files),
dataset_info.json (its features) and data-NNNNN-of-NNNNN.arrow files of about --shard-size each. Each row is one
image: `image` (the file's bytes, JPEG, PNG... as they are; with --max-side, an image whose shorter side is longer
is resized to it and re-encoded as JPEG), `label` (a datasets.ClassLabel named by the class folders, sorted) and
`path` (the file relative to SRC, for messages). A few large files copy, cache and read far faster than a million
small ones; `datasets.load_from_disk` memory-maps them and any row is read in microseconds, so dataset=shards
(dlrun/data/shards.py) keeps dlrun's own samplers: exact mid-epoch resume and disjoint torchrun shares.

Rows come in the order dataset=image_folder lists the files, so that both hold out the same val and test images
and train on the same batches. Packing streams: `Dataset.from_generator` reads the images one at a time (in
--workers processes, the order kept) into a temporary folder beside DST, `save_to_disk` cuts that into DST's
shards, and the temporary folder is removed: DST's disk needs twice the packed size while packing. Nothing is
written into SRC. An image that cannot be decoded is packed as it is; training skips and names it.

A CSV file (SRC ending in .csv) becomes one train split with a column per CSV column, typed by `Dataset.from_csv`
(numbers, text; empty cells null), for dataset=shards_table.
"""

import argparse
import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets.exceptions import DatasetGenerationError
from datasets.utils.py_utils import convert_file_size_to_int
from PIL import Image

from dlrun.data.image_listing import check_classes, list_images
from dlrun.errors import ConfigError, exit_on_bad_input

DEFAULT_QUALITY = 90
DEFAULT_SHARD_SIZE = "256MB"
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="dlrun-shards",
        description=(
            "Pack an image folder (one folder of images per class, or train/ [val/] [test/] folders of them)\n"
            "into Arrow shards of Hugging Face datasets, to train from with dataset=shards dataset.root=DST;\n"
            "or a CSV file, for dataset=shards_table dataset.root=DST dataset.target=COLUMN."
        ),
        epilog=(
            "examples:\n"
            "  dlrun-shards ~/imagenet ~/imagenet-shards\n"
            "  dlrun-shards ~/imagenet ~/imagenet-shards --max-side 256   # smaller images decode faster\n"
            "  dlrun dataset=shards dataset.root=~/imagenet-shards model=resnet dataset/transforms=imagenet\n"
            "  dlrun-shards houses.csv houses-shards\n"
            "exit codes: 0 packed, 2 bad arguments or input"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument(
        "src", metavar="SRC", help="the image folder (or .csv file) to pack; nothing is written into it"
    )
    result.add_argument("dst", metavar="DST", help="the folder to write the shards to: new or empty")
    result.add_argument(
        "--max-side",
        type=int,
        metavar="N",
        help="re-encode an image whose shorter side is longer than N as JPEG, that side resized to N "
        "(default: every image's bytes as they are)",
    )
    result.add_argument(
        "--quality", type=int, default=DEFAULT_QUALITY, metavar="Q", help="JPEG quality of re-encoded images, 1-95"
    )
    result.add_argument(
        "--shard-size", default=DEFAULT_SHARD_SIZE, metavar="SIZE", help="size of each Arrow file (default: 256MB)"
    )
    result.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="W",
        help="processes reading (and re-encoding) images (default: %(default)s)",
    )
    return result


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with exit_on_bad_input():
        src, dst = Path(args.src).expanduser().resolve(), Path(args.dst).expanduser().resolve()
        check_arguments(args, src, dst)
        pack(src, dst, max_side=args.max_side, quality=args.quality, shard_size=args.shard_size, workers=args.workers)


def check_arguments(args: argparse.Namespace, src: Path, dst: Path) -> None:
    """Every mistake in the options and paths that shows before reading an image, all at once."""
    problems = []
    if args.max_side is not None and args.max_side < 1:
        problems.append(f"--max-side = {args.max_side}: must be at least 1; type --max-side 256")
    if not 1 <= args.quality <= 95:
        problems.append(f"--quality = {args.quality}: must be between 1 and 95; type --quality {DEFAULT_QUALITY}")
    if args.workers < 1:
        problems.append(f"--workers = {args.workers}: must be at least 1; type --workers {DEFAULT_WORKERS}")
    if args.max_side is not None and is_table(src):
        problems.append(f"--max-side = {args.max_side}: resizes images, and {args.src} is a CSV file; leave it out")
    if shard_bytes(args.shard_size) is None:
        problems.append(f"--shard-size = {args.shard_size}: type a whole number of bytes or units, e.g. 256MB")
    if not (src.is_file() if is_table(src) else src.is_dir()):
        problems.append(
            f"SRC = {args.src}: no such {'file' if is_table(src) else 'folder'} ({src}); type the image folder to pack "
            "(one folder of images per class, or train/ [val/] [test/] folders of them) or a .csv file"
        )
    if src.is_dir() and (dst == src or src in dst.parents):
        problems.append(
            f"DST = {args.dst}: inside SRC ({src}), and nothing is written into SRC; type a folder outside it, "
            f"e.g. {src.parent / (src.name + '-shards')}"
        )
    elif dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        problems.append(
            f"DST = {args.dst}: {'not empty' if dst.is_dir() else 'a file'} ({dst}); type a new or empty folder, "
            f"e.g. {dst.parent / (dst.name + '-2')}, or delete this one first"
        )
    if problems:
        raise ConfigError(*problems)


def is_table(src: Path) -> bool:
    return src.suffix.lower() == ".csv"


def shard_bytes(size: str) -> int | None:
    """--shard-size in bytes ('256MB', '1GiB', '1000000'), or None where it is not a size."""
    try:
        value = convert_file_size_to_int(size)
    except ValueError:
        return None
    return value if value >= 1 else None


def pack(
    src: Path,
    dst: Path,
    *,
    max_side: int | None = None,
    quality: int = DEFAULT_QUALITY,
    shard_size: str = DEFAULT_SHARD_SIZE,
    workers: int = DEFAULT_WORKERS,
) -> None:
    """Write the image folder (or CSV file) src as a DatasetDict of Arrow shards into dst (new or empty), and print
    a summary."""
    started = time.perf_counter()
    if is_table(src):
        splits = _written(dst, shard_size, lambda cache: {"train": _table(src, cache)})
        what = f"rows of {len(splits['train'].column_names)} columns"
        command = f"dlrun dataset=shards_table dataset.root={dst} dataset.target=<column>"
    else:
        listed, class_names = image_folder(src)
        options = {"max_side": max_side, "quality": quality, "workers": workers}
        splits = _written(
            dst,
            shard_size,
            lambda cache: {split: _split(src, files, class_names, cache, **options) for split, files in listed.items()},
        )
        what, command = f"images of {len(class_names)} classes", f"dlrun dataset=shards dataset.root={dst}"
    print(_summary(src, dst, {split: len(rows) for split, rows in splits.items()}, what, command, started))


def _written(dst: Path, shard_size: str, make_splits: Callable[[str], dict]) -> dict:
    """The splits make_splits(cache folder) gives, saved into dst; the cache is a temporary folder beside dst."""
    created = not dst.exists()
    dst.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{dst.name}-packing-", dir=dst.parent) as cache:
            splits = make_splits(cache)
            DatasetDict(splits).save_to_disk(str(dst), max_shard_size=shard_size)
    except BaseException:  # interrupted or failed: dst goes back to what it was (absent or empty)
        _empty(dst, remove=created)
        raise
    return splits


def image_folder(src: Path) -> tuple[dict[str, list[tuple[Path, str]]], list[str]]:
    """The images of src by split folder, as dataset=image_folder lists them, and the class names (sorted)."""
    try:
        listed = list_images(src)
        class_names = sorted({label for files in listed.values() for _, label in files})
        check_classes(src, listed, class_names, "auto")
    except ConfigError as error:  # its messages name dataset.root, which SRC is here
        raise ConfigError(*(problem.replace("dataset.root", "SRC", 1) for problem in error.problems)) from error
    empty = [split for split, files in listed.items() if not files]
    if empty:
        raise ConfigError(
            f"SRC = {src}: {empty[0]}/ holds no images in class folders; fill it, or delete it to hold its share "
            f"out of train/ when training (dataset.{empty[0]}_fraction)"
        )
    return listed, class_names


def _split(src: Path, files: list, class_names: list[str], cache: str, *, max_side, quality, workers):
    """One split folder's images as a Dataset, read by a generator into the cache folder."""
    features = Features({"image": Value("binary"), "label": ClassLabel(names=class_names), "path": Value("string")})
    index = {name: i for i, name in enumerate(class_names)}
    entries = [(path.relative_to(src).as_posix(), index[label]) for path, label in files]
    return Dataset.from_generator(
        _rows,
        features=features,
        cache_dir=cache,
        gen_kwargs={"entries": entries, "src": str(src), "max_side": max_side, "quality": quality},
        num_proc=min(workers, len(entries)) if workers > 1 else None,
        fingerprint=uuid.uuid4().hex,  # nothing to find again in a new cache; spares hashing every path
    )


def _rows(entries: list[tuple[str, int]], src: str, max_side: int | None, quality: int):
    """The rows of the images `entries` names: (path relative to src, label)."""
    for path, label in entries:
        data = (Path(src) / path).read_bytes()
        yield {"image": data if max_side is None else shrunk(data, max_side, quality), "label": label, "path": path}


def _table(src: Path, cache: str):
    try:
        return Dataset.from_csv(str(src), cache_dir=cache)
    except DatasetGenerationError as error:  # the parser's own error is its cause
        reason = error.__cause__ or error
        raise ConfigError(
            f"SRC = {src}: cannot be read as a CSV file ({type(reason).__name__}: {reason}); type a CSV file with a "
            "header row, or fix the line it names"
        ) from error


def shrunk(data: bytes, max_side: int, quality: int) -> bytes:
    """An image whose shorter side is longer than max_side resized to it (aspect ratio kept) as a JPEG; any other
    image, or one that cannot be decoded, as it is."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if min(width, height) <= max_side:
                return data
            scale = max_side / min(width, height)
            size = (max(max_side, round(width * scale)), max(max_side, round(height * scale)))
            image.draft(None, size)  # a JPEG decodes at 1/2, 1/4 or 1/8 of its size where that is still larger
            picture = image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")
            picture = picture.resize(size, Image.Resampling.LANCZOS)
    except (OSError, ValueError, Image.DecompressionBombError):  # PIL's UnidentifiedImageError is an OSError
        return data
    encoded = io.BytesIO()
    picture.save(encoded, format="JPEG", quality=quality)
    return encoded.getvalue()


def _empty(folder: Path, *, remove: bool) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if remove:
        folder.rmdir()


def _summary(src: Path, dst: Path, counts: dict[str, int], what: str, command: str, started: float) -> str:
    seconds = time.perf_counter() - started
    total = sum(counts.values())
    shards = sorted(dst.glob("*/*.arrow"))
    megabytes = sum(path.stat().st_size for path in dst.rglob("*") if path.is_file()) / 1e6
    per_split = ", ".join(f"{split} {count}" for split, count in counts.items())
    rate = f"{total / seconds:.0f} {what.split()[0]}/s"
    return (
        f"packed {total} {what} from {src} into {dst} ({per_split})\n"
        f"{megabytes:.1f} MB in {len(shards)} Arrow files, {seconds:.1f} s ({rate})\n"
        f"train from them: {command}"
    )

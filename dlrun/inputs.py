"""A trained model rebuilt from a dlrun checkpoint, and new raw inputs read the way training saw them.

Shared by `dlrun-export`, `dlrun-predict` and `dlrun-sample`. The checkpoint's own config and data spec rebuild
the model (so the command needs no overrides) and its "preprocessing" standardises new inputs with the training
statistics.

Raw inputs, one row per input, each of the dataset's in_shape:
  image files (.png, .jpg, ...) or a folder of them: converted to the dataset's channels (1: greyscale,
      3: RGB), resized to its height and width, and scaled to the training pixel range: 0..16 for
      scikit-learn's digits (its 8x8 images count ink in 4x4 blocks of a 32x32 bitmap, so they are
      shrunk by box averaging), 0..1 (pixel / 255, resized bilinearly as dlrun/data/folders.py reads
      images) for the torchvision and folder datasets. Light strokes on a dark background, as in digits
      and MNIST; `invert` flips dark-on-light scans.
  a .csv of feature rows: one input per row, prod(in_shape) numeric columns, an optional header row.
  a .npy or .pt tensor file: shape [N, *in_shape] (N inputs) or [*in_shape] (one input), in training units.
Then Trained.prepare does what training did to every batch: the stored standardisation and, where the dataset's
transforms resized images, the same resize.
"""

from __future__ import annotations

import csv
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from dlrun.data.spec import DataSpec
from dlrun.errors import ConfigError

if TYPE_CHECKING:  # torch loads only once a command gets past checking its arguments
    from torch import Tensor, nn

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TENSOR_SUFFIXES = (".npy", ".pt", ".pth")
KINDS = "a folder of images, image files (.png, .jpg, ...), a .csv of feature rows, or a .npy or .pt tensor file"
RESAMPLING = ("bilinear", "box")
# How an image file is shrunk for datasets whose images were not resized bilinearly (digits: box averaging).
IMAGE_RESAMPLING = {("dlrun.data.embedded.load", "digits"): "box"}


@dataclass
class Trained:
    """A checkpoint's model (on the CPU, in eval mode) with what it takes to feed it and read its outputs."""

    path: Path
    model: nn.Module
    config: DictConfig  # the run's resolved config, as stored in the checkpoint
    spec: DataSpec  # what the model was built for (its model_shape, classes), as stored in the checkpoint
    in_shape: tuple[int, ...]  # one raw input, without the batch dimension (before a resize transform)
    problem: str | None  # classification | binary | regression (supervised runs), else None
    preprocessing: dict  # the standardisation and resize of the training inputs
    epoch: int | None

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def pixel_max(self) -> float:
        """What a white pixel of an image file becomes in training units."""
        return self.spec.pixel_max or 1.0

    @property
    def resize(self) -> list[int] | None:
        """[height, width] the dataset's transforms resized image batches to, if they did."""
        resize = self.preprocessing.get("resize")
        return None if resize is None else [int(side) for side in resize]

    @property
    def model_shape(self) -> tuple[int, ...]:
        """One model input: in_shape, resized where the dataset's transforms resized."""
        return tuple(self.spec.in_shape)

    def read(self, paths: Sequence[str | Path], *, invert: bool = False, key: str = "INPUT") -> Inputs:
        """Raw inputs [N, *in_shape] from files, image files read the way this checkpoint's dataset read them."""
        dataset = self.config.get("dataset") or {}
        resampling = IMAGE_RESAMPLING.get((dataset.get("_target_"), dataset.get("name")), "bilinear")
        pixel_max = self.pixel_max
        return read(paths, in_shape=self.in_shape, pixel_max=pixel_max, resampling=resampling, invert=invert, key=key)

    def prepare(self, raw: Tensor) -> Tensor:
        """Raw inputs [N, *in_shape] to model inputs, as training prepared its val and test batches."""
        import torch.nn.functional as F

        mean, std = self.preprocessing.get("input_mean"), self.preprocessing.get("input_std")
        inputs = raw if mean is None or std is None else (raw - mean) / std
        if self.resize is not None and list(inputs.shape[-2:]) != self.resize:
            inputs = F.interpolate(inputs, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        return inputs

    def outputs(self, inputs: Tensor, batch_size: int = 256) -> Tensor:
        """The model's raw outputs for standardised inputs, in batches."""
        import torch

        with torch.inference_mode():
            starts = range(0, len(inputs), batch_size)
            return torch.cat([self.model(inputs[start : start + batch_size]) for start in starts])


def add_config_dir_argument(parser) -> None:
    """--config-dir for the commands that rebuild a checkpoint's model (load_trained's config_dirs)."""
    parser.add_argument(
        "--config-dir",
        dest="config_dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="a config dir of your own (as dlrun --config-dir): its model and dataset options may be rebuilt too",
    )


def load_trained(path: str | Path, *, key: str = "CKPT", config_dirs: Sequence[str | Path] = ()) -> Trained:
    """Rebuild the model of a dlrun checkpoint from the config stored in it and load its weights; only the targets
    of dlrun's own options, or of those in config_dirs, are built (dlrun/trusted_targets.py)."""
    from dlrun import build, trusted_targets
    from dlrun import checkpoint as checkpoint_file

    path = Path(path).expanduser()
    state = checkpoint_file.load(path, key=key)
    config = state.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ConfigError(
            f"{key} = {path}: holds no run config, so its model cannot be rebuilt; type the path of a "
            "checkpoints/last.pt or checkpoints/best.pt written by dlrun"
        )
    trusted_targets.check(config, key=key, path=path, config_dirs=config_dirs)
    preprocessing = state.get("preprocessing")
    if not isinstance(preprocessing, dict) or not DataSpec.stored_in(preprocessing):
        raise ConfigError(
            f"{key} = {path}: holds no data spec (written by an older dlrun), so its model cannot be rebuilt for "
            "its data; train it again with this dlrun"
        )
    cfg = OmegaConf.create(config)
    spec = DataSpec.from_dict(preprocessing)
    model = build.model(cfg, spec)
    checkpoint_file.load_weights(
        model,
        state["model"],
        problem=f"{key} = {path}: its weights do not fit the model its own config builds",
        hint="type the path of an unmodified dlrun checkpoint",
    )
    in_shape = spec.in_shape
    if preprocessing.get("resize") is not None:  # images read at the dataset's in_shape, then resized per batch
        in_shape = [in_shape[0], *OmegaConf.select(cfg, "dataset.in_shape")[1:]]
    return Trained(
        path=path,
        model=model.float().eval(),
        config=cfg,
        spec=spec,
        in_shape=tuple(int(size) for size in in_shape),
        problem=OmegaConf.select(cfg, "loss.problem", default=None),
        preprocessing=preprocessing,
        epoch=state.get("epoch"),
    )


@dataclass
class Inputs:
    names: list[str]  # one per input: the file, file:line for CSV rows, file[i] for tensor rows
    values: Tensor  # [N, *in_shape] float32, raw (before standardisation)


def check_checkpoint(path: str | Path, key: str = "CKPT") -> list[str]:
    """The problem with a checkpoint path that shows without reading it (checkpoint.load checks the rest)."""
    path = Path(path).expanduser()
    return [] if path.is_file() else [f"{key} = {path}: no such file; type the path of a last.pt or best.pt"]


def collect(paths: Sequence[str | Path], key: str = "INPUT") -> list[Path]:
    """The input files in paths, folders expanded to their images (sorted); every missing or unknown one at once."""
    files, problems = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            files.extend(found)
            if not found:
                problems.append(
                    f"{key} = {path}: a folder with no image files ({', '.join(IMAGE_SUFFIXES)}) in it; type {KINDS}"
                )
        elif not path.is_file():
            problems.append(f"{key} = {path}: no such file or folder; type {KINDS}")
        elif path.suffix.lower() not in (*IMAGE_SUFFIXES, ".csv", *TENSOR_SUFFIXES):
            problems.append(
                f"{key} = {path}: not a kind of file dlrun reads ({path.suffix or 'no suffix'}); type {KINDS}"
            )
        else:
            files.append(path)
    if problems:
        raise ConfigError(*problems)
    if not files:
        raise ConfigError(f"{key}: no inputs given; type {KINDS}")
    return files


def read(
    paths: Sequence[str | Path],
    *,
    in_shape: Sequence[int],
    pixel_max: float = 1.0,
    resampling: str = "bilinear",
    invert: bool = False,
    key: str = "INPUT",
) -> Inputs:
    """Every input in paths (folders, image files, CSV, .npy, .pt), as one batch of in_shape.

    Image files become pixel / 255 * pixel_max, shrunk with `resampling` (bilinear or box) and enlarged bilinearly.
    """
    import torch

    in_shape = tuple(in_shape)
    names: list[str] = []
    parts: list[Tensor] = []
    images: list[Path] = []  # consecutive images are stacked together

    def flush_images() -> None:
        if images:
            names.extend(str(image) for image in images)
            parts.append(
                torch.stack([_read_image(image, in_shape, pixel_max, resampling, invert, key) for image in images])
            )
            images.clear()

    for path in collect(paths, key):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            images.append(path)
            continue
        flush_images()
        if suffix == ".csv":
            row_names, values = _read_csv(path, in_shape, key)
        else:
            values = _fit_shape(_read_tensor(path, key), in_shape, path, key)
            row_names = [f"{path}[{index}]" for index in range(len(values))]
        names.extend(row_names)
        parts.append(values)
    flush_images()
    return Inputs(names=names, values=torch.cat(parts))


def describe_shape(in_shape: Sequence[int]) -> str:
    """How one input looks, for messages: '30 features' or 'images [1, 8, 8] (channels, height, width)'."""
    if len(in_shape) == 1:
        return f"{in_shape[0]} features per input"
    if len(in_shape) == 3:
        return f"images {list(in_shape)} (channels, height, width)"
    return f"inputs of shape {list(in_shape)}"


def _read_image(
    path: Path, in_shape: tuple[int, ...], pixel_max: float, resampling: str, invert: bool, key: str
) -> Tensor:
    import numpy as np
    import torch
    from PIL import Image

    if len(in_shape) != 3 or in_shape[0] not in (1, 3):
        raise ConfigError(
            f"{key} = {path}: an image file, but the model takes {describe_shape(in_shape)}; type a .csv, .npy "
            f"or .pt file of inputs of shape {list(in_shape)}"
        )
    channels, height, width = in_shape
    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise ConfigError(
            f"{key} = {path}: cannot be read as an image ({_first_line(error)}); replace it with a readable PNG "
            "or JPEG file, or remove it"
        ) from error
    if image.size != (width, height):
        shrinking = image.width >= width and image.height >= height
        box = shrinking and resampling == "box"
        image = image.resize((width, height), Image.Resampling.BOX if box else Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
    pixels = pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)
    values = pixels * (pixel_max / 255.0)
    return pixel_max - values if invert else values


def _read_csv(path: Path, in_shape: tuple[int, ...], key: str) -> tuple[list[str], Tensor]:
    import torch

    features = math.prod(in_shape)
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(
            f"{key} = {path}: cannot be read as CSV text ({_first_line(error)}); type a CSV file of numbers"
        ) from error
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]  # a header row of column names
    if not rows:
        raise ConfigError(f"{key} = {path}: no rows of numbers in it; type a CSV with one input per row")
    names, values = [], []
    for line, row in rows:
        if len(row) != features:
            raise ConfigError(
                f"{key} = {path}: line {line} has {len(row)} columns, but the model takes "
                f"{describe_shape(in_shape)}; type a CSV with {features} numeric columns per row "
                "(a header row is optional)"
            )
        bad = next((cell for cell in row if not _is_number(cell)), None)
        if bad is not None:
            raise ConfigError(
                f"{key} = {path}: line {line} holds {bad.strip()!r}, not a number; every column must be a number "
                "(only a first row of column names may hold text)"
            )
        names.append(f"{path}:{line}")
        values.append([float(cell) for cell in row])
    return names, torch.tensor(values, dtype=torch.float32).reshape(len(values), *in_shape)


def _read_tensor(path: Path, key: str) -> Tensor:
    import numpy as np
    import torch

    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            array = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, ValueError) as error:
        raise ConfigError(
            f"{key} = {path}: refused or unreadable ({_first_line(error)}); type a file holding one plain numeric "
            "tensor (np.save(path, array) or torch.save(tensor, path))"
        ) from error
    except Exception as error:  # numpy and torch fail on a damaged file with many exception types
        raise ConfigError(
            f"{key} = {path}: not a readable tensor file, truncated or corrupt ({_first_line(error)}); type a file "
            "written by np.save or torch.save"
        ) from error
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "biuf":
            raise ConfigError(f"{key} = {path}: holds {array.dtype} values; type a file of numbers")
        return torch.from_numpy(array.astype(np.float32))
    if not isinstance(array, torch.Tensor):
        raise ConfigError(
            f"{key} = {path}: holds a {type(array).__name__}, not a tensor; save the tensor itself: "
            "torch.save(inputs, path)"
        )
    if array.is_complex():
        raise ConfigError(f"{key} = {path}: holds complex values; type a file of real numbers")
    return array.float()


def _fit_shape(values: Tensor, in_shape: tuple[int, ...], path: Path, key: str) -> Tensor:
    """[N, *in_shape] as it is, [*in_shape] as one input; anything else is a mistake."""
    if tuple(values.shape) == in_shape:
        return values.unsqueeze(0)
    if values.dim() == len(in_shape) + 1 and tuple(values.shape[1:]) == in_shape:
        if len(values) == 0:
            raise ConfigError(f"{key} = {path}: holds no inputs (shape {list(values.shape)}); type a non-empty file")
        return values
    expected = ", ".join(str(size) for size in in_shape)
    raise ConfigError(
        f"{key} = {path}: shape {list(values.shape)} does not fit the model, which takes {describe_shape(in_shape)}; "
        f"type a tensor of shape [N, {expected}] (N inputs) or [{expected}] (one input)"
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

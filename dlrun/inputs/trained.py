"""A trained model rebuilt from a dlrun checkpoint, with what it takes to feed it new inputs and read its outputs.

The checkpoint's own config and data spec rebuild the model (so a command needs no overrides), and its
"preprocessing" standardises new inputs with the training statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from dlrun.data.spec import DataSpec
from dlrun.errors import ConfigError
from dlrun.inputs.files import Inputs, read
from dlrun.inputs.images import IMAGE_RESAMPLING

if TYPE_CHECKING:  # torch loads only once a command gets past checking its arguments
    from torch import Tensor, nn


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


def check_checkpoint(path: str | Path, key: str = "CKPT") -> list[str]:
    """The problem with a checkpoint path that shows without reading it (checkpoint.load checks the rest)."""
    path = Path(path).expanduser()
    return [] if path.is_file() else [f"{key} = {path}: no such file; type the path of a last.pt or best.pt"]

"""Checkpoint files: written atomically, read with weights_only=True (a loaded file never runs code)."""

import os
import pickle
from pathlib import Path

import torch

from dlrun.errors import ConfigError


def save(state: dict, path: Path) -> None:
    """Write to a temporary file beside path, flush it to disk, then rename: path is never half-written."""
    _write_atomically(path, lambda file: torch.save(state, file))


def copy(source: Path, path: Path) -> None:
    """An atomic copy of a saved checkpoint (best.pt from last.pt), without serialising the state again."""
    _write_atomically(path, lambda file: file.write(Path(source).read_bytes()))


def _write_atomically(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def load(path: str | Path, *, key: str = "ckpt_path") -> dict:
    """Read a checkpoint onto the CPU; a missing, corrupt or code-carrying file is a ConfigError naming key."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key} = {path}: no such file; type the path of a last.pt or best.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ConfigError(
            f"{key} = {path}: refused, the file holds objects beyond tensors and plain containers "
            f"({str(error).splitlines()[0]}); load only checkpoints written by dlrun"
        ) from error
    except Exception as error:  # torch.load fails on a damaged file with many exception types
        raise ConfigError(
            f"{key} = {path}: not a readable checkpoint, truncated or corrupt ({str(error).splitlines()[0]}); "
            "type the path of another checkpoint, e.g. the run's checkpoints/best.pt"
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"{key} = {path}: not a dlrun checkpoint (no model state); type the path of a last.pt")
    return state


def load_weights(model: torch.nn.Module, weights: dict, *, problem: str, hint: str) -> None:
    """model.load_state_dict(weights); a mismatch is a ConfigError "problem (the keys that differ); hint"."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        differences = "; ".join(line.strip() for line in str(error).splitlines()[1:4])
        raise ConfigError(f"{problem} ({differences}); {hint}") from error

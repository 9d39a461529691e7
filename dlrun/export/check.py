"""The check of an export: the written file, run as its users will run it, against the PyTorch model."""

from collections.abc import Callable
from pathlib import Path


class ExportMismatch(Exception):
    """The exported model computes something else than the PyTorch model: a bug of the exporter or the model."""


def compare(model, runner: tuple[str, Callable], batch, atol: float, path: Path) -> dict:
    """The export against PyTorch on the whole batch and on one input (the batch axis must be dynamic); removes the
    files and raises ExportMismatch when they disagree. runner: the runtime's name and a function inputs -> outputs."""
    name, run = runner
    sizes = [len(batch)] if len(batch) == 1 else [len(batch), 1]
    worst = 0.0
    for size in sizes:
        expected = outputs(model, batch[:size])
        got = run(batch[:size])
        for want, have in zip(expected, got, strict=True):
            if tuple(want.shape) != tuple(have.shape):
                remove(path)
                raise ExportMismatch(
                    f"{name} gives outputs of shape {list(have.shape)} for a batch of {size}, PyTorch "
                    f"{list(want.shape)}; the files were removed"
                )
            worst = max(worst, float((want.float() - have.float()).abs().max()))
    if not worst <= atol:
        remove(path)
        raise ExportMismatch(
            f"{name} vs PyTorch: max abs difference {worst:.3g} > tolerance {atol:g}; the files were removed. "
            "A larger --atol accepts it; an unsupported operation in the model is the likely cause"
        )
    return {"runtime": name, "batch_sizes": sizes, "max_abs_diff": worst, "tolerance": atol}


def outputs(model, inputs) -> list:
    """The model's outputs as a list of tensors (one for a plain model, several for a tuple)."""
    import torch

    with torch.no_grad():
        result = model(inputs)
    return list(result) if isinstance(result, tuple | list) else [result]


def remove(path: Path) -> None:
    """The export and its description."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".json").unlink(missing_ok=True)

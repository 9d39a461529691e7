"""TorchScript: the model traced on the check batch (torch.jit.trace), saved, and loaded back for the check."""

import warnings
from functools import partial
from pathlib import Path

from dlrun.export.check import outputs
from dlrun.export.description import torch_inputs, torch_outputs


def write(trained, batch, path: Path, opset: int) -> dict:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        traced = torch.jit.trace(trained.model, batch)
        traced.save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")

    return {
        "inputs": torch_inputs(trained),
        "outputs": torch_outputs(trained.model, batch),
        "load": "torch.jit.load(path)",
        "run": ("TorchScript (torch.jit.load)", partial(outputs, loaded)),
    }

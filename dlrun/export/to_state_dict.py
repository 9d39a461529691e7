"""A plain state_dict (torch.save), loaded for the check into a model built afresh from the description's config."""

from functools import partial
from pathlib import Path

from dlrun.export.check import outputs
from dlrun.export.description import model_config, torch_inputs, torch_outputs


def write(trained, batch, path: Path, opset: int) -> dict:
    import torch

    from dlrun import build

    torch.save(trained.model.state_dict(), path)
    fresh = build.instantiate(model_config(trained), "model").eval()  # as the description tells a user to
    fresh.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    return {
        "inputs": torch_inputs(trained),
        "outputs": torch_outputs(trained.model, batch),
        "load": (
            "model = hydra.utils.instantiate(description['model_config']); "
            "model.load_state_dict(torch.load(path, weights_only=True)); model.eval()"
        ),
        "run": ("a fresh model with the state_dict loaded", partial(outputs, fresh)),
    }

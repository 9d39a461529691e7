"""The weights as safetensors (safetensors.torch.save_model), loaded for the check into a model built afresh from
the description's config with safetensors.torch.load_model.

save_model/load_model rather than save_file/load_file: safetensors refuses tensors that share storage, and these
keep one of each shared group and restore the others from it. The file's metadata names the format, dlrun's version
and the input shape.
"""

from functools import partial
from pathlib import Path

from dlrun.export.check import outputs
from dlrun.export.description import model_config, torch_inputs, torch_outputs


def write(trained, batch, path: Path, opset: int) -> dict:
    import safetensors.torch

    import dlrun
    from dlrun import build

    metadata = {
        "format": "pt",  # what safetensors' own loaders expect of a torch file
        "dlrun_version": dlrun.__version__,
        "input_shape": str(["batch", *trained.model_shape]),
    }
    safetensors.torch.save_model(trained.model, str(path), metadata=metadata)
    fresh = build.instantiate(model_config(trained), "model").eval()  # as the description tells a user to
    safetensors.torch.load_model(fresh, str(path), device="cpu")

    return {
        "inputs": torch_inputs(trained),
        "outputs": torch_outputs(trained.model, batch),
        "metadata": metadata,
        "load": (
            "model = hydra.utils.instantiate(description['model_config']); "
            "safetensors.torch.load_model(model, path); model.eval()"
        ),
        "run": ("a fresh model with the safetensors weights loaded", partial(outputs, fresh)),
    }

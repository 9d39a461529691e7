"""<file>.json beside an export: where it came from, its inputs and outputs, and how a user feeds and reads it."""

from pathlib import Path

from omegaconf import OmegaConf

from dlrun.export.check import outputs

INPUT_NAME = "input"
MEANING = {
    "classification": "one logit per class; softmax gives the class probabilities (order: class_names)",
    "binary": "one logit; sigmoid gives the probability of class_names[1]",
    "regression": "standardised values; original units = output * target_std + target_mean",
}


def describe(trained, path: Path, format_name: str) -> dict:
    """What a user of the file needs besides the file: where it came from and how inputs and outputs are read."""
    preprocessing = trained.preprocessing
    return {
        "format": format_name,
        "file": path.name,
        "checkpoint": str(trained.path.resolve()),
        "epoch": trained.epoch,
        "problem": trained.problem,
        "output_meaning": MEANING.get(trained.problem, "the model's raw output"),
        "class_names": trained.class_names,
        "preprocessing": {
            "input": (
                "the model takes standardised inputs: (x - input_mean) / input_std, x in training units (null: x "
                "as it is), then images resized to resize [height, width] (bilinear, antialiased) when it is set; "
                "an image file's pixels are pixel / 255 * image_pixel_max in training units"
            ),
            "image_pixel_max": trained.pixel_max if len(trained.in_shape) == 3 else None,
            "resize": trained.resize,
            **{
                key: _as_list(preprocessing.get(key))
                for key in ("input_mean", "input_std", "target_mean", "target_std")
            },
        },
        "model_config": model_config(trained),
    }


def model_config(trained) -> dict:
    """The model's config with what dlrun supplied from the data (in_shape, num_outputs): instantiate builds it."""
    from dlrun import build

    node = OmegaConf.to_container(trained.config.model, resolve=True)
    return {**node, **build.model_arguments(trained.config, trained.spec)}


def output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{index}" for index in range(count)]


def torch_inputs(trained) -> list[dict]:
    """The model's one input, as the description of a torch file gives it: token indices or float values."""
    dtype = "int64" if trained.spec.tokens else "float32"
    return [{"name": INPUT_NAME, "shape": ["batch", *trained.model_shape], "dtype": dtype}]


def torch_outputs(model, batch) -> list[dict]:
    """The model's outputs on batch, as the description of a torch file gives them."""
    results = outputs(model, batch)
    return [
        {"name": name, "shape": ["batch", *out.shape[1:]], "dtype": str(out.dtype).removeprefix("torch.")}
        for name, out in zip(output_names(len(results)), results, strict=True)
    ]


def shape_text(shape: list) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def _as_list(value):
    return value.tolist() if hasattr(value, "tolist") else value

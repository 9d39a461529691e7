"""`dlrun-export CKPT`: a trained checkpoint as ONNX, TorchScript or a plain state_dict, checked before it is kept.

The model is rebuilt from the checkpoint's own config, loaded with its weights and put in eval mode. Each export
is run on a batch of real inputs (the test split of the run's dataset, or --inputs) and compared with the PyTorch
model; a description of the file (input and output names and shapes, opset, preprocessing, the check) is written
beside it as <file>.json.

ONNX goes through torch's TorchScript-based exporter (torch.onnx.export(dynamo=False)): it works with the installed
packages, takes a fraction of a second, and marks the batch axis dynamic through dynamic_axes. The torch.export
based exporter (dynamo=True, the default since torch 2.9) would need the onnxscript package as well.
"""

import argparse
import difflib
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dlrun import extras
from dlrun import inputs as raw_inputs
from dlrun.errors import ConfigError, exit_on_bad_input

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "state_dict": "model.state_dict.pt"}
DEFAULT_OPSET = 17
OPSETS = range(9, 21)  # what torch's TorchScript-based ONNX exporter writes (opsets 7-8 need initializers as inputs)
DEFAULT_ATOL = 1e-4  # float32 outputs of the export and of PyTorch may differ by at most this
DEFAULT_BATCH = 16
INPUT_NAME = "input"
EXIT_MISMATCH = 1


class ExportMismatch(Exception):
    """The exported model computes something else than the PyTorch model: a bug of the exporter or the model."""


def parser() -> argparse.ArgumentParser:
    formats = ", ".join(FORMATS)
    result = argparse.ArgumentParser(
        prog="dlrun-export",
        description=(
            "Export a trained dlrun checkpoint to ONNX (dynamic batch axis, checked with onnxruntime),\n"
            "TorchScript or a plain state_dict. The model is rebuilt from the config stored in the checkpoint,\n"
            "the export is compared with it on a batch of real inputs, and <file>.json beside the file\n"
            "describes it: input and output names and shapes, opset, preprocessing, class names, the check."
        ),
        epilog=(
            "examples:\n"
            "  dlrun-export outputs/mlp_digits/<run>/checkpoints/best.pt\n"
            "  dlrun-export CKPT --format torchscript --output deploy/digits.pt\n"
            "  dlrun-export CKPT --inputs samples.npy        (when the run's dataset is not on this machine)\n"
            "exit codes: 0 exported and checked, 2 bad arguments or input, 1 the export disagrees with the model"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("checkpoint", metavar="CKPT", help="a dlrun checkpoint: <run>/checkpoints/best.pt or last.pt")
    result.add_argument(
        "--format", default="onnx", metavar="FORMAT", help=f"one of {formats} (default: onnx)", dest="format_name"
    )
    result.add_argument(
        "--output",
        metavar="PATH",
        help="the file to write, or a folder for it (default: <run>/export/model.onnx, model.torchscript.pt or "
        "model.state_dict.pt); its description goes to PATH.json",
    )
    result.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        metavar="N",
        help=f"ONNX opset, {OPSETS[0]}..{OPSETS[-1]} (default: %(default)s)",
    )
    result.add_argument(
        "--inputs",
        nargs="+",
        metavar="FILE",
        help="raw inputs to check the export on, read like dlrun-predict's INPUT (images, a folder, .csv, .npy, "
        ".pt); default: the test split of the checkpoint's dataset",
    )
    result.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help="inputs in the check batch (default: %(default)s)",
    )
    result.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        metavar="X",
        help="largest absolute difference allowed between the export's and PyTorch's outputs (default: %(default)g)",
    )
    raw_inputs.add_config_dir_argument(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        with exit_on_bad_input():
            check_arguments(args)
            export(
                args.checkpoint,
                format_name=args.format_name,
                output=args.output,
                opset=args.opset,
                inputs=args.inputs,
                batch_size=args.batch_size,
                atol=args.atol,
                config_dirs=args.config_dirs,
            )
    except ExportMismatch as error:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(
            f"[bold red]dlrun-export: the export disagrees with the model[/]\n{escape(str(error))}"
        )
        sys.exit(EXIT_MISMATCH)


def check_arguments(args: argparse.Namespace) -> None:
    """Every mistake in the options and paths that shows without torch, all at once."""
    problems = []
    if args.format_name not in FORMATS:
        close = difflib.get_close_matches(args.format_name, FORMATS, n=1)
        hint = f"--format {close[0]}" if close else "--format " + " | ".join(FORMATS)
        problems.append(f"--format = {args.format_name}: unknown format; type {hint} (one of {', '.join(FORMATS)})")
    if args.format_name == "onnx" and (missing_extra := extras.missing("--format = onnx", "onnx")):
        problems.append(f"{missing_extra}, or --format torchscript")
    if args.opset not in OPSETS:
        problems.append(
            f"--opset = {args.opset}: the ONNX exporter writes opsets {OPSETS[0]} to {OPSETS[-1]}; "
            f"type --opset {DEFAULT_OPSET}"
        )
    if args.batch_size < 1:
        problems.append(f"--batch-size = {args.batch_size}: must be at least 1; type --batch-size {DEFAULT_BATCH}")
    if not args.atol > 0:
        problems.append(f"--atol = {args.atol}: must be > 0; type --atol {DEFAULT_ATOL:g}")
    problems += raw_inputs.check_checkpoint(args.checkpoint)
    if args.inputs:
        try:
            raw_inputs.collect(args.inputs, key="--inputs")
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(*problems)


def export(
    checkpoint: str | Path,
    *,
    format_name: str = "onnx",
    output: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    inputs: list[str | Path] | None = None,
    batch_size: int = DEFAULT_BATCH,
    atol: float = DEFAULT_ATOL,
    config_dirs: Sequence[str | Path] = (),
    quiet: bool = False,
) -> Path:
    """Write the export and its <file>.json; returns the file's path. Raises ExportMismatch past atol."""
    from rich.console import Console
    from rich.markup import escape

    trained = raw_inputs.load_trained(checkpoint, config_dirs=config_dirs)
    batch, source = _check_batch(trained, inputs, batch_size)
    path = _output_path(trained.path, format_name, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    writers = {"onnx": _write_onnx, "torchscript": _write_torchscript, "state_dict": _write_state_dict}
    description = writers[format_name](trained, batch, path, opset)
    check = _compare(trained, description.pop("run"), batch, atol, path)
    description["check"] = {"inputs": source} | check
    sidecar = path.with_name(path.name + ".json")
    sidecar.write_text(json.dumps(_describe(trained, path, format_name) | description, indent=2) + "\n")

    console = Console(quiet=quiet, highlight=False)
    epoch = f" (after epoch {trained.epoch})" if trained.epoch is not None else ""
    console.print(f"exported {escape(str(trained.path))}{epoch} as {format_name}: [bold]{escape(str(path))}[/]")
    console.print(
        f"{check['runtime']} vs PyTorch on {escape(source)}, batch sizes "
        f"{' and '.join(map(str, check['batch_sizes']))}: max abs difference [bold]{check['max_abs_diff']:.3g}[/] "
        f"(tolerance {atol:g})"
    )
    shapes = "; ".join(
        f'{kind[:-1]} "{io["name"]}" {_shape_text(io["shape"])}'
        for kind in ("inputs", "outputs")
        for io in description.get(kind, [])
    )
    opset_text = f"opset {description['opset']}, " if "opset" in description else ""
    console.print(escape(f"description: {sidecar} ({opset_text}{shapes})"))
    return path


# -- the check batch and where files go ------------------------------------------------------------


def _check_batch(trained, inputs: list[str | Path] | None, batch_size: int):
    """Standardised real inputs [B, *in_shape] and where they came from."""
    from dlrun import build

    if inputs:
        batch = trained.prepare(trained.read(inputs, key="--inputs").values[:batch_size])
        return batch, f"{len(batch)} inputs from {', '.join(map(str, inputs))}"
    try:
        data = build.data(trained.config)
    except ConfigError as error:
        raise ConfigError(
            *error.problems,
            "--inputs: the checkpoint's dataset cannot be loaded here to check the export; give raw inputs instead, "
            "e.g. --inputs samples.npy (a file or folder that dlrun-predict reads)",
        ) from error
    import torch

    split = "test" if data.size("test") else "val"
    taken = []  # the split's batches as evaluation sees them (after the dataset's eval transform, if any)
    for inputs_batch, _ in data.batches(split):
        taken.append(inputs_batch)
        if sum(map(len, taken)) >= batch_size:
            break
    batch = torch.cat(taken)[:batch_size].float().cpu()
    name = OmegaConf.select(trained.config, "dataset.name", default=None) or "the dataset"
    return batch, f"{len(batch)} {split} inputs of {name}"


def _output_path(checkpoint: Path, format_name: str, output: str | Path | None) -> Path:
    """--output as a file, or FORMATS' file name inside a given folder; default <run>/export/."""
    name = FORMATS[format_name]
    if output is None:
        run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        return run_dir / "export" / name
    path = Path(output).expanduser()
    if path.is_dir() or str(output).endswith(("/", "\\")):
        return path / name
    return path


# -- the writers: each returns its description and a function that runs the written file ---------------


def _write_onnx(trained, batch, path: Path, opset: int) -> dict:
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    example = _outputs(trained.model, batch)
    output_names = ["output"] if len(example) == 1 else [f"output_{index}" for index in range(len(example))]
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *output_names]}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo=True, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            trained.model,
            (batch,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs):
        return [torch.from_numpy(np.asarray(out)) for out in session.run(None, {INPUT_NAME: inputs.numpy()})]

    return {
        "opset": opset,
        "exporter": f"torch.onnx.export (TorchScript-based, torch {torch.__version__})",
        "inputs": [_onnx_io(value) for value in graph.graph.input],
        "outputs": [_onnx_io(value) for value in graph.graph.output],
        "run": (f"onnxruntime {onnxruntime.__version__}", run),
    }


def _write_torchscript(trained, batch, path: Path, opset: int) -> dict:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        traced = torch.jit.trace(trained.model, batch)
        traced.save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(inputs):
        with torch.no_grad():
            return _outputs(loaded, inputs)

    return {
        "inputs": [{"name": INPUT_NAME, "shape": ["batch", *trained.model_shape], "dtype": "float32"}],
        "outputs": _torch_outputs(trained.model, batch),
        "load": "torch.jit.load(path)",
        "run": ("TorchScript (torch.jit.load)", run),
    }


def _write_state_dict(trained, batch, path: Path, opset: int) -> dict:
    import torch

    from dlrun import build

    torch.save(trained.model.state_dict(), path)
    fresh = build.instantiate(_model_config(trained), "model").eval()  # as the description tells a user to
    fresh.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def run(inputs):
        with torch.no_grad():
            return _outputs(fresh, inputs)

    return {
        "inputs": [{"name": INPUT_NAME, "shape": ["batch", *trained.model_shape], "dtype": "float32"}],
        "outputs": _torch_outputs(trained.model, batch),
        "load": (
            "model = hydra.utils.instantiate(description['model_config']); "
            "model.load_state_dict(torch.load(path, weights_only=True)); model.eval()"
        ),
        "run": ("a fresh model with the state_dict loaded", run),
    }


# -- the check -------------------------------------------------------------------------------------------


def _compare(trained, runner, batch, atol: float, path: Path) -> dict:
    """The export against PyTorch on the whole batch and on one input (the batch axis must be dynamic)."""
    name, run = runner
    sizes = [len(batch)] if len(batch) == 1 else [len(batch), 1]
    worst = 0.0
    for size in sizes:
        expected = _outputs(trained.model, batch[:size])
        got = run(batch[:size])
        for want, have in zip(expected, got, strict=True):
            if tuple(want.shape) != tuple(have.shape):
                _remove(path)
                raise ExportMismatch(
                    f"{name} gives outputs of shape {list(have.shape)} for a batch of {size}, PyTorch "
                    f"{list(want.shape)}; the files were removed"
                )
            worst = max(worst, float((want.float() - have.float()).abs().max()))
    if not worst <= atol:
        _remove(path)
        raise ExportMismatch(
            f"{name} vs PyTorch: max abs difference {worst:.3g} > tolerance {atol:g}; the files were removed. "
            "A larger --atol accepts it; an unsupported operation in the model is the likely cause"
        )
    return {"runtime": name, "batch_sizes": sizes, "max_abs_diff": worst, "tolerance": atol}


def _outputs(model, inputs) -> list:
    """The model's outputs as a list of tensors (one for a plain model, several for a tuple)."""
    import torch

    with torch.no_grad():
        result = model(inputs)
    return list(result) if isinstance(result, tuple | list) else [result]


def _torch_outputs(model, batch) -> list[dict]:
    outputs = _outputs(model, batch)
    names = ["output"] if len(outputs) == 1 else [f"output_{index}" for index in range(len(outputs))]
    return [
        {"name": name, "shape": ["batch", *out.shape[1:]], "dtype": str(out.dtype).removeprefix("torch.")}
        for name, out in zip(names, outputs, strict=True)
    ]


def _onnx_io(value) -> dict:
    import onnx

    tensor = value.type.tensor_type
    shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name}


def _describe(trained, path: Path, format_name: str) -> dict:
    """What a user of the file needs besides the file: where it came from and how inputs and outputs are read."""
    preprocessing = trained.preprocessing
    meaning = {
        "classification": "one logit per class; softmax gives the class probabilities (order: class_names)",
        "binary": "one logit; sigmoid gives the probability of class_names[1]",
        "regression": "standardised values; original units = output * target_std + target_mean",
    }
    return {
        "format": format_name,
        "file": path.name,
        "checkpoint": str(trained.path.resolve()),
        "epoch": trained.epoch,
        "problem": trained.problem,
        "output_meaning": meaning.get(trained.problem, "the model's raw output"),
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
        "model_config": _model_config(trained),
    }


def _model_config(trained) -> dict:
    """The model's config with what dlrun supplied from the data (in_shape, num_outputs): instantiate builds it."""
    from dlrun import build

    node = OmegaConf.to_container(trained.config.model, resolve=True)
    return {**node, **build.model_arguments(trained.config, trained.spec)}


def _as_list(value):
    return value.tolist() if hasattr(value, "tolist") else value


def _shape_text(shape: list) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()

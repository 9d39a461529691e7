"""export(): rebuild a checkpoint's model, write it in a format, check the file against it, describe it."""

import json
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dlrun import inputs as raw_inputs
from dlrun.errors import ConfigError
from dlrun.export.check import compare
from dlrun.export.description import describe, shape_text
from dlrun.export.formats import FORMATS

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4  # float32 outputs of the export and of PyTorch may differ by at most this
DEFAULT_BATCH = 16


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
    batch, source = check_batch(trained, inputs, batch_size)
    path = output_path(trained.path, format_name, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    description = FORMATS[format_name].write(trained, batch, path, opset)
    check = compare(trained.model, description.pop("run"), batch, atol, path)
    description["check"] = {"inputs": source} | check
    sidecar = path.with_name(path.name + ".json")
    sidecar.write_text(json.dumps(describe(trained, path, format_name) | description, indent=2) + "\n")

    console = Console(quiet=quiet, highlight=False)
    epoch = f" (after epoch {trained.epoch})" if trained.epoch is not None else ""
    exporter = f" by {description['exporter']}" if "exporter" in description else ""
    console.print(
        f"exported {escape(str(trained.path))}{epoch} as {format_name}{escape(exporter)}: [bold]{escape(str(path))}[/]"
    )
    if "note" in description:
        console.print(f"[yellow]note:[/] {escape(description['note'])}")
    console.print(
        f"{check['runtime']} vs PyTorch on {escape(source)}, batch sizes "
        f"{' and '.join(map(str, check['batch_sizes']))}: max abs difference [bold]{check['max_abs_diff']:.3g}[/] "
        f"(tolerance {atol:g})"
    )
    shapes = "; ".join(
        f'{kind[:-1]} "{io["name"]}" {shape_text(io["shape"])}'
        for kind in ("inputs", "outputs")
        for io in description.get(kind, [])
    )
    opset_text = f"opset {description['opset']}, " if "opset" in description else ""
    console.print(escape(f"description: {sidecar} ({opset_text}{shapes})"))
    return path


def check_batch(trained, inputs: list[str | Path] | None, batch_size: int):
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


def output_path(checkpoint: Path, format_name: str, output: str | Path | None) -> Path:
    """--output as a file, or the format's file name inside a given folder; default <run>/export/."""
    name = FORMATS[format_name].file_name
    if output is None:
        run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        return run_dir / "export" / name
    path = Path(output).expanduser()
    if path.is_dir() or str(output).endswith(("/", "\\")):
        return path / name
    return path

"""The `dlrun-export` command: its arguments, every mistake in them reported at once before torch loads, and its
exit codes (0 exported and checked, 2 bad arguments or input, 1 the export disagrees with the model)."""

import argparse
import difflib
import sys

from dlrun import extras
from dlrun import inputs as raw_inputs
from dlrun.errors import ConfigError, exit_on_bad_input
from dlrun.export.check import ExportMismatch
from dlrun.export.exporter import DEFAULT_ATOL, DEFAULT_BATCH, DEFAULT_OPSET, export
from dlrun.export.formats import FORMATS

OPSETS = range(9, 21)  # what torch's TorchScript-based ONNX exporter writes; the dynamo one writes 18+ and converts
EXIT_MISMATCH = 1
INSTEAD = {"onnx": "torchscript", "safetensors": "state_dict"}  # the format to type when a format's extra is missing


def parser() -> argparse.ArgumentParser:
    formats = ", ".join(FORMATS)
    result = argparse.ArgumentParser(
        prog="dlrun-export",
        description=(
            "Export a trained dlrun checkpoint to ONNX (dynamic batch axis, checked with onnxruntime),\n"
            "TorchScript, a plain state_dict or safetensors. The model is rebuilt from the config stored in\n"
            "the checkpoint, the export is compared with it on a batch of real inputs, and <file>.json beside\n"
            "the file describes it: input and output names and shapes, opset, preprocessing, class names, the check."
        ),
        epilog=(
            "examples:\n"
            "  dlrun-export outputs/mlp_digits/<run>/checkpoints/best.pt\n"
            "  dlrun-export CKPT --format torchscript --output deploy/digits.pt\n"
            "  dlrun-export CKPT --format safetensors      (the weights; load_model into the described model)\n"
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
        help="the file to write, or a folder for it (default: <run>/export/model.onnx, model.torchscript.pt, "
        "model.state_dict.pt or model.safetensors); its description goes to PATH.json",
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
    if args.format_name in extras.EXTRAS and (
        missing_extra := extras.missing(f"--format = {args.format_name}", args.format_name)
    ):
        problems.append(f"{missing_extra}, or --format {INSTEAD[args.format_name]}")
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

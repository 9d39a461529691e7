"""`dlrun-predict CKPT INPUT...`: a trained checkpoint's predictions for new inputs, written to predictions.csv.

Inputs are read as dlrun/inputs/ describes (image files or folders, CSV feature rows, .npy/.pt tensors) and
standardised with the statistics stored in the checkpoint, exactly as in training. Each input gets one row:
classification and binary: the predicted class name and its probability (softmax; sigmoid for one binary logit);
regression: the predicted value in the target's original units.
"""

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path

from dlrun import inputs as raw_inputs
from dlrun.errors import ConfigError, exit_on_bad_input

DEFAULT_OUTPUT = "predictions.csv"
DEFAULT_SHOW = 10
DEFAULT_BATCH = 256
SUPERVISED = ("classification", "binary", "regression")


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="dlrun-predict",
        description=(
            "Predict with a trained dlrun checkpoint. INPUT is a folder of images, image files (.png, .jpg, ...),\n"
            "a CSV of feature rows (header optional) or a .npy/.pt tensor of shape [N, *in_shape] or [*in_shape].\n"
            "Inputs get the same preprocessing as in training. predictions.csv gets one row per input: the class\n"
            "and its probability (classification, binary) or the value (regression, in the target's own units)."
        ),
        epilog=(
            "image files: converted to the model's channels and size; pixels scaled like the training data\n"
            "  (digits: 0..16, torchvision and folder datasets: 0..1); light strokes on dark, as in digits and MNIST\n"
            "examples:\n"
            "  dlrun-predict outputs/mlp_digits/<run>/checkpoints/best.pt my_digits/\n"
            "  dlrun-predict CKPT rows.csv --output rows_predicted.csv\n"
            "exit codes: 0 done, 2 bad arguments or input"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("checkpoint", metavar="CKPT", help="a dlrun checkpoint: <run>/checkpoints/best.pt or last.pt")
    result.add_argument("inputs", metavar="INPUT", nargs="+", help="image folder, image files, .csv, .npy or .pt")
    result.add_argument(
        "--output", default=DEFAULT_OUTPUT, metavar="PATH", help="the CSV to write (default: %(default)s)"
    )
    result.add_argument(
        "--invert", action="store_true", help="invert image files first (dark strokes on a light background)"
    )
    result.add_argument(
        "--show", type=int, default=DEFAULT_SHOW, metavar="N", help="rows printed in the table (default: %(default)s)"
    )
    result.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help="inputs per forward pass (default: %(default)s)",
    )
    raw_inputs.add_config_dir_argument(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with exit_on_bad_input():
        check_arguments(args)
        predict(
            args.checkpoint,
            args.inputs,
            output=args.output,
            invert=args.invert,
            show=args.show,
            batch_size=args.batch_size,
            config_dirs=args.config_dirs,
        )


def check_arguments(args: argparse.Namespace) -> None:
    """Every mistake in the options and paths that shows without torch, all at once."""
    problems = []
    if args.show < 0:
        problems.append(f"--show = {args.show}: must be 0 or more; type --show {DEFAULT_SHOW}, or 0 for no table")
    if args.batch_size < 1:
        problems.append(f"--batch-size = {args.batch_size}: must be at least 1; type --batch-size {DEFAULT_BATCH}")
    problems += raw_inputs.check_checkpoint(args.checkpoint)
    try:
        raw_inputs.collect(args.inputs)
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(*problems)


def predict(
    checkpoint: str | Path,
    inputs: list[str | Path],
    *,
    output: str | Path = DEFAULT_OUTPUT,
    invert: bool = False,
    show: int = DEFAULT_SHOW,
    batch_size: int = DEFAULT_BATCH,
    config_dirs: Sequence[str | Path] = (),
    quiet: bool = False,
) -> list[dict[str, str]]:
    """Write predictions.csv (or output) and print its first rows; returns the rows as written."""
    trained = raw_inputs.load_trained(checkpoint, config_dirs=config_dirs)
    if trained.problem not in SUPERVISED:
        raise ConfigError(
            f"CKPT = {trained.path}: a {trained.problem or 'non-supervised'} run; dlrun-predict reads checkpoints of "
            f"supervised runs ({', '.join(SUPERVISED)}); type the path of such a checkpoint"
        )
    read = trained.read(inputs, invert=invert)
    outputs = trained.outputs(trained.prepare(read.values), batch_size=batch_size).float()
    rows = interpret(trained, read.names, outputs)
    path = Path(output).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if not quiet:
        _print_table(rows, show, path)
    return rows


def interpret(trained, names: list[str], outputs) -> list[dict[str, str]]:
    """One row per input: input, class, probability; or input, value (value_0, value_1, ... for several targets)."""
    import torch

    if trained.problem == "regression":
        spec = trained.spec
        if spec.target_mean is not None:
            outputs = outputs * spec.target_std + spec.target_mean
        columns = ["value"] if outputs.shape[1] == 1 else [f"value_{index}" for index in range(outputs.shape[1])]
        return [
            {"input": name, **{column: f"{value:.6f}" for column, value in zip(columns, row, strict=True)}}
            for name, row in zip(names, outputs.tolist(), strict=True)
        ]
    if trained.problem == "binary":
        positive = torch.sigmoid(outputs[:, 0])
        classes = (outputs[:, 0] > 0).long()  # as the task decides: logit > 0
        probabilities = torch.where(classes == 1, positive, 1 - positive)
    else:
        probabilities, classes = outputs.softmax(dim=1).max(dim=1)
    class_names = trained.class_names
    return [
        {
            "input": name,
            "class": class_names[index] if index < len(class_names) else str(index),
            "probability": f"{p:.6f}",
        }
        for name, index, p in zip(names, classes.tolist(), probabilities.tolist(), strict=True)
    ]


def _print_table(rows: list[dict[str, str]], show: int, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if show:
        shown = rows[:show]
        title = f"predictions (first {len(shown)} of {len(rows)})" if len(rows) > len(shown) else "predictions"
        table = Table(title=title)
        for column in rows[0]:
            table.add_column(column, justify="left" if column in ("input", "class") else "right")
        for row in shown:
            table.add_row(*(Text(value) for value in row.values()))  # file names are not markup
        console.print(table)
    console.print(f"wrote {len(rows)} prediction{'s' if len(rows) != 1 else ''} to {path}", markup=False)


if __name__ == "__main__":
    main()

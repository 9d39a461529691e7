"""`dlrun-sample CKPT`: N images drawn from a generative checkpoint (task=gan, task=vae) into one PNG grid.

The model is rebuilt from the config stored in the checkpoint (dlrun/inputs/trained.py load_trained) and asked for
model.sample(N, generator) with a seeded torch.Generator: the same --seed gives the same image. Samples come in the
dataset's standardised units; the checkpoint's preprocessing turns them back into pixels the way image files are
read for dlrun-predict (white = the dataset's brightest value: 16 for digits, 1 for the others).
"""

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from dlrun import inputs as raw_inputs
from dlrun.errors import ConfigError, exit_on_bad_input

DEFAULT_NUM = 64
DEFAULT_NROW = 8
DEFAULT_OUT = "samples.png"


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="dlrun-sample",
        description=(
            "Draw images from a trained generative dlrun checkpoint (task=gan, task=vae) into a PNG grid.\n"
            "The model is rebuilt from the config stored in the checkpoint; the same --seed draws the same images."
        ),
        epilog=(
            "examples:\n"
            "  dlrun-sample outputs/dcgan_digits/<run>/checkpoints/best.pt\n"
            "  dlrun-sample CKPT --num 100 --nrow 10 --seed 1 --out digits.png\n"
            "exit codes: 0 written, 2 bad arguments or input"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("checkpoint", metavar="CKPT", help="a dlrun checkpoint: <run>/checkpoints/best.pt or last.pt")
    result.add_argument(
        "--num", type=int, default=DEFAULT_NUM, metavar="N", help="images to draw (default: %(default)s)"
    )
    result.add_argument("--out", default=DEFAULT_OUT, metavar="PATH", help="the PNG to write (default: %(default)s)")
    result.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seeds the noise: same seed, same images (default: 0)"
    )
    result.add_argument(
        "--nrow", type=int, default=DEFAULT_NROW, metavar="K", help="images per row of the grid (default: %(default)s)"
    )
    raw_inputs.add_config_dir_argument(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    with exit_on_bad_input():
        check_arguments(args)
        sample(
            args.checkpoint,
            num=args.num,
            out=args.out,
            seed=args.seed,
            nrow=args.nrow,
            config_dirs=args.config_dirs,
        )


def check_arguments(args: argparse.Namespace) -> None:
    """Every mistake in the options and paths that shows without torch, all at once."""
    problems = []
    if args.num < 1:
        problems.append(f"--num = {args.num}: must be at least 1; type --num {DEFAULT_NUM}")
    if args.nrow < 1:
        problems.append(f"--nrow = {args.nrow}: must be at least 1; type --nrow {DEFAULT_NROW}")
    if Path(args.out).suffix.lower() != ".png":
        problems.append(f"--out = {args.out}: writes a PNG image; type a path ending in .png, e.g. --out samples.png")
    problems += raw_inputs.check_checkpoint(args.checkpoint)
    if problems:
        raise ConfigError(*problems)


def sample(
    checkpoint: str | Path,
    *,
    num: int = DEFAULT_NUM,
    out: str | Path = DEFAULT_OUT,
    seed: int = 0,
    nrow: int = DEFAULT_NROW,
    config_dirs: Sequence[str | Path] = (),
    quiet: bool = False,
) -> Path:
    """Write the grid of num samples to out; returns its path."""
    import torch
    from torchvision.utils import save_image

    trained = raw_inputs.load_trained(checkpoint, config_dirs=config_dirs)
    if not callable(getattr(trained.model, "sample", None)):
        raise ConfigError(
            f"CKPT = {trained.path}: its model ({trained.config.model._target_}) does not generate; dlrun-sample "
            "draws from checkpoints of task=gan or task=vae; type the path of such a checkpoint"
        )
    if len(trained.model_shape) != 3:
        raise ConfigError(
            f"CKPT = {trained.path}: its model generates inputs of shape {list(trained.model_shape)}, not images; "
            "dlrun-sample draws image grids; type the path of a checkpoint trained on images"
        )
    with torch.no_grad():
        samples = trained.model.sample(num, generator=torch.Generator().manual_seed(seed)).float().cpu()
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(pixels(trained, samples), path, nrow=nrow, padding=2, pad_value=1.0)
    if not quiet:
        rows = math.ceil(num / nrow)
        height, width = samples.shape[-2:]
        print(f"wrote {num} samples ({rows}x{min(num, nrow)} grid of {height}x{width} images) to {path}")
    return path


def pixels(trained, samples):
    """Samples in the dataset's standardised units to pixel values in [0, 1]."""
    preprocessing = trained.preprocessing
    mean, std = preprocessing.get("input_mean"), preprocessing.get("input_std")
    values = samples if mean is None or std is None else samples * std + mean
    return (values / trained.pixel_max).clamp(0, 1)


if __name__ == "__main__":
    main()

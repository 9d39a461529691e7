"""`dlrun-eval CKPT [overrides]`: a checkpoint's metrics on the test split (or --split val), with no training.

The model is rebuilt from the checkpoint's own config (only from targets of dlrun's options: dlrun/inputs/trained.py's
load_trained, dlrun/trusted_targets.py) and loaded with its weights; the dataset is the checkpoint's own unless
overrides change it (`dataset=...`, `dataset.batch_size=...`: each override's key takes the value `dlrun <overrides>`
would give it), built through dlrun.build and scored by the task and trainer a run tests with. metrics.json and
the config evaluated go to a new dir, <run>/eval/<date>_<time>_<microseconds>/ (hydra.run.dir=DIR for another).
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlrun import compose
from dlrun import inputs as raw_inputs
from dlrun.errors import ConfigError, exit_on_bad_input, first_line

SPLITS = ("test", "val")
PLAIN_WEIGHTS = "model.pt"  # a run's plain state_dict: its config is read from the run's checkpoints/last.pt
FIXED = ("model", "experiment", "hparams_search")  # the checkpoint decides these: overrides of them are refused


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="dlrun-eval",
        description=(
            "Test a trained dlrun checkpoint on a split of its dataset (or another of the same shape and classes),\n"
            "with no training: the metrics table, and metrics.json in a new dir <run>/eval/<date>_<time>_<us>/."
        ),
        epilog=(
            "examples:\n"
            "  dlrun-eval outputs/mlp_digits/<run>/checkpoints/best.pt\n"
            "  dlrun-eval CKPT --split val dataset.batch_size=512\n"
            "  dlrun-eval CKPT trainer.device=cuda hydra.run.dir=evals/digits\n"
            "exit codes: 0 done, 2 bad arguments, checkpoint or dataset"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument(
        "checkpoint", metavar="CKPT", help="a dlrun checkpoint: best.pt, last.pt, a top-k file, or a run's model.pt"
    )
    result.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, as dlrun takes them")
    result.add_argument("--split", default="test", help="the split to test on: test (default) or val")
    raw_inputs.add_config_dir_argument(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_intermixed_args(argv)  # options before, between or after the overrides
    with exit_on_bad_input():
        check_arguments(args)
        evaluate(args.checkpoint, args.overrides, split=args.split, config_dirs=args.config_dirs)


def check_arguments(args: argparse.Namespace) -> None:
    """Every mistake in the options and paths that shows without torch, all at once."""
    problems = raw_inputs.check_checkpoint(args.checkpoint)
    if args.split not in SPLITS:
        problems.append(f"--split = {args.split}: no such split; type --split {' or --split '.join(SPLITS)}")
    for override in compose.parse(args.overrides):
        group = override.key_or_group.split(".")[0].split("/")[0]
        if group in FIXED:
            problems.append(
                f"{override.input_line}: the checkpoint's own {group} is tested; leave it out (to test another "
                "model, type the path of its checkpoint)"
            )
    if problems:
        raise ConfigError(*problems)


def evaluate(
    checkpoint: str | Path,
    overrides: Sequence[str] = (),
    *,
    split: str = "test",
    config_dirs: Sequence[str | Path] = (),
    quiet: bool = False,
) -> dict[str, float]:
    """The split's metrics (named split/name), written to metrics.json in a new eval dir and printed."""
    from rich.console import Console

    from dlrun import build, report
    from dlrun.run import seed_everything
    from dlrun.trainer import Trainer
    from dlrun.validation import validate

    trained = load(checkpoint, config_dirs)
    cfg, run_dir = evaluation_config(trained, overrides)
    validate(cfg)
    seed_everything(cfg.seed)
    data = build.data(cfg)
    check_fit(trained, data.spec, cfg)
    task = build.task(cfg, trained.model, data)
    trainer = Trainer(**OmegaConf.to_container(cfg.trainer))  # no callbacks: nothing is logged or saved
    task.model = trainer.placement.put_model(task.model)
    task.setup(data, trainer.device)
    trainer.placement.put_data(data)
    metrics = trainer.evaluate(task, data, split)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (run_dir / "config.yaml").write_text(
        f"# dlrun-eval {trained.path} --split {split}\n" + OmegaConf.to_yaml(cfg, resolve=True)
    )
    if not quiet:
        console = Console()
        console.print(report.results_table(metrics))
        print(f"eval dir: {run_dir}")
    return metrics


def load(checkpoint: str | Path, config_dirs: Sequence[str | Path]) -> raw_inputs.Trained:
    """The checkpoint's model; a run's model.pt (weights only) gets its run's config and data spec from last.pt."""
    from dlrun.checkpoint import load_weights

    path = Path(checkpoint).expanduser()
    if path.name != PLAIN_WEIGHTS:
        return raw_inputs.load_trained(path, config_dirs=config_dirs)
    last = path.parent / "checkpoints" / "last.pt"
    if not last.is_file():
        raise ConfigError(
            f"CKPT = {path}: a model.pt holds only weights, and its run's config is read from {last}, which does not "
            "exist; type the path of a checkpoints/best.pt or last.pt"
        )
    trained = raw_inputs.load_trained(last, config_dirs=config_dirs)
    load_weights(
        trained.model,
        _plain_state_dict(path),
        problem=f"CKPT = {path}: its weights do not fit the model of its run's {last}",
        hint="type the path of the run's checkpoints/best.pt",
    )
    trained.path = path
    return trained


def _plain_state_dict(path: Path) -> dict:
    import torch

    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails on an empty, foreign or damaged file with many exception types
        raise ConfigError(
            f"CKPT = {path}: not a readable state_dict ({first_line(error)}); type the path of a run's "
            "model.pt or checkpoints/best.pt"
        ) from error
    if not isinstance(weights, dict) or not all(isinstance(key, str) for key in weights):
        raise ConfigError(f"CKPT = {path}: holds no state_dict; type the path of a run's model.pt or best.pt")
    return weights


def evaluation_config(trained: raw_inputs.Trained, overrides: Sequence[str]) -> tuple[DictConfig, Path]:
    """The checkpoint's config with each override's key set to what `dlrun <overrides>` composes for it, and the
    new eval dir."""
    cfg = OmegaConf.create(OmegaConf.to_container(trained.config))
    cfg.ckpt_path, cfg.resume = None, "never"  # nothing is resumed
    composed = compose.compose(overrides)
    for override in compose.parse(overrides):
        key = override.key_or_group.replace("/", ".")
        if key.startswith("hydra"):
            continue
        if override.is_delete():
            parent, _, name = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if node is not None and name in node:
                del node[name]
            continue
        value = OmegaConf.select(composed, key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value  # interpolations kept
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    run_dir = Path(composed.hydra.run.dir)
    if not compose.gives_run_dir(overrides):  # <run>/eval/<the timestamp hydra.run.dir ends in>
        run_dir = _run_of(trained.path) / "eval" / run_dir.name
    return cfg, run_dir


def _run_of(path: Path) -> Path:
    """The run dir a checkpoint belongs to: <run>/checkpoints/X.pt or <run>/model.pt."""
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def check_fit(trained: raw_inputs.Trained, spec, cfg: DictConfig) -> None:
    """A ConfigError when the dataset's inputs or classes are not those the checkpoint's model was trained on."""
    problem = OmegaConf.select(cfg, "loss.problem", default=None)
    expected = trained.spec.model_arguments(problem)
    found = spec.model_arguments(problem)
    trained_on = OmegaConf.select(trained.config, "dataset.name", default=None) or "its dataset"
    given = OmegaConf.select(cfg, "dataset.name", default=None) or "this dataset"
    differences = [
        f"{name} {found[name]} (the model takes {expected[name]})"
        for name in expected
        if found.get(name) != expected[name]
    ]
    if trained.spec.class_names and spec.class_names and list(spec.class_names) != list(trained.spec.class_names):
        differences.append(f"classes {list(spec.class_names)} (the model's: {list(trained.spec.class_names)})")
    if differences:
        raise ConfigError(
            f"dataset: {given} does not fit CKPT = {trained.path}, trained on {trained_on}: {given} gives "
            f"{'; '.join(differences)}; leave dataset= out to test on {trained_on}, or type a dataset of the same "
            "inputs and classes"
        )


if __name__ == "__main__":
    main()

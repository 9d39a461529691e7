"""run(cfg, run_dir): seed, build, fit, test the best checkpoint and the baselines, write model.pt and metrics.json."""

import json
import random
import signal
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dlrun import baselines, build, distributed, provenance, report
from dlrun.checkpoint import load, load_weights, serialize, write_files
from dlrun.distributed import World
from dlrun.trainer import TrainingInterrupted, resolve_device


def run(cfg: DictConfig, run_dir: str | Path) -> float | None:
    """Train, validate and test one configuration; returns the monitored metric of the best checkpoint."""
    world = World.from_env()
    if world.distributed:  # one run dir for the whole job: rank 0's
        distributed.init_process_group(resolve_device(cfg.trainer.device, world.local_rank))
        run_dir = distributed.broadcast_from_main(str(run_dir))
    run_dir = Path(run_dir)
    console = Console(quiet=cfg.quiet or not world.is_main)
    if cfg.print_config:
        console.print(report.config_tree(OmegaConf.to_container(cfg, resolve=True)))
    seed_everything(cfg.seed)
    if world.is_main:  # provenance.json: git commit, packages, machine, dataset fingerprint
        provenance.write(
            run_dir,
            dataset=OmegaConf.to_container(cfg.dataset, resolve=True),
            device=str(resolve_device(cfg.trainer.device, world.local_rank)),
        )

    data = build.data(cfg)
    model = build.model(cfg, data.spec)
    task = build.task(cfg, model, data)
    optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
    trainer = build.trainer(cfg, run_dir)
    schedulers = build.schedulers(cfg, optimizers, trainer.optimizer_steps_per_epoch(data))
    resume_from = _resume_checkpoint(_checkpoint_to_resume(cfg, run_dir), model)
    report.parameter_count(console, model)

    try:
        trainer.fit(task, data, optimizers, schedulers, checkpoint=resume_from)
    except TrainingInterrupted as interrupted:
        if world.is_main:
            _explain_interruption(interrupted, run_dir)
        raise SystemExit(128 + interrupted.signum) from None  # 130 for SIGINT, 143 for SIGTERM
    best = run_dir / "checkpoints" / "best.pt"
    best_weights = load(best, key="best checkpoint")["model"] if world.is_main and best.is_file() else None
    # Every rank tests its shard of the splits with rank 0's best weights (its disk may be the only one holding them).
    metrics = trainer.test(task, data, distributed.broadcast_from_main(best_weights))
    if not world.is_main:  # rank 0 alone writes and prints the results
        return None
    reference = baselines.test_metrics(task, data)  # simple models' test metrics, to set beside the network's
    metrics_json = (json.dumps(metrics | ({"baselines": reference} if reference else {}), indent=2) + "\n").encode()
    write_files({run_dir / "model.pt": serialize(task.model.state_dict()), run_dir / "metrics.json": metrics_json})
    console.print(report.results_table(metrics, reference))
    print(run_dir if cfg.quiet else f"run dir: {run_dir}")  # the one line a quiet run prints
    return metrics.get(OmegaConf.select(cfg, "callbacks.checkpoint.monitor", default="val/loss"))


def _explain_interruption(interrupted: TrainingInterrupted, run_dir: Path) -> None:
    """Said on stderr, also by a quiet run: where the state is and how to continue."""
    state = interrupted.state
    Console(stderr=True).print(
        f"[yellow]{signal.Signals(interrupted.signum).name}[/]: stopped after step {state.step} "
        f"(epoch {state.epoch + 1}, batch {state.batch}); saved {run_dir / 'checkpoints' / 'last.pt'}\n"
        f"resume with:  dlrun resume=auto hydra.run.dir={run_dir} <the same overrides>",
        soft_wrap=True,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _checkpoint_to_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    """ckpt_path when given; with resume=auto, the run dir's own last.pt (a restarted, preempted job)."""
    own_last = run_dir / "checkpoints" / "last.pt"
    if cfg.ckpt_path is None and cfg.resume == "auto" and own_last.is_file():
        return str(own_last)
    return cfg.ckpt_path


def _resume_checkpoint(ckpt_path: str | None, model: torch.nn.Module) -> dict | None:
    """The checkpoint to resume from, after checking that its weights fit this run's model."""
    if ckpt_path is None:
        return None
    checkpoint = load(ckpt_path)
    load_weights(
        model,
        checkpoint["model"],
        problem=f"ckpt_path = {ckpt_path}: its weights do not fit this model",
        hint="resume with the model and dataset options the checkpoint was trained with (its config is stored in it)",
    )
    return checkpoint

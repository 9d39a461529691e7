"""run(cfg, run_dir): seed, build, fit, test the best checkpoint and the baselines, write model.pt and metrics.json."""

import json
import random
import signal
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dlrun import baselines, build, distributed, pause, provenance, report
from dlrun.checkpoint import load, load_weights, serialize, write_files
from dlrun.distributed import World
from dlrun.errors import ConfigError
from dlrun.run_dir import forget_unstarted
from dlrun.signals import requests, stop_signals
from dlrun.trainer import NonFiniteData, State, TrainingInterrupted, resolve_device
from dlrun.validation.shapes import refuse_what_does_not_fit

# What a stop in each phase leaves behind, after "SIGINT: stopped ...".
LEFT_BEHIND = {
    "start-up": "before training; nothing was written",
    "training": "after step {step} (epoch {epoch}, batch {batch}); saved {last}",
    "validation": "during epoch {epoch}'s validation, its training done (step {step}); saved {last}",
    "saving": "while the final checkpoint was written; training is done and saved in {last}",
    "test": "during the final test; training is done and saved in {last}",
}


def run(cfg: DictConfig, run_dir: str | Path) -> float | None:
    """Train, validate and test one configuration; returns the monitored metric of the best checkpoint. A stop signal
    in any phase ends it after the step or batch at hand, with exit code 128 + the signal (130 for SIGINT)."""
    world = World.from_env()
    with requests.caught(*stop_signals(cfg.trainer.preemption_signal)):
        if world.distributed:  # one run dir for the whole job: rank 0's
            distributed.init_process_group(resolve_device(cfg.trainer.device, world.local_rank))
            run_dir = distributed.broadcast_from_main(str(run_dir))
        run_dir = Path(run_dir)
        try:
            return _run(cfg, run_dir, world)
        except NonFiniteData as error:  # the message names the data's values; the config names the data
            raise NonFiniteData(f"dataset = {_data_source(cfg)}: {error}") from None
        except ConfigError:
            if world.is_main:
                forget_unstarted(run_dir)
            raise
        except TrainingInterrupted as interrupted:
            if world.is_main:
                _explain_interruption(interrupted, run_dir)
            requests.hand_on_to_scheduler(interrupted.signum)  # submitit's handler requeues the job
            raise SystemExit(128 + interrupted.signum) from None  # 130 for SIGINT, 143 for SIGTERM


DATA_SOURCE_KEYS = ("path", "root", "column", "target")  # the dataset keys that say where its values come from


def _data_source(cfg: DictConfig) -> str:
    """'csv (dataset.path=houses.csv, dataset.target=price)': the dataset option and what it reads."""
    dataset = cfg.dataset
    given = [f"dataset.{key}={dataset[key]}" for key in DATA_SOURCE_KEYS if dataset.get(key) is not None]
    return f"{dataset.get('name')}" + (f" ({', '.join(given)})" if given else "")


def _run(cfg: DictConfig, run_dir: Path, world: World) -> float | None:
    console = Console(quiet=cfg.quiet or not world.is_main)
    if cfg.print_config:
        console.print(report.config_tree(OmegaConf.to_container(cfg, resolve=True)))
    seed_everything(cfg.seed)
    data = build.data(cfg)
    refuse_what_does_not_fit(cfg, data.spec)
    model = build.model(cfg, data.spec)
    task = build.task(cfg, model, data)
    optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
    trainer = build.trainer(cfg, run_dir)
    schedulers = build.schedulers(cfg, optimizers, trainer.optimizer_steps_per_epoch(data))
    resume_from = _resume_checkpoint(_checkpoint_to_resume(cfg, run_dir), model)
    if world.is_main:  # provenance.json: git commit, packages, machine, dataset fingerprint, once the run is built
        provenance.write(
            run_dir,
            dataset=OmegaConf.to_container(cfg.dataset, resolve=True),
            device=str(resolve_device(cfg.trainer.device, world.local_rank)),
        )
    report.parameter_count(console, model)
    pause.point("startup")
    _stop_if_requested("start-up", trainer.state)
    trainer.fit(task, data, optimizers, schedulers, checkpoint=resume_from)
    _stop_if_requested("saving", trainer.state)  # a signal while on_fit_end wrote the last files
    return _test(cfg, run_dir, trainer, task, data, console, world)


def _test(cfg, run_dir: Path, trainer, task, data, console: Console, world: World) -> float | None:
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


def _stop_if_requested(phase: str, state: State) -> None:
    if requests.signum is not None:
        raise TrainingInterrupted(requests.signum, state, phase)


def _explain_interruption(interrupted: TrainingInterrupted, run_dir: Path) -> None:
    """Said on stderr, also by a quiet run: the phase stopped, where the state is and how to continue."""
    state = interrupted.state
    last = run_dir / "checkpoints" / "last.pt"
    where = LEFT_BEHIND[interrupted.phase].format(step=state.step, epoch=state.epoch + 1, batch=state.batch, last=last)
    Console(stderr=True).print(
        f"[yellow]{signal.Signals(interrupted.signum).name}[/]: stopped {where}\n"
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

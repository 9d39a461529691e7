"""The sweeper: ask Optuna for trials, launch each as a Hydra job, tell Optuna how it ended.

- A trial's number is its job's number, so trial N lives in <sweep dir>/N.
- Trials run by the basic launcher run in this process; each is registered (dlrun.sweep.trials) under its job
  number, so the job's OptunaPruning callback reports the validation metric each epoch and stops it when the
  pruner says so. A pruned trial is told to Optuna as pruned and shows as pruned in the sweep summary.
- The study is in SQLite in the sweep dir: the same command with hydra.sweep.dir=<that dir> loads it, runs again
  the trials an interruption left running (they resume from their last.pt) and then only the trials still missing.
- A failed trial is told as failed and the search goes on, unless hydra.callbacks.sweep.stop_on_failure=true.
"""

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from dlrun import extras

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


class SearchConfigError(CompactHydraException):
    """A search that cannot work as configured: Hydra prints the message alone (dlrun exits 2)."""


class DlrunOptunaSweeper(Sweeper):
    def __init__(
        self,
        *,
        direction: str,
        metric: str | None,
        n_trials: int,
        n_jobs: int,
        study_name: str,
        storage: str | None,
        sampler: Any,
        pruner: Any,
        params: dict[str, Any],
    ) -> None:
        self.direction, self.metric = direction, metric
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.study_name, self.storage = study_name, storage
        self.sampler_config, self.pruner_config = sampler, pruner
        self.params = {str(key): value for key, value in (params or {}).items()}
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- the search ---------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> dict | None:
        missing_extra = extras.missing("hydra/sweeper = dlrun_optuna (an Optuna search)", "optuna")
        if missing_extra:
            raise SearchConfigError(missing_extra)
        import optuna
        from optuna.trial import TrialState

        from dlrun.sweep import trials
        from hydra_plugins.dlrun_optuna_sweeper.search_space import search_space

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self._check_settings()
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{key}={value}" for key, value in self.params.items()]
        space = search_space(parser.parse_overrides([*params, *arguments]))
        if not space.dimensions:
            raise SearchConfigError(
                "hydra.sweeper.params: no search space; e.g. optimizer.lr='tag(log, interval(1e-4, 1e-1))'"
            )

        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self._instantiate(self.sampler_config),
            pruner=self._instantiate(self.pruner_config) or optuna.pruners.NopPruner(),
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:
            raise SearchConfigError(
                f"hydra.sweeper.direction = {self.direction}: the study {self.study_name} in {self.storage} "
                f"is to {study.direction.name.lower()}; type that, or a new hydra.sweep.dir"
            )
        finished = len(
            study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        )
        remaining = max(0, self.n_trials - finished)
        # Trials an interruption left running: run them again first, under their own numbers (their job dirs hold
        # a last.pt to resume from). One sweeper per study: a RUNNING trial here is not being run by anyone else.
        stale = [
            optuna.trial.Trial(study, frozen._trial_id) for frozen in study.get_trials(states=(TrialState.RUNNING,))
        ]
        for extra in stale[remaining:]:
            _tell(study, extra, TrialState.FAIL)
        pending = stale[:remaining]
        if finished:
            log.info(
                f"Study {self.study_name}: {finished} trials done before, {remaining} to run ({len(pending)} resumed)"
            )

        pruning = self._pruning_possible()
        stop_on_failure = bool(OmegaConf.select(self.config, "hydra.callbacks.sweep.stop_on_failure", default=False))
        while remaining > 0:
            batch = [
                pending.pop(0) if pending else study.ask(space.distributions)
                for _ in range(min(self.n_jobs, remaining))
            ]
            if pruning:
                for trial in batch:
                    trials.register(trial.number, trial)
            try:
                returns = self._launch(batch, [space.overrides(trial.params) for trial in batch])
            finally:
                for trial in batch:
                    trials.unregister(trial.number)
            outcomes = [self._outcome(trial, job) for trial, job in zip(batch, returns, strict=True)]
            sampler_done = [_tell(study, trial, *outcome) for trial, outcome in zip(batch, outcomes, strict=True)]
            remaining -= len(batch)
            if stop_on_failure and any(state == TrialState.FAIL for state, _ in outcomes):
                log.warning("A trial failed and hydra.callbacks.sweep.stop_on_failure=true: the search stops")
                break
            if any(sampler_done):
                log.info("The sampler has tried everything it had to try (e.g. a GridSampler's whole grid)")
                break
        return self._results(study, space, sweep_dir)

    def _launch(self, batch: list, overrides: list[list[str]]) -> list:
        """Launch the trials, grouped in runs of consecutive numbers: job number N is trial number N."""
        returns, start = [], 0
        for end in range(1, len(batch) + 1):
            if end == len(batch) or batch[end].number != batch[end - 1].number + 1:
                returns += self.launcher.launch(overrides[start:end], initial_job_idx=batch[start].number)
                start = end
        return returns

    def _outcome(self, trial, job) -> tuple:
        """(state, value) of the trial, read from its job.json (and metrics.json for hydra.sweeper.metric)."""
        from optuna.trial import TrialState

        from dlrun.sweep.record import COMPLETED, PRUNED, JobRecord, read_metrics

        job_dir = Path(job.hydra_cfg.hydra.runtime.output_dir)
        record = JobRecord.load(job_dir)
        hydra_completed = job.status == JobStatus.COMPLETED  # dlrun's jobs record their failures and return None
        status = record.status if record is not None else (COMPLETED if hydra_completed else None)
        if status == PRUNED:
            return TrialState.PRUNED, None  # Optuna keeps its last reported value
        value = job.return_value if status == COMPLETED and hydra_completed else None
        if status == COMPLETED and self.metric is not None:
            value = (read_metrics(job_dir) or {}).get(self.metric)
        if value is None or not math.isfinite(value):
            return TrialState.FAIL, None
        return TrialState.COMPLETE, value

    def _results(self, study, space, sweep_dir: Path) -> dict | None:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            log.warning(f"Study {self.study_name}: no trial completed, so no best parameters")
            return None
        best = study.best_trial
        results = {
            "name": "optuna",
            "study_name": self.study_name,
            "storage": self.storage,
            "direction": self.direction,
            "metric": self.metric,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": {name: _plain(value) for name, value in best.params.items()},
            "best_overrides": [
                space.dimensions[name].override(best.params[name]) for name in space.dimensions if name in best.params
            ],
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS_FILE)
        log.info(f"Best trial {best.number}: {best.value:.6g} with {' '.join(results['best_overrides'])}")
        return results

    # -- checks ---------------------------------------------------------------------------------------

    def _check_settings(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise SearchConfigError(f"hydra.sweeper.direction = {self.direction}: type minimize or maximize")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise SearchConfigError("hydra.sweeper.n_trials and n_jobs: must be at least 1")
        if self.metric is not None:
            return
        monitor = OmegaConf.select(self.config, "callbacks.checkpoint.monitor", default="val/loss")
        mode = OmegaConf.select(self.config, "callbacks.checkpoint.mode", default="min")
        expected = "maximize" if mode == "max" else "minimize"
        if self.direction != expected:
            raise SearchConfigError(
                f"hydra.sweeper.direction = {self.direction}, but the runs return {monitor} (callbacks.checkpoint.mode"
                f" = {mode}): the search would go the wrong way; type hydra.sweeper.direction={expected}"
            )

    def _pruning_possible(self) -> bool:
        if self.pruner_config is None:
            return False
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        if OmegaConf.select(self.config, "callbacks.optuna_pruning", default=None) is None:
            log.warning("hydra.sweeper.pruner is set but callbacks.optuna_pruning is not: trials are not pruned")
            return False
        if not isinstance(self.launcher, BasicLauncher):
            log.warning(
                f"{type(self.launcher).__name__} runs trials in other processes: they are not pruned "
                "(pruning needs the basic launcher, which runs them here)"
            )
            return False
        return True

    def _instantiate(self, node: Any):
        """A sampler or pruner: Hydra has built it already from its _target_, unless given as a plain mapping."""
        if node is None or not (OmegaConf.is_config(node) or isinstance(node, dict)):
            return node
        from hydra.utils import instantiate

        return instantiate(node, _convert_="all")


def _tell(study, trial, state, value: float | None = None) -> bool:
    """study.tell; True when the sampler then asked the study to stop (a GridSampler at the end of its grid).

    Samplers call study.stop() from after_trial, which Optuna allows only inside study.optimize(): the tell runs
    as if inside one, and the stop request is read back (Optuna has no public ask-and-tell way to this).
    """
    local = study._thread_local
    local.in_optimize_loop = True
    try:
        study.tell(trial, value, state=state)
    finally:
        local.in_optimize_loop = False
    stopped, study._stop_flag = getattr(study, "_stop_flag", False), False
    return stopped


def _plain(value):
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)

"""Optuna searches with the real `dlrun -m hparams_search=...`: best parameters, pruning by the validation metric,
and a search resumed from its SQLite study after an interruption; the search space and the pruning callback alone."""

import json
import math
import textwrap

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from test_sweep_helpers import HELPERS_ENV, TINY, job_record, one_line, only_sweep_dir, summary_rows

from dlrun.callbacks.optuna_pruning import OptunaPruning
from dlrun.sweep import trials
from dlrun.trainer import State
from hydra_plugins.dlrun_optuna_sweeper.search_space import search_space

from conftest import run_cli


def load_study(sweep_dir):
    return optuna.load_study(study_name="dlrun", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


# A search that prunes for certain: a grid of a hopeless learning rate and two good ones, and a pruner that stops
# any trial whose val/acc is under 0.2 (chance is 0.1) after an epoch.
GRID_SEARCH = """
# @package _global_
# Test search: lr 1e-6 (hopeless: pruned after its first epoch), 5e-3 and 1e-2 (kept).
defaults:
  - override /hydra/sweeper: dlrun_optuna
callbacks:
  checkpoint: {monitor: val/acc, mode: max}
  optuna_pruning:
    _target_: dlrun.callbacks.optuna_pruning.OptunaPruning
    monitor: ${callbacks.checkpoint.monitor}
hydra:
  sweeper:
    direction: maximize
    n_trials: 3
    sampler: {_target_: optuna.samplers.GridSampler, search_space: {optimizer.lr: [1.0e-6, 5.0e-3, 1.0e-2]}, seed: 0}
    pruner: {_target_: optuna.pruners.ThresholdPruner, lower: 0.2}
    params:
      optimizer.lr: choice(1e-6, 5e-3, 1e-2)
"""


def test_a_search_prunes_resumes_after_an_interruption_and_returns_its_best_parameters(tmp_path):
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "grid.yaml").write_text(textwrap.dedent(GRID_SEARCH))
    interrupt = [
        "+callbacks.interrupt._target_=test_sweep_helpers.InterruptOnce",
        "+callbacks.interrupt.job=1",
        f"+callbacks.interrupt.marker={tmp_path / 'interrupted'}",
    ]
    args = ["--config-dir", str(tmp_path / "conf"), "-m", "hparams_search=grid", *interrupt, *TINY]
    args += ["trainer.max_epochs=2", "trainer.limit_batches=5"]  # two epochs: a pruned trial stops after one

    # Ctrl-C in trial 1: the search stops, the trial stays RUNNING in the study
    first = run_cli(*args, cwd=tmp_path, env=HELPERS_ENV)
    assert first.returncode == 130, first.stderr
    sweep_dir = only_sweep_dir(tmp_path)
    study = load_study(sweep_dir)
    assert [trial.state for trial in study.trials][1] == TrialState.RUNNING and len(study.trials) == 2
    interrupted_params = study.trials[1].params
    assert "2 of 3 jobs" in one_line(first.stdout) and "1 interrupted" in one_line(first.stdout)

    # The same command into the same sweep dir: trial 1 again from its last.pt, then trial 2
    done_before = (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns
    second = run_cli(*args, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=HELPERS_ENV)
    assert second.returncode == 0, second.stderr
    study = load_study(sweep_dir)
    assert len(study.trials) == 3 and study.trials[1].params == interrupted_params
    assert [job_record(sweep_dir / str(job))["attempts"] for job in range(3)] == [1, 2, 1]
    assert (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns == done_before

    # lr 1e-6 pruned by its val/acc after the first epoch; the others trained both epochs
    by_lr = {trial.params["optimizer.lr"]: trial for trial in study.trials}
    assert by_lr[1e-6].state == TrialState.PRUNED and list(by_lr[1e-6].intermediate_values) == [0]
    for lr in (5e-3, 1e-2):
        assert by_lr[lr].state == TrialState.COMPLETE and list(by_lr[lr].intermediate_values) == [0, 1]
    pruned = sweep_dir / str(by_lr[1e-6].number)
    assert job_record(pruned)["status"] == "pruned" and job_record(pruned)["note"] == "pruned at epoch 1"
    assert json.loads((pruned / "metrics.json").read_text())["val/acc"] < 0.2  # tested like an early stop

    # the best parameters: in the study, in optimization_results.yaml, starred in the summary
    best = study.best_trial
    assert best.params["optimizer.lr"] in (5e-3, 1e-2)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_params"] == best.params and results["best_trial"] == best.number
    best_metrics = json.loads((sweep_dir / str(best.number) / "metrics.json").read_text())
    assert math.isclose(results["best_value"], best_metrics["val/acc"])
    rows = {row["optimizer.lr"]: row for row in summary_rows(sweep_dir)}
    assert rows["1e-06"]["status"] == "pruned" and rows[str(best.params["optimizer.lr"])]["best"] == "True"
    assert "pruned at epoch 1" in one_line(second.stdout) and "3 jobs: 2 completed, 1 pruned" in one_line(second.stdout)


def test_a_direction_against_the_monitored_metric_is_refused(tmp_path):
    result = run_cli("-m", "hparams_search=digits_optuna", "hydra.sweeper.direction=minimize", *TINY, cwd=tmp_path)
    assert result.returncode == 2
    assert "hydra.sweeper.direction=maximize" in one_line(result.stderr) and "Traceback" not in result.stderr


# -- the parts, without a subprocess ---------------------------------------------------------------


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    parser = OverridesParser.create()
    space = search_space(
        parser.parse_overrides(
            [
                "optimizer.lr=tag(log, interval(1e-4, 1e-1))",
                "model.dropout=interval(0, 0.5)",
                "trainer.max_epochs=tag(int, interval(5, 20))",
                "dataset.batch_size=range(16, 129, 16)",
                "model.hidden=choice([64], [128, 64])",
                "optimizer=adam,sgd",
                "seed=1",
                "model.dropout=interval(0.1, 0.3)",  # a later override of a key wins (the command line over params)
            ]
        )
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 0.1, log=True),
        "model.dropout": FloatDistribution(0.1, 0.3),
        "trainer.max_epochs": IntDistribution(5, 20),
        "dataset.batch_size": IntDistribution(16, 128, step=16),
        "model.hidden": CategoricalDistribution(["[64]", "[128,64]"]),
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
    }
    assert space.fixed == ["seed=1"]
    params = {
        "optimizer.lr": 0.00123,
        "model.dropout": 0.2,
        "trainer.max_epochs": 7,
        "dataset.batch_size": 32,
        "model.hidden": "[128,64]",
        "optimizer": "sgd",
    }
    assert space.overrides(params) == [
        "seed=1",
        "optimizer.lr=0.00123",
        "trainer.max_epochs=7",
        "dataset.batch_size=32",
        "model.hidden=[128,64]",
        "optimizer=sgd",
        "model.dropout=0.2",
    ]


class FakeTrainer:
    def __init__(self):
        self.state = State()


@pytest.mark.parametrize(("values", "pruned_at"), [([0.9, 0.8, 0.7], None), ([0.9, 0.2, 0.7], 2)])
def test_the_pruning_callback_reports_each_validation_and_stops_a_pruned_trial(values, pruned_at):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    callback, trainer = OptunaPruning(monitor="val/acc", trial=trial), FakeTrainer()
    callback.on_epoch_end(trainer, {"train/loss": 1.0})  # not a validation epoch: nothing reported
    for value in values:
        if trainer.state.should_stop:
            break
        trainer.state.epoch += 1
        callback.on_epoch_end(trainer, {"val/acc": value})
    assert callback.handle.pruned_at_epoch == pruned_at and trainer.state.should_stop == (pruned_at is not None)
    assert list(study.trials[0].intermediate_values.values()) == values[: pruned_at or len(values)]


def test_the_pruning_callback_finds_the_trial_of_the_job_training_now():
    trial = optuna.create_study().ask()
    assert OptunaPruning().handle is None  # outside a search: does nothing
    trials.register(3, trial)
    try:
        with trials.active(3) as handle:
            assert OptunaPruning().handle is handle and handle.trial is trial
        with trials.active(4):
            assert OptunaPruning().handle is None
    finally:
        trials.unregister(3)

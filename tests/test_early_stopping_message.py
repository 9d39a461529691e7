"""A run that early stopping ends says why and when, once on the terminal and in the run dir's dlrun.log (issue 16
point 6); a run that trains to trainer.max_epochs says nothing of it. `dlrun` runs in this process, through
dlrun.cli.main: Hydra makes the run dir and its job logging writes dlrun.log, as for the installed command."""

import logging
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun import cli

from conftest import SMALL

SHORT = ["trainer.limit_batches=2", "quiet=false"]
# min_delta=10: no epoch after the first improves on it (val/loss is about 2), so patience=2 stops after epoch 3.
NEVER_IMPROVES = ["callbacks.early_stopping.patience=2", "callbacks.early_stopping.min_delta=10"]


@pytest.fixture
def dlrun(monkeypatch, tmp_path):
    """`dlrun ARGS` in this process in tmp_path/run; afterwards the root logger has its handlers back (Hydra's write
    to a capture closed after the test) and Hydra is ready to compose again."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(cli, "_job_started", False)  # as for a process of its own, and as it was afterwards

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["dlrun", *SMALL, *SHORT, f"hydra.run.dir={tmp_path / 'run'}", *args])
        cli.main()
        return tmp_path / "run"

    yield run
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    GlobalHydra.instance().clear()


def said(capsys, run_dir) -> tuple[list[str], list[str]]:
    """The early stopping lines printed on the terminal and those in dlrun.log."""
    printed = capsys.readouterr().out.splitlines()
    logged = (run_dir / "dlrun.log").read_text().splitlines()
    return [line for line in printed if "early stopping" in line], [line for line in logged if "early stopping" in line]


def first_val_loss(run_dir) -> float:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events.Scalars("val/loss")[0].value


def test_a_run_stopped_early_says_which_metric_its_best_the_patience_and_when(dlrun, capsys):
    run_dir = dlrun("trainer.max_epochs=30", *NEVER_IMPROVES)
    expected = (
        f"early stopping: val/loss did not improve on {first_val_loss(run_dir):.4g} by more than 10 (epoch 1) for 2 "
        "epochs (callbacks.early_stopping.patience=2); stopped after epoch 3 of 30"
    )
    printed, logged = said(capsys, run_dir)
    assert printed == [expected]  # once: not again through Hydra's console handler
    assert len(logged) == 1 and logged[0].endswith(f"[dlrun.callbacks.early_stopping][INFO] - {expected}")

    dlrun("trainer.max_epochs=30", *NEVER_IMPROVES, "resume=auto")  # a resume goes on to the test, and says why
    printed, logged = said(capsys, run_dir)
    assert printed == [expected] and len(logged) == 2 and logged[1].endswith(expected)


def test_a_quiet_run_stopped_at_its_target_says_so_in_dlrun_log_only(dlrun, capsys):
    target = ["callbacks.checkpoint.monitor=val/acc", "callbacks.checkpoint.mode=max"]
    run_dir = dlrun("trainer.max_epochs=30", *target, "callbacks.early_stopping.stop_at=0", "quiet=true")
    printed, logged = said(capsys, run_dir)
    assert printed == []
    (line,) = logged
    message = line.partition("[INFO] - ")[2]
    assert message.startswith("early stopping: val/acc = ")
    assert message.endswith(" reached callbacks.early_stopping.stop_at=0; stopped after epoch 1 of 30")


@pytest.mark.parametrize(
    "overrides",
    [["trainer.max_epochs=2"], ["trainer.max_epochs=3", *NEVER_IMPROVES]],
    ids=["improving", "patience-spent-at-the-last-epoch"],
)
def test_a_run_that_trains_all_its_epochs_says_nothing_of_early_stopping(dlrun, capsys, overrides):
    run_dir = dlrun(*overrides)
    printed, logged = said(capsys, run_dir)
    assert printed == logged == []
    assert (run_dir / "metrics.json").is_file()

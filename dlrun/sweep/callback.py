"""The Hydra callback of a sweep (hydra.callbacks.sweep in conf/config.yaml), run by the process that launches it.

At the end of a sweep: the results table on the terminal, summary.csv and summary.json in the sweep dir, and the
HParams experiment that TensorBoard shows over the sweep dir. A sweep stopped by Ctrl-C or SIGTERM gets the same,
with the command that resumes it. Imports no torch.
"""

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dlrun.errors import exit_on_bad_input
from dlrun.sweep.record import STOP_FILE

_running: Path | None = None  # the sweep dir of the sweep in progress in this process
_ended = None  # the Summary of the last sweep that ended in this process


class SweepCallback(Callback):
    def __init__(self, stop_on_failure: bool = False):
        self.stop_on_failure = stop_on_failure  # read by each job (dlrun.sweep.job) from the Hydra config

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _running
        from dlrun.sweep.repeats import sweep_seeds

        with exit_on_bad_input():
            sweep_seeds(config)  # repeats=N: the seeds join the sweep
        _running = Path(config.hydra.sweep.dir)
        (_running / STOP_FILE).unlink(missing_ok=True)  # left by an earlier run of this sweep that stopped

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        _end(Path(config.hydra.sweep.dir))


def interrupted() -> None:
    """The sweep in progress was stopped: show and write what it got done."""
    if _running is not None:
        try:
            _end(_running)
        except Exception as error:  # noqa: BLE001 - the interruption, not this, is what the user must see
            print(f"dlrun: no sweep summary ({error})")


def exit_code() -> int:
    """0 unless a job of the sweep that just ended failed: then 1 for a bug, 2 for bad input only."""
    return 0 if _ended is None else _ended.exit_code()


def _end(sweep_dir: Path) -> None:
    global _running, _ended
    from dlrun.sweep import summary, table

    _running = None
    _ended = summary.collect(sweep_dir)
    summary.write(_ended)
    table.show(_ended)

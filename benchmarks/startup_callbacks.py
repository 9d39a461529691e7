"""Callbacks that end a benchmarked `dlrun` process at a chosen point (bench_train.py, section 2).

They reach the real console script through its own options, with this folder on PYTHONPATH:
  +callbacks.first_step._target_=startup_callbacks.FirstStep +callbacks.first_step.marker=<file>
  +hydra.callbacks.exit_after_job._target_=startup_callbacks.ExitAfterJob
"""

import os
import sys
import time

from hydra.experimental.callback import Callback as HydraCallback

from dlrun.callbacks.base import Callback


class FirstStep(Callback):
    """A dlrun callback: after the first optimizer step, writes "<time.monotonic()> <time.process_time()>" to marker
    (one clock for every process on Linux) and ends the process."""

    def __init__(self, marker: str):
        self.marker = marker

    def on_train_step_end(self, trainer) -> None:
        with open(self.marker, "w") as file:
            file.write(f"{time.monotonic()!r} {time.process_time()!r}")
        os._exit(0)


class ExitAfterJob(HydraCallback):
    """A Hydra callback: ends the process as soon as the job (dlrun's run()) has returned, so that what a whole run
    takes beyond it is what the process does on its way out."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

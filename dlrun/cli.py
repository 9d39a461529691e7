"""The `dlrun` command: the only @hydra.main. Heavy modules (torch) load only once a run starts.

A single run exits 2 on bad configuration or input (a short red panel) and 1 on a bug (its traceback). In a sweep
(`dlrun -m`) a job's failure is recorded and the sweep goes on (dlrun.sweep.job); the sweep ends with the results
table and exits 0 when every job finished, else as its failed jobs would have: 2 bad input, 1 a bug.
"""

import atexit
import contextlib
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dlrun.config import CONFIG_DIR, register_schemas
from dlrun.errors import EXIT_BAD_INPUT, ConfigError, exit_on_bad_input, report

_job_started = False  # whether Hydra got as far as calling the job: an exit before that is a config error


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> float | None:
    global _job_started
    _job_started = True
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        from dlrun.sweep.job import run_job

        return run_job(cfg, train)
    from dlrun.sweep.repeats import refuse_outside_sweep

    with exit_on_bad_input():
        refuse_outside_sweep(cfg)
        from dlrun.run import run

        return run(cfg, hydra_cfg.runtime.output_dir)  # validated by RunDirGuard, before the run dir existed


def train(cfg: DictConfig, run_dir: str | Path) -> float | None:
    """Validate, then run (a sweep's job): the monitored metric of the best checkpoint."""
    from dlrun.validation import validate

    validate(cfg)
    from dlrun.run import run

    return run(cfg, run_dir)


def parse_overrides(args: list[str]) -> list:
    """The command line's overrides as Hydra parses them; none when one is malformed (Hydra reports it itself)."""
    from dlrun.compose import parse

    try:
        return parse([arg for arg in args if "=" in arg and not arg.startswith("-")])
    except ConfigError:
        return []


def check_group_overrides(parsed: list) -> None:
    """`model=0`, `model=true`: Hydra fails on anything but an option name there, with a traceback."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob

    groups = {path.name for path in CONFIG_DIR.iterdir() if path.is_dir()}
    for override in parsed:
        value = override.value()
        if override.key_or_group not in groups or override.is_delete() or isinstance(value, Glob):
            continue
        choices = value.list if isinstance(value, ChoiceSweep) else [value]
        if not all(isinstance(choice, str) and choice for choice in choices):
            group = override.key_or_group
            options = ", ".join(sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml")))
            raise ConfigError(
                f"{group} = {override.input_line.partition('=')[2]}: takes an option name; type one of {options}"
            )


def quiet_rank_overrides(args: list[str]) -> list[str]:
    """Under torchrun, ranks other than 0 write nothing: the job's one run dir is rank 0's."""
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        return []
    overrides = ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    if not any(arg.startswith("hydra.run.dir=") for arg in args):
        overrides.append(f"hydra.run.dir={tempfile.gettempdir()}/dlrun-rank{rank}-{os.getpid()}")
    return overrides


def main() -> None:
    register_schemas()
    from dlrun import override_values

    with exit_on_bad_input():
        override_values.check_quoting(sys.argv[1:])  # before Hydra parses them
        parsed = parse_overrides(sys.argv[1:])
        check_group_overrides(parsed)
        override_values.check_types(parsed)
    sys.argv += quiet_rank_overrides(sys.argv[1:])
    from dlrun.signals import requests
    from dlrun.sweep import callback

    try:
        with requests.caught():  # from start-up on, a signal stops the run at its next safe point (dlrun.signals)
            _job()
    except SystemExit as exit_:
        # Hydra exits with 1 for an unknown option, key or malformed override; that is bad input too.
        if exit_.code == 1 and not _job_started:
            _suggest_after_hydra_error(parsed)
            sys.exit(EXIT_BAD_INPUT)
        callback.interrupted()  # a sweep stopped by Ctrl-C or SIGTERM: its table so far, and how to resume it
        raise
    except KeyboardInterrupt:
        callback.interrupted()
        sys.exit(130)
    code = callback.exit_code()
    if _under_torchrun():
        _exit_without_teardown(code)
    if code:
        sys.exit(code)


def _suggest_after_hydra_error(parsed: list) -> None:
    """Below Hydra's error: the existing keys and options closest to the unknown ones (did you mean ...?)."""
    from dlrun.did_you_mean import config_dirs, suggestions

    lines = suggestions(parsed, config_dirs(sys.argv[1:], CONFIG_DIR))
    if lines:
        report(ConfigError(*lines))


def command() -> None:
    """The installed `dlrun` (and `python -m dlrun`): main(), then, when it ends well, an exit without the
    interpreter's teardown of every module, which takes about a second after a torch run."""
    main()
    _exit_without_teardown(0)


def _under_torchrun() -> bool:
    return os.environ.get("WORLD_SIZE", "1") != "1"


def _exit_without_teardown(code: int) -> None:
    """Leave once the work is done. On one process, as the interpreter would up to its teardown: wait for the threads
    (and shut down the executors), run the atexit handlers (log files closed, worker processes joined). Under
    torchrun only the log files are closed: gloo's threads can abort a rank ("terminate called without an active
    exception") when the process group is torn down at exit."""
    if _under_torchrun():
        logging.shutdown()
    else:
        threading._shutdown()
        atexit._run_exitfuncs()
    with contextlib.suppress(BrokenPipeError):  # the reader of a pipe (| head) may be gone
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)

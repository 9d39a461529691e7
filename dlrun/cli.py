"""The `dlrun` command: the only @hydra.main. Heavy modules (torch) load only once a run starts."""

import sys

import hydra
from omegaconf import DictConfig

from dlrun.config import CONFIG_DIR, register_schemas
from dlrun.errors import ConfigError

EXIT_BAD_INPUT = 2
_job_started = False  # whether Hydra got as far as calling the job: an exit before that is a config error


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> float | None:
    global _job_started
    _job_started = True
    from hydra.core.hydra_config import HydraConfig

    from dlrun.config import validate

    try:
        validate(cfg)
        from dlrun.run import run

        return run(cfg, HydraConfig.get().runtime.output_dir)
    except ConfigError as error:
        report(error)
        sys.exit(EXIT_BAD_INPUT)


def report(error: ConfigError) -> None:
    """Print a configuration error as a short red panel on stderr, without a traceback."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    body = Text("\n".join(f"• {problem}" for problem in error.problems))
    Console(stderr=True).print(Panel(body, title="dlrun: bad configuration", border_style="red", expand=False))


def main() -> None:
    register_schemas()
    try:
        _job()
    except SystemExit as exit_:
        # Hydra exits with 1 for an unknown option, key or malformed override; that is bad input too.
        if exit_.code == 1 and not _job_started:
            sys.exit(EXIT_BAD_INPUT)
        raise

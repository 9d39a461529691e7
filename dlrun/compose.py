"""The config `dlrun <overrides>` would run, composed outside `dlrun` itself: for dlrun-eval and dlrun-lr-find.

Hydra's compose API on dlrun's conf/, with Hydra's own node so that ${hydra:...} (the default `name`) and
hydra.run.dir resolve as in a run. A bad override is a ConfigError with Hydra's message and the did-you-mean lines
of the `dlrun` command. Imports no torch.
"""

from collections.abc import Sequence

from omegaconf import DictConfig

from dlrun.config import CONFIG_DIR, register_schemas
from dlrun.errors import ConfigError, first_line


def compose(overrides: Sequence[str]) -> DictConfig:
    """The composed config, its hydra node included and set as Hydra's current one."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException

    register_schemas()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3", job_name="dlrun"):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    except HydraException as error:
        raise ConfigError(first_line(error), *_suggestions(overrides)) from None
    HydraConfig.instance().set_config(cfg)
    return cfg


def parse(overrides: Sequence[str]) -> list:
    """The overrides as Hydra parses them; a malformed one is a ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as error:
        raise ConfigError(f"{first_line(error)}; type overrides as dlrun takes them: key=value, group=option") from None


def gives_run_dir(overrides: Sequence[str]) -> bool:
    """Whether the overrides name the run dir (hydra.run.dir=DIR); else a command picks its own."""
    return any(override.key_or_group == "hydra.run.dir" for override in parse(overrides))


def _suggestions(overrides: Sequence[str]) -> list[str]:
    from dlrun.did_you_mean import suggestions

    try:
        return suggestions(parse(overrides), [CONFIG_DIR])
    except ConfigError:
        return []

"""Every numeric, true/false and one-of-a-few key of every option has a rule, and the rules hold what users type;
settings that do not fit the data read are refused before training; the CLI leaves no run dir for either."""

import pytest
from omegaconf import OmegaConf

from dlrun.config import CONFIG_DIR
from dlrun.data.spec import DataSpec
from dlrun.errors import ConfigError
from dlrun.validation import validate
from dlrun.validation.shapes import check_shapes
from dlrun.validation.values import BETAS, CHOICES, FLAGS, NUMBERS, SIZE_LISTS

from conftest import SMALL, compose_config, run_cli

# Checked by rules of their own: the trainer's schema and _check_trainer, the data's shape and classes, torchvision's
# transforms, a class given by index or name, one weight per class, the top-level quiet (${quiet} in callbacks).
OWN_RULES = (
    "trainer.",
    "dataset.in_shape",
    "dataset.num_classes",
    "dataset.vocab_size",
    "dataset.transforms.per_sample.",
    "dataset.transforms.resize",
    "task.anomaly_class",
    "loss.criterion.class_weights",
    "callbacks.progress.quiet",
    "callbacks.text_samples.quiet",
)
# Where each option file's keys sit in the composed config; the presets (experiment/) write global keys.
PLACES = {"dataset/transforms": "dataset.transforms.", "experiment": ""}


def option_keys():
    """(dotted key, value) of every value in every option file of dlrun's groups and presets."""
    for path in sorted(CONFIG_DIR.glob("*/**/*.yaml")):
        group = str(path.parent.relative_to(CONFIG_DIR))
        if group.split("/")[0] in ("hydra", "hparams_search", "trainer"):
            continue
        node = OmegaConf.to_container(OmegaConf.load(path))
        node.pop("defaults", None)
        yield from leaves(node, PLACES.get(group, f"{group}."))


def leaves(node, prefix):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        elif not str(key).startswith("_"):  # Hydra's _target_, _partial_
            yield f"{prefix}{key}", value


def test_every_number_and_flag_of_every_option_has_a_rule():
    unchecked = set()
    for key, value in option_keys():
        if key.startswith(OWN_RULES) or key in SIZE_LISTS or key in BETAS or key in CHOICES:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if (isinstance(value, bool) and key not in FLAGS) or (number and key not in NUMBERS):
            unchecked.add(key)
    assert not unchecked, f"add a rule to dlrun/validation/values.py for {sorted(unchecked)}"


def test_every_option_default_keeps_its_rules():
    for key, value in option_keys():
        rule = NUMBERS.get(key)
        if rule is not None and isinstance(value, int | float):
            assert rule.allows(value), (key, value)
        if rule is not None:
            assert rule.allows(rule.example), key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["dataset.batch_size=64.0"],
            "dataset.batch_size = 64.0: must be a whole number >= 1; type dataset.batch_size=64",
        ),
        (
            ["scheduler=step", "scheduler.step_size=0"],
            "scheduler.step_size = 0: must be a whole number >= 1; type scheduler.step_size=10",
        ),
        (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma = 0: must be > 0; type scheduler.gamma=0.1"),
        (
            ["dataset.batch_size=1000000000000"],
            "dataset.batch_size = 1000000000000: must be a whole number >= 1 and <= 2147483647; "
            "type dataset.batch_size=64",
        ),
        (
            ["optimizer=sgd", "optimizer.momentum=1"],
            "optimizer.momentum = 1: must be in [0, 1); type optimizer.momentum=0.9",
        ),
        (
            ["dataset=image_folder", "dataset.storage=disk"],
            "dataset.storage = disk: unknown; type dataset.storage=auto|memory|stream",
        ),
        (["model.batch_norm=maybe"], "model.batch_norm = maybe: must be true or false; type model.batch_norm=true"),
        (["dataset.batch_size=null"], "dataset.batch_size = null: must be a number; type dataset.batch_size=64"),
    ],
)
def test_values_that_crashed_in_training_are_refused_and_the_suggestion_passes(overrides, message):
    with pytest.raises(ConfigError) as raised:
        validate(compose_config(*overrides))
    assert message in str(raised.value)
    suggestion = message.rpartition("; type ")[2].split(" or ")[0].split("|")[0]  # the first value it names
    validate(compose_config(*overrides, suggestion))


@pytest.mark.parametrize("key", sorted(NUMBERS))
def test_every_rule_refuses_a_wrong_type_and_suggests_a_value_it_allows(key):
    rule = NUMBERS[key]
    config = OmegaConf.create({})
    OmegaConf.update(config, key, "many", force_add=True)
    assert check_values_of(config) == [
        f"{key} = many: must be a number; type {key}={rule.example:g}" + (f" or {key}=null" if rule.nullable else "")
    ]
    OmegaConf.update(config, key, rule.example)
    assert check_values_of(config) == []


def check_values_of(config):
    """The problems _check_numbers finds in a config of one group key."""
    from dlrun.validation.values import _check_numbers

    return _check_numbers(config)


def fits(*overrides: str, spec: DataSpec) -> list[str]:
    return check_shapes(compose_config(*overrides), spec)


@pytest.mark.parametrize(
    ("overrides", "spec", "message", "fix", "fixed_spec"),
    [
        (  # a user's loader that gives flat inputs, the config stating digits' images
            [],
            DataSpec(in_shape=[64], class_names=list("0123456789")),
            "dataset.in_shape = [1, 8, 8]: the data gives inputs of shape [64]; type dataset.in_shape=[64]",
            ["dataset.in_shape=[64]"],
            None,
        ),
        (
            ["dataset.transforms.resize=[4,4]"],
            DataSpec(in_shape=[1, 8, 8], class_names=list("0123456789")),
            "dataset.in_shape = [1, 8, 8] (after dataset.transforms.resize = [4, 4]: [1, 4, 4]): the data gives inputs "
            "of shape [1, 8, 8]; type dataset.in_shape=[1,8,8] dataset.transforms.resize=null",
            ["dataset.transforms.resize=null"],
            None,
        ),
        (  # one class: a classifier of zero useful outputs
            [],
            DataSpec(in_shape=[1, 8, 8], class_names=["0"]),
            "loss = cross_entropy: the data holds 1 class, and a classifier needs at least 2",
            ["loss=mse"],
            None,
        ),
        (
            ["dataset=diabetes", "loss=mse", "task=forecast"],
            DataSpec(in_shape=[10]),
            "task = forecast reads windows of a series [steps, values] with a number to forecast, and the data gives "
            "inputs of shape [10]; type dataset=timeseries loss=mse, or experiment=timeseries",
            ["dataset=timeseries", "loss=mse", "task=forecast"],
            DataSpec(in_shape=[24, 1]),
        ),
        (
            ["experiment=text"],
            DataSpec(in_shape=[128], class_names=["a", "b", "c"]),  # a user's loader: indices, not marked as tokens
            "task = language_model continues a text token by token, and the data gives inputs of shape [128], not "
            "tokens; type dataset=text model=lstm, or experiment=text",
            ["experiment=text"],
            DataSpec(in_shape=[128], class_names=["a", "b", "c"], tokens=True),
        ),
    ],
)
def test_settings_that_do_not_fit_the_data_are_named_with_what_fits(overrides, spec, message, fix, fixed_spec):
    problems = fits(*overrides, spec=spec)
    assert len(problems) == 1 and problems[0].startswith(message), problems
    assert fits(*fix, spec=fixed_spec or spec) == []


def no_run_dir(cwd) -> bool:
    return not any(path.is_dir() and path.name != "outputs" for path in cwd.rglob("*"))


@pytest.mark.parametrize(
    ("overrides", "message", "suggestion"),
    [
        (["dataset.batch_size=1000000000000"], "dataset.batch_size = 1000000000000: must be a whole number", None),
        (["dataset.batch_size=6.5"], "dataset.batch_size = 6.5: must be a whole number >= 1", None),
        (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size = 0: must be a whole number >= 1", None),
        (["dataset.num_classes=0"], "dataset.num_classes = 0: must be a whole number >= 2", "dataset.num_classes=10"),
        (  # found when digits is read
            ["dataset.in_shape=[3,8,8]"],
            "dataset.in_shape = [3, 8, 8]: digits has 64 features per sample; type dataset.in_shape=[1,8,8]",
            None,
        ),
        (  # found by the config (dlrun's own dataset) or by the data it gives
            ["dataset=diabetes", "loss=mse", "task=forecast"],
            "task = forecast",
            "dataset=timeseries",
        ),
    ],
)
def test_the_cli_refuses_values_that_crashed_in_training_leaving_no_run_dir(overrides, message, suggestion, tmp_path):
    result = run_cli(*SMALL, "trainer=fast", *overrides, cwd=tmp_path)
    shown = " ".join(result.stderr.replace("│", " ").split())
    assert result.returncode == 2, result.stderr
    assert message in shown and "Traceback" not in shown
    assert no_run_dir(tmp_path), sorted(tmp_path.rglob("*"))
    suggestion = suggestion or shown.rpartition("; type ")[2].split()[0]
    fixed = [o for o in overrides if o.partition("=")[0] != suggestion.partition("=")[0]] + [suggestion]
    validate(compose_config(*fixed, "trainer=fast"))


def test_an_unknown_compile_backend_is_refused_naming_the_backends():
    with pytest.raises(
        ConfigError,
        match="trainer.compile_backend = inductr: unknown to torch.compile; type trainer.compile_backend=inductor",
    ):
        validate(compose_config("trainer.compile=true", "trainer.compile_backend=inductr"))
    validate(compose_config("trainer.compile=true", "trainer.compile_backend=aot_eager"))

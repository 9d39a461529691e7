"""Property-based bad input: random group combinations and random values for every key of every group's composed
configs, as overrides of the real `dlrun` command, end in exit 0 or a clear exit 2 naming the key, and never touch an
earlier run.

`make test` draws the same 8 examples each time; DLRUN_FUZZ_EXAMPLES=N draws N new ones at random, and
DLRUN_FUZZ_LOG=FILE appends one JSON line per example (overrides, exit code, seconds, last line of output) to FILE.
"""

import functools
import hashlib
import json
import os
import resource
import subprocess
import time

import pytest
import torch
from hydra.errors import HydraException
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlrun import build
from dlrun.data.mixing import BatchMix
from dlrun.errors import ConfigError

from conftest import DLRUN, compose_config, only_run_dir, option_names

# Every group of conf/ that a run composes (dataset/transforms is the image datasets' nested one).
GROUPS = [
    "task",
    "dataset",
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "env",
    "trainer",
    "callbacks",
    "dataset/transforms",
    "experiment",
    "hparams_search",
]
# Each example stays cheap: one epoch of 2 batches per split on the CPU. Drawn keys never turn fast_dev_run off.
FAST = ["trainer.fast_dev_run=true", "trainer.device=cpu", "quiet=true", "print_config=false"]
NOT_DRAWN = {"trainer.fast_dev_run"}
MEMORY_LIMIT = 8 * 2**30  # address space of each run: a huge layer fails to allocate instead of filling the machine
EARLIER = "EARLIER"  # a drawn value naming the earlier run's dir or its last.pt, filled in per test

NUMBERS = st.one_of(
    st.integers(-5, 300).map(str),
    st.floats(-10, 10, allow_nan=False).map(lambda x: f"{x:.3g}"),
)
VALUE_KINDS = {
    "wrong type": st.sampled_from(["abc", "true", "1.5", "'7'", "[a,b]", "{a: 1}", "{_target_: os.system}"]),
    "negative": st.sampled_from(["-1", "-0.5", "-100", "-1e9", "[-1]"]),
    "zero": st.sampled_from(["0", "0.0", "[0]", "false"]),
    "huge": st.sampled_from(["1e9", "2147483648", "99999999999", "1e308", "[1000000,1000000]"]),
    "empty": st.sampled_from(["", "''", "[]", "{}", "null"]),
    "non-finite": st.sampled_from(["nan", "inf", "-inf", "[nan]"]),
    "string": st.sampled_from(
        ["adam", "cnn", "max", "min", "cuda", "cpu", "auto", "bf16", "16", "x", "é", "a b", "${seed}", "${nope}"]
    ),
    "list": st.lists(st.one_of(st.integers(-2, 64).map(str), st.sampled_from(["0.5", "x", "nan"])), max_size=4).map(
        lambda items: "[" + ",".join(items) + "]"
    ),
    "number": NUMBERS,
    "earlier run": st.sampled_from([f"{EARLIER}/checkpoints/last.pt", EARLIER]),
}
VALUES = st.one_of(*(strategy.map(lambda value, kind=kind: (kind, value)) for kind, strategy in VALUE_KINDS.items()))
PREFIXES = st.sampled_from(["", "", "", "+", "++", "~"])
# Per group: its default (None) or one of its options: task, dataset and model each half the time (odd combinations of
# the three), the other groups a seventh.
COMBINATION = st.fixed_dictionaries(
    {
        group: st.sampled_from([None] * len(options) * (1 if group in ("task", "dataset", "model") else 6) + options)
        for group in GROUPS
        if (options := option_names(group))
    }
)
# One option of one group, whose config lends keys the drawn combination may lack.
OTHER_OPTION = st.sampled_from([f"{group}={option}" for group in GROUPS for option in option_names(group)])


def config_keys(cfg) -> list[str]:
    """Every dotted key of a composed config, its nodes too (model, callbacks.progress), list items left out."""
    keys = []

    def walk(node, prefix):
        for key, value in node.items():
            keys.append(prefix + str(key))
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return [key for key in keys if key not in NOT_DRAWN]


@functools.cache
def keys_of(*overrides: str) -> tuple[str, ...]:
    """The keys of the config these overrides compose; none where it does not compose."""
    try:
        return tuple(config_keys(compose_config(*overrides)))
    except (HydraException, OmegaConfBaseException):
        return ()


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd")
    assert run_dlrun(*FAST, cwd=cwd).returncode == 0
    run_dir = only_run_dir(cwd / "outputs")
    return cwd, run_dir, fingerprint(run_dir)


def fingerprint(run_dir):
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in run_dir.rglob("*") if path.is_file()}


def run_dlrun(*args: str, cwd) -> subprocess.CompletedProcess:
    """The installed `dlrun` in cwd, its memory capped at MEMORY_LIMIT."""

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = os.environ | {"COLUMNS": "200"}
    command = [DLRUN, *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180, env=env, preexec_fn=cap_memory)


def override(prefix: str, key: str, value: str) -> str:
    return f"~{key}" if prefix == "~" else f"{prefix}{key}={value}"


def log(overrides: list[str], returncode: int, seconds: float, output: str) -> None:
    """One JSON line per example in DLRUN_FUZZ_LOG, when it is set."""
    if "DLRUN_FUZZ_LOG" in os.environ:
        lines = [line.strip(" │╭╮╰╯─") for line in output.splitlines() if "HYDRA_FULL_ERROR" not in line]
        last = ([line for line in lines if line] or [""])[-1]  # a traceback's exception, an error panel's last line
        record = {"overrides": overrides, "exit": returncode, "seconds": round(seconds, 1), "last_line": last}
        with open(os.environ["DLRUN_FUZZ_LOG"], "a") as file:
            file.write(json.dumps(record) + "\n")


def names_a_key(output: str, overrides: list[str]) -> bool:
    """Whether an exit 2's message names a key or group of the overrides, or a group the combination set."""
    named = {item.lstrip("+~").partition("=")[0] for item in overrides}
    named |= {key.split(".")[0] for key in named} | {group.split("/")[0] for group in GROUPS}
    flat = " ".join(output.split())  # the message panel wraps long lines
    return any(key in flat for key in named)


@settings(
    max_examples=int(os.environ.get("DLRUN_FUZZ_EXAMPLES", 8)),
    # make test draws the same 8 examples each time; DLRUN_FUZZ_EXAMPLES=500 by hand draws new ones at random
    derandomize="DLRUN_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    database=None,  # each failing example is printed (and logged); none is replayed from .hypothesis/
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each step is a 2-3 s subprocess; the example is shown
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(COMBINATION, st.data())
def test_random_overrides_exit_0_or_2_without_a_traceback(earlier_run, combination, data):
    cwd, run_dir, before = earlier_run
    groups = [f"{group}={option}" for group, option in combination.items() if option is not None]
    # Keys of the drawn combination's own config, or of another group option's (perhaps absent from this one).
    keys = keys_of(*groups) + keys_of(data.draw(OTHER_OPTION)) + ("no_such_key",)
    drawn = data.draw(st.lists(st.tuples(PREFIXES, st.sampled_from(keys), VALUES), min_size=1, max_size=3))
    for _, _, (kind, _) in drawn:
        event(f"value: {kind}")
    overrides = [
        *groups,
        *(override(prefix, key, value.replace(EARLIER, str(run_dir))) for prefix, key, (_, value) in drawn),
    ]
    start = time.monotonic()
    result = run_dlrun(*FAST, *overrides, cwd=cwd)
    output = result.stdout + result.stderr
    log(overrides, result.returncode, time.monotonic() - start, output)
    event(f"exit {result.returncode}")
    assert result.returncode in (0, 2), output
    assert "Traceback" not in output, output
    if result.returncode == 2:
        assert names_a_key(output, overrides), output
    assert fingerprint(run_dir) == before  # the earlier run is intact


# What the fuzz found (exit 1 with a traceback), now a ConfigError naming the key: a value where a config belongs,
# a _target_ that is no string and a _partial_ that is no bool.
FOUND = {
    "callbacks.progress=-100": lambda cfg, tmp_path: build.trainer(cfg, tmp_path),
    "loss.criterion=-0.5": lambda cfg, tmp_path: build.instantiate(cfg.loss.criterion, "loss.criterion"),
    "dataset._target_=[-1]": lambda cfg, tmp_path: build.data(cfg),
    "task._partial_=[]": lambda cfg, tmp_path: build.instantiate(cfg.task, "task"),
}


@pytest.mark.parametrize("bad", FOUND)
def test_found_by_the_fuzz_is_a_config_error_naming_the_key(bad, tmp_path):
    with pytest.raises(ConfigError, match=bad.partition(".")[0]):
        FOUND[bad](compose_config(bad), tmp_path)


def test_a_deleted_key_that_the_run_dir_reads_exits_2_naming_it(tmp_path):
    result = run_dlrun(
        *FAST, "name=inf", "~name", cwd=tmp_path
    )  # found by the fuzz: an InterpolationKeyError traceback
    assert result.returncode == 2, result.stderr
    assert "hydra.run.dir: Interpolation key 'name' not found" in " ".join(result.stderr.split())
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("alphas", [{"mixup": 2, "cutmix": 0}, {"mixup": 0, "cutmix": 90}])
def test_a_whole_number_alpha_mixes(alphas):
    """Found by the fuzz: dataset.transforms.train.cutmix=90 crashed in training (no Dirichlet of whole numbers)."""
    images, labels = BatchMix(**alphas, num_classes=10)(torch.rand(4, 1, 8, 8), torch.arange(4))
    assert images.shape == (4, 1, 8, 8) and torch.allclose(labels.sum(1), torch.ones(4))


def test_a_model_too_large_for_memory_exits_2_naming_the_model():
    """Found by the fuzz: model.hidden=[1000000000] (256 GB of weights) ended in the allocator's traceback."""
    cfg = compose_config("model.hidden=[1000000000]")
    with pytest.raises(ConfigError, match="its weights do not fit in this machine's memory"):
        build.model(cfg, build.data(cfg).spec)

"""Property-based bad input: random keys and values as CLI overrides end in exit 0 or a clear exit 2."""

import hashlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import only_run_dir, run_cli

KEYS = [
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.weight_decay",
    "optimizer.betas",
    "model.hidden",
    "model.dropout",
    "model.activation",
    "model.batch_norm",
    "dataset.batch_size",
    "dataset.val_fraction",
    "dataset.test_fraction",
    "dataset.split_seed",
    "dataset.normalize",
    "dataset.num_workers",
    "dataset.in_shape",
    "dataset.num_classes",
    "loss.l1",
    "loss.l2",
    "loss.criterion.label_smoothing",
    "loss.criterion.class_weights",
    "trainer.max_epochs",
    "trainer.precision",
    "trainer.device",
    "trainer.gradient_clip_val",
    "trainer.accumulate_grad_batches",
    "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch",
    "trainer.data_on_device",
    "callbacks.checkpoint.monitor",
    "callbacks.early_stopping.patience",
    "callbacks.checkpoint.save_interval_s",
    "callbacks.progress.delay",
    "callbacks.progress.refresh_per_second",
    "task.aux_loss_weight",
    "seed",
    "ckpt_path",
    "resume",
    "model",
    "dataset",
    "loss",
    "optimizer",
    "scheduler",
    "no_such_key",
    "trainer.no_such_key",
]
NUMBERS = st.one_of(
    st.integers(-5, 300),
    st.floats(-10, 10, allow_nan=False).map(lambda x: f"{x:.3g}"),
    st.sampled_from(["0", "1e-9", "1e9", "nan", "inf", "-inf"]),
)
WORDS = st.sampled_from(["adam", "cnn", "mlp", "bce", "mse", "cuda", "cpu", "bf16", "16", "auto", "x", "", "null"])
LISTS = st.lists(st.integers(-2, 64), max_size=4).map(lambda items: "[" + ",".join(map(str, items)) + "]")
VALUES = st.one_of(NUMBERS, WORDS, LISTS, st.booleans().map(str).map(str.lower))
OVERRIDES = st.lists(st.tuples(st.sampled_from(["", "+", "~"]), st.sampled_from(KEYS), VALUES), min_size=1, max_size=3)
FAST = ["trainer.fast_dev_run=true", "trainer.device=cpu", "quiet=true", "print_config=false"]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd")
    assert run_cli(*FAST, cwd=cwd).returncode == 0
    run_dir = only_run_dir(cwd / "outputs")
    return cwd, run_dir, fingerprint(run_dir)


def fingerprint(run_dir):
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in run_dir.rglob("*") if path.is_file()}


def override(prefix: str, key: str, value: str) -> str:
    return f"~{key}" if prefix == "~" else f"{prefix}{key}={value}"


@settings(
    max_examples=int(os.environ.get("DLRUN_FUZZ_EXAMPLES", 8)),
    # make test draws the same 8 examples each time; DLRUN_FUZZ_EXAMPLES=80 by hand draws new ones at random
    derandomize="DLRUN_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(OVERRIDES)
def test_random_overrides_exit_0_or_2_without_a_traceback(earlier_run, overrides):
    cwd, run_dir, before = earlier_run
    result = run_cli(*FAST, *(override(*item) for item in overrides), cwd=cwd, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode in (0, 2), output
    assert "Traceback" not in output
    if result.returncode == 2:
        assert output.strip()
    assert fingerprint(run_dir) == before  # the earlier run is intact

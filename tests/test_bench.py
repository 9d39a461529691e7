"""The benchmark script's own correctness, not its timings: its variants do the same arithmetic as dlrun, its
GPU section runs (here on the CPU, without torch.compile) so that it still works where a GPU is lent, and its import
table reads Python's import profiler."""

import os
import subprocess
import sys

import pytest
import torch

from dlrun import build

from conftest import import_bench_train

bench_train = import_bench_train()


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_dlrun_and_the_plain_loops_over_tensors_end_on_the_same_validation_loss(model):
    """Same seeds, batch order and arithmetic: the ratios compare the same work (README of benchmarks/)."""
    cfg = bench_train.bench_config(model, 2)
    data = build.data(cfg)
    variants = (bench_train.DLRUN_FULL, bench_train.DLRUN_BARE, bench_train.PLAIN_TENSORS, bench_train.PLAIN_METRICS)
    losses = {variant: bench_train.measure(variant, cfg, data).val_loss for variant in variants}
    # Equal but for the last rounding of the mean (dlrun divides on the host, the plain loops in float32).
    assert all(loss == pytest.approx(losses[bench_train.PLAIN_TENSORS], rel=1e-6) for loss in losses.values()), losses


def test_the_gpu_section_measures_both_loops_and_reports_them():
    result = bench_train.bench_gpu(
        torch.device("cpu"), samples=32, batch_size=16, epochs=3, compiled=False, precision="32"
    )
    assert set(result.images_per_s) == {"dlrun", "plain"} and all(v > 0 for v in result.images_per_s.values())
    table = bench_train.markdown(bench_train.gpu_reports(result))
    assert "| dlrun Trainer |" in table and "| plain loop |" in table


def test_the_import_table_reads_pythons_import_profiler():
    """Each dlrun module's own share of -X importtime's report, and the packages it brought in."""
    code = "import dlrun.inputs"
    env = os.environ | {"PYTHONPROFILEIMPORTTIME": "1"}
    report = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr
    rows = {name: (seconds, brought) for name, seconds, brought in bench_train.dlrun_imports(report)}
    assert {"dlrun.inputs", "dlrun.inputs.trained", "dlrun.inputs.files", "dlrun.errors"} <= set(rows)
    assert all(seconds >= 0 for seconds, _ in rows.values())
    assert "omegaconf" in rows["dlrun.inputs.trained"][1]  # trained.py is the first to import it
    assert not any(module.startswith("dlrun") for _, brought in rows.values() for module in brought)

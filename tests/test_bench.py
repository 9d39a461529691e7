"""The benchmark scripts' own correctness, not their timings: the training variants do the same arithmetic as dlrun,
the GPU section runs (here on the CPU, without torch.compile) so that it still works where a GPU is lent, the import
table reads Python's import profiler, and the plain script reaches its first step."""

import os
import subprocess
import sys

import pytest
import torch

from dlrun import build

from conftest import import_benchmark

gpu, import_times, report, startup, training = (
    import_benchmark(name) for name in ("gpu", "import_times", "report", "startup", "training")
)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_dlrun_and_the_plain_loops_over_tensors_end_on_the_same_validation_loss(model):
    """Same seeds, batch order and arithmetic: the ratios compare the same work (README of benchmarks/)."""
    cfg = training.bench_config(model, 2)
    data = build.data(cfg)
    variants = (training.DLRUN_FULL, training.DLRUN_BARE, training.PLAIN_TENSORS, training.PLAIN_METRICS)
    losses = {variant: training.measure(variant, cfg, data).val_loss for variant in variants}
    # Equal but for the last rounding of the mean (dlrun divides on the host, the plain loops in float32).
    assert all(loss == pytest.approx(losses[training.PLAIN_TENSORS], rel=1e-6) for loss in losses.values()), losses


def test_the_gpu_section_measures_both_loops_and_reports_them():
    result = gpu.bench_gpu(torch.device("cpu"), samples=32, batch_size=16, epochs=3, compiled=False, precision="32")
    assert set(result.images_per_s) == {"dlrun", "plain"} and all(v > 0 for v in result.images_per_s.values())
    table = report.markdown(gpu.gpu_reports(result))
    assert "| dlrun Trainer |" in table and "| plain loop |" in table


def test_the_import_table_reads_pythons_import_profiler():
    """Each dlrun module's own share of -X importtime's report, and the packages it brought in."""
    code = "import dlrun.inputs"
    env = os.environ | {"PYTHONPROFILEIMPORTTIME": "1"}
    profile = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr
    rows = {name: (seconds, brought) for name, seconds, brought in import_times.dlrun_imports(profile)}
    assert {"dlrun.inputs", "dlrun.inputs.trained", "dlrun.inputs.files", "dlrun.errors"} <= set(rows)
    assert all(seconds >= 0 for seconds, _ in rows.values())
    assert "omegaconf" in rows["dlrun.inputs.trained"][1]  # trained.py is the first to import it
    assert not any(module.startswith("dlrun") for _, brought in rows.values() for module in brought)


def test_the_plain_script_times_itself_to_its_first_step(tmp_path):
    """plain_first_step.py, run as the start-up section runs it, writes the clocks at its first step."""
    marker, argv = tmp_path / "first_step", [sys.executable, str(startup.PLAIN_FIRST_STEP)]
    wall, cpu = startup.timed_process([*argv, str(marker)], dict(os.environ), str(tmp_path), marker)
    assert marker.is_file() and wall > 0 and cpu > 0

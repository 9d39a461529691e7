"""The CUDA paths, run by `make test` on a machine with an NVIDIA GPU and skipped elsewhere: the model and the
splits on the GPU, mixed precision (bf16, and 16 with a gradient scaler), channels_last with torch.compile,
batches copied one by one when the splits stay in host memory, the benchmark's GPU section, and NCCL between two
GPUs under torchrun."""

import json
import os

import pytest
import torch

from dlrun import build
from dlrun.trainer import Trainer

from conftest import ENV, compose_config, import_benchmark, only_run_dir, torchrun

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda", 0)


def fit(*overrides: str):
    """A fit on the GPU of the given config; returns the data, the task and the final state."""
    cfg = compose_config("trainer.device=cuda", *overrides)
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    trainer = Trainer(**{**cfg.trainer, "device": "cuda"})
    state = trainer.fit(task, data, task.configure_optimizers(build.optimizer_factory(cfg)))
    return data, task, trainer, state


def test_the_model_and_the_splits_train_on_the_gpu():
    data, task, _trainer, state = fit("trainer.max_epochs=5")
    assert next(task.model.parameters()).device == CUDA
    assert data.resident_on == CUDA and data.train[0].device == CUDA  # digits fit: the splits went over once
    assert state.metrics["val/acc"] > 0.9


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_trains_on_the_gpu(precision):
    _data, _task, trainer, state = fit(f"trainer.precision={precision}", "trainer.max_epochs=5")
    assert trainer.scaler.is_enabled() == (precision == "16")  # float16 needs the scaler, bfloat16 does not
    assert state.metrics["val/acc"] > 0.9


def test_channels_last_and_compile_train_on_the_gpu():
    _data, task, _trainer, state = fit(
        "model=cnn",
        "trainer.precision=bf16",
        "trainer.channels_last=true",
        "trainer.compile=true",
        "trainer.max_epochs=2",
    )
    convolutions = [module for module in task.model.modules() if isinstance(module, torch.nn.Conv2d)]
    assert all(conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in convolutions)
    assert not convolutions[-1].weight.is_contiguous()  # NHWC indeed (a 1-channel first layer would be both)
    assert state.metrics["val/acc"] > 0.5


def test_splits_kept_in_host_memory_train_as_well():
    data, _task, _trainer, state = fit("trainer.data_on_device=false", "trainer.max_epochs=5")
    assert data.resident_on is None and data.train[0].device.type == "cpu"  # each batch was copied over
    assert state.metrics["val/acc"] > 0.9


def test_the_benchmarks_gpu_section_measures_both_loops():
    result = import_benchmark("gpu").bench_gpu(CUDA, samples=2048, batch_size=256, epochs=3)
    assert set(result.images_per_s) == {"dlrun", "plain"} and all(v > 0 for v in result.images_per_s.values())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs a GPU per process: 2 GPUs")
def test_two_processes_train_over_nccl(tmp_path):
    env = os.environ | ENV | {"PATH": os.environ["PATH"]}  # the GPU's libraries and devices as this process sees them
    result = torchrun("-m", "dlrun", "trainer.device=cuda", "print_config=false", cwd=tmp_path, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((only_run_dir(tmp_path / "outputs") / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.95

"""DDP on CPU with gloo, started by the real torchrun (python -m torch.distributed.run)."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, only_run_dir

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(*args, cwd, timeout=300):
    env = {"PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([*TORCHRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_ranks_end_with_identical_weights(tmp_path):
    result = torchrun(str(REPO / "tests" / "ddp_fit.py"), str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.slow
def test_two_process_dlrun_writes_one_run_dir_and_learns(tmp_path):
    result = torchrun("-m", "dlrun", "trainer.device=cpu", "print_config=false", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "outputs")
    assert len(list(tmp_path.glob("outputs/*/*"))) == 1  # not one per rank
    assert result.stdout.count("results") == 1  # rank 0 alone prints
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.95
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1

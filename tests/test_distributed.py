"""DDP on CPU with gloo, started by the real torchrun (python -m torch.distributed.run)."""

import subprocess
import sys

import torch

from conftest import REPO

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(*args, cwd, timeout=300):
    env = {"PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([*TORCHRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_ranks_end_with_identical_weights(tmp_path):
    result = torchrun(str(REPO / "tests" / "ddp_fit.py"), str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(first[name], second[name]) for name in first)

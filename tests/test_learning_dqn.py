"""DQN learns: experiment=dqn balances CartPole-v1 (mean greedy return >= 475 over 20 test episodes, played with
best.pt) within 100,000 environment steps, on the CPU, through the real CLI."""

import json

import pytest
import torch

from conftest import only_run_dir, run_cli

BAR = 475  # gymnasium's reward threshold for CartPole-v1
STEP_BUDGET = 100_000


@pytest.mark.slow
@pytest.mark.long  # over 20 s on 2 cores: `make learn` runs it, `make test` does not
def test_cartpole_is_balanced_within_100k_steps(tmp_path):
    done = run_cli("experiment=dqn", "trainer.device=cpu", "print_config=false", cwd=tmp_path, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert "test/return" in done.stdout  # the results table
    run_dir = only_run_dir(tmp_path / "outputs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    steps = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["task"]["steps"]
    assert steps <= STEP_BUDGET
    assert metrics["test/return"] >= BAR, metrics

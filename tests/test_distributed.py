"""DDP on CPU with gloo, started by the real torchrun (python -m torch.distributed.run)."""

import csv
import json
import math
import socket
import subprocess

import pytest
import torch

from dlrun import build

from conftest import ENV, REPO, TORCHRUN, compose_config, make_trainer, only_run_dir, torchrun

DDP_FIT = str(REPO / "tests" / "ddp_fit.py")


def test_ranks_end_with_identical_weights_and_evaluate_their_shards(tmp_path):
    result = torchrun(DDP_FIT, str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(first[name], second[name]) for name in first)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Each rank read half of every split, and the gathered test metrics are those of the whole split in one process.
    cfg = compose_config()
    data = build.data(cfg)
    per_rank = data.size("train") // 2  # a DistributedSampler's share with drop_last
    assert [s["train_batches"] for s in seen] == [math.ceil(per_rank / data.batch_size)] * 2
    assert sum(s["test_samples"] for s in seen) == data.size("test")
    task = build.task(cfg, build.model(cfg, data.spec), data)
    task.model.load_state_dict(first)
    whole = make_trainer(device="cpu").evaluate(task, data, "test")
    for metrics in seen:
        assert metrics.keys() >= whole.keys()
        assert all(metrics[name] == pytest.approx(whole[name], rel=1e-5) for name in whole)


def test_ranks_skip_a_nonfinite_batch_together(tmp_path):
    """nonfinite_loss=skip with an infinite loss on batches holding a 9, which the two ranks draw at different
    steps: every rank skips a batch that any rank finds non-finite (a rank skipping DDP's backward alone made gloo
    abort on a collective mismatch)."""
    skip = ["loss.criterion.class_weights=[1,1,1,1,1,1,1,1,1,inf]", "trainer.nonfinite_loss=skip"]
    result = torchrun(DDP_FIT, str(tmp_path), *skip, "dataset.batch_size=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert seen[0]["steps"] == seen[1]["steps"] > 0 and seen[0]["skipped_batches"] == seen[1]["skipped_batches"] > 0
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(first[name], second[name]) and torch.isfinite(first[name]).all() for name in first)


def test_ranks_stop_together_on_a_nonfinite_loss_one_of_them_sees(tmp_path):
    """With batches of 4 and an infinite class weight for 9s, rank 0 alone draws a 9 at the first step: the summed
    metrics are reduced across ranks before the check, so both stop with the message (rank 1 used to die of a
    closed gloo connection in its next step)."""
    overrides = ["loss.criterion.class_weights=[1,1,1,1,1,1,1,1,1,inf]", "trainer.log_every_n_steps=1"]
    result = torchrun(DDP_FIT, str(tmp_path), *overrides, "dataset.batch_size=4", cwd=tmp_path)
    assert result.returncode != 0
    for rank in (0, 1):
        assert f"[rank{rank}]: dlrun.trainer.NonFiniteLoss: train/loss became NaN or infinite" in result.stderr
    assert "gloo" not in result.stderr, result.stderr[-3000:]


def test_two_nodes_meet_through_the_c10d_rendezvous(tmp_path):
    """Two torchrun launchers, one process each, as on two machines: they find each other through the rendezvous
    endpoint (here on localhost) and train as one job."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [
        *TORCHRUN,
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{port}",
    ]
    nodes = [
        subprocess.Popen([*launcher, DDP_FIT, str(tmp_path)], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [node.communicate(timeout=300)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
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
    assert json.loads((run_dir / "provenance.json").read_text())["device"] == "cpu"  # written by rank 0
    # rank 0 wrote the per-class results of both ranks' shares of the test split
    supports = [int(row["support"]) for row in csv.DictReader((run_dir / "test_per_class.csv").open())]
    assert sum(supports) == build.data(compose_config()).size("test")


@pytest.mark.slow
def test_a_resumed_two_process_run_ends_as_an_uninterrupted_one(tmp_path):
    """The straight run keeps its first epoch's full state as a top-k file; a second launch resumes from it."""
    small = ["trainer.device=cpu", "print_config=false", "quiet=true", "trainer.limit_batches=4"]
    small += ["trainer.max_epochs=2", "callbacks.checkpoint.save_top_k=2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = torchrun("-m", "dlrun", *small, f"hydra.run.dir={straight}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (first_epoch,) = (straight / "checkpoints").glob("epoch=1-*.pt")
    result = torchrun("-m", "dlrun", *small, f"ckpt_path='{first_epoch}'", f"hydra.run.dir={resumed}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(first_epoch, weights_only=True)["epoch"] == 1
    ends = [torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True) for run_dir in (straight, resumed)]
    assert ends[0]["epoch"] == ends[1]["epoch"] == 2 and ends[0]["step"] == ends[1]["step"]
    assert all(torch.equal(ends[0]["model"][name], ends[1]["model"][name]) for name in ends[0]["model"])

"""provenance.json in real run dirs: the git commit and diff of a dirty repo, nothing about git outside one, package
versions, the machine, the dataset's fingerprint; dlrun-summary lists what differs between runs."""

import importlib.metadata
import json
import os
import platform
import subprocess

import torch
from test_sweep_helpers import finished_sweep, one_line

from dlrun import provenance
from dlrun.run import run
from dlrun.sweep import cli

from conftest import compose_config


def git(repo, *args) -> str:
    command = ["git", "-c", "user.name=dlrun test", "-c", "user.email=test@dlrun", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def committed_repo(path):
    path.mkdir()
    git(path, "init", "-q")
    (path / "notes.txt").write_text("first line\n")
    git(path, "add", "notes.txt")
    git(path, "commit", "-q", "-m", "first")
    return path


def test_a_run_in_a_dirty_git_repo_records_its_commit_and_its_diff(tmp_path, run_dir, monkeypatch):
    repo = committed_repo(tmp_path / "repo")
    (repo / "notes.txt").write_text("first line\nchanged by hand\n")
    monkeypatch.chdir(repo)
    run(compose_config("trainer.max_epochs=1", "trainer.limit_batches=2"), run_dir)

    record = json.loads((run_dir / provenance.PROVENANCE_FILE).read_text())
    assert record["git"]["commit"] == git(repo, "rev-parse", "HEAD") and record["git"]["dirty"] is True
    assert record["git"]["diff"] == provenance.DIFF_FILE
    assert "+changed by hand" in (run_dir / provenance.DIFF_FILE).read_text()
    assert record["packages"]["torch"] == importlib.metadata.version("torch")
    assert set(record["packages"]) >= {"torchvision", "dlrun", "hydra-core", "omegaconf", "numpy", "tensorboard"}
    assert record["python"] == platform.python_version() and record["cpu_count"] == os.cpu_count()
    assert (record["device"], record["gpu_count"]) == ("cpu", torch.cuda.device_count()) and record["device_name"]
    dataset = record["dataset"]
    assert dataset["files"] >= 1 and any(path.endswith("digits.csv.gz") for path in dataset["paths"])


def test_a_clean_repo_gives_its_commit_and_no_diff_file(tmp_path):
    repo = committed_repo(tmp_path / "repo")
    state = provenance.git_state(repo, tmp_path)
    assert state["commit"] == git(repo, "rev-parse", "HEAD") and state["dirty"] is False and state["diff"] is None
    assert not (tmp_path / provenance.DIFF_FILE).exists()


def test_runs_on_different_dataset_files_show_the_difference_in_dlrun_summary(tmp_path, capsys, monkeypatch):
    for name, rows in (("a.csv", 60), ("b.csv", 61)):
        lines = [f"{i % 7 / 7:.3f},{i % 5 / 5:.3f},{i % 2}" for i in range(rows)]
        (tmp_path / name).write_text("x1,x2,y\n" + "\n".join(lines) + "\n")
    result, sweep_dir = finished_sweep(tmp_path, "dataset=csv", "dataset.target=y", "dataset.path=a.csv,b.csv")

    for job in ("0", "1"):  # tmp_path is no git repo: nothing about git
        assert json.loads((sweep_dir / job / provenance.PROVENANCE_FILE).read_text())["git"] is None
        assert not (sweep_dir / job / provenance.DIFF_FILE).exists()
    differences = json.loads((sweep_dir / "summary.json").read_text())["provenance_differences"]
    assert {"dataset.sha256", "dataset.paths"} <= set(differences) and "packages.torch" not in differences
    assert sorted(dirs for by_value in [differences["dataset.sha256"]] for dirs in by_value.values()) == [["0"], ["1"]]

    monkeypatch.setenv("COLUMNS", "200")
    cli.main([str(sweep_dir)])
    shown = one_line(capsys.readouterr().out)
    sha = json.loads((sweep_dir / "0" / provenance.PROVENANCE_FILE).read_text())["dataset"]["sha256"]
    assert "the jobs differ in their provenance.json:" in shown and f"dataset.sha256: {sha} in 0;" in shown
    assert "dataset.sha256" in one_line(result.stdout)  # the sweep's own table ends the same way

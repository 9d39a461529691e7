"""dlrun-eval on a real digits run: the real console script in subprocesses, started together to save time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlrun.evaluate import main
from dlrun.run import run

from conftest import compose_config

DLRUN_EVAL = str(Path(sys.executable).with_name("dlrun-eval"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 2-epoch digits run, in-process: its dir holds metrics.json, model.pt and checkpoints/."""
    directory = tmp_path_factory.mktemp("eval") / "run"
    run(compose_config("trainer.max_epochs=2"), directory)
    return directory


@pytest.fixture(scope="module")
def evaluations(run_dir) -> dict[str, subprocess.CompletedProcess]:
    """Each case's dlrun-eval, all run at once."""
    cases = {
        "best": [str(run_dir / "checkpoints" / "best.pt")],
        "val": [str(run_dir / "model.pt"), "--split", "val", "trainer.device=cpu"],
        "iris": [str(run_dir / "checkpoints" / "best.pt"), "dataset=iris"],
        "missing": [str(run_dir / "checkpoints" / "nope.pt")],
    }
    env = os.environ | {"COLUMNS": "200"}
    started = {
        name: subprocess.Popen(
            [DLRUN_EVAL, *args], cwd=run_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for name, args in cases.items()
    }
    return {
        name: subprocess.CompletedProcess(process.args, process.wait(timeout=300), *process.communicate())
        for name, process in started.items()
    }


def eval_dir(result: subprocess.CompletedProcess, run_dir: Path) -> Path:
    line = next(line for line in result.stdout.splitlines() if line.startswith("eval dir: "))
    return run_dir.parent / line.removeprefix("eval dir: ")


def test_best_checkpoint_scores_the_run_test_metrics(evaluations, run_dir):
    result = evaluations["best"]
    assert result.returncode == 0, result.stderr
    trained = json.loads((run_dir / "metrics.json").read_text())
    directory = eval_dir(result, run_dir)
    assert directory.parent == run_dir / "eval"
    metrics = json.loads((directory / "metrics.json").read_text())
    assert set(metrics) == {name for name in trained if name.startswith("test/")}
    assert metrics == pytest.approx({name: trained[name] for name in metrics}, abs=1e-6)
    assert "test/acc" in result.stdout  # the printed table
    assert "dataset" in (directory / "config.yaml").read_text()


def test_model_pt_on_the_val_split(evaluations, run_dir):
    result = evaluations["val"]
    assert result.returncode == 0, result.stderr
    trained = json.loads((run_dir / "metrics.json").read_text())
    metrics = json.loads((eval_dir(result, run_dir) / "metrics.json").read_text())
    assert set(metrics) == {"val/loss", "val/acc", "val/top5_acc"}
    assert metrics == pytest.approx({name: trained[name] for name in metrics}, abs=1e-6)


@pytest.mark.parametrize(("case", "message"), [("iris", "iris does not fit"), ("missing", "no such file")])
def test_mismatch_and_bad_path_exit_2(evaluations, case, message):
    result = evaluations[case]
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["empty.pt"], "an empty file (0 bytes)"),
        (["checkpoints/best.pt", "--split", "train"], "--split = train: no such split; type --split test"),
        (["checkpoints/best.pt", "model=cnn"], "model=cnn: the checkpoint's own model is tested"),
    ],
)
def test_bad_arguments_exit_2_in_process(run_dir, capsys, arguments, message):
    (run_dir / "empty.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as exited:
        main([str(run_dir / arguments[0]), *arguments[1:]])
    assert exited.value.code == 2
    assert message in " ".join(capsys.readouterr().err.replace("│", " ").split())

"""dlrun-lr-find on digits: the real console script, its PNG, event file and suggested override, which trains."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun.lr_find import main, suggest

from conftest import SMALL, run_cli

DLRUN_LR_FIND = str(Path(sys.executable).with_name("dlrun-lr-find"))
STEPS = 30


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("lr_find")
    command = [DLRUN_LR_FIND, "trainer.device=cpu", "--num-steps", str(STEPS), "--start-lr", "1e-5", "--end-lr", "1"]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=os.environ)
    assert result.returncode == 0, result.stderr
    return cwd, result


def run_dir_of(found) -> Path:
    cwd, result = found
    line = next(line for line in result.stdout.splitlines() if line.startswith("curve: "))
    return (cwd / line.removeprefix("curve: ")).parent


def test_the_curve_is_a_png_and_a_csv_of_an_exponential_sweep(found):
    run_dir = run_dir_of(found)
    assert run_dir.parent == found[0] / "outputs" / "lr_find" / "mlp_digits"
    with Image.open(run_dir / "lr_find.png") as image:
        image.load()
        assert image.format == "PNG" and image.size == (720, 440)
        assert len(image.getcolors(10_000)) > 3  # axes, text and curves drawn, not a blank image
    with open(run_dir / "lr_find.csv") as file:
        rows = list(csv.DictReader(file))
    lrs = [float(row["lr"]) for row in rows]
    assert 10 <= len(rows) <= STEPS
    assert lrs[0] == pytest.approx(1e-5)
    ratios = [later / earlier for earlier, later in zip(lrs, lrs[1:], strict=False)]
    assert ratios == pytest.approx([(1 / 1e-5) ** (1 / (STEPS - 1))] * len(ratios))  # exponential
    suggested = json.loads((run_dir / "lr_find.json").read_text())["suggested_lr"]
    assert lrs[0] < suggested < lrs[-1]


def test_tensorboard_has_the_loss_by_step_and_the_image(found):
    run_dir = run_dir_of(found)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    with open(run_dir / "lr_find.csv") as file:
        losses = [float(row["loss"]) for row in csv.DictReader(file)]
    scalars = events.Scalars("lr_find/loss")
    assert [event.step for event in scalars] == list(range(1, len(losses) + 1))
    assert [event.value for event in scalars] == pytest.approx(losses, rel=1e-6)
    assert {"lr_find/lr", "lr_find/smoothed_loss"} <= set(events.Tags()["scalars"])
    assert events.Tags()["images"] == ["lr_find/curve"]


def test_the_printed_override_trains(found):
    cwd, result = found
    command = next(line for line in result.stdout.splitlines() if line.startswith("train with:  dlrun "))
    override = command.split()[-1]
    assert override.startswith("optimizer.lr=")
    trained = run_cli(*SMALL, "trainer.max_epochs=1", override, cwd=cwd)
    assert trained.returncode == 0, trained.stderr
    config = (cwd / trained.stdout.strip().splitlines()[-1] / ".hydra" / "config.yaml").read_text()
    assert f"lr: {float(override.partition('=')[2])}" in config


def test_steepest_descent_of_the_smoothed_loss():
    lrs = [10 ** (-6 + step / 4) for step in range(24)]
    smoothed = [2.0] * 10 + [2.0 - 0.1 * step for step in range(1, 5)] + [1.0, 0.2] + [0.2] * 8
    assert suggest(lrs, smoothed) == pytest.approx(lrs[14])  # the steepest slope: 1.6 -> 0.2 across point 14


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--start-lr", "1", "--end-lr", "0.1"], "need 0 < start < end"),
        (["--num-steps", "3"], "--num-steps = 3: too few"),
        (["trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
    ],
)
def test_bad_arguments_exit_2(capsys, arguments, message):
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2
    assert message in " ".join(capsys.readouterr().err.replace("│", " ").split())

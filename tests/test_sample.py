"""dlrun-sample: a real GAN checkpoint drawn into a PNG grid through the console script; seeds; bad input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlrun import sample
from dlrun.run import run

from conftest import compose_config

DLRUN_SAMPLE = str(Path(sys.executable).with_name("dlrun-sample"))
SIDE = 8  # digits
PAD = 2  # pixels between and around the images of a grid


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("gan")
    run(
        compose_config("experiment=gan", "trainer.max_epochs=1", "trainer.limit_batches=2", "task.scored_samples=50"),
        run_dir,
    )
    return run_dir / "checkpoints" / "best.pt"


def run_sample(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DLRUN_SAMPLE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"COLUMNS": "200"},
    )


def panel_text(stderr: str) -> str:
    return " ".join(stderr.replace("│", " ").split())  # the error panel wraps long lines


def image_cells(path: Path, rows: int, columns: int) -> np.ndarray:
    """Whether each cell of a grid holds an image (empty cells are all padding, white)."""
    pixels = np.asarray(Image.open(path).convert("L"))
    step = SIDE + PAD
    cells = [
        [pixels[PAD + r * step : PAD + r * step + SIDE, PAD + c * step : PAD + c * step + SIDE] for c in range(columns)]
        for r in range(rows)
    ]
    return np.array([[bool((cell != 255).any()) for cell in row] for row in cells])


def test_console_script_writes_a_grid_of_n_images(gan_checkpoint, tmp_path):
    result = run_sample(str(gan_checkpoint), "--num", "10", "--nrow", "4", "--out", "grid.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 10 samples" in result.stdout
    with Image.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG"
        assert image.size == (4 * (SIDE + PAD) + PAD, 3 * (SIDE + PAD) + PAD)  # 4 columns, 3 rows
    holds_image = image_cells(tmp_path / "grid.png", rows=3, columns=4)
    assert holds_image.flatten().tolist() == [True] * 10 + [False] * 2


def test_the_same_seed_draws_the_same_images(gan_checkpoint, tmp_path):
    paths = {name: tmp_path / f"{name}.png" for name in ("first", "again", "other")}
    for name, seed in (("first", "5"), ("again", "5"), ("other", "6")):
        sample.main([str(gan_checkpoint), "--seed", seed, "--out", str(paths[name])])
    assert paths["first"].read_bytes() == paths["again"].read_bytes()
    assert paths["first"].read_bytes() != paths["other"].read_bytes()


def test_a_missing_file_exits_2(tmp_path):
    result = run_sample("nowhere/best.pt", "--num", "0", cwd=tmp_path)
    assert result.returncode == 2
    message = panel_text(result.stderr)
    assert "CKPT = nowhere/best.pt: no such file" in message
    assert "--num = 0: must be at least 1" in message


def test_a_classifier_checkpoint_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")
    run(compose_config("trainer.fast_dev_run=true"), tmp_path)
    with pytest.raises(SystemExit) as exited:
        sample.main([str(tmp_path / "checkpoints" / "last.pt"), "--out", str(tmp_path / "x.png")])
    assert exited.value.code == 2
    assert "does not generate; dlrun-sample draws from checkpoints of task=gan" in panel_text(capsys.readouterr().err)
    assert not (tmp_path / "x.png").exists()

"""A checkpoint never chooses the code dlrun runs: crafted configs in checkpoints that torch loads with
weights_only=True are refused by every tool that rebuilds a model from one, before anything is built."""

import numpy as np
import pytest
import torch

from dlrun import export, predict, sample, trusted_targets
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("digits")
    run(compose_config("trainer.max_epochs=1", "trainer.limit_batches=2"), run_dir)
    return run_dir / "checkpoints" / "last.pt"


def crafted(checkpoint, tmp_path, group: str, node: dict):
    """The checkpoint with its config's group node replaced: a target that would make a folder if built."""
    state = torch.load(checkpoint, weights_only=True)
    state["config"][group] = node
    path = tmp_path / f"crafted_{group}.pt"
    torch.save(state, path)
    return path


TOOLS = {
    "dlrun-predict": lambda path, tmp_path: predict.main([str(path), str(tmp_path / "rows.npy")]),
    "dlrun-export": lambda path, tmp_path: export.main([str(path), "--format", "state_dict"]),
    "dlrun-sample": lambda path, tmp_path: sample.main([str(path), "--out", str(tmp_path / "grid.png")]),
}


@pytest.mark.usefixtures("wide_terminal")
@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    ("group", "node"),
    [
        ("model", lambda made: {"_target_": "os.makedirs", "name": made}),
        ("model", lambda made: {"_target_": "dlrun.models.mlp.mlp", "hidden": {"_target_": "os.mkdir", "path": made}}),
        ("dataset", lambda made: {"_target_": "os.makedirs", "name": made}),
    ],
    ids=["model", "nested in the model", "dataset"],
)
def test_a_checkpoint_naming_other_code_exits_2_and_runs_nothing(checkpoint, tmp_path, capsys, tool, group, node):
    made = tmp_path / "made_by_the_checkpoint"
    path = crafted(checkpoint, tmp_path, group, node(str(made)))
    np.save(tmp_path / "rows.npy", np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(SystemExit) as exit_:
        TOOLS[tool](path, tmp_path)
    assert exit_.value.code == 2
    message = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert f"CKPT = {path}: its config names os.m" in message, message  # os.makedirs or os.mkdir, named
    assert not made.exists()


def test_a_config_dir_of_ones_own_lets_its_options_targets_be_rebuilt(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "linear.yaml").write_text("_target_: mynets.linear\n")
    config = {"model": {"_target_": "mynets.linear"}, "dataset": {"_target_": "dlrun.data.embedded.load"}}
    with pytest.raises(ConfigError, match="mynets.linear"):
        trusted_targets.check(config, key="CKPT", path=tmp_path / "x.pt")
    trusted_targets.check(config, key="CKPT", path=tmp_path / "x.pt", config_dirs=[tmp_path])
    assert "torchvision.transforms.v2.RandomResizedCrop" in trusted_targets.shipped_targets()  # nested, shipped

"""The installed `dlrun` command as a real subprocess: runs, help, resume, and exit code 2 for bad input."""

import json
import pickle
import random
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from test_sweep_helpers import HELPERS_ENV

from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import REPO, compose_config, only_run_dir, run_cli

QUICK = ["trainer.max_epochs=2", "trainer.limit_batches=3", "trainer.device=cpu"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One successful `dlrun` run in an empty working directory."""
    cwd = tmp_path_factory.mktemp("cwd")
    result = run_cli(*QUICK, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd, result, only_run_dir(cwd / "outputs")


def test_a_run_fills_one_run_dir_and_nothing_else(finished_run):
    cwd, _, run_dir = finished_run
    assert [path.name for path in cwd.iterdir()] == ["outputs"]
    assert run_dir.parent.name == "mlp_digits"
    for name in (".hydra/config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "model.pt", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert set(json.loads((run_dir / "metrics.json").read_text())) >= {"val/acc", "test/acc", "test/loss"}


def test_the_terminal_shows_config_model_epochs_and_results(finished_run):
    _, result, _ = finished_run
    out = result.stdout
    assert "optimizer" in out and "lr: 0.001" in out  # the config tree
    assert "50,826 parameters" in out
    assert "epoch 2/2" in out and "val/acc" in out
    assert "results" in out and "best checkpoint" in out and "test/acc" in out
    assert "run dir: " in out


def test_quiet_prints_only_the_run_dir(tmp_path):
    result = run_cli(*QUICK, "quiet=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(only_run_dir(tmp_path / "outputs").resolve())


def test_two_runs_started_together_get_two_run_dirs(tmp_path):
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_cli(*QUICK, "quiet=true", cwd=tmp_path), range(2)))
    assert [r.returncode for r in results] == [0, 0]
    assert len(list((tmp_path / "outputs").glob("*/*/metrics.json"))) == 2


def test_work_left_for_the_end_of_the_process_is_done_before_it_exits(tmp_path):
    # dlrun ends without the interpreter's teardown of its modules, but only after what the interpreter would do
    # first: wait for the threads still running and run the atexit handlers.
    marker = ["+callbacks.late._target_=test_sweep_helpers.WorkLeftAtExit", f"+callbacks.late.directory={tmp_path}"]
    result = run_cli(*QUICK, *marker, "quiet=true", cwd=tmp_path, env=HELPERS_ENV)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "thread.txt").read_text() == "written by a thread after training\n"
    assert (tmp_path / "atexit.txt").read_text() == "written at exit\n"


def test_help_lists_the_groups_without_importing_torch():
    code = textwrap.dedent(
        """
        import sys
        from dlrun.cli import main
        sys.argv = ["dlrun", "--help"]
        try:
            main()
        finally:
            print("torch imported" if "torch" in sys.modules else "no torch")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (models,) = [line for line in result.stdout.splitlines() if line.startswith("model: ")]
    assert {"cnn", "mlp", "resnet"} <= set(models.removeprefix("model: ").split(", "))
    assert "optimizer: adagrad, adam, adamw, rmsprop, sgd" in result.stdout
    assert result.stdout.strip().endswith("no torch")


def test_experiment_dqn_plays_cartpole_unless_told_otherwise(tmp_path):
    """The issue's commands: experiment=dqn (CartPole-v1 by default) and env.id= without env=."""
    default = run_cli("--cfg", "job", "experiment=dqn", cwd=tmp_path)
    acrobot = run_cli("--cfg", "job", "experiment=dqn", "env.id=Acrobot-v1", "task.double_dqn=true", cwd=tmp_path)
    assert default.returncode == acrobot.returncode == 0, default.stderr + acrobot.stderr
    assert "id: CartPole-v1" in default.stdout and "dlrun.data.environment.load" in default.stdout
    assert "id: Acrobot-v1" in acrobot.stdout and "double_dqn: true" in acrobot.stdout


def test_python_dash_m_dlrun_help():
    result = subprocess.run([sys.executable, "-m", "dlrun", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "dataset: breast_cancer" in result.stdout


def test_resume_continues_from_last_pt(finished_run, tmp_path):
    last = finished_run[2] / "checkpoints" / "last.pt"
    before = last.read_bytes()
    result = run_cli(*QUICK[1:], "trainer.max_epochs=4", f"ckpt_path={last}", "quiet=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resumed = torch.load(only_run_dir(tmp_path / "outputs") / "checkpoints" / "last.pt", weights_only=True)
    assert (resumed["epoch"], resumed["step"]) == (4, 12)
    assert last.read_bytes() == before  # the run it resumed from is left as it was


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=transformer"], "Could not find 'model/transformer'"),
        (["trainer.max_epoch=3"], "Key 'max_epoch' not in 'TrainerConfig'"),
        (["optimizer.lr=0"], "optimizer.lr = 0: must be > 0; type optimizer.lr=0.001"),
        (["dataset.val_fraction=0.6", "dataset.test_fraction=0.6"], "leaves nothing to train on"),
        (["loss=bce"], "loss = bce needs 2 classes, dataset digits has 10; type loss=cross_entropy"),
        (["trainer.device=cuda"], "trainer.device = cuda: no CUDA GPU on this machine"),
        (["dataset=mnist", "dataset.root=nowhere"], "dataset.download=true"),
        (["ckpt_path=nowhere/last.pt"], "ckpt_path = nowhere/last.pt: no such file"),
        (["model=cnn", "dataset=wine"], "model=cnn needs images"),
        (["+model.depth=3"], "unexpected keyword argument 'depth'"),
        (["task=gan", "+task.sample_sed=1"], "task: could not build dlrun.tasks.gan.GANTask"),  # no key is swallowed
    ],
)
def test_bad_input_exits_2_with_the_key_named(finished_run, args, expected):
    if args == ["trainer.device=cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cwd, _, _ = finished_run
    before = {path: path.read_bytes() for path in (cwd / "outputs").rglob("*") if path.is_file()}
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 2, result.stderr
    output = " ".join((result.stdout + result.stderr).split())  # undo the panel's line wrapping
    assert expected in output
    assert "Traceback" not in output
    assert all(path.read_bytes() == content for path, content in before.items())  # earlier runs intact


def write_truncated(path, source):
    path.write_bytes(source.read_bytes()[:1000])


class Payload:
    def __reduce__(self):
        return (print, ("this ran on load",))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("empty", "an empty file (0 bytes), truncated or never written"),
        ("random bytes", "not a torch checkpoint (torch.save writes a zip archive)"),
        ("truncated", "not a readable checkpoint, truncated or corrupt"),
        ("code", "refused, the file holds objects beyond tensors"),
        ("other model", "its weights do not fit this model"),
    ],
)
def test_bad_checkpoints_are_config_errors_naming_the_file(finished_run, tmp_path, capsys, kind, expected):
    """In process: the CLI turns every ConfigError into exit 2 (test_bad_input_exits_2_with_the_key_named)."""
    last = finished_run[2] / "checkpoints" / "last.pt"
    path, args = tmp_path / "bad.pt", []
    if kind == "empty":
        path.touch()
    elif kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(5000))  # read as a legacy pickle, it "holds objects"
    elif kind == "truncated":
        write_truncated(path, last)
    elif kind == "code":
        torch.save({"model": Payload()}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    else:
        path, args = last, ["model.hidden=[32]"]
    with pytest.raises(ConfigError) as error:
        run(compose_config(f"ckpt_path={path}", *args, *QUICK), tmp_path / "run")
    message = str(error.value)
    assert f"ckpt_path = {path}: {expected}" in message
    assert "weights_only" not in message  # no advice to load the file unsafely
    assert "this ran on load" not in capsys.readouterr().out


def test_a_users_own_model_and_config_dir(tmp_path):
    (tmp_path / "mynets.py").write_text(
        textwrap.dedent(
            """
            import math
            from torch import nn

            def linear(*, in_shape, num_outputs):
                return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(in_shape), num_outputs))

            def broken(**options):
                raise RuntimeError("a bug in the user's model")
            """
        )
    )
    (tmp_path / "myconf" / "model").mkdir(parents=True)
    (tmp_path / "myconf" / "model" / "linear.yaml").write_text(
        "_target_: mynets.linear\n"  # dlrun passes in_shape and num_outputs
    )
    env = {"PYTHONPATH": str(tmp_path)}
    ok = run_cli("--config-dir", str(tmp_path / "myconf"), "model=linear", *QUICK, "quiet=true", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    bug = run_cli("model._target_=mynets.broken", *QUICK, cwd=tmp_path, env=env)
    assert bug.returncode == 1
    assert "RuntimeError: a bug in the user's model" in bug.stderr
    assert "Traceback" in bug.stderr and "mynets.py" in bug.stderr


def test_configs_are_found_from_any_directory(tmp_path):
    result = run_cli("--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0 and "_target_: dlrun.models.mlp.mlp" in result.stdout
    assert str(REPO / "conf") in run_cli("--info", "searchpath", cwd=tmp_path).stdout


def test_a_csv_of_ones_own_through_the_cli(tmp_path):
    rows = ["size,rooms,city,price"]
    for i in range(120):
        size, rooms, city = 40 + i, 1 + i % 5, "abc"[i % 3]
        rows.append(f"{size},{rooms},{city},{size * 3000 + rooms * 10000 + 'abc'.index(city) * 50000}")
    (tmp_path / "houses.csv").write_text("\n".join(rows) + "\n")
    args = ["dataset=csv", "dataset.path=houses.csv", "dataset.target=price", "loss=mse", "trainer.max_epochs=2"]
    result = run_cli(*args, "quiet=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test/r2" in (only_run_dir(tmp_path / "outputs") / "metrics.json").read_text()

"""A run dir written by one dlrun process at a time, an earlier run in it refused unless resumed: real `dlrun`
subprocesses on real directories."""

import contextlib
import os
import shutil
import subprocess

import pytest
import torch

from dlrun.errors import ConfigError
from dlrun.run import run
from dlrun.run_dir import LOCK_FILE, MIN_FREE_BYTES, lock, refuse_an_earlier_run

from conftest import DLRUN, SMALL, compose_config, run_cli, wait_for

FAST = [*SMALL, "trainer=fast"]


def message(result: subprocess.CompletedProcess) -> str:
    return " ".join((result.stdout + result.stderr).replace("│", " ").split())  # undo the panel's wrapping


def contents(directory) -> dict:
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The run dir of a run that ended well."""
    run_dir = tmp_path_factory.mktemp("finished")
    result = run_cli(*FAST, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr
    return run_dir


def test_a_new_run_pointed_at_a_finished_run_dir_exits_2_and_leaves_it_as_it_was(finished, tmp_path):
    before = contents(finished)
    result = run_cli(*FAST, "optimizer.lr=-1", f"hydra.run.dir={finished}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert (
        f"hydra.run.dir = {finished}: holds an earlier run (metrics.json, checkpoints/last.pt, checkpoints/best.pt); "
        "type resume=auto to continue it" in message(result)
    )
    assert "Traceback" not in message(result)
    assert contents(finished) == before  # no .hydra/ rewritten, no TensorBoard file added


def test_only_a_run_that_resumes_the_earlier_one_may_use_its_run_dir(finished, tmp_path):
    refuse_an_earlier_run(finished, ckpt_path=str(finished / "checkpoints" / "best.pt"), resume="never")
    refuse_an_earlier_run(finished, ckpt_path=None, resume="auto")
    refuse_an_earlier_run(tmp_path, ckpt_path=None, resume="never")  # an empty dir holds no earlier run
    with pytest.raises(ConfigError, match="holds an earlier run"):
        refuse_an_earlier_run(finished, ckpt_path=str(tmp_path / "other" / "last.pt"), resume="never")


def test_a_run_dir_in_use_is_refused_naming_the_holder_and_free_again_once_it_is_killed(tmp_path):
    long_run = [*SMALL, "trainer.max_epochs=1000", f"hydra.run.dir={tmp_path}", "resume=auto"]
    holder = subprocess.Popen([DLRUN, *long_run], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(tmp_path / ".hydra" / "overrides.yaml", holder)  # Hydra writes it once the lock is held
        second = run_cli(*long_run, "seed=7", cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        assert f"hydra.run.dir = {tmp_path}: in use by dlrun process {holder.pid}" in message(second)
        assert "Traceback" not in message(second)
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert "seed=7" not in (tmp_path / ".hydra" / "overrides.yaml").read_text()  # the second wrote nothing
    os.close(lock(tmp_path))  # the OS freed the killed holder's lock (a resume after SIGKILL: test_interrupt.py)
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_run_dir_that_cannot_be_created_exits_2_naming_it(tmp_path):
    (tmp_path / "a file").write_text("not a folder\n")
    run_dir = tmp_path / "a file" / "run"
    result = run_cli(*FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"hydra.run.dir = {run_dir}: cannot be created or written (Not a directory" in message(result)
    assert "Traceback" not in message(result)


@contextlib.contextmanager
def mounted_tmpfs(directory, options):
    """A small tmpfs mounted on directory for the block (a disk to fill); the test skips where mount is refused."""
    directory.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "size=3m") as disk:
        yield disk


def fill(disk, leaving: int) -> None:
    """Fill disk with one file until `leaving` bytes are free."""
    (disk / "filler").write_bytes(bytes(shutil.disk_usage(disk).free - leaving))


def test_a_run_whose_disk_fills_exits_2_naming_the_file_keeps_the_last_checkpoint_and_resumes(small_disk, tmp_path):
    run_dir = small_disk / "run"
    short = "trainer.limit_batches=4"  # epochs of 4 steps; last.pt is 630 KB still
    run(compose_config("trainer.max_epochs=1", short, "callbacks.tensorboard=null"), run_dir)
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    fill(small_disk, leaving=MIN_FREE_BYTES + 150_000)  # room to start, not for another last.pt
    result = run_cli(*SMALL, short, "trainer.max_epochs=3", "resume=auto", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{run_dir / 'checkpoints' / 'last.pt'}: cannot be written (No space left on device)" in message(result)
    assert "Traceback" not in message(result)
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before
    assert not list(run_dir.rglob("*.tmp"))  # no .last.pt.<pid>.tmp left
    (small_disk / "filler").unlink()  # room again: the message's resume=auto continues from the kept last.pt
    run(compose_config(short, "trainer.max_epochs=3", "resume=auto"), run_dir)  # in-process: the CLI was tested
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3


def test_a_new_run_on_a_full_disk_exits_2_before_writing_anything(small_disk, tmp_path):
    fill(small_disk, leaving=8192)
    result = run_cli(*FAST, f"hydra.run.dir={small_disk / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"hydra.run.dir = {small_disk / 'run'}: its disk has 8 KB free, too little to start a run" in message(result)
    assert "Traceback" not in message(result)
    assert not (small_disk / "run").exists()


def test_a_run_dir_on_a_read_only_disk_exits_2_naming_it(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "ro,size=1m") as disk:
        result = run_cli(*FAST, f"hydra.run.dir={disk / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"hydra.run.dir = {disk / 'run'}: cannot be created or written (Read-only file system" in message(result)
    assert "Traceback" not in message(result)

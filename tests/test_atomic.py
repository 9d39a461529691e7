"""dlrun.atomic.write: the whole new file or the old one, never a part; and checkpoint.write_files' message when a
write fails."""

import errno
import os
import re

import pytest

from dlrun import atomic
from dlrun.checkpoint import write_files
from dlrun.errors import ConfigError


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "new" / "job.json"
    atomic.write(path, "first ★\n")
    atomic.write(path, b"second")
    assert path.read_bytes() == b"second"
    assert [file.name for file in path.parent.iterdir()] == ["job.json"]


@pytest.fixture
def full_disk(monkeypatch):
    """Every fsync fails as on a full disk."""

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)


def test_a_failed_write_keeps_the_earlier_file_and_removes_its_temporary_one(tmp_path, full_disk):
    path = tmp_path / "summary.csv"
    path.write_text("earlier")
    with pytest.raises(OSError, match="No space left on device"):
        atomic.write(path, "later")
    assert path.read_text() == "earlier"
    assert [file.name for file in tmp_path.iterdir()] == ["summary.csv"]


def test_a_failed_checkpoint_write_is_a_config_error_naming_the_file(tmp_path, full_disk):
    path = tmp_path / "last.pt"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: cannot be written (No space left on device)")):
        write_files({path: b"state"})
    assert not path.exists()

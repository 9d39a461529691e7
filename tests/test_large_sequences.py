"""Texts and series larger than memory (dataset.storage=stream): converted once into cached flat files (tokens,
values) and read a sequence at a time; the same batches and results as in memory, memory that does not grow with the
corpus, and a cache outside the user's folder, reused until the file changes. On files the tests write."""

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrun import build
from dlrun.data import text, timeseries
from dlrun.data.module import DataModule
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config

ALPHABET = b"abcdefgh ij\nklmnop,.\r\n"  # with line ends of both kinds: read as universal newlines on both paths
STORAGES = ("memory", "stream")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """The cache the converted files go to: the test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


def write_text(path: Path, size: int, seed: int = 0) -> Path:
    """size random bytes of ALPHABET."""
    picks = np.random.default_rng(seed).integers(0, len(ALPHABET), size, dtype=np.uint8)
    np.frombuffer(ALPHABET, np.uint8)[picks].tofile(path)
    return path


def write_series(path: Path, values, column: str = "units") -> Path:
    path.write_text(f"day,{column}\n" + "".join(f"{i},{value}\n" for i, value in enumerate(values)))
    return path


def both_storages(*overrides: str) -> tuple[DataModule, DataModule]:
    memory, streamed = (build.data(compose_config(*overrides, f"dataset.storage={storage}")) for storage in STORAGES)
    assert not memory.streamed and streamed.streamed
    return memory, streamed


def assert_same_batches(memory: DataModule, streamed: DataModule) -> None:
    for split, epoch in (("train", 0), ("train", 2), ("val", 0), ("test", 0)):
        pairs = list(zip(memory.batches(split, epoch), streamed.batches(split, epoch), strict=True))
        assert len(pairs) == memory.num_batches(split) > 0
        assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in pairs)


def token_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("dlrun/tokens/*/tokens.bin"))


# -- dataset=text ----------------------------------------------------------------------------------------


def test_streamed_and_in_memory_text_give_the_same_batches(tmp_path):
    path = write_text(tmp_path / "corpus.txt", 20_000)
    memory, streamed = both_storages(
        "dataset=text", f"dataset.path={path}", "dataset.seq_len=32", "dataset.batch_size=8"
    )
    assert memory.spec.class_names == streamed.spec.class_names == sorted(set(path.read_text()))  # \r\n, \r: \n
    assert streamed.spec.in_shape == memory.spec.in_shape == [32]
    assert_same_batches(memory, streamed)


def test_the_shipped_macbeth_streams_the_batches_it_gives_in_memory(cache):
    memory, streamed = both_storages("dataset=text")
    assert streamed.spec.class_names == memory.spec.class_names and len(memory.spec.class_names) == 64
    assert_same_batches(memory, streamed)
    (tokens,) = token_files(cache)
    assert tokens.stat().st_size == len(text.read_text(None))  # a byte a character: 64 characters fit uint8


def test_auto_holds_the_shipped_text_and_series_in_memory():
    for dataset in ("text", "timeseries"):
        assert not build.data(compose_config(f"dataset={dataset}")).streamed


def test_streamed_and_in_memory_text_runs_end_on_the_same_metrics(tmp_path):
    path = write_text(tmp_path / "corpus.txt", 30_000)
    results = {}
    for storage, workers in (("memory", 0), ("stream", 2)):
        run_dir = tmp_path / storage
        overrides = ["experiment=text", f"dataset.path={path}", f"dataset.storage={storage}", "model=gru"]
        overrides += [f"dataset.num_workers={workers}", "dataset.seq_len=32", "callbacks.text_samples.length=20"]
        run(compose_config(*overrides, "trainer.max_epochs=2", "trainer.limit_batches=3"), run_dir)
        results[storage] = json.loads((run_dir / "metrics.json").read_text())
    assert results["memory"] == results["stream"]
    assert {"val/loss", "test/acc"} <= results["stream"].keys()


def test_a_text_of_more_than_256_characters_is_stored_as_uint16_and_decodes_back(tmp_path, cache):
    characters = [chr(0x4E00 + i) for i in range(300)] + ["\n"]  # CJK ideographs
    picks = np.random.default_rng(0).integers(0, len(characters), 5_000)
    path = tmp_path / "hanzi.txt"
    path.write_text("".join(characters[i] for i in picks), encoding="utf-8")
    data = text.load(path=str(path), seq_len=16, in_shape=[16], storage="stream")
    assert data.spec.class_names == sorted(characters)
    (tokens,) = token_files(cache)
    assert tokens.stat().st_size == 2 * 5_000
    decoded = "".join(data.spec.class_names[i] for i in np.fromfile(tokens, np.uint16).tolist())
    assert decoded == path.read_text(encoding="utf-8")


def test_a_text_of_more_than_65536_characters_cannot_be_streamed(tmp_path):
    code_points = [code for code in range(0x21, 0x21 + 70_000) if not 0xD800 <= code < 0xE000][:65_537]
    path = tmp_path / "everything.txt"
    path.write_text("".join(map(chr, code_points)), encoding="utf-8")
    with pytest.raises(ConfigError, match="dataset.path = .*everything.txt: the text has 65537 distinct characters"):
        text.load(path=str(path), seq_len=16, in_shape=[16], storage="stream")


BOUNDED_MEMORY = textwrap.dedent(
    """
    import resource, sys
    import torch
    from dlrun.data import text
    from dlrun.data.module import DataModule

    def peak_mib():  # the largest resident memory so far; KiB on Linux, bytes on macOS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)

    baseline = peak_mib()
    for path in sys.argv[1:]:  # the corpora in growing size: each may only add what the one before did not use
        data = DataModule.batching(text.load(path=path, seq_len=4096, in_shape=[4096], storage="stream"))
        batches = sum(1 for _ in data.batches("train", 0))
        print(peak_mib() - baseline, batches)
    """
)


def test_streamed_text_trains_in_memory_that_does_not_grow_with_the_corpus(tmp_path):
    small, large = (write_text(tmp_path / f"{size}mb.txt", size * 2**20, seed=size) for size in (20, 80))
    result = subprocess.run(
        [sys.executable, "-c", BOUNDED_MEMORY, str(small), str(large)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (small_mib, small_batches), (large_mib, large_batches) = (line.split() for line in result.stdout.splitlines())
    assert int(large_batches) > 3 * int(small_batches)  # every sequence of both was read
    # In memory the 80 MiB corpus would take 16 bytes a character, 1280 MiB; streamed, not even its 80 MiB of tokens.
    assert float(large_mib) <= 1.25 * float(small_mib) + 16, result.stdout
    assert float(large_mib) < 64, result.stdout


def test_the_token_cache_is_reused_until_the_text_changes(tmp_path, cache):
    path = write_text(tmp_path / "corpus.txt", 5_000)
    first = text.load(path=str(path), seq_len=16, in_shape=[16], storage="stream")
    (tokens,) = token_files(cache)
    written = tokens.stat()
    again = text.load(path=str(path), seq_len=16, in_shape=[16], storage="stream")
    assert token_files(cache) == [tokens] and (tokens.stat().st_ino, tokens.stat().st_mtime_ns) == (
        written.st_ino,
        written.st_mtime_ns,
    )
    assert torch.equal(first.train[0][0], again.train[0][0])

    path.write_text("an edited text, of other characters: " * 100)
    edited = text.load(path=str(path), seq_len=16, in_shape=[16], storage="stream")
    assert len(token_files(cache)) == 2 and edited.spec.class_names != first.spec.class_names
    assert "".join(edited.spec.class_names[i] for i in edited.train[0][0].tolist()) == "an edited text, "
    assert sorted(tmp_path.iterdir()) == [cache, path]  # nothing beside the user's file
    assert not list(cache.glob("dlrun/tokens/*.partial-*"))


def test_a_streamed_split_pickles_without_its_open_file(tmp_path):
    data = text.load(path=str(write_text(tmp_path / "corpus.txt", 5_000)), seq_len=16, in_shape=[16], storage="stream")
    first = data.val[0]  # opens the file in this process
    copy = pickle.loads(pickle.dumps(data.val))
    assert len(pickle.dumps(data.val)) < 1_000
    assert all(torch.equal(a, b) for a, b in zip(copy[0], first, strict=True))


def test_a_text_that_is_not_utf8_streams_nothing_and_says_so(tmp_path, cache):
    path = tmp_path / "latin1.txt"
    path.write_bytes("déjà vu, encore et encore ".encode("latin-1") * 50)
    with pytest.raises(ConfigError, match="dataset.path = .*latin1.txt: not UTF-8 text"):
        text.load(path=str(path), seq_len=16, in_shape=[16], storage="stream")
    assert not list(cache.glob("dlrun/tokens/*"))  # the partial folder is removed


# -- dataset=timeseries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("generated", [False, True])
def test_streamed_and_in_memory_series_give_the_same_batches(generated, tmp_path):
    overrides = ["dataset=timeseries"]
    if generated:
        values = (100 + 20 * np.sin(np.arange(3_000) / 9) + np.random.default_rng(0).normal(0, 3, 3_000)).tolist()
        path = write_series(tmp_path / "load.csv", values, column="load")
        overrides += [f"dataset.path={path}", "dataset.column=load", "dataset.window=12", "dataset.in_shape=[12,1]"]
    memory, streamed = both_storages(*overrides)
    assert torch.equal(memory.input_mean, streamed.input_mean) and torch.equal(memory.input_std, streamed.input_std)
    assert streamed.spec.in_shape == memory.spec.in_shape
    assert_same_batches(memory, streamed)


def test_the_streamed_series_standardises_with_the_training_part_alone(tmp_path):
    path = write_series(tmp_path / "sales.csv", list(range(100)))
    data = timeseries.load(path=str(path), column="units", window=5, in_shape=[5, 1], storage="stream")
    seen = np.arange(67 + 5)  # the values of the 67 training windows and their targets
    assert data.input_mean.item() == pytest.approx(seen.mean()) and data.input_std.item() == pytest.approx(seen.std())
    inputs, target = data.test[0]
    assert inputs.shape == (5, 1) and target.shape == (1,)
    assert (inputs[:, 0] * data.input_std + data.input_mean).tolist() == pytest.approx([81, 82, 83, 84, 85])


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("cell", ["n/a", "inf", "-inf", "nan"])
def test_a_bad_cell_is_a_line_numbered_config_error_on_both_paths(cell, storage, tmp_path, cache):
    path = write_series(tmp_path / "sales.csv", [1.5, 2.5, 3.5, cell, 5.5] * 20)
    with pytest.raises(ConfigError, match=f"dataset.column = units: line 5 holds '{cell}', not a finite number"):
        timeseries.load(path=str(path), column="units", window=4, in_shape=[4, 1], storage=storage)
    assert not list(cache.glob("dlrun/series/*"))


@pytest.mark.parametrize("dataset", ["text", "timeseries"])
def test_a_bogus_storage_is_a_config_error_naming_dataset_storage(dataset):
    with pytest.raises(ConfigError, match="dataset.storage = bogus: type one of auto, memory, stream"):
        build.data(compose_config(f"dataset={dataset}", "dataset.storage=bogus"))

"""The in-memory batch path and the DataLoader path (dataset.num_workers>0) give the same batches and results."""

import json

import pytest
import torch

from dlrun import build
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config, make_trainer


def test_the_two_paths_give_the_same_batches():
    in_memory = build.data(compose_config())
    loader = build.data(compose_config("dataset.num_workers=1"))
    for split, epoch in (("train", 0), ("train", 3), ("test", 0)):
        pairs = zip(in_memory.batches(split, epoch), loader.batches(split, epoch), strict=True)
        for (x1, y1), (x2, y2) in pairs:
            assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_the_two_paths_shard_alike_for_each_rank_and_together_cover_every_split():
    """Rank r of 3, as under torchrun: the DataLoader path's DistributedSampler and the in-memory indices agree."""
    in_memory, loader = build.data(compose_config()), build.data(compose_config("dataset.num_workers=1"))
    seen = {"train": [], "test": []}
    for rank in range(3):
        in_memory.shard(rank, 3)
        loader.shard(rank, 3)
        for split in seen:
            pairs = list(zip(in_memory.batches(split, 2), loader.batches(split, 2), strict=True))
            assert len(pairs) == in_memory.num_batches(split) == loader.num_batches(split)
            assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in pairs)
            seen[split] += [len(y) for _, (_, y) in pairs]
    train_size = in_memory.size("train")
    assert sum(seen["train"]) == train_size - train_size % 3  # drop_last: every rank takes as many samples
    assert sum(seen["test"]) == in_memory.size("test")  # evaluation: every sample once


def test_more_processes_than_samples_in_a_split_is_refused_naming_the_split():
    data = build.data(compose_config())
    smallest = min(("train", "val", "test"), key=data.size)
    processes = data.size(smallest) + 1  # one process would get no sample of that split
    with pytest.raises(ConfigError, match=rf"the {smallest} split has {processes - 1} samples, and each of the job's"):
        data.shard(0, processes)
    data.shard(0, processes - 1)  # one sample each is enough


def test_persistent_prefetching_workers_give_the_same_batches_and_stay_between_epochs():
    in_memory = build.data(compose_config())
    loader = build.data(
        compose_config("dataset.num_workers=2", "dataset.persistent_workers=true", "dataset.prefetch_factor=4")
    )
    workers = []
    for epoch in (0, 1):
        pairs = zip(in_memory.batches("train", epoch), loader.batches("train", epoch), strict=True)
        assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in pairs)
        iterator = loader._loaders["train"]._iterator  # torch keeps a persistent loader's worker processes here
        workers.append([worker.pid for worker in iterator._workers])
    assert loader._loaders["train"].prefetch_factor == 4
    assert len(workers[0]) == 2 and workers[0] == workers[1]  # the same processes served both epochs


TWO_EPOCHS = ["trainer.max_epochs=2", "trainer.deterministic=true"]


@pytest.fixture(scope="module")
def in_memory_metrics(tmp_path_factory) -> dict:
    """The final metrics of a default run: the splits on the device, batches gathered there."""
    run_dir = tmp_path_factory.mktemp("memory")
    run(compose_config(*TWO_EPOCHS), run_dir)
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("other_path", ["dataset.num_workers=1", "trainer.data_on_device=false"])
def test_the_paths_train_to_the_same_accuracy(tmp_path, in_memory_metrics, other_path):
    """Against a DataLoader, or against batches copied to the device one by one (trainer.data_on_device=false:
    the splits stay in host memory)."""
    run(compose_config(*TWO_EPOCHS, other_path), tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == in_memory_metrics


def test_splits_stay_in_host_memory_with_data_on_device_false():

    cfg = compose_config()
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    for on_device, resident_on in (("auto", torch.device("cpu")), (False, None)):
        data.resident_on = None
        trainer = make_trainer(device="cpu", max_epochs=1, limit_batches=2, data_on_device=on_device)
        trainer.fit(task, data, task.configure_optimizers(build.optimizer_factory(cfg)))
        assert data.resident_on == resident_on  # where the batches were gathered: on the device, or not
    assert data.fits_on(torch.device("cpu"))  # host memory holds the splits already
    with pytest.raises(ValueError, match="data_on_device must be True, False or 'auto', not 'false'"):
        make_trainer(device="cpu", data_on_device="false")


@pytest.mark.parametrize("overrides", [[], ["dataset.num_workers=1"]], ids=["indexed", "loader"])
def test_a_lone_last_training_sample_is_left_out_so_batch_norm_trains(overrides, run_dir):
    cfg = compose_config("model.batch_norm=true", "dataset.batch_size=157", "trainer.max_epochs=1", *overrides)
    data = build.data(cfg)
    assert data.size("train") % 157 == 1  # digits' 1,257 training samples: 8 batches and one sample
    sizes = [len(targets) for _, targets in data.batches("train", epoch=0)]
    assert sizes == [157] * 8 == [157] * data.num_batches("train")
    run(cfg, run_dir)  # batch norm would fail on a batch of one
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.5

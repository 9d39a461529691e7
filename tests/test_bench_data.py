"""benchmarks/bench_data.py in quick mode on a tiny generated folder: every variant runs and does the same work.

A smoke test of the script, never of its figures: nothing here depends on how fast anything is."""

import argparse
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def import_bench_data():
    """benchmarks/bench_data.py, imported: a folder of scripts, not a package."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_data

    return bench_data


@pytest.fixture(scope="module")
def bench():
    return import_bench_data()


@pytest.fixture(scope="module")
def photos(bench, tmp_path_factory) -> Path:
    """40 small photo-like JPEGs in 2 class folders: 32 train, 4 val, 4 test."""
    return bench.make_photos(tmp_path_factory.mktemp("data") / "photos", 40, size=(64, 48), classes=2, say=print)


def test_the_photos_are_jpegs_in_train_val_and_test_class_folders_made_once(bench, photos):
    counts = {split: bench.count_images(photos, split) for split in ("train", "val", "test")}
    assert counts == {"train": 32, "val": 4, "test": 4}
    made = (photos / ".made").stat().st_mtime_ns
    assert bench.make_photos(photos, 40, size=(64, 48), classes=2, say=print) == photos
    assert (photos / ".made").stat().st_mtime_ns == made  # found, not made again


def test_every_variant_reports_images_per_second_for_the_same_images(bench, photos, tmp_path):
    shards = {
        bench.SHARDS: bench.pack_shards(photos, tmp_path / "shards", workers=1),
        bench.SHARDS_SMALL: bench.pack_shards(photos, tmp_path / "shards-32", max_side=32, workers=1),
    }
    assert shards[bench.SHARDS_SMALL].megabytes < shards[bench.SHARDS].megabytes  # re-encoded smaller
    pipelines = bench.make_pipelines(photos, shards, crop=32, workers=0, batch_size=8)
    rows = bench.bench_throughput(pipelines, rounds=1, passes=1, crop=32, say=print)
    assert set(rows) == {bench.REFERENCE, bench.FILES, bench.SHARDS, bench.SHARDS_SMALL}
    for row in rows.values():
        assert [one.images for one in row.train] == [32] and [one.images for one in row.val] == [4]
        assert row.median("train") > 0 and row.median("val") > 0
    args = argparse.Namespace(workers=0, batch_size=8, crop=32, rounds=1, eval_passes=1)
    reports = bench.goal_report(rows, None) + bench.throughput_reports(rows, shards, photos, args)
    text = bench.markdown(reports)
    assert "dlrun files / reference, training images/s" in text and "| dlrun shards 256 | train |" in text


def test_the_variants_must_do_the_same_work(bench, photos):
    pipelines = bench.make_pipelines(photos, {}, crop=32, workers=0, batch_size=8)
    train = {name: bench.run_pass(pipeline.train(0)) for name, pipeline in pipelines.items()}
    val = {name: bench.eval_passes(pipeline, 1, keep_first=True) for name, pipeline in pipelines.items()}
    bench.check_same_work(pipelines, train, val, crop=32)
    train[bench.FILES].images -= 1
    with pytest.raises(RuntimeError, match="files: 31 train images a pass, the reference 32"):
        bench.check_same_work(pipelines, train, val, crop=32)


def test_a_grown_folder_is_hard_links_under_new_names(bench, photos, tmp_path):
    grown = bench.grow_folder(photos, tmp_path / "grown", 3)
    assert bench.count_images(grown, "train") == 3 * 32 and bench.count_images(grown, "test") == 3 * 4
    first = sorted((photos / "train" / "class0").glob("*.jpg"))[0]
    copies = sorted((grown / "train" / "class0").glob(f"*-{first.name}"))
    assert len(copies) == 3 and all(copy.stat().st_ino == first.stat().st_ino for copy in copies)


def test_growth_batches_fit_the_smallest_val_split_with_what_the_workers_load_ahead(bench, photos, tmp_path):
    assert bench.growth_batch_size(photos, workers=2) == 1  # 4 val images: fewer than 5 + 2 x 2 batches of any size
    assert bench.growth_batch_size(bench.grow_folder(photos, tmp_path / "grown", 50), workers=2) == 22  # 200 // 9


def test_a_measured_run_gives_its_wall_time_and_peak_memory(bench, tmp_path):
    argv = [sys.executable, "-c", "import time; data = b'x' * (150 * 2**20); time.sleep(0.5)"]
    run = bench.measured_run(argv, str(tmp_path))
    assert run.seconds >= 0.5 and run.peak_rss >= 150
    assert run.peak_pss is None or run.peak_pss >= 100
    growth = bench.growth_args(tmp_path, "stream", 5, 2, "RUN", batch_size=3)
    assert "dataset/transforms=imagenet" in growth and "trainer.limit_batches=5" in growth
    assert "dataset.batch_size=3" in growth and "hydra.run.dir=RUN" in growth
    assert "dataset/transforms=imagenet" not in bench.growth_args(tmp_path, "memory", 5, 2, "RUN")

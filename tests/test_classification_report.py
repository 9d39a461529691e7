"""callbacks.classification_report on a real digits run: the event file read back with TensorBoard's
EventAccumulator, and test_per_class.csv checked against scikit-learn on the saved model's predictions."""

import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics as skm
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from dlrun import build
from dlrun.callbacks.classification_report import confusion_image
from dlrun.errors import ConfigError
from dlrun.run import run

from conftest import compose_config

EPOCHS, BATCHES = 2, 20  # digits: 20 training batches an epoch
CLASSES = [str(digit) for digit in range(10)]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config(f"trainer.max_epochs={EPOCHS}")
    run(cfg, run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    return cfg, run_dir, events


def test_per_class_csv_equals_sklearn_on_the_saved_models_predictions(digits_run):
    cfg, run_dir, _ = digits_run
    data = build.data(cfg)
    model = build.model(cfg, data.spec)
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    inputs, targets = data.test
    with torch.no_grad():
        predicted = model.eval()(inputs).argmax(dim=1).numpy()
    precision, recall, f1, support = skm.precision_recall_fscore_support(targets.numpy(), predicted, zero_division=0)
    rows = list(csv.DictReader((run_dir / "test_per_class.csv").open()))
    assert [row["class"] for row in rows] == CLASSES
    for row, *expected in zip(rows, precision, recall, f1, support, strict=True):
        written = [float(row[key]) for key in ("precision", "recall", "f1")] + [int(row["support"])]
        assert written == pytest.approx(expected, abs=1e-6)
    assert sum(support) == data.size("test")


def test_per_class_scalars_for_val_each_epoch_and_test_at_the_end(digits_run):
    _, run_dir, events = digits_run
    scalars = set(events.Tags()["scalars"])
    for metric in ("precision", "recall", "f1"):
        assert {f"val/{metric}/{name}" for name in CLASSES} <= scalars
        assert {f"test/{metric}/{name}" for name in CLASSES} <= scalars
        assert [event.step for event in events.Scalars(f"val/{metric}/7")] == [BATCHES, BATCHES * EPOCHS]
    rows = {row["class"]: row for row in csv.DictReader((run_dir / "test_per_class.csv").open())}
    for name in CLASSES:
        (recall,) = events.Scalars(f"test/recall/{name}")
        assert recall.value == pytest.approx(float(rows[name]["recall"]), abs=1e-6)


def test_confusion_matrix_images_for_val_each_epoch_and_test(digits_run):
    _, _, events = digits_run
    assert set(events.Tags()["images"]) == {"val/confusion_matrix", "test/confusion_matrix"}
    assert [image.step for image in events.Images("val/confusion_matrix")] == [BATCHES, BATCHES * EPOCHS]
    (test_image,) = events.Images("test/confusion_matrix")
    image = Image.open(io.BytesIO(test_image.encoded_image_string))
    assert image.mode == "RGB" and image.width == image.height > 10 * 48  # 10 cells of 48 pixels, and the names


def test_pr_curve_per_class_for_the_test_split(digits_run):
    cfg, _, events = digits_run
    tags = events.PluginTagToContent("pr_curves")
    assert set(tags) == {f"test/pr_curve/{name}" for name in CLASSES}
    test_targets = build.data(cfg).test[1]
    for index, name in enumerate(CLASSES):
        (curve,) = events.Tensors(f"test/pr_curve/{name}")
        counts = tensor_util.make_ndarray(curve.tensor_proto)  # rows: TP, FP, TN, FN, precision, recall
        positives = int((test_targets == index).sum())
        assert (counts[0, 0], counts[1, 0]) == (positives, len(test_targets) - positives)  # threshold 0: all positive
        assert counts[5, 0] == pytest.approx(1.0)


def test_the_image_shades_each_true_class_by_where_it_lands():
    image = confusion_image(np.array([[6, 0], [3, 3]]), ["cat", "dog"]).permute(1, 2, 0).numpy()
    bottom_right = image[-8, -8]  # a corner of each cell, away from its count
    bottom_left = image[-8, -8 - 48]
    top_right = image[-8 - 48, -8]
    assert top_right.tolist() == [255, 255, 255]  # no cat taken for a dog
    assert bottom_left.tolist() == bottom_right.tolist() and bottom_right[0] < 150  # half the dogs each way


def test_bad_max_classes_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"callbacks.classification_report.max_classes = 1: must be a whole number"):
        build.trainer(compose_config("callbacks.classification_report.max_classes=1"), tmp_path)

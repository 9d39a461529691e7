"""Per-class insight into a classifier: where it errs, not only how often.

For a supervised classification (task=supervised with loss=cross_entropy or bce), from the outputs and targets the
trainer's evaluation gathered anyway (no second pass over the data):
- each validation epoch: the confusion matrix as an image (val/confusion_matrix) and per-class precision, recall
  and F1 as scalars (val/precision/<class>, val/recall/<class>, val/f1/<class>);
- at the end, for the test split of the best weights: the same under test/, a precision-recall curve per class
  (test/pr_curve/<class>) and test_per_class.csv in the run dir (class, precision, recall, f1, support).
Other tasks get nothing. Under torchrun only rank 0 runs it (the gathered outputs are every rank's).
"""

import csv
import io
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dlrun import atomic
from dlrun.callbacks.base import Callback
from dlrun.callbacks.tensorboard import tensorboard_writer
from dlrun.errors import ConfigError
from dlrun.tasks.supervised import SupervisedTask

CSV_FILE = "test_per_class.csv"
IMAGE_SIDE = 640  # pixels the matrix's cells take together, at most
CELL_RANGE = (4, 48)  # the smallest and largest cell, in pixels
LABELLED_CELL = 10  # cells at least this big get class names along the axes
COUNTED_CELL = 28  # cells at least this big show their count


class ClassificationReport(Callback):
    def __init__(self, *, run_dir: str | Path, max_classes: int = 100):
        if isinstance(max_classes, bool) or not isinstance(max_classes, int) or max_classes < 2:
            raise ConfigError(
                f"callbacks.classification_report.max_classes = {max_classes}: must be a whole number >= 2; type 100"
            )
        self.csv_path = Path(run_dir) / CSV_FILE
        self.max_classes = max_classes
        self.fitting = False  # val is reported for the epochs of training; at test time only the test split is

    def on_fit_start(self, trainer) -> None:
        self.fitting = True

    def on_fit_end(self, trainer) -> None:
        self.fitting = False

    def on_evaluation_end(self, trainer, split: str, outputs: Tensor, targets: Tensor) -> None:
        task = trainer.task
        if not isinstance(task, SupervisedTask) or task.problem == "regression" or not len(targets):
            return
        if split not in ("val", "test") or (split == "val" and not self.fitting):
            return
        class_names = trainer.data.spec.class_names
        probabilities = class_probabilities(task, outputs.float().cpu())
        predicted, actual = probabilities.argmax(dim=1).numpy(), targets.cpu().numpy()
        report = per_class(actual, predicted, len(class_names))
        if split == "test":
            write_csv(self.csv_path, class_names, report)
        writer = tensorboard_writer(trainer)
        if writer is None or len(class_names) > self.max_classes:
            return
        step = trainer.state.step
        writer.add_image(f"{split}/confusion_matrix", confusion_image(report["matrix"], class_names), step)
        for index, name in enumerate(class_names):
            for metric in ("precision", "recall", "f1"):
                writer.add_scalar(f"{split}/{metric}/{tag_name(name)}", report[metric][index], step)
            if split == "test":
                chosen = torch.from_numpy(actual == index)
                writer.add_pr_curve(f"test/pr_curve/{tag_name(name)}", chosen, probabilities[:, index], step)


def class_probabilities(task: SupervisedTask, outputs: Tensor) -> Tensor:
    """(N, classes): a binary task's one sigmoid probability becomes the pair (1 - p, p)."""
    probabilities = task.probabilities(outputs)
    if task.problem == "binary":
        return torch.cat([1 - probabilities, probabilities], dim=1)
    return probabilities


def per_class(actual: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """sklearn's precision, recall, F1 and support of each class (0 where a class is never predicted or present),
    and the confusion matrix (rows: true class, columns: predicted)."""
    from sklearn import metrics

    labels = list(range(num_classes))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0
    )
    matrix = metrics.confusion_matrix(actual, predicted, labels=labels)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "matrix": matrix}


def write_csv(path: Path, class_names: list[str], report: dict[str, np.ndarray]) -> None:
    buffer = io.StringIO()
    rows = csv.writer(buffer, lineterminator="\n")
    rows.writerow(["class", "precision", "recall", "f1", "support"])
    for index, name in enumerate(class_names):
        scores = (f"{float(report[metric][index]):.6f}" for metric in ("precision", "recall", "f1"))
        rows.writerow([name, *scores, int(report["support"][index])])
    atomic.write(path, buffer.getvalue())


def tag_name(class_name: str) -> str:
    """A class name as one part of a TensorBoard tag: no slashes or spaces."""
    return re.sub(r"[\s/]+", "_", class_name.strip()) or "_"


def confusion_image(matrix: np.ndarray, class_names: list[str]) -> torch.Tensor:
    """The matrix drawn with Pillow as a (3, H, W) uint8 tensor: each row shaded by its share of the true class
    (dark: most of the class lands there), the counts in the cells and the class names along the axes where the
    cells are large enough; rows are the true classes, columns the predicted ones."""
    from PIL import Image, ImageDraw, ImageFont

    count = len(class_names)
    cell = int(np.clip(IMAGE_SIDE // count, *CELL_RANGE))
    font = ImageFont.load_default(size=max(8, min(14, cell // 2)))
    labels = [name[:12] for name in class_names] if cell >= LABELLED_CELL else []
    margin = 8 + max((int(font.getlength(label)) for label in labels), default=0)
    side = margin + cell * count
    image = Image.new("RGB", (side + 4, side + 4), "white")
    draw = ImageDraw.Draw(image)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    for row in range(count):
        for column in range(count):
            shade = float(shares[row, column])
            colour = tuple(int(255 - shade * (255 - dark)) for dark in (8, 48, 107))  # white to dark blue
            box = (margin + column * cell, margin + row * cell, margin + (column + 1) * cell, margin + (row + 1) * cell)
            draw.rectangle(box, fill=colour, outline=(220, 220, 220))
            if cell >= COUNTED_CELL:
                centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
                ink = "white" if shade > 0.5 else "black"
                draw.text(centre, str(matrix[row, column]), fill=ink, font=font, anchor="mm")
    for index, label in enumerate(labels):
        middle = margin + index * cell + cell / 2
        draw.text((margin - 4, middle), label, fill="black", font=font, anchor="rm")  # true classes, left
        column_label = Image.new("RGB", (margin, cell), "white")
        ImageDraw.Draw(column_label).text((margin - 4, cell / 2), label, fill="black", font=font, anchor="rm")
        image.paste(column_label.rotate(-90, expand=True), (margin + index * cell, 0))  # predicted classes, top
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

"""Supervised learning: multi-class classification, binary classification and regression.

Models with auxiliary classifiers (torchvision's GoogLeNet and Inception v3 return a namedtuple of the main and the
auxiliary logits in training mode) add each auxiliary loss, times aux_loss_weight, to the training loss.

Classification trains on mixed batches too (Mixup, CutMix: dlrun/data/mixing.py): their targets are class
probabilities, which the cross-entropy loss takes as they are; the training accuracy counts a prediction of the
class with the larger share of the mix as correct.
"""

from collections.abc import Callable

import torch
from sklearn import metrics as skm
from torch import Tensor, nn

from dlrun.errors import ConfigError
from dlrun.losses import with_weight_penalty
from dlrun.tasks.base import Task

PROBLEMS = ("classification", "binary", "regression")


class SupervisedTask(Task):
    """Inputs to outputs under one criterion; the metrics follow the problem.

    classification: accuracy, top-5 accuracy (more than 5 classes), AUROC (2 classes);
    binary (one logit): accuracy and AUROC; regression: MAE, RMSE and R2 in the target's own units.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        criterion: nn.Module,
        problem: str,
        num_classes: int | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
        target_mean: Tensor | None = None,
        target_std: Tensor | None = None,
        aux_loss_weight: float = 0.3,
    ):
        if problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {PROBLEMS}, not {problem!r}")
        if isinstance(aux_loss_weight, bool) or not (isinstance(aux_loss_weight, int | float) and aux_loss_weight >= 0):
            raise ConfigError(
                f"task.aux_loss_weight = {aux_loss_weight}: must be a number >= 0; type task.aux_loss_weight=0.3"
            )
        self.model = model
        self.criterion = criterion
        self.problem = problem
        self.num_classes = num_classes
        self.l1, self.l2 = l1, l2
        self.target_mean, self.target_std = target_mean, target_std
        self.aux_loss_weight = aux_loss_weight

    @property
    def mixed_labels(self) -> bool:
        return self.problem == "classification"

    def configure_optimizers(self, build_optimizer: Callable) -> dict[str, torch.optim.Optimizer]:
        """One optimizer over the trainable parameters (a frozen pretrained backbone has none)."""
        return {"model": build_optimizer(params=[p for p in self.model.parameters() if p.requires_grad])}

    def training_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        inputs, targets = batch
        output, auxiliary = split_auxiliary(self.model(inputs))
        loss = with_weight_penalty(self._loss(output, targets), self.model, l1=self.l1, l2=self.l2)
        for aux_output in auxiliary:
            loss = loss + self.aux_loss_weight * self._loss(aux_output, targets)
        if self.problem == "regression":
            return {"loss": loss}
        if targets.dim() == 2:  # class probabilities of a mixed batch: the class with the larger share
            targets = targets.argmax(dim=1)
        return {"loss": loss, "output": output, "target": targets}  # the accuracy: training_metrics

    def training_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, tuple[Tensor, int]]:
        return {"acc": (self._predicted_class(outputs).eq(targets).count_nonzero(), len(targets))}

    def evaluation_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        inputs, targets = batch
        output = self.model(inputs)
        return {"loss": self._loss(output, targets), "output": output, "target": targets}

    def metric_names(self) -> list[str]:
        if self.problem == "regression":
            return ["loss", "mae", "rmse", "r2"]
        names = ["loss", "acc"]
        if self.problem == "classification" and self.num_classes > 5:
            names.append("top5_acc")
        if self.num_classes == 2:
            names.append("auroc")
        return names

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        outputs, targets = outputs.float().cpu(), targets.cpu()
        if self.problem == "regression":
            predicted, actual = self.original_units(outputs).numpy(), self.original_units(targets).numpy()
            return {
                "mae": float(skm.mean_absolute_error(actual, predicted)),
                "rmse": float(skm.root_mean_squared_error(actual, predicted)),
                "r2": float(skm.r2_score(actual, predicted)),
            }
        metrics = {"acc": float((self._predicted_class(outputs) == targets).float().mean())}
        if "top5_acc" in self.metric_names():
            top5 = outputs.topk(5, dim=1).indices
            metrics["top5_acc"] = float((top5 == targets[:, None]).any(dim=1).float().mean())
        if self.num_classes == 2:
            metrics["auroc"] = _auroc(targets.numpy(), self.probabilities(outputs)[:, -1].numpy())
        return metrics

    def probabilities(self, output: Tensor) -> Tensor:
        """Class probabilities: softmax over the logits, or sigmoid of the one binary logit."""
        return torch.sigmoid(output) if self.problem == "binary" else output.softmax(dim=1)

    def original_units(self, values: Tensor) -> Tensor:
        """Undo the dataset's standardisation of regression targets."""
        if self.target_mean is None:
            return values
        return values * self.target_std.cpu() + self.target_mean.cpu()

    def _loss(self, output: Tensor, targets: Tensor) -> Tensor:
        if self.problem == "binary":
            return self.criterion(output.squeeze(1), targets.float())
        return self.criterion(output, targets)

    def _predicted_class(self, output: Tensor) -> Tensor:
        return (output.squeeze(1) > 0).long() if self.problem == "binary" else output.argmax(dim=1)


def split_auxiliary(output) -> tuple[Tensor, list[Tensor]]:
    """(main output, auxiliary outputs): a tuple's first element is the main one (torchvision's GoogLeNetOutputs,
    InceptionOutputs); its other elements, where not None, are auxiliary classifiers' outputs."""
    if isinstance(output, tuple):
        return output[0], [extra for extra in output[1:] if extra is not None]
    return output, []


def _auroc(targets, scores) -> float:
    """Area under the ROC curve; NaN when a split holds a single class (AUROC is undefined there)."""
    if len(set(targets.tolist())) < 2:
        return float("nan")
    return float(skm.roc_auc_score(targets, scores))

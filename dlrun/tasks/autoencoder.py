"""Autoencoders (task=autoencoder): the model reconstructs its inputs through a small latent code.

The criterion (loss=reconstruction, an MSE) compares the reconstruction with the input. Optional: denoising
(noise_std > 0: Gaussian noise is added to the training inputs, the clean input stays the target; evaluation
reconstructs clean inputs) and anomaly detection (anomaly_class: that class is left out of the training and
validation splits and marks the anomalies of the test split; an input's reconstruction error is its anomaly score,
flagged above the anomaly_percentile-th percentile of the validation errors).

Metrics: mse, the reconstruction's mean squared error per value, beside pca_mse, that of a PCA with as many
components as the latent code, fitted on the training split (a linear autoencoder's best). The test split adds
anomaly_auroc, anomaly_threshold and anomaly_flagged (the share of its samples flagged) with anomaly_class.
ReconstructionTask holds what the autoencoder and the VAE (dlrun/tasks/vae.py) share.
"""

from collections.abc import Iterator

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from dlrun.data.module import DataModule
from dlrun.errors import ConfigError
from dlrun.losses import with_weight_penalty
from dlrun.models.autoencoder import Autoencoder
from dlrun.models.layers import evaluating
from dlrun.tasks.base import Task

NOISE_SEED = 0  # seeds the noise of the denoising inputs shown in TensorBoard: the same draw every epoch


class ReconstructionTask(Task):
    """Checks, data handling, reconstruction errors, anomaly metrics and image grids of the reconstructing tasks."""

    model_class: type[nn.Module] = Autoencoder  # what `model` must be
    name = "autoencoder"  # the option of both the task and the model: task=autoencoder needs model=autoencoder

    def __init__(
        self,
        *,
        model: nn.Module,
        criterion: nn.Module,
        num_classes: int | None = None,
        noise_std: float = 0.0,
        anomaly_class: int | str | None = None,
        anomaly_percentile: float = 95.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ):
        if not isinstance(model, self.model_class):
            raise ConfigError(
                f"model: task={self.name} trains an encoder and decoder, which this model ({type(model).__name__}) "
                f"is not; type model={self.name}, or experiment={self.name} (with loss=reconstruction)"
            )
        if not isinstance(criterion, nn.MSELoss):
            raise ConfigError(
                f"loss: task={self.name} reconstructs its inputs under the mean squared error, not "
                f"{type(criterion).__name__}; type loss=reconstruction"
            )
        if not (isinstance(noise_std, int | float) and noise_std >= 0):
            raise ConfigError(f"task.noise_std = {noise_std}: must be a number >= 0; type task.noise_std=0.3, or 0")
        if not (isinstance(anomaly_percentile, int | float) and 0 < anomaly_percentile <= 100):
            raise ConfigError(
                f"task.anomaly_percentile = {anomaly_percentile}: must be in (0, 100]; type task.anomaly_percentile=95"
            )
        _check_anomaly_class(anomaly_class, num_classes)
        self.model = model
        self.criterion = criterion
        self.noise_std = float(noise_std)
        self.anomaly_class = anomaly_class
        self.anomaly_percentile = float(anomaly_percentile)
        self.l1, self.l2 = l1, l2
        self.anomaly_index: int | None = anomaly_class if isinstance(anomaly_class, int) else None
        self.data: DataModule | None = None
        self.device = torch.device("cpu")

    @property
    def network(self) -> nn.Module:
        """The model itself, also while the trainer wraps it in DistributedDataParallel."""
        return getattr(self.model, "module", self.model)

    def configure_optimizers(self, build_optimizer) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(params=[p for p in self.model.parameters() if p.requires_grad])}

    def prepare_data(self, data: DataModule) -> None:
        """Leave the anomaly class out of training and validation."""
        data.require_in_memory(f"task={self.name}")
        if not data.train[0].is_floating_point():
            raise ConfigError(
                f"dataset: task={self.name} reconstructs real-valued inputs, and this dataset gives tokens; "
                "type an image or tabular dataset, e.g. dataset=digits"
            )
        if self.anomaly_class is None:
            return
        self.anomaly_index = _class_index(self.anomaly_class, data.spec.class_names)
        for split in ("train", "val"):
            inputs, targets = getattr(data, split)
            kept = targets != self.anomaly_index
            if not kept.any():
                raise ConfigError(
                    f"task.anomaly_class = {self.anomaly_class}: the {split} split holds nothing else; "
                    "type another class, or task.anomaly_class=null"
                )
            setattr(data, split, (inputs[kept], targets[kept]))

    def setup(self, data: DataModule, device: torch.device) -> None:
        """Keep the data: for grids, thresholds and the PCA baseline."""
        self.data, self.device = data, device

    # -- reconstruction errors --------------------------------------------------------------------------

    def corrupted(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The inputs the model sees in training: with noise_std > 0, plus Gaussian noise of that std."""
        if not self.noise_std:
            return inputs
        noise = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        return inputs + self.noise_std * noise

    def reconstruct(self, inputs: Tensor) -> Tensor:
        """The model's reconstruction of the inputs, without randomness."""
        return self.network(inputs)

    def reconstruction_errors(self, inputs: Tensor) -> Tensor:
        """Each input's squared error per value: its anomaly score."""
        return per_sample_mse(self.reconstruct(inputs), inputs)

    @torch.no_grad()
    def split_errors(self, split: str) -> tuple[Tensor, Tensor]:
        """(reconstruction errors, targets) of every sample of a split, in the split's order, on the CPU."""
        errors, targets = [], []
        with evaluating(self.network):
            for inputs, batch_targets in self.eval_batches(split):
                errors.append(self.reconstruction_errors(inputs).float().cpu())
                targets.append(batch_targets.cpu())
        return torch.cat(errors), torch.cat(targets)

    def anomaly_threshold(self) -> float:
        """The anomaly_percentile-th percentile of the validation errors: larger errors are flagged anomalous."""
        errors, _ = self.split_errors("val")
        return float(np.percentile(errors.numpy(), self.anomaly_percentile))

    def eval_batches(self, split: str) -> Iterator[tuple[Tensor, Tensor]]:
        """A whole split in order (every sample, also under torchrun), as evaluation sees it, on the device."""
        for inputs, targets in self.data.batches(split, whole=True):
            yield inputs.to(self.device), targets

    # -- metrics ------------------------------------------------------------------------------------------

    def anomaly_metrics(self, errors: Tensor, targets: Tensor) -> dict[str, float]:
        """On a split holding the anomaly class (the test split): AUROC of the errors as scores, the threshold and
        the share of samples above it. Empty on the others."""
        if self.anomaly_index is None or not (targets == self.anomaly_index).any():
            return {}
        is_anomaly = (targets == self.anomaly_index).numpy()
        threshold = self.anomaly_threshold()
        auroc = float(roc_auc_score(is_anomaly, errors.numpy())) if not is_anomaly.all() else float("nan")
        return {
            "anomaly_auroc": auroc,
            "anomaly_threshold": threshold,
            "anomaly_flagged": float((errors > threshold).float().mean()),
        }

    # -- images -------------------------------------------------------------------------------------------

    def image_grids(self, num_images: int) -> dict[str, Tensor]:
        """images/reconstructions: the first validation inputs, each followed by its reconstruction (with
        noise_std > 0 the inputs shown are the noisy ones the model is given). Nothing for non-image data."""
        inputs = self.first_inputs(max(1, num_images // 2))
        if inputs.dim() != 4:
            return {}
        shown = self.corrupted(inputs, torch.Generator(device=inputs.device).manual_seed(NOISE_SEED))
        pairs = torch.stack([shown, self.reconstruct(shown)], dim=1)  # (N, 2, C, H, W): input, reconstruction
        return {"images/reconstructions": pairs.flatten(0, 1)}

    def first_inputs(self, count: int) -> Tensor:
        batches = []
        for inputs, _ in self.eval_batches("val"):
            batches.append(inputs)
            if sum(len(b) for b in batches) >= count:
                break
        return torch.cat(batches)[:count]


class AutoencoderTask(ReconstructionTask):
    """Reconstruction under the criterion; the PCA baseline with as many components as the latent code."""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.pca_mean: Tensor | None = None  # (values,): the training inputs' mean
        self.pca_components: Tensor | None = None  # (components, values): orthonormal rows

    def setup(self, data: DataModule, device: torch.device) -> None:
        super().setup(data, device)
        inputs = torch.cat([batch.flatten(1).float().cpu() for batch, _ in self.eval_batches("train")]).numpy()
        components = min(self.network.latent_dim, *inputs.shape)
        pca = PCA(n_components=components, random_state=0).fit(inputs)
        self.pca_mean = torch.as_tensor(pca.mean_, dtype=torch.float32, device=device)
        self.pca_components = torch.as_tensor(pca.components_, dtype=torch.float32, device=device)

    def training_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        inputs, _ = batch
        reconstruction = self.model(self.corrupted(inputs))
        return {"loss": with_weight_penalty(self.criterion(reconstruction, inputs), self.model, l1=self.l1, l2=self.l2)}

    def evaluation_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """output: (N, 2): each sample's reconstruction error, and the PCA baseline's."""
        inputs, targets = batch
        errors = self.reconstruction_errors(inputs)
        return {"output": torch.stack([errors.float(), self.pca_errors(inputs)], dim=1), "target": targets}

    def pca_errors(self, inputs: Tensor) -> Tensor:
        """Each input's squared error per value after projecting onto the PCA components and back."""
        flat = inputs.flatten(1).float() - self.pca_mean
        projected = flat @ self.pca_components.T @ self.pca_components
        return (projected - flat).pow(2).mean(dim=1)

    def metric_names(self) -> list[str]:
        return ["mse", "pca_mse"]  # and the anomaly_* metrics on the test split with anomaly_class

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        outputs, targets = outputs.float().cpu(), targets.cpu()
        metrics = {"mse": float(outputs[:, 0].mean()), "pca_mse": float(outputs[:, 1].mean())}
        return metrics | self.anomaly_metrics(outputs[:, 0], targets)


def per_sample_mse(reconstruction: Tensor, inputs: Tensor) -> Tensor:
    """(N,): each sample's mean squared error over its values."""
    return (reconstruction.float() - inputs.float()).pow(2).flatten(1).mean(dim=1)


def _check_anomaly_class(anomaly_class, num_classes: int | None) -> None:
    if anomaly_class is None:
        return
    if num_classes is None:
        raise ConfigError(
            f"task.anomaly_class = {anomaly_class}: this dataset has no classes (a regression target), so none can "
            "mark the anomalies; type task.anomaly_class=null, or a classification dataset"
        )
    if isinstance(anomaly_class, bool) or not isinstance(anomaly_class, int | str):
        raise ConfigError(f"task.anomaly_class = {anomaly_class}: must be a class index or name, or null")
    if isinstance(anomaly_class, int) and not 0 <= anomaly_class < num_classes:
        raise ConfigError(
            f"task.anomaly_class = {anomaly_class}: not a class of this dataset, whose {num_classes} classes are "
            f"0 to {num_classes - 1}; type task.anomaly_class=0, or null"
        )


def _class_index(anomaly_class: int | str, class_names: list[str]) -> int:
    """The index of a class given by index or by name (task.anomaly_class=cat on CIFAR-10)."""
    if isinstance(anomaly_class, int):
        return anomaly_class
    if anomaly_class not in class_names:
        raise ConfigError(
            f"task.anomaly_class = {anomaly_class}: not a class of this dataset; type one of "
            f"{', '.join(class_names)}, or a class index"
        )
    return class_names.index(anomaly_class)

"""Generative adversarial training (task=gan): a generator learns to draw inputs that a discriminator cannot tell
from the dataset's (Goodfellow et al., 2014), with the non-saturating generator loss.

Each training step makes discriminator_steps updates of the discriminator (binary cross-entropy of its logits:
the batch's real inputs against 1, generated ones against 0, fresh noise each update), then one of the generator
(its samples against 1: -log D(G(z)), which keeps a gradient when the discriminator wins). Real inputs are mapped
into the generator's tanh range [-1, 1] with the training inputs' range, measured in setup().

Metrics, in training and on each split: d_loss, g_loss, d_real = D(x) (the mean probability the discriminator
gives real inputs) and d_fake = D(G(z)) (the same for generated ones). How good the samples are is told by a
classifier of the dataset's classes, trained in setup() on the training split (logistic regression on the flattened
inputs): of scored_samples generated inputs from fixed noise, classes_covered counts the classes it assigns,
mean_top_probability is its mean confidence, and inception_score is exp(E KL(p(y|x) || p(y))), between 1 and the
number of classes (high: each sample is clearly one class, and the classes are evenly drawn). These three come from
the same fixed noise on every split: they score the generator, not the split.
"""

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from dlrun.distributed import World
from dlrun.errors import ConfigError
from dlrun.tasks.base import Task

REAL, FAKE = 1.0, 0.0
CLASSIFIER_SAMPLES = 5000  # training inputs the scoring classifier fits at most (MNIST: a few seconds)
CLASSIFIER_ITERATIONS = 500


class GANTask(Task):
    manual_optimization = True

    def __init__(
        self,
        *,
        model: nn.Module,
        discriminator_optimizer: Callable,
        num_classes: int | None = None,
        discriminator_steps: int = 1,
        scored_samples: int = 1000,
        sample_seed: int = 0,
    ):
        if not all(hasattr(model, name) for name in ("generator", "discriminator", "sample")):
            raise ConfigError(
                f"model: this model ({type(model).__name__}) has no generator and discriminator; task=gan needs a "
                "GAN: type model=dcgan (convolutional) or model=mlp_gan (dense), or experiment=gan (its preset)"
            )
        if not (isinstance(discriminator_steps, int) and discriminator_steps >= 1):
            raise ConfigError(
                f"task.discriminator_steps = {discriminator_steps}: must be a whole number >= 1; "
                "type task.discriminator_steps=1"
            )
        if not (isinstance(scored_samples, int) and scored_samples >= 1):
            raise ConfigError(
                f"task.scored_samples = {scored_samples}: must be a whole number >= 1; type task.scored_samples=1000"
            )
        if World.from_env().distributed:
            raise ConfigError(
                "task=gan trains its generator and discriminator in one process, not under torchrun; run dlrun "
                "itself (on a GPU: trainer.device=cuda)"
            )
        if num_classes is None:
            raise ConfigError(
                "dataset: this dataset has no classes (a regression target), and task=gan scores its samples with a "
                "classifier of the dataset's classes; type a classification dataset, e.g. dataset=digits"
            )
        self.model = model
        self.make_discriminator_optimizer = discriminator_optimizer
        self.discriminator_steps = discriminator_steps
        self.scored_samples = scored_samples
        self.sample_seed = sample_seed
        self.classifier: LogisticRegression | None = None
        self._evaluation_noise = torch.Generator().manual_seed(sample_seed)  # the fakes each evaluation scores

    def configure_optimizers(self, build_optimizer: Callable) -> dict[str, torch.optim.Optimizer]:
        """The generator's optimizer is the optimizer group's; the discriminator's is task.discriminator_optimizer."""
        try:
            discriminator = self.make_discriminator_optimizer(params=self.model.discriminator.parameters())
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"task.discriminator_optimizer: could not build it: {error}; check the task.discriminator_optimizer.* "
                "keys (dlrun --cfg job shows them)"
            ) from error
        return {"generator": build_optimizer(params=self.model.generator.parameters()), "discriminator": discriminator}

    def setup(self, data, device: torch.device) -> None:
        """Measure the training inputs' range (for the generator's [-1, 1]) and fit the scoring classifier."""
        data.require_in_memory("task=gan")
        inputs, targets = data.train
        dims = (0, 2, 3) if inputs.dim() == 4 else (0,)
        self.model.set_data_range(inputs.amin(dim=dims).to(device), inputs.amax(dim=dims).to(device))
        chosen = torch.randperm(len(targets), generator=torch.Generator().manual_seed(self.sample_seed))
        chosen = chosen[:CLASSIFIER_SAMPLES].to(targets.device)
        features = inputs[chosen]
        if data.eval_transform is not None:  # what the generator draws: resized where the dataset resizes
            features = data.eval_transform(features)
        classifier = LogisticRegression(max_iter=CLASSIFIER_ITERATIONS)
        with warnings.catch_warnings():  # a classifier short of full convergence still tells digits apart
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(features.flatten(1).float().cpu().numpy(), targets[chosen].cpu().numpy())
        self.classifier = classifier

    def training_step(self, batch: tuple[Tensor, Tensor], optimize: Callable) -> dict[str, Tensor]:
        real = self.model.to_generator_range(batch[0])
        num_fake = max(len(real), 2)  # batch norm needs two: a last batch of one real input still gets two fakes
        for _ in range(self.discriminator_steps):
            fake = self.model.generate(self.model.noise(num_fake)).detach()
            real_logits, fake_logits = self._discriminate(real), self._discriminate(fake)
            d_loss = _bce(real_logits, REAL) + _bce(fake_logits, FAKE)
            optimize(d_loss, "discriminator")
        g_loss = _bce(self._discriminate(self.model.generate(self.model.noise(num_fake))), REAL)
        optimize(g_loss, "generator")
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }

    def evaluation_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """The discriminator's logits for the batch's real inputs and as many generated ones: output (N, 2)."""
        inputs, targets = batch
        real = self.model.to_generator_range(inputs)
        fake = self.model.generate(self.model.noise(len(real), self._evaluation_noise))
        logits = torch.stack([self._discriminate(real), self._discriminate(fake)], dim=1)
        return {"output": logits, "target": targets}

    def metric_names(self) -> list[str]:
        return ["d_loss", "g_loss", "d_real", "d_fake", "classes_covered", "mean_top_probability", "inception_score"]

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        real_logits, fake_logits = outputs[:, 0].float(), outputs[:, 1].float()
        self._evaluation_noise.manual_seed(self.sample_seed)  # every evaluation of a split draws the same fakes
        return {
            "d_loss": float(_bce(real_logits, REAL) + _bce(fake_logits, FAKE)),
            "g_loss": float(_bce(fake_logits, REAL)),
            "d_real": float(torch.sigmoid(real_logits).mean()),
            "d_fake": float(torch.sigmoid(fake_logits).mean()),
            **self.sample_scores(),
        }

    @torch.no_grad()
    def sample_scores(self) -> dict[str, float]:
        """The classifier's view of scored_samples generated inputs from fixed noise."""
        if self.classifier is None:
            raise RuntimeError("GANTask.setup(data, device) fits the scoring classifier; it was not called")
        samples = self.model.sample(self.scored_samples, torch.Generator().manual_seed(self.sample_seed))
        probabilities = self.classifier.predict_proba(samples.flatten(1).float().cpu().numpy())
        return classifier_scores(probabilities)

    @torch.no_grad()
    def image_grids(self, num_images: int) -> dict[str, Tensor]:
        """Samples from the same fixed noise every epoch (images only; a GAN of feature vectors shows none)."""
        if len(self.model.out_shape) != 3:
            return {}
        return {"images/samples": self.model.sample(num_images, torch.Generator().manual_seed(self.sample_seed))}

    def _discriminate(self, inputs: Tensor) -> Tensor:
        return self.model.discriminator(inputs).squeeze(1)


def classifier_scores(probabilities: np.ndarray) -> dict[str, float]:
    """classes_covered, mean_top_probability and inception_score of class probabilities (samples x classes)."""
    marginal = probabilities.mean(axis=0, keepdims=True)
    safe = np.clip(probabilities, 1e-12, 1.0)
    divergence = (probabilities * (np.log(safe) - np.log(np.clip(marginal, 1e-12, 1.0)))).sum(axis=1)
    return {
        "classes_covered": float(len(np.unique(probabilities.argmax(axis=1)))),
        "mean_top_probability": float(probabilities.max(axis=1).mean()),
        "inception_score": float(np.exp(divergence.mean())),
    }


def _bce(logits: Tensor, label: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))

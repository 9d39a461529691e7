"""Variational autoencoders (task=vae): a Gaussian posterior over the latent code, a standard normal prior.

The likelihood p(x | code) is a Gaussian around the decoded input with one variance for every value: the
maximum-likelihood one, the mean squared error of the reconstructions. Training uses each batch's own (its
gradient included: the "optimal sigma" VAE of Rybkin et al., 2021); the model keeps a running mean of its log
(log_noise_var, in its weights), which evaluation uses. The training loss per sample is the reconstruction's
negative log-likelihood plus beta times the KL divergence of the posterior from the prior.

Metrics per sample, in nats under that Gaussian likelihood (of the standardised inputs): elbo (higher is better;
beta = 1, one code drawn per input with a fixed seed), reconstruction (the negative log-likelihood), kl, loss (the
training objective), and mse, the squared error per value of the reconstruction from the posterior mean, which is
also the anomaly score.
"""

import math

import torch
from torch import Tensor

from dlrun.errors import ConfigError
from dlrun.losses import with_weight_penalty
from dlrun.models.autoencoder import VariationalAutoencoder, reparameterize
from dlrun.tasks.autoencoder import ReconstructionTask, per_sample_mse

EVAL_SEED = 0  # seeds the codes drawn in evaluation: a split scores the same for the same weights
SAMPLE_SEED = 0  # seeds the codes of the samples shown in TensorBoard: the same draw every epoch
NOISE_VAR_MOMENTUM = 0.1  # weight of each training batch in the running log-variance of the likelihood
MIN_NOISE_VAR = 1e-6  # floor of the likelihood's variance: a perfect reconstruction must not make it 0


class VAETask(ReconstructionTask):
    model_class = VariationalAutoencoder
    name = "vae"

    def __init__(self, *, beta: float = 1.0, **settings):
        super().__init__(**settings)
        if not (isinstance(beta, int | float) and beta >= 0):
            raise ConfigError(f"task.beta = {beta}: must be a number >= 0; type task.beta=1.0")
        self.beta = float(beta)
        self._eval_generator: torch.Generator | None = None  # drawn from through one split, reset after it

    def training_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        inputs, _ = batch
        reconstruction, mean, log_var = self.model(self.corrupted(inputs))
        squared = (reconstruction.float() - inputs.float()).pow(2).flatten(1)
        log_noise_var = squared.mean().clamp_min(MIN_NOISE_VAR).log()  # this batch's maximum-likelihood variance
        finite = torch.where(torch.isfinite(log_noise_var), log_noise_var, self.network.log_noise_var)
        self.network.log_noise_var.lerp_(finite.detach(), NOISE_VAR_MOMENTUM)  # a skipped NaN batch leaves it be
        nll = gaussian_nll(squared, log_noise_var)
        kl = kl_from_prior(mean.float(), log_var.float())
        loss = with_weight_penalty((nll + self.beta * kl).mean(), self.model, l1=self.l1, l2=self.l2)
        return {
            "loss": loss,
            "elbo": -(nll + kl).detach().mean(),
            "reconstruction": nll.detach().mean(),
            "kl": kl.detach().mean(),
        }

    def evaluation_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """output: (N, 3): each sample's reconstruction error (from the posterior mean), reconstruction negative
        log-likelihood and KL divergence (from one drawn code)."""
        inputs, targets = batch
        network = self.network
        mean, log_var = network.posterior(inputs)
        if self._eval_generator is None:
            self._eval_generator = torch.Generator(device=inputs.device).manual_seed(EVAL_SEED)
        drawn = network.decode(reparameterize(mean, log_var, self._eval_generator))
        nll = gaussian_nll((drawn.float() - inputs.float()).pow(2).flatten(1), network.log_noise_var)
        kl = kl_from_prior(mean.float(), log_var.float())
        errors = per_sample_mse(network.decode(mean), inputs)
        return {
            "loss": (nll + self.beta * kl).mean(),
            "output": torch.stack([errors, nll, kl], dim=1),
            "target": targets,
        }

    def reconstruct(self, inputs: Tensor) -> Tensor:
        """The decoded posterior mean."""
        return self.network.decode(self.network.encode(inputs))

    def metric_names(self) -> list[str]:
        return ["loss", "elbo", "reconstruction", "kl", "mse"]  # and anomaly_* on the test split with anomaly_class

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        self._eval_generator = None  # the next split draws the same codes again
        outputs, targets = outputs.float().cpu(), targets.cpu()
        errors, nll, kl = outputs.unbind(dim=1)
        metrics = {
            "elbo": float(-(nll + kl).mean()),
            "reconstruction": float(nll.mean()),
            "kl": float(kl.mean()),
            "mse": float(errors.mean()),
        }
        return metrics | self.anomaly_metrics(errors, targets)

    def image_grids(self, num_images: int) -> dict[str, Tensor]:
        """The reconstructions, and images/samples: decoded codes drawn from the prior with a fixed seed."""
        grids = super().image_grids(num_images)
        if grids:
            grids["images/samples"] = self.network.sample(num_images, torch.Generator().manual_seed(SAMPLE_SEED))
        return grids


def gaussian_nll(squared_errors: Tensor, log_noise_var: Tensor) -> Tensor:
    """(N,): -log N(x; reconstruction, exp(log_noise_var) I) in nats, from the squared errors (N, values)."""
    values = squared_errors.shape[1]
    return 0.5 * (
        squared_errors.sum(dim=1) * torch.exp(-log_noise_var) + values * (log_noise_var + math.log(2 * math.pi))
    )


def kl_from_prior(mean: Tensor, log_var: Tensor) -> Tensor:
    """(N,): KL(N(mean, exp(log_var)) || N(0, I)) in nats, in closed form."""
    return -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1)

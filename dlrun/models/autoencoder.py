"""Autoencoders: an encoder to a latent code and a decoder back to the input, as MLPs or convolutional networks.

architecture=mlp flattens the input (an image or a feature vector) through dense layers of the `hidden` widths down to
the code, and mirrors them back up. architecture=conv halves the image with each stride-2 convolution of `channels`
(8 -> 4 -> 2), flattens into the code, and mirrors the convolutions with transposed ones whose output padding restores
every size exactly (28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28, 32 -> 16 -> 8 -> 16 -> 32), for any number of channels.

Autoencoder: forward(x) is the reconstruction; encode(x) the code, decode(code) an input.
VariationalAutoencoder: the encoder gives the mean and log-variance of a Gaussian posterior over the code; forward
draws a code from it with the reparameterisation trick; sample() decodes codes drawn from the standard normal prior.
Its likelihood p(x | code) is a Gaussian around the decoded input with one variance, exp(log_noise_var), which the
task keeps at the training reconstructions' mean squared error.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlrun.errors import ConfigError
from dlrun.models.layers import activation as make_activation

ARCHITECTURES = ("mlp", "conv")


class Autoencoder(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, features: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder, self.decoder = encoder, decoder
        self.to_code = nn.Linear(features, latent_dim)

    def encode(self, x: Tensor) -> Tensor:
        return self.to_code(self.encoder(x))

    def decode(self, code: Tensor) -> Tensor:
        return self.decoder(code)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


class VariationalAutoencoder(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, features: int, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder, self.decoder = encoder, decoder
        self.to_posterior = nn.Linear(features, 2 * latent_dim)  # the mean and log-variance of each code dimension
        # The log-variance of the Gaussian likelihood p(x | code): a running mean kept by the task (dlrun/tasks/vae.py).
        self.register_buffer("log_noise_var", torch.zeros(()))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The mean and log-variance of q(code | x)."""
        mean, log_var = self.to_posterior(self.encoder(x)).chunk(2, dim=1)
        return mean, log_var

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean: the code that stands for x."""
        return self.posterior(x)[0]

    def decode(self, code: Tensor) -> Tensor:
        return self.decoder(code)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction from a drawn code, posterior mean, posterior log-variance)."""
        mean, log_var = self.posterior(x)
        return self.decode(reparameterize(mean, log_var)), mean, log_var

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """num_samples inputs (N, C, H, W) decoded from codes drawn from the prior N(0, I), on the model's device; the
        codes are drawn on the generator's device (the CPU without one)."""
        device = generator.device if generator is not None else torch.device("cpu")
        code = torch.randn(num_samples, self.latent_dim, generator=generator, device=device)
        return self.decode(code.to(self.log_noise_var.device))


def reparameterize(mean: Tensor, log_var: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A code drawn from N(mean, exp(log_var)) as mean + std * noise: differentiable in mean and log_var."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * log_var) * noise


def autoencoder(*, in_shape: Sequence[int], **settings) -> Autoencoder:
    """model=autoencoder: see build_halves for the settings."""
    return Autoencoder(*build_halves(in_shape=in_shape, **settings))


def vae(*, in_shape: Sequence[int], **settings) -> VariationalAutoencoder:
    """model=vae: see build_halves for the settings."""
    return VariationalAutoencoder(*build_halves(in_shape=in_shape, **settings))


def build_halves(
    *,
    in_shape: Sequence[int],
    architecture: str = "mlp",
    latent_dim: int = 16,
    hidden: Sequence[int] = (256, 128),
    channels: Sequence[int] = (32, 64),
    activation: str = "relu",
    batch_norm: bool = False,
) -> tuple[nn.Module, nn.Module, int, int]:
    """(encoder to features, decoder from a code, feature count, latent_dim) for inputs of in_shape (resized by the
    dataset's transforms)."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"model.architecture = {architecture}: unknown; type model.architecture=mlp or conv")
    if not (isinstance(latent_dim, int) and latent_dim >= 1):
        raise ConfigError(f"model.latent_dim = {latent_dim}: must be a whole number >= 1; type model.latent_dim=16")
    if architecture == "mlp":
        encoder, decoder, features = _mlp_halves(in_shape, hidden, latent_dim, activation, batch_norm)
    else:
        encoder, decoder, features = _conv_halves(in_shape, channels, latent_dim, activation, batch_norm)
    return encoder, decoder, features, latent_dim


def _mlp_halves(shape, hidden, latent_dim, activation, batch_norm) -> tuple[nn.Module, nn.Module, int]:
    """Dense layers of the hidden widths down, the same widths reversed up to the flattened input."""
    size = math.prod(shape)
    widths_down = [size, *hidden]
    encoder = nn.Sequential(nn.Flatten(), *_dense_layers(widths_down, activation, batch_norm))
    widths_up = [latent_dim, *reversed(hidden)]
    decoder = nn.Sequential(
        *_dense_layers(widths_up, activation, batch_norm),
        nn.Linear(widths_up[-1], size),
        nn.Unflatten(1, tuple(shape)),
    )
    return encoder, decoder, widths_down[-1]


def _dense_layers(widths: Sequence[int], activation: str, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for in_features, out_features in zip(widths, widths[1:], strict=False):
        layers.append(nn.Linear(in_features, out_features))
        if batch_norm:
            layers.append(nn.BatchNorm1d(out_features))
        layers.append(make_activation(activation))
    return layers


def _conv_halves(shape, channels, latent_dim, activation, batch_norm) -> tuple[nn.Module, nn.Module, int]:
    """Stride-2 convolutions down (each size rounds up: 7 -> 4), transposed ones up to the very sizes passed."""
    if len(shape) != 3:
        raise ConfigError(
            f"model.architecture = conv needs images [channels, height, width], but the dataset gives "
            f"in_shape={list(shape)}; type model.architecture=mlp"
        )
    if not channels:
        raise ConfigError("model.channels = []: the conv architecture needs at least one; type model.channels=[32,64]")
    in_channels, height, width = shape
    sizes = [(height, width)]  # the image size before each convolution
    down: list[nn.Module] = []
    for before, after in zip([in_channels, *channels], channels, strict=False):
        down += [nn.Conv2d(before, after, 3, stride=2, padding=1), *_norm_and_activation(after, activation, batch_norm)]
        sizes.append(tuple((size + 1) // 2 for size in sizes[-1]))
    code_shape = (channels[-1], *sizes[-1])
    features = math.prod(code_shape)
    up: list[nn.Module] = [nn.Linear(latent_dim, features), make_activation(activation), nn.Unflatten(1, code_shape)]
    channels_up = [*reversed(channels), in_channels]
    for index, (before, after) in enumerate(zip(channels_up, channels_up[1:], strict=False)):
        target = sizes[-2 - index]  # the size this transposed convolution gives back
        padding = tuple(size % 2 == 0 for size in target)  # an even size was halved exactly: one more row and column
        up.append(nn.ConvTranspose2d(before, after, 3, stride=2, padding=1, output_padding=tuple(map(int, padding))))
        if index < len(channels) - 1:  # the last one gives the input's values: no activation after it
            up += _norm_and_activation(after, activation, batch_norm)
    return nn.Sequential(*down, nn.Flatten()), nn.Sequential(*up), features


def _norm_and_activation(channels: int, activation: str, batch_norm: bool) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), make_activation(activation)] if batch_norm else [make_activation(activation)]

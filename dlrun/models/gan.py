"""Generative adversarial networks: a generator from latent noise to inputs and a discriminator that scores inputs as
real (a logit), held in one module that task=gan trains and dlrun-sample draws from.

dcgan (Radford et al., 2016): the generator projects the noise to a small feature map and doubles its size with
stride-2 transposed convolutions (batch norm, ReLU) up to the image, tanh out; the discriminator halves the image
with stride-2 convolutions (LeakyReLU 0.2, batch norm after all but the first) down to one logit. Images of any
channels and size (8x8 digits, 28x28 MNIST, 32x32 CIFAR) come out exactly in the dataset's shape: the first map is
the image size divided by 2 per transposed convolution, rounded up, and a larger result is centre-cropped.
mlp_gan: dense layers both ways, for images and feature vectors alike.

The generator works in [-1, 1] (tanh); the module keeps the training inputs' range per channel (set by the task
from the data, saved with the weights), so that real inputs are mapped into [-1, 1] for the discriminator and
sample() returns inputs in the dataset's own (standardised) units.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlrun.errors import ConfigError

LEAKY_SLOPE = 0.2  # DCGAN's LeakyReLU slope in the discriminator
IMAGE_DATASETS = "dataset=digits|mnist|fashion_mnist|cifar10|cifar100|image_folder"


class GAN(nn.Module):
    def __init__(self, generator: nn.Module, discriminator: nn.Module, *, latent_dim: int, out_shape: Sequence[int]):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = latent_dim
        self.out_shape = tuple(out_shape)
        range_shape = (self.out_shape[0], 1, 1) if len(self.out_shape) == 3 else self.out_shape  # per channel
        self.register_buffer("data_low", -torch.ones(range_shape))  # the inputs' range that [-1, 1] stands for
        self.register_buffer("data_high", torch.ones(range_shape))

    def forward(self, inputs: Tensor) -> Tensor:
        raise ConfigError(
            "model: a GAN does not map inputs to outputs, it learns to generate them; type task=gan "
            "(it trains the generator against the discriminator), or experiment=gan (its preset)"
        )

    def set_data_range(self, low: Tensor, high: Tensor) -> None:
        """The range of the training inputs (per channel of images, per feature otherwise)."""
        self.data_low.copy_(low.reshape(self.data_low.shape))
        self.data_high.copy_(torch.maximum(high.reshape(self.data_high.shape), self.data_low + 1e-6))

    def to_generator_range(self, inputs: Tensor) -> Tensor:
        """Inputs in the dataset's units to the generator's [-1, 1]."""
        return 2 * (inputs - self.data_low) / (self.data_high - self.data_low) - 1

    def from_generator_range(self, generated: Tensor) -> Tensor:
        """The generator's [-1, 1] to the dataset's units."""
        return self.data_low + (generated + 1) / 2 * (self.data_high - self.data_low)

    def noise(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Latent vectors N(0, I) on the module's device; drawn with a seeded generator (a CPU one: on any device),
        they are the same vectors every time."""
        device = self.data_low.device
        if generator is None:
            return torch.randn(num_samples, self.latent_dim, device=device)
        return torch.randn(num_samples, self.latent_dim, generator=generator, device=generator.device).to(device)

    def generate(self, latent: Tensor) -> Tensor:
        """The generator's output in [-1, 1] for latent vectors."""
        return self.generator(latent)

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """num_samples generated inputs (N, *in_shape: images N, C, H, W) in the dataset's units."""
        return self.from_generator_range(self.generate(self.noise(num_samples, generator)))


def dcgan(
    *,
    in_shape: Sequence[int],
    latent_dim: int = 64,
    generator_channels: Sequence[int] = (128, 64),
    discriminator_channels: Sequence[int] = (64, 128),
    dropout: float = 0.0,
) -> GAN:
    if len(in_shape) != 3:
        raise ConfigError(
            f"model=dcgan needs images [channels, height, width], but the dataset gives in_shape={list(in_shape)}; "
            f"type model=mlp_gan (dense layers, any input), or an image dataset: {IMAGE_DATASETS}"
        )
    _check_sizes(
        latent_dim, dropout, generator_channels=generator_channels, discriminator_channels=discriminator_channels
    )
    channels, height, width = in_shape
    return GAN(
        _conv_generator(latent_dim, generator_channels, channels, height, width),
        _conv_discriminator(discriminator_channels, channels, height, width, dropout),
        latent_dim=latent_dim,
        out_shape=in_shape,
    )


def mlp_gan(
    *,
    in_shape: Sequence[int],
    latent_dim: int = 64,
    generator_hidden: Sequence[int] = (256, 256),
    discriminator_hidden: Sequence[int] = (256, 256),
    dropout: float = 0.0,
) -> GAN:
    _check_sizes(latent_dim, dropout, generator_hidden=generator_hidden, discriminator_hidden=discriminator_hidden)
    features = math.prod(in_shape)
    generator: list[nn.Module] = []
    width = latent_dim
    for hidden in generator_hidden:
        generator += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    generator += [nn.Linear(width, features), nn.Tanh(), nn.Unflatten(1, tuple(in_shape))]
    discriminator: list[nn.Module] = [nn.Flatten()]
    width = features
    for hidden in discriminator_hidden:
        discriminator += [nn.Linear(width, hidden), nn.LeakyReLU(LEAKY_SLOPE), *_dropout(dropout)]
        width = hidden
    discriminator.append(nn.Linear(width, 1))
    return GAN(nn.Sequential(*generator), nn.Sequential(*discriminator), latent_dim=latent_dim, out_shape=in_shape)


class CentreCrop(nn.Module):
    """The central height x width of a larger feature map."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, images: Tensor) -> Tensor:
        top = (images.shape[-2] - self.height) // 2
        left = (images.shape[-1] - self.width) // 2
        return images[..., top : top + self.height, left : left + self.width]


def _conv_generator(latent_dim: int, channels: Sequence[int], out_channels: int, height: int, width: int):
    scale = 2 ** len(channels)  # one doubling per transposed convolution, the last one to the image
    first_height, first_width = math.ceil(height / scale), math.ceil(width / scale)
    layers: list[nn.Module] = [
        nn.Linear(latent_dim, channels[0] * first_height * first_width, bias=False),
        nn.Unflatten(1, (channels[0], first_height, first_width)),
        nn.BatchNorm2d(channels[0]),
        nn.ReLU(),
    ]
    for in_channels, next_channels in zip(channels, channels[1:], strict=False):
        layers += [
            nn.ConvTranspose2d(in_channels, next_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(next_channels),
            nn.ReLU(),
        ]
    layers += [nn.ConvTranspose2d(channels[-1], out_channels, 4, stride=2, padding=1), nn.Tanh()]
    if (first_height * scale, first_width * scale) != (height, width):
        layers.append(CentreCrop(height, width))
    return nn.Sequential(*layers)


def _conv_discriminator(channels: Sequence[int], in_channels: int, height: int, width: int, dropout: float):
    layers: list[nn.Module] = []
    for index, out_channels in enumerate(channels):
        height, width = (height + 2 - 4) // 2 + 1, (width + 2 - 4) // 2 + 1  # a 4x4 stride-2 convolution, padding 1
        if min(height, width) < 1:
            raise ConfigError(
                f"model.discriminator_channels = {list(channels)}: {len(channels)} halvings leave nothing of the "
                f"images; type model.discriminator_channels with at most {index} entries"
            )
        layers.append(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=index == 0))
        if index > 0:  # DCGAN: no batch norm on the discriminator's input layer
            layers.append(nn.BatchNorm2d(out_channels))
        layers += [nn.LeakyReLU(LEAKY_SLOPE), *_dropout(dropout)]
        in_channels = out_channels
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_channels * height * width, 1))


def _dropout(probability: float) -> list[nn.Module]:
    return [nn.Dropout(probability)] if probability else []


def _check_sizes(latent_dim: int, dropout: float, **layer_sizes: Sequence[int]) -> None:
    """Every impossible size at once, each named by its key."""
    problems = []
    if not (isinstance(latent_dim, int) and latent_dim >= 1):
        problems.append(f"model.latent_dim = {latent_dim}: must be a whole number >= 1; type model.latent_dim=64")
    for key, sizes in layer_sizes.items():
        if not sizes or not all(isinstance(size, int) and size >= 1 for size in sizes):
            problems.append(f"model.{key} = {list(sizes)}: must be whole numbers >= 1; type model.{key}=[64,128]")
    if not 0 <= dropout < 1:
        problems.append(f"model.dropout = {dropout}: must be in [0, 1); type model.dropout=0")
    if problems:
        raise ConfigError(*problems)

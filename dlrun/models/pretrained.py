"""torchvision's ImageNet weights, read from the local torch hub cache, and what fine-tuning does with them.

The cache is torch's: <TORCH_HOME, default ~/.cache/torch>/hub/checkpoints/, holding each file under the name of its
URL (resnet18-f37072fd.pth). Files are read with weights_only=True, like dlrun's checkpoints: a file never runs code.
"""

import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from dlrun.errors import ConfigError

# torchvision's DenseNet files predate its module names: denselayer1.norm.1.weight is now denselayer1.norm1.weight.
LEGACY_DENSENET_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")
HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # resnet18-f37072fd.pth: the start of the file's SHA-256


def default_weights(variant: str):
    """torchvision's recommended ImageNet weights of a variant (its WeightsEnum member .DEFAULT)."""
    from torchvision import models

    return models.get_model_weights(variant).DEFAULT


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_file(weights) -> Path:
    return cache_dir() / Path(urlparse(weights.url).path).name


def load_state_dict(variant: str, *, download: bool = False) -> dict[str, torch.Tensor]:
    """The ImageNet state_dict of a variant from the torch hub cache; fetched into it first only with download."""
    weights = default_weights(variant)
    path = cached_file(weights)
    if not path.is_file():
        if not download:
            raise ConfigError(
                f"model.pretrained = true: no ImageNet weights for {variant} in the torch hub cache {cache_dir()}: "
                f"expected the file {path.name} there; copy it there (it is {weights.url}), type model.download=true "
                "to fetch it (needs a network), or type model.pretrained=false"
            )
        _fetch(weights.url, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated download, another file under the expected name
        raise ConfigError(
            f"model.pretrained = true: {path} is not a readable weights file ({str(error).splitlines()[0]}); "
            "delete it and copy the original file there again"
        ) from error
    return {LEGACY_DENSENET_KEY.sub(r"\1\2.", key): value for key, value in state.items()}


def _fetch(url: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    expected_hash = HASH_IN_NAME.search(path.name)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=expected_hash.group(1) if expected_hash else None)
    except Exception as error:  # no network, a proxy, a refused connection, a wrong hash
        raise ConfigError(
            f"model.download = true: fetching {url} into {path.parent} failed ({type(error).__name__}: {error}); "
            f"this machine may have no network: copy the file {path.name} into {path.parent} and type "
            "model.download=false"
        ) from error


def load_into(network: nn.Module, state: dict[str, torch.Tensor], variant: str) -> None:
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ConfigError(
            f"model.pretrained = true: the cached file {cached_file(default_weights(variant))} does not hold "
            f"{variant}'s weights ({str(error).splitlines()[0]}); delete it and copy the original file there"
        ) from error


def replace_heads(network: nn.Module, num_outputs: int, classes: int) -> list[nn.Module]:
    """Swap every linear layer that outputs the weights' classes (the head, and any auxiliary heads) for a new one
    with num_outputs; returns the new layers."""
    new = []
    for name, module in list(network.named_modules()):
        if isinstance(module, nn.Linear) and module.out_features == classes:
            head = nn.Linear(module.in_features, num_outputs)
            network.set_submodule(name, head)
            new.append(head)
    return new


def channels_from_rgb(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    """The pretrained first convolution for images of another channel count: the mean RGB kernel, for each channel,
    scaled so that a grey image gives the activations of the same image in colour."""
    adapted = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        adapted.weight.copy_(mean.repeat(1, channels, 1, 1) * conv.in_channels / channels)
        if conv.bias is not None:
            adapted.bias.copy_(conv.bias)
    return adapted


def freeze_except(network: nn.Module, trainable: list[nn.Module]) -> None:
    """Only the parameters of `trainable` learn. Batch norm layers left without a trainable parameter keep their
    ImageNet statistics: they always run in eval mode."""
    for parameter in network.parameters():
        parameter.requires_grad = False
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad = True
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            parameter.requires_grad for parameter in module.parameters()
        ):
            module.register_forward_pre_hook(_keep_in_eval_mode)


def _keep_in_eval_mode(module: nn.Module, _inputs) -> None:
    module.train(False)

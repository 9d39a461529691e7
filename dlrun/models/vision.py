"""torchvision's CNN families, built by torchvision's own builders and adapted to the dataset's images.

Every family takes 1- or 3-channel images (the first convolution takes the dataset's channels) of any size:
- small images (under 64 px a side: 8x8 digits, 28x28 MNIST, 32x32 CIFAR) get a small-input stem where the family
  downsamples early: a 3x3 stride-1 first convolution, no early max pooling, pooling that keeps a 1-pixel map
  (see each _small_* function below);
- Inception v3 cannot shrink its stem (its auxiliary head needs 17x17 maps): the dataset's resize transform brings
  every image to model.input_size (299) instead.
With pretrained=true the ImageNet stem is kept (small images then need dataset.transforms.resize), the head is
replaced for the dataset's classes, and freeze_backbone=true trains only the new layers.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from dlrun.errors import ConfigError
from dlrun.models import pretrained as imagenet
from dlrun.models.layers import image_shape

SMALL_IMAGE = 64  # below this many pixels a side, ImageNet's downsampling stem would shrink the image away
INCEPTION_AUX_SIZE = 299  # Inception v3's auxiliary head needs 17x17 maps at Mixed_6e: 299 px inputs


@dataclass(frozen=True)
class Family:
    name: str
    variants: tuple[str, ...]
    small_stem: Callable[[nn.Module, int], list[nn.Module]] | None  # adapts a network to small images
    small_min_size: int = 1  # the smallest side the network takes with its small-input stem
    aux_modules: tuple[str, ...] = ()  # auxiliary classifiers (GoogLeNet, Inception), used in training only


def _build(
    family: Family,
    *,
    in_shape: Sequence[int],
    num_outputs: int,
    variant: str,
    pretrained: bool = False,
    freeze_backbone: bool = False,
    download: bool = False,
    small_input_stem: bool | str = "auto",
    aux_logits: bool | None = None,
    input_size: int | None = None,  # Inception: what dataset.transforms.resize follows (in_shape is then that size)
) -> nn.Module:
    """The network for images of in_shape (after the dataset's transforms), with num_outputs outputs."""
    from torchvision import models

    if variant not in family.variants:
        raise ConfigError(
            f"model.variant = {variant}: not a {family.name} variant; type one of {' | '.join(family.variants)}"
        )
    channels, height, width = image_shape(in_shape, family.name)
    if freeze_backbone and not pretrained:
        raise ConfigError(
            "model.freeze_backbone = true: there is no pretrained backbone to keep; type model.pretrained=true "
            "or model.freeze_backbone=false"
        )
    small = _small_stem_wanted(family, small_input_stem, min(height, width), pretrained)
    _check_size(family, variant, (height, width), small=small, pretrained=pretrained, aux_logits=aux_logits)

    options = {}
    if family.aux_modules:
        # The files hold the auxiliary heads: they are loaded, then dropped unless wanted. The ported ImageNet
        # weights expect torchvision's rescaling of ImageNet-normalised RGB inputs (transform_input).
        options |= {"aux_logits": bool(aux_logits or pretrained), "init_weights": not pretrained}
        options["transform_input"] = bool(pretrained and channels == 3)
    new_layers: list[nn.Module] = []
    if pretrained:
        classes = len(imagenet.default_weights(variant).meta["categories"])
        network = models.get_model(variant, weights=None, num_classes=classes, **options)
        imagenet.load_into(network, imagenet.load_state_dict(variant, download=download), variant)
        if family.aux_modules and not aux_logits:
            network.aux_logits = False
            for name in family.aux_modules:
                setattr(network, name, None)
        new_layers += imagenet.replace_heads(network, num_outputs, classes)
    else:
        network = models.get_model(variant, weights=None, num_classes=num_outputs, **options)

    if small:
        new_layers += family.small_stem(network, channels)
    elif channels != 3:
        name, conv = _first_conv(network)
        adapted = imagenet.channels_from_rgb(conv, channels) if pretrained else _conv_like(conv, channels)
        network.set_submodule(name, adapted)
    if freeze_backbone:
        imagenet.freeze_except(network, new_layers)
    return network


def _small_stem_wanted(family: Family, setting: bool | str, side: int, pretrained: bool) -> bool:
    if setting not in ("auto", True, False):
        raise ConfigError(f"model.small_input_stem = {setting}: type auto, true or false")
    if family.small_stem is None:
        if setting is True:
            raise ConfigError(
                f"model.small_input_stem = true: {family.name} has no small-input stem, it resizes its inputs; "
                "type model.small_input_stem=auto"
            )
        return False
    if setting == "auto":
        return side < SMALL_IMAGE and not pretrained
    return setting


def _check_size(
    family: Family, variant: str, size: tuple[int, int], *, small: bool, pretrained: bool, aux_logits: bool | None
) -> None:
    """A readable error where the network would shrink the images below one pixel."""
    side = min(size)
    if small:
        needed, reason = family.small_min_size, "its small-input stem"
    elif family.aux_modules and aux_logits and family.name == "inception":
        needed, reason = INCEPTION_AUX_SIZE, "its auxiliary classifier (model.aux_logits=true)"
    else:
        needed = imagenet.default_weights(variant).meta["min_size"][0]
        reason = "ImageNet's stem" + (" (kept with pretrained weights)" if pretrained else "")
    if side >= needed:
        return
    hint = f"dataset.transforms.resize={max(needed, 224) if pretrained else needed}"
    if family.name == "inception" and needed == INCEPTION_AUX_SIZE:
        hint += " (or model.aux_logits=false, which needs only 75)"
    elif not small and not pretrained and family.small_stem is not None:
        hint += " or model.small_input_stem=auto"
    raise ConfigError(
        f"model={family.name} ({variant}) gets {size[0]}x{size[1]} images, but {reason} needs at least "
        f"{needed}x{needed}; type {hint}"
    )


# -- small-input stems ----------------------------------------------------------------------------------


def _small_alexnet(network: nn.Module, channels: int) -> list[nn.Module]:
    """3x3 stride-1 first convolution; the 3x3 stride-2 poolings pad by one, so they keep a 1-pixel map; global
    average pooling before the classifier (a 6x6 grid of a 1-4 pixel map would only repeat it)."""
    features = network.features
    features[0] = _new_conv(channels, features[0].out_channels, bias=True)
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            features[index] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return [features[0], *_global_pool_head(network, features[10].out_channels)]


def _small_vgg(network: nn.Module, channels: int) -> list[nn.Module]:
    """VGG's stem is already 3x3 stride 1: it takes the dataset's channels; its 2x2 poolings round up, so five of
    them keep a 1-pixel map; global average pooling before the classifier."""
    features = network.features
    features[0] = _new_conv(channels, features[0].out_channels, bias=True)
    for index, module in enumerate(features):
        if isinstance(module, nn.MaxPool2d):
            features[index] = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
    last_conv = [module for module in features if isinstance(module, nn.Conv2d)][-1]
    return [features[0], *_global_pool_head(network, last_conv.out_channels)]


def _global_pool_head(network: nn.Module, features: int) -> list[nn.Module]:
    """AlexNet and VGG on small images: pool to 1x1 and size the classifier's first layer for it."""
    network.avgpool = nn.AdaptiveAvgPool2d(1)
    index, first = next((i, m) for i, m in enumerate(network.classifier) if isinstance(m, nn.Linear))
    network.classifier[index] = nn.Linear(features, first.out_features)
    return [network.classifier[index]]


def _small_googlenet(network: nn.Module, channels: int) -> list[nn.Module]:
    """3x3 stride-1 first convolution, no first max pooling."""
    network.conv1.conv = _new_conv(channels, network.conv1.conv.out_channels)
    network.maxpool1 = nn.Identity()
    return [network.conv1.conv]


def _small_resnet(network: nn.Module, channels: int) -> list[nn.Module]:
    """3x3 stride-1 first convolution, no max pooling (the CIFAR ResNet's stem)."""
    network.conv1 = _new_conv(channels, network.conv1.out_channels)
    network.maxpool = nn.Identity()
    return [network.conv1]


def _small_densenet(network: nn.Module, channels: int) -> list[nn.Module]:
    """3x3 stride-1 first convolution, no first max pooling; the transitions' 2x2 poolings round up."""
    features = network.features
    features.conv0 = _new_conv(channels, features.conv0.out_channels)
    features.pool0 = nn.Identity()
    for module in features.modules():
        if isinstance(module, nn.AvgPool2d):
            module.ceil_mode = True
    return [features.conv0]


def _small_stride_one(network: nn.Module, channels: int) -> list[nn.Module]:
    """EfficientNet, MobileNet: the first convolution and the first downsampling block move with stride 1 (as the
    CIFAR versions of MobileNet do), so the network shrinks images 8x instead of 32x."""
    stem = network.features[0][0]
    network.features[0][0] = _new_conv(channels, stem.out_channels)
    # The block's depthwise convolution carries its stride; a stride-2 block has no residual path to adjust.
    first_downsampling = next(
        module for module in network.features[1:].modules() if isinstance(module, nn.Conv2d) and module.stride == (2, 2)
    )
    first_downsampling.stride = (1, 1)
    return [network.features[0][0]]


def _new_conv(channels: int, out_channels: int, *, bias: bool = False) -> nn.Conv2d:
    conv = nn.Conv2d(channels, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def _conv_like(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    """A new first convolution like conv, for images with another number of channels."""
    new = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _first_conv(network: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((name, module) for name, module in network.named_modules() if isinstance(module, nn.Conv2d))


VGGS = tuple(f"vgg{depth}{norm}" for depth in (11, 13, 16, 19) for norm in ("", "_bn"))
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
DENSENETS = ("densenet121", "densenet161", "densenet169", "densenet201")
EFFICIENTNETS = tuple(f"efficientnet_b{index}" for index in range(8))
MOBILENETS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")

FAMILIES = {
    family.name: family
    for family in (
        Family("alexnet", ("alexnet",), _small_alexnet),
        Family("vgg", VGGS, _small_vgg),
        Family("googlenet", ("googlenet",), _small_googlenet, small_min_size=5, aux_modules=("aux1", "aux2")),
        Family("inception", ("inception_v3",), None, aux_modules=("AuxLogits",)),
        Family("resnet", RESNETS, _small_resnet),
        Family("densenet", DENSENETS, _small_densenet),
        Family("efficientnet", EFFICIENTNETS, _small_stride_one),
        Family("mobilenet", MOBILENETS, _small_stride_one),
    )
}

# The builders conf/model/ names, one per family: _build's keywords (in_shape, num_outputs, variant, ...).
alexnet = functools.partial(_build, FAMILIES["alexnet"])
vgg = functools.partial(_build, FAMILIES["vgg"])
googlenet = functools.partial(_build, FAMILIES["googlenet"])
inception = functools.partial(_build, FAMILIES["inception"])
resnet = functools.partial(_build, FAMILIES["resnet"])
densenet = functools.partial(_build, FAMILIES["densenet"])
efficientnet = functools.partial(_build, FAMILIES["efficientnet"])
mobilenet = functools.partial(_build, FAMILIES["mobilenet"])

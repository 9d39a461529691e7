"""Mixup and CutMix: training batches of images mixed pairwise, labels alike, for image classification.

torchvision.transforms.v2's own MixUp and CutMix do the mixing (each image with the next one of the shuffled
batch, by a share drawn from Beta(alpha, alpha)); with both on, v2.RandomChoice picks one of them per batch, as
torchvision's reference training scripts do. The labels become class probabilities that sum to 1, which the
cross-entropy loss takes as they are. Off (None) unless dataset.transforms.train.mixup or .cutmix is above 0.
"""

from collections.abc import Mapping

from torch import Tensor

from dlrun.errors import ConfigError

MIX_KEYS = ("mixup", "cutmix")  # under dataset.transforms.train: each the alpha of its Beta distribution, 0 is off


def batch_mix(settings: Mapping, *, num_classes: int) -> "BatchMix | None":
    """The Mixup/CutMix of dataset.transforms.train's settings (its other keys are the per-image augmentations)."""
    alphas = {name: settings.get(name, 0.0) for name in MIX_KEYS}
    problems = [
        f"{_key(name)} = {alpha}: the alpha of a Beta distribution, a number >= 0; type {_key(name)}=0.2, or 0 (off)"
        for name, alpha in alphas.items()
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha < 0
    ]
    if problems:
        raise ConfigError(*problems)
    if not any(alphas.values()):
        return None
    return BatchMix(**alphas, num_classes=num_classes)


def refuse_without_images(transforms: Mapping | None, reason: str) -> None:
    """A ConfigError naming the Mixup/CutMix keys where dataset.transforms turns them on for data that are not
    images (reason says what they are); nothing where it does not."""
    alphas = {name: alpha for name in MIX_KEYS if (alpha := ((transforms or {}).get("train") or {}).get(name))}
    if alphas:
        raise refusal(
            alphas, reason, "pick an image dataset (dataset=digits, say) or drop the dataset.transforms overrides"
        )


def refusal(alphas: Mapping[str, float], reason: str, instead: str | None = None) -> ConfigError:
    """Mixup and CutMix refused where they cannot work: the keys that turn them on, why, and what to type instead
    (by default: the keys at 0, off)."""
    on = {name: alpha for name, alpha in alphas.items() if alpha}
    keys = ", ".join(f"{_key(name)} = {alpha}" for name, alpha in on.items())
    instead = instead or f"type {off_overrides(on)}"
    return ConfigError(
        f"{keys}: Mixup and CutMix mix images and their class labels, for image classification only, and {reason}; "
        f"{instead}"
    )


class BatchMix:
    """(images, class indices) -> (mixed images, class probabilities (N, num_classes)), on the batch's device."""

    def __init__(self, *, mixup: float, cutmix: float, num_classes: int):
        from torchvision.transforms import v2  # a 3-second import, for the runs that mix only

        self.alphas = {"mixup": mixup, "cutmix": cutmix}
        pairs = ((v2.MixUp, mixup), (v2.CutMix, cutmix))
        # float(alpha): torch's Dirichlet takes no whole numbers (dataset.transforms.train.cutmix=90)
        mixes = [mix(alpha=float(alpha), num_classes=num_classes) for mix, alpha in pairs if alpha]
        self.mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

    def __repr__(self) -> str:
        return f"BatchMix({self.mix})"

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return self.mix(images, labels)

    def refusal(self, reason: str, instead: str | None = None) -> ConfigError:
        return refusal(self.alphas, reason, instead)


def off_overrides(alphas: Mapping[str, float]) -> str:
    """The overrides that turn off those of Mixup and CutMix that alphas turns on."""
    return " ".join(f"{_key(name)}=0" for name, alpha in alphas.items() if alpha)


def _key(name: str) -> str:
    return f"dataset.transforms.train.{name}"

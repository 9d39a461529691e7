"""The image files of an image folder, by split folder and class: what dataset=image_folder reads and dlrun-shards
packs. Free of torch, so that a command that only lists files starts at once."""

import os
from pathlib import Path

from dlrun.errors import ConfigError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SPLIT_FOLDERS = ("train", "val", "test")


def check_root(root: str | None) -> Path:
    if root is None:
        raise ConfigError(
            "dataset.root = null: type the folder that holds one folder of images per class "
            "(or train/, val/, test/ folders of them), e.g. dataset.root=~/pets"
        )
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"dataset.root = {root}: no such folder ({path}); type the folder of your class folders")
    return path


def list_images(root: Path) -> dict[str, list[tuple[Path, str]]]:
    """(file, class name) of every image, by split folder; the whole root is 'train' when it has no train/."""
    if (root / "train").is_dir():
        folders = {split: root / split for split in SPLIT_FOLDERS if (root / split).is_dir()}
    else:
        folders = {"train": root}
    listed = {split: images_by_class(folder) for split, folder in folders.items()}
    if not listed["train"]:
        where = root / "train" if "val" in folders or (root / "train").is_dir() else root
        raise ConfigError(
            f"dataset.root = {root}: no images in class folders under {where} (looked for {', '.join(EXTENSIONS)}); "
            "type the folder whose subfolders (one per class) hold the images"
        )
    return listed


def images_by_class(folder: Path) -> list[tuple[Path, str]]:
    found = []
    for class_dir in sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")):
        for directory, _, names in os.walk(class_dir):
            for name in sorted(names):
                if name.lower().endswith(EXTENSIONS):
                    found.append((Path(directory) / name, class_dir.name))
    return found


def check_classes(root: Path, listed: dict, class_names: list[str], num_classes: int | str) -> None:
    train_classes = {label for _, label in listed["train"]}
    for split, files in listed.items():
        extra = sorted({label for _, label in files} - train_classes)
        if extra:
            raise ConfigError(
                f"dataset.root = {root}: {split}/ has classes with no training images ({', '.join(extra[:5])}); "
                f"add them to train/ or remove them from {split}/"
            )
    check_class_count(root, class_names, num_classes, "class folders")


def check_class_count(root: Path, class_names: list[str], num_classes: int | str, kind: str = "classes") -> None:
    """At least two classes, and as many as dataset.num_classes says unless it is auto."""
    if len(class_names) < 2:
        raise ConfigError(f"dataset.root = {root}: classification needs at least 2 {kind}, found {len(class_names)}")
    if num_classes != "auto" and num_classes != len(class_names):
        raise ConfigError(
            f"dataset.num_classes = {num_classes}: {root} has {len(class_names)} {kind}; "
            f"type dataset.num_classes={len(class_names)} or dataset.num_classes=auto"
        )

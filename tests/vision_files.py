"""Small datasets in the on-disk formats torchvision reads: MNIST's IDX files, CIFAR-10's and CIFAR-100's pickles.

Each class is a fixed random pattern of bright pixels (per channel for CIFAR-10) under noise, so a model learns
the classes in a few epochs. Images and labels are returned too, to compare with what is read back.
"""

import pickle
import struct
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
# torchvision's MNIST and FashionMNIST read these, uncompressed, under <root>/<class name>/raw/.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# torchvision's CIFAR10 reads these pickles under <root>/cifar-10-batches-py/.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes
# torchvision's CIFAR100 reads the pickles train, test and meta under <root>/cifar-100-python/.
CIFAR100_FOLDER = "cifar-100-python"


def words(text: str) -> list[str]:
    return text.split()


CIFAR100_CLASSES = words(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle "
    "caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant "
    "flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man "
    "maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree "
    "plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
    "trout tulip turtle wardrobe whale willow_tree wolf woman worm"
)
CIFAR100_SUPERCLASSES = words(
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2"
)


def patterned_images(
    count: int, *, shape: tuple[int, int, int], seed: int, pattern_seed: int = 1234
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (count, H, W, C) and uint8 labels, every class equally often, each class its own pattern.

    The class patterns depend only on pattern_seed, so train and test sets drawn with different seeds share them.
    """
    height, width, channels = shape
    patterns = np.random.default_rng(pattern_seed).random((NUM_CLASSES, height, width, channels)) < 0.3
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.uint8)
    images = np.where(patterns[labels], 170.0, 50.0) + rng.normal(0.0, 45.0, (count, height, width, channels))
    return np.clip(images, 0, 255).round().astype(np.uint8), labels


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: zero, zero, the type code, the number of dimensions, each size as a big-endian int32, the bytes."""
    assert array.dtype == np.uint8
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(
    root: Path, folder: str = "MNIST", *, train: int = 300, test: int = 100, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST-format files under root/<folder>/raw/ (folder FashionMNIST for Fashion-MNIST); the (N, 28, 28) images
    and labels written, by split."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count, split_seed in (("train", train, seed), ("test", test, seed + 1)):
        images, labels = patterned_images(count, shape=(28, 28, 1), seed=split_seed)
        images = images[..., 0]
        image_file, label_file = MNIST_FILES[split]
        write_idx(raw / image_file, images)
        write_idx(raw / label_file, labels)
        written[split] = (images, labels)
    return written


def write_cifar10(
    root: Path, *, train: int = 300, test: int = 100, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10's python batches under root/cifar-10-batches-py/: the training set dealt over data_batch_1..5,
    test_batch and batches.meta; the (N, 32, 32, 3) images and labels written, by split."""
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count, split_seed in (("train", train, seed), ("test", test, seed + 1)):
        images, labels = patterned_images(count, shape=(32, 32, 3), seed=split_seed)
        written[split] = (images, labels)
    for index, name in enumerate(CIFAR10_TRAIN_BATCHES):
        part = slice(index * train // 5, (index + 1) * train // 5)
        _write_cifar_batch(folder / name, f"training batch {index + 1} of 5", *written["train"], part)
    _write_cifar_batch(folder / "test_batch", "testing batch 1 of 1", *written["test"], slice(None))
    meta = {"num_cases_per_batch": train // 5, "label_names": CIFAR10_CLASSES, "num_vis": 32 * 32 * 3}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def _write_cifar_batch(path: Path, batch_label: str, images: np.ndarray, labels: np.ndarray, part: slice) -> None:
    """One pickled batch: each row the 1024 red, then green, then blue values of one image, row by row."""
    rows = images[part].transpose(0, 3, 1, 2).reshape(-1, 3 * 32 * 32)
    batch = {
        "batch_label": batch_label,
        "labels": [int(label) for label in labels[part]],
        "data": np.ascontiguousarray(rows),
        "filenames": [f"image_{i}.png" for i in range(len(rows))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar100(
    root: Path, *, train: int = 300, test: int = 100, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-100's python files under root/cifar-100-python/: train and test (rows as CIFAR-10's, labels under
    fine_labels and coarse_labels) and meta with the 100 fine and 20 coarse label names. The images use the first
    NUM_CLASSES fine labels; the (N, 32, 32, 3) images and fine labels written, by split."""
    folder = Path(root) / CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count, split_seed in (("train", train, seed), ("test", test, seed + 1)):
        images, labels = patterned_images(count, shape=(32, 32, 3), seed=split_seed)
        rows = images.transpose(0, 3, 1, 2).reshape(-1, 3 * 32 * 32)
        batch = {
            "filenames": [f"image_{i}.png" for i in range(count)],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": [int(label) for label in labels],
            "coarse_labels": [int(label) // 5 for label in labels],  # a stand-in grouping: torchvision reads fine
            "data": np.ascontiguousarray(rows),
        }
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
        written[split] = (images, labels)
    meta = {"fine_label_names": CIFAR100_CLASSES, "coarse_label_names": CIFAR100_SUPERCLASSES}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written

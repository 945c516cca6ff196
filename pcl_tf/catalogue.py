"""The datasets pcl_tf knows: their names and aliases, and the facts a run needs about each (image
shape, classes and their names, the standard per-channel mean/std, which train-time augmentation
the literature uses, the split sizes). Pure data: no TensorFlow, no TFDS, no files, so that a
name is checked instantly (``pcl-data --dataset=typo`` answers before TensorFlow would load).

Preparing a dataset's TFDS copy is :mod:`pcl_tf.prepare`; reading it, :mod:`pcl_tf.data`.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

SPLITS = ("train", "test")


class DatasetError(ValueError):
    """A dataset name, split or argument is wrong, or the data is not there.

    The message is always one line meant for the user (the CLIs print it as is).
    """


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a training run needs to know about one dataset.

    Attributes:
      name: canonical name used by pcl_tf (``mnist``, ``fashion_mnist``, ``cifar10``, ...).
      tfds_name: the TFDS builder name.
      image_shape: (height, width, channels).
      num_classes: number of classes; labels are ``0 .. num_classes - 1``.
      class_names: human-readable class names, indexed by label.
      mean, std: standard published per-channel statistics of the training set, in [0, 1] pixel
        units (what ``keras.layers.Normalization`` or the model's input layer should use).
      crop_padding: train-time augmentation pads each side by this many (zero) pixels and crops
        back to ``image_shape`` at a random offset; 0 means no random crop.
      random_flip: train-time augmentation flips images horizontally at random (not for digits).
      train_examples, test_examples: the sizes of the real splits.
    """

    name: str
    tfds_name: str
    image_shape: Tuple[int, int, int]
    num_classes: int
    class_names: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    crop_padding: int = 0
    random_flip: bool = False
    train_examples: int = 0
    test_examples: int = 0

    @property
    def has_augmentation(self) -> bool:
        """Whether ``load(..., augment=True)`` changes anything for this dataset."""
        return self.crop_padding > 0 or self.random_flip


_DIGITS = tuple(str(i) for i in range(10))


_CIFAR100_FINE_LABELS = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip


_INFOS: Dict[str, DatasetInfo] = {
    i.name: i
    for i in (
        DatasetInfo(
            name="mnist",
            tfds_name="mnist",
            image_shape=(28, 28, 1),
            num_classes=10,
            class_names=_DIGITS,
            mean=(0.1307,),
            std=(0.3081,),
            train_examples=60000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="fashion_mnist",
            tfds_name="fashion_mnist",
            image_shape=(28, 28, 1),
            num_classes=10,
            class_names=(
                "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
            ),  # fmt: skip
            mean=(0.2860,),
            std=(0.3530,),
            train_examples=60000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="cifar10",
            tfds_name="cifar10",
            image_shape=(32, 32, 3),
            num_classes=10,
            class_names=(
                "airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck",
            ),  # fmt: skip
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            crop_padding=4,
            random_flip=True,
            train_examples=50000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="cifar100",
            tfds_name="cifar100",
            image_shape=(32, 32, 3),
            num_classes=100,
            class_names=_CIFAR100_FINE_LABELS,
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            crop_padding=4,
            random_flip=True,
            train_examples=50000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="svhn",
            tfds_name="svhn_cropped",
            image_shape=(32, 32, 3),
            num_classes=10,
            class_names=_DIGITS,
            mean=(0.4377, 0.4438, 0.4728),
            std=(0.1980, 0.2010, 0.1970),
            # Digits: a flipped 2 or 5 is not a 2 or 5, so crop only.
            crop_padding=4,
            random_flip=False,
            train_examples=73257,
            test_examples=26032,
        ),
    )
}

NAMES: Tuple[str, ...] = tuple(_INFOS)

_ALIASES = {"fmnist": "fashion_mnist", "svhn_cropped": "svhn"}


def canonical_name(name: str) -> str:
    """Returns the canonical name for ``name`` (case-insensitive; ``-`` and ``_`` are equivalent).

    Raises:
      DatasetError: unknown name; the message lists the valid names.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _INFOS:
        raise DatasetError(
            f"unknown dataset {name!r}; valid names: mnist, fashion_mnist (or fmnist), "
            "cifar10, cifar100, svhn"
        )
    return key


def info(name: str) -> DatasetInfo:
    """Returns the ``DatasetInfo`` of a dataset name or alias (see ``canonical_name``)."""
    return _INFOS[canonical_name(name)]

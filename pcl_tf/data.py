"""The ``tf.data`` input pipeline: ``load(name, split, batch_size=...)``, the batched, prefetched
``(images float32 in [0, 1] (B, H, W, C), labels int32 (B,))`` of a dataset's TFDS copy.

Everything is read through TensorFlow Datasets (TFDS), so the tests can run every dataset through
the real TFDS code path on ``tfds.testing.mock_data``. Normalisation by mean/std is left to the
model, so that attacks work in the [0, 1] pixel space in which epsilons are quoted. Examples come
in TFDS's order, which for MNIST/Fashion-MNIST is not the order of the IDX files (nor of
``keras.datasets``): TFDS writes examples sorted by a hash of their index. The dataset facts
are :mod:`pcl_tf.catalogue`'s, the preparation :mod:`pcl_tf.prepare`'s (``load`` calls
``ensure_prepared`` first, which fails fast when the data is not there).

TensorFlow and TFDS are imported on first use, not at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from pcl_tf import prepare
from pcl_tf.catalogue import SPLITS, DatasetError, DatasetInfo, info

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


def _check_positive_int(value, what: str, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatasetError(f"{what} must be a positive integer, got {value!r}")


def _augment(ds: "tf.data.Dataset", ds_info: DatasetInfo, seed: int) -> "tf.data.Dataset":
    """Random crop (zero padding ``crop_padding``) and/or horizontal flip, per uint8 example.

    Stateless ops draw their seeds from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``: reproducible for a given seed, different every epoch.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    height, width, channels = ds_info.image_shape
    pad = ds_info.crop_padding
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def augment_one(example, rng):
        image, label = example
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(rng, 2))
        if pad:
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(
                image, [height, width, channels], seed=crop_seed
            )
        if ds_info.random_flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image, label

    return tf.data.Dataset.zip(ds, seeds).map(
        augment_one, num_parallel_calls=tf.data.AUTOTUNE
    )


def load(
    name: str,
    split: str,
    *,
    batch_size: int,
    data_dir: Optional[str] = None,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
    num_examples: Optional[int] = None,
    drop_remainder: bool = False,
    shuffle_buffer: int = 10_000,
    skip_examples: int = 0,
    num_examples_name: str = "num_examples",
) -> "tf.data.Dataset":
    """The batched input pipeline of one split.

    Yields ``(images, labels)``: images float32 in [0, 1] of shape (B, H, W, C) (not normalised:
    models normalise with ``info(name).mean/std``, attacks work in pixel space), labels int32 of
    shape (B,).  Calls ``prepare.ensure_prepared`` first (which fails fast with a one-line message when the
    data is not there).

    Args:
      name: dataset name or alias (see ``info``).
      split: "train" or "test".
      batch_size: examples per batch.
      data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      shuffle: shuffle files and examples, seeded by ``seed``, in a new order every iteration.
      augment: apply the dataset's train-time augmentation (``info(name).crop_padding`` and
        ``random_flip``); a no-op for datasets without one (MNIST, Fashion-MNIST).
      seed: seed of the shuffling and augmentation: the same seed gives the same sequence of
        epochs.
      num_examples: use only the first N examples of the split, in TFDS's canonical order (the
        same on every machine; for MNIST/Fashion-MNIST a fixed permutation of the IDX/Keras
        order, see ``pcl_tf.prepare._prepare_from_idx``) and before shuffling: e.g. a fixed evaluation subset.
      drop_remainder: drop the last incomplete batch.
      shuffle_buffer: examples held by the shuffle buffer.
      skip_examples: start after the first N examples (canonical order): with ``num_examples``, a
        slice such as the held-out validation images of robust early stopping.
      num_examples_name: what the caller calls ``num_examples`` (a flag, a config field), for
        the message when it asks for more examples than the split has.
    """
    ds_info = info(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(num_examples, "num_examples", allow_none=True)
    _check_positive_int(shuffle_buffer, "shuffle_buffer")
    data_dir = prepare.ensure_prepared(ds_info.name, data_dir)

    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (seconds to import)

    builder = tfds.builder(ds_info.tfds_name, data_dir=data_dir)
    read_config = tfds.ReadConfig(
        shuffle_seed=seed if shuffle else None,
        shuffle_reshuffle_each_iteration=True if shuffle else None,
    )
    if skip_examples < 0:
        raise DatasetError(f"skip_examples={skip_examples} must be >= 0")
    skip = int(skip_examples)
    available = {"train": ds_info.train_examples, "test": ds_info.test_examples}.get(split)  # the real split's size
    if num_examples is not None and available and skip + int(num_examples) > available:
        after = f" after the first {skip}" if skip else ""
        raise DatasetError(f"{num_examples_name}={num_examples}{after} is more than the {available} examples of "
                           f"{ds_info.name}'s {split} split; give at most {available - skip} (or 0 for all of them)")
    # Slice to the end of the wanted range and skip the start in tf.data: the same on real data
    # and on mock data (which ignores slices).
    tfds_split = split if num_examples is None else f"{split}[:{skip + int(num_examples)}]"
    ds = builder.as_dataset(
        split=tfds_split, as_supervised=True, shuffle_files=shuffle and not skip, read_config=read_config
    )
    if skip:
        ds = ds.skip(skip)
    if num_examples is not None:
        # The slice above already does it on real data; mock data ignores slices.
        ds = ds.take(int(num_examples))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment and ds_info.has_augmentation:
        ds = _augment(ds, ds_info, seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(images, labels):
        return tf.cast(images, tf.float32) / 255.0, tf.cast(labels, tf.int32)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)

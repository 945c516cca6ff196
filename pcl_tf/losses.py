"""The Prototype Conformity Loss (Mustafa et al., ICCV 2019, Eq. 5) as a Keras layer.

The layer owns the trainable class centroids ("prototypes") of one supervised depth and maps
``(features, labels)`` to that depth's scalar loss. Two modes:

``mode="paper"`` (default) — Eq. 5 with the batch-mean convention::

    L = 1/B sum_i [ pull_weight * ||f_i - w_{y_i}||
                    - push_weight/(k-1) * sum_{j != y_i} ( cap(||f_i - w_j||) + cap(||w_{y_i} - w_j||) ) ]

    with plain (not squared) Euclidean norms and one set of centroids for all three terms.

    Eq. 5 is unbounded below: the push terms grow without limit as features and centroids fly
    apart, so minimising it as written diverges (the official repository's issue #3 asked exactly
    this). pcl_tf keeps it bounded with a *push margin*: each push distance counts up to
    ``push_margin`` and no further, ``cap(d) = min(d, push_margin)``. Classes already separated
    by more than the margin stop pushing, the loss is bounded below by
    ``-2 * push_weight * push_margin``, and the pull term keeps the features compact.
    ``push_margin=None`` restores the unbounded Eq. 5 (for study, not for training).

``mode="official"`` — the variant of the authors' released PyTorch code (proximity.py and
    contrastive_proximity.py)::

    L = pull_weight * 1/B sum_i ||f_i - c_{y_i}||^2
        - push_weight * 1/(B(k-1)) sum_i sum_{j != y_i} ||f_i - p_j||^2

    with squared distances, *separate* pull centres ``c`` and push centres ``p``, no
    centroid-centroid term, and by default ``pull_weight=1, push_weight=1e-4``. The official code
    multiplies each centre set's gradient by 1/weight before its own SGD step (lr 0.5 for pull,
    1e-4 for push centres); :meth:`centroid_gradient_scales` reproduces both with a single plain
    SGD centroid optimizer of learning rate 0.5.

Centroids are initialised N(0, 1), as in the official code.
"""

from __future__ import annotations

from typing import Dict, Optional

import keras
import tensorflow as tf

MODES = ("paper", "official")

# sqrt(x + eps) keeps the gradient of a distance finite where a feature sits on a centroid.
_EPS = 1e-12


def _pairwise_distances(a: tf.Tensor, b: tf.Tensor, squared: bool) -> tf.Tensor:
    """(N, d) x (M, d) -> (N, M) Euclidean distances, computed by broadcasting.

    Broadcasting costs N*M*d memory but is exact; the ``|a|^2 - 2ab + |b|^2`` expansion loses
    the small distances (features close to their centroid) to cancellation in float32.
    """
    diff = tf.expand_dims(a, 1) - tf.expand_dims(b, 0)
    squared_distances = tf.reduce_sum(tf.square(diff), axis=-1)
    return squared_distances if squared else tf.sqrt(squared_distances + _EPS)


def nearest_prototype(features, prototypes, excluded=None, output_type=tf.int32) -> tf.Tensor:
    """Eq. 6: per feature vector (B, d), the class whose prototype (K, d) is nearest in Euclidean
    distance. ``excluded`` (B,) class ids never chosen (the attacks' "nearest *wrong* class").

    The one implementation of the rule: training's predictions, the exported SavedModel and the
    feature-space attack all call it."""
    distances = _pairwise_distances(tf.cast(features, tf.float32), tf.convert_to_tensor(prototypes), squared=True)
    if excluded is not None:
        distances += tf.one_hot(excluded, tf.shape(distances)[1]) * 1e30
    return tf.argmin(distances, axis=1, output_type=output_type)


@keras.saving.register_keras_serializable(package="pcl_tf")
class PrototypeConformityLoss(keras.layers.Layer):
    """Trainable class prototypes of one depth and the loss that pulls features to them.

    Call as ``loss = layer(features, labels)`` with float features (B, d) and integer labels (B,);
    returns the weighted scalar loss (float32). :meth:`terms` returns the unweighted pull and push
    parts for logging. The model that owns the layer adds the returned loss to its objective.
    """

    def __init__(
        self,
        num_classes: int,
        mode: str = "paper",
        pull_weight: float = 1.0,
        push_weight: Optional[float] = None,
        push_margin: Optional[float] = 10.0,
        push_centroid_lr_ratio: float = 1e-4 / 0.5,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # prototypes and the loss stay float32.
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown PCL mode {mode!r}; choose one of {', '.join(MODES)}")
        if num_classes < 2:
            raise ValueError(f"PCL needs at least 2 classes, got num_classes={num_classes}")
        if push_margin is not None and push_margin <= 0:
            raise ValueError(f"push_margin must be positive or None, got {push_margin}")
        self.num_classes = int(num_classes)
        self.mode = mode
        self.pull_weight = float(pull_weight)
        self.push_weight = float(push_weight if push_weight is not None else (1.0 if mode == "paper" else 1e-4))
        self.push_margin = None if push_margin is None else float(push_margin)
        self.push_centroid_lr_ratio = float(push_centroid_lr_ratio)

    def build(self, features_shape, labels_shape=None):
        dim = int(features_shape[-1])
        init = keras.initializers.RandomNormal(stddev=1.0)
        shape = (self.num_classes, dim)
        if self.mode == "paper":
            self.centroids = self.add_weight(shape=shape, initializer=init, name="centroids")
        else:
            self.pull_centroids = self.add_weight(shape=shape, initializer=init, name="pull_centroids")
            self.push_centroids = self.add_weight(shape=shape, initializer=init, name="push_centroids")

    @property
    def prototypes(self):
        """The centroids the nearest-prototype rule (Eq. 6) classifies with."""
        return self.centroids if self.mode == "paper" else self.pull_centroids

    def terms(self, features, labels) -> Dict[str, tf.Tensor]:
        """Unweighted batch-mean ``pull`` and ``push`` parts (``loss = wp*pull - wq*push``)."""
        features = tf.cast(features, tf.float32)
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        mask = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
        others = 1.0 - mask
        k_minus_1 = float(self.num_classes - 1)
        if self.mode == "paper":
            centroids = tf.convert_to_tensor(self.centroids)
            to_centroids = _pairwise_distances(features, centroids, squared=False)  # (B, k)
            pull = tf.reduce_sum(mask * to_centroids, axis=1)
            between = _pairwise_distances(centroids, centroids, squared=False)  # (k, k)
            own_to_others = tf.gather(between, labels)  # (B, k): ||w_{y_i} - w_j||
            push = tf.reduce_sum(others * (self._cap(to_centroids) + self._cap(own_to_others)), axis=1)
            push = push / k_minus_1
        else:
            pull = tf.reduce_sum(
                mask * _pairwise_distances(features, tf.convert_to_tensor(self.pull_centroids), squared=True),
                axis=1,
            )
            push = tf.reduce_sum(
                others * _pairwise_distances(features, tf.convert_to_tensor(self.push_centroids), squared=True),
                axis=1,
            ) / k_minus_1
        return {"pull": tf.reduce_mean(pull), "push": tf.reduce_mean(push)}

    def call(self, features, labels):
        parts = self.terms(features, labels)
        return self.pull_weight * parts["pull"] - self.push_weight * parts["push"]

    def _cap(self, distances):
        if self.push_margin is None:
            return distances
        return tf.minimum(distances, self.push_margin)

    def nearest_prototype(self, features) -> tf.Tensor:
        """Eq. 6: the class whose prototype is nearest to each feature vector (int32)."""
        return nearest_prototype(features, self.prototypes)

    def centroid_gradient_scales(self) -> Dict[str, float]:
        """Factor each centroid variable's gradient is multiplied by before the centroid step.

        ``paper``: 1 (centroids follow the loss as weighted). ``official``: 1/weight, which undoes
        the loss weight as the official code does, and for the push centres the ratio of their
        learning rate to the pull centres' (1e-4 / 0.5), which with a plain-SGD centroid
        optimizer of lr 0.5 equals the official code's two optimizers.
        """
        if self.mode == "paper":
            return {self.centroids.path: 1.0}
        return {
            self.pull_centroids.path: 1.0 / self.pull_weight,
            self.push_centroids.path: self.push_centroid_lr_ratio / self.push_weight,
        }

    def compute_output_shape(self, features_shape, labels_shape=None):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            mode=self.mode,
            pull_weight=self.pull_weight,
            push_weight=self.push_weight,
            push_margin=self.push_margin,
            push_centroid_lr_ratio=self.push_centroid_lr_ratio,
        )
        return config

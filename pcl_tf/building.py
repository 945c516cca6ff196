"""The model a config describes: its network, its normalisation and its PC layers.

What every user of a trained model needs (evaluation, export, a notebook) and nothing of a
training run: no optimizers, no schedule, no adversarial training (a run passes its adversary in,
see :mod:`pcl_tf.training_setup`).
"""

from __future__ import annotations

from typing import Tuple

from pcl_tf import catalogue, models, training


def build_pcl_model(config, adversary=None) -> training.PCLModel:
    """The (uncompiled) PCLModel a config describes (a ConfigDict, or the dict of a config.json),
    with ``adversary`` as its per-batch adversarial augmentation: None for a model that is only
    evaluated or exported (the adversary holds no weights, so checkpoints restore either way);
    a training run passes :func:`pcl_tf.training_setup.make_adversary`'s."""
    info = catalogue.info(config.dataset)
    network = models.build_network(
        config.model,
        input_shape=info.image_shape,
        num_classes=info.num_classes,
        branches=config.pcl.branches,
        mean=normalization(config)[0],
        std=normalization(config)[1],
        branch_ce=config.pcl.branch_ce,
        precision=config.mixed_precision,
    )
    return training.PCLModel(
        network,
        info.num_classes,
        pc_mode=config.pcl.mode,
        pull_weight=config.pcl.pull_weight,
        push_weight=config.pcl.push_weight,
        push_margin=config.pcl.push_margin or None,
        branch_ce_weight=config.pcl.branch_ce_weight,
        adversary=adversary,
        attack_loss=config.adv.loss,
        adversary_start=config.adv.start,
        trades_beta=config.adv.trades_beta,
        push_centroid_lr_ratio=config.pcl.push_centroid_lr_ratio,
    )


def normalization(config) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """The per-channel ``(mean, std)`` the model's first layer normalises with: ``norm_mean`` /
    ``norm_std`` where a config sets them (the released code's CIFAR-10 std differs from the
    dataset's), else the dataset's published statistics. ``config`` may be a ConfigDict or the
    dict of a config.json (a work dir written before the fields existed gets the dataset's)."""
    info = catalogue.info(config.get("dataset"))
    mean, std = config.get("norm_mean") or info.mean, config.get("norm_std") or info.std
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)

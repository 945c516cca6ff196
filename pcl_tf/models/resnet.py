"""CIFAR-style ResNets: the paper's ResNet-110 (Table 1), the released code's network
(``resnet110_official``) and a small ResNet-20 for CPU runs.

Both are built from one residual block, a stack of Conv+BN(+ReLU) units given by a *layout*:

- basic block (ResNet-20, He et al. 2016): 3x3 conv w, 3x3 conv w; output w channels;
- bottleneck block (ResNet-110): 1x1 conv w, 3x3 conv w, 1x1 conv 4w; output 4w channels.

Design choices, shared by both:

- **Post-activation** (the original He et al. ordering): every conv is followed by BN, every BN
  but the block's last by ReLU, and the ReLU after the residual addition closes the block.  This
  is the Conv+BN+ReLU ordering that the paper's Table 1 lists.
- **Shortcuts**: identity when the shape is unchanged, otherwise a 1x1 projection conv + BN
  (He et al.'s option B).  ResNet-20 uses it too, where He et al.'s CIFAR nets zero-pad instead
  (option A); one block implementation for both families matters more than the few extra weights.
- **Down-sampling** happens in the block's first 3x3 conv (stride 2 at the start of the second and
  third stage), so that no 1x1 stride-2 conv throws away three quarters of its input.
- Convs have no bias (BN's beta makes it redundant) and He-normal initialisation; BN uses
  momentum 0.9 and epsilon 1e-5, the PyTorch defaults of the reference implementations.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import keras

from pcl_tf.models import registry
from pcl_tf.models.batch_norm import FusedBatchNormalization

# Keras' layer computed by one fused kernel (same variables and numbers); tests swap in Keras' own.
BatchNormalization = FusedBatchNormalization

# (channel multiplier of the block width, kernel size) of each conv unit in a block.
BASIC = ((1, 3), (1, 3))
BOTTLENECK = ((1, 1), (1, 3), (4, 1))


def _conv_bn(x, filters: int, kernel_size: int, strides: int, name: str, relu: bool = True):
    """Conv (no bias) -> BN -> optional ReLU; layers named ``name``, ``name_bn``, ``name_relu``."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)
    x = BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _residual_block(x, width: int, layout: Sequence[Tuple[int, int]], strides: int, name: str):
    """One post-activation residual block; ``strides`` applies to its first 3x3 conv."""
    out_channels = layout[-1][0] * width
    stride_unit = next(i for i, (_, kernel) in enumerate(layout) if kernel == 3)
    y = x
    for i, (multiplier, kernel) in enumerate(layout):
        y = _conv_bn(
            y,
            multiplier * width,
            kernel,
            strides if i == stride_unit else 1,
            f"{name}_conv{i + 1}",
            relu=i < len(layout) - 1,
        )
    shortcut = x
    if strides != 1 or x.shape[-1] != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, strides, f"{name}_proj", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _resnet(
    x,
    num_classes: int,
    *,
    layout: Sequence[Tuple[int, int]],
    blocks_per_stage: int,
    stem_name: str,
    stage_names: Sequence[str],
    tap_stages: Sequence[str],
    fc_units: int,
    gap_tap: bool = False,
    fc_relu: bool = True,
):
    """Stem Conv(16,3x3)+BN+ReLU; three stages of widths 16/32/64 (stride 2 entering stages 2 and
    3); GAP -> Dense(fc_units)(+ReLU unless ``fc_relu=False``) -> Dense(num_classes).

    Taps: the outputs of the stages named in ``tap_stages``, the GAP (``gap``) with ``gap_tap``,
    then ``fc<fc_units>``.
    """
    x = _conv_bn(x, 16, 3, 1, f"{stem_name}_conv")
    taps = {}
    for stage, (stage_name, width) in enumerate(zip(stage_names, (16, 32, 64))):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, width, layout, strides, f"{stage_name}_block{block + 1}")
        if stage_name in tap_stages:
            taps[stage_name] = x
    gap = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if gap_tap:
        taps["gap"] = gap
    fc_name = f"fc{fc_units}"
    fc = keras.layers.Dense(fc_units, name=fc_name)(gap)
    if fc_relu:
        fc = keras.layers.ReLU(name=f"{fc_name}_relu")(fc)
    taps[fc_name] = fc
    logits = keras.layers.Dense(num_classes, name="fc_logits")(fc)
    return logits, taps


@registry.register("resnet110")
def resnet110(x, num_classes: int):
    """ResNet-110 of the paper's Table 1 (CIFAR-10/100, SVHN; 32x32 inputs).

    Layer 1 is the Conv(16,3x3)+BN+ReLU stem; layers 2, 3 and 4 are stages of 12 bottleneck blocks
    of widths 16, 32 and 64 (64, 128 and 256 output channels).  The paper's Table 1 is followed:
    the taps are after layer 3 (``layer3``, 128 channels, which the config gives its own
    GAP -> FC(512) branch, ``"layer3:512"``), after layer 4 (``layer4``, 256 channels, GAP) and
    FC(1024)+ReLU (``fc1024``) on the GAP of layer 4, before FC(num_classes).

    The official code calls its network ResNet-110 but builds a 164-layer bottleneck net (its
    ``depth=110`` gives 18 bottleneck blocks per stage) with two parameter-free taps (the GAP of
    the last stage and the FC(1024) output, no auxiliary FC branch); this function follows the
    paper instead.
    """
    return _resnet(
        x,
        num_classes,
        layout=BOTTLENECK,
        blocks_per_stage=12,
        stem_name="layer1",
        stage_names=("layer2", "layer3", "layer4"),
        tap_stages=("layer3", "layer4"),
        fc_units=1024,
    )


@registry.register("resnet110_official")
def resnet110_official(x, num_classes: int):
    """The network of the released PCL code, which it calls ResNet-110 (``depth=110``) but which
    has 18 bottleneck blocks per stage (164 layers): the same blocks, stem and widths as
    :func:`resnet110`, with two parameter-free taps and no ReLU after FC(1024).

    Taps: ``gap`` (the 256-d GAP of the last stage) and ``fc1024`` (FC(1024) on it, linear),
    the two depths the released code puts its proximity losses on (branches ``"gap,fc1024"``).
    Stage names are ``layer1..3`` as there. Not reproduced: PyTorch's initialisers (its convs are
    N(0, 2/fan_out), its linear layers uniform); the convs here are Keras' He-normal.
    """
    return official_layout(x, num_classes, blocks_per_stage=18)


def official_layout(x, num_classes: int, blocks_per_stage: int):
    """The released network's layout with ``blocks_per_stage`` bottleneck blocks per stage (18 in
    :func:`resnet110_official`; fewer give a network with the same taps that builds in seconds)."""
    return _resnet(
        x,
        num_classes,
        layout=BOTTLENECK,
        blocks_per_stage=blocks_per_stage,
        stem_name="stem",
        stage_names=("layer1", "layer2", "layer3"),
        tap_stages=(),
        fc_units=1024,
        gap_tap=True,
        fc_relu=False,
    )


@registry.register("resnet20")
def resnet20(x, num_classes: int):
    """CIFAR ResNet-20 (He et al. 2016): three stages of 3 basic blocks, widths 16/32/64.

    A small, CPU-friendly stand-in for ResNet-110 with the same tap structure: ``stage2``
    (32 channels), ``stage3`` (64 channels) and GAP -> FC(256)+ReLU (``fc256``).
    """
    return _resnet(
        x,
        num_classes,
        layout=BASIC,
        blocks_per_stage=3,
        stem_name="stem",
        stage_names=("stage1", "stage2", "stage3"),
        tap_stages=("stage2", "stage3"),
        fc_units=256,
    )

"""VGG-19 with batch normalisation, adapted to 28x28 and 32x32 inputs.

The black-box source model of the paper's Tables 2 and 6: adversarial examples crafted on it are
transferred to the defended networks.

Convs (3x3, Conv+BN+ReLU): 64, 64, pool; 128, 128, pool; 256 x4, pool; 512 x4, pool; 512 x4,
pool; then GAP -> FC(512)+ReLU (tap ``fc512``) -> FC(num_classes).  ImageNet's two FC(4096)
layers are replaced by one FC(512), as is usual for 32x32 inputs where block 5 ends at 1x1.

Small inputs: the five 2x2 poolings use ``padding="same"``, i.e. ceil(size / 2), so 28x28 maps go
28 -> 14 -> 7 -> 4 -> 2 -> 1 and 32x32 maps 32 -> 16 -> 8 -> 4 -> 2 -> 1; both end at 1x1 and
every pooling stays a real 2x2 pooling (28x28 only pads the 7x7 map's last row and column).
The GAP head then makes the model independent of the input size.

Convs have no bias (BN's beta makes it redundant) and He-normal initialisation; BN uses momentum
0.9 and epsilon 1e-5, as in :mod:`pcl_tf.models.resnet`.
"""

from __future__ import annotations

import keras

from pcl_tf.models import registry
from pcl_tf.models.batch_norm import FusedBatchNormalization

# Keras' layer computed by one fused kernel (same variables and numbers); tests swap in Keras' own.
BatchNormalization = FusedBatchNormalization

# Filters of the convs of each block; every block ends with a 2x2 max-pooling.
VGG19_BLOCKS = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


def _vgg_block(x, filters, name: str):
    """Conv(3x3)+BN+ReLU per entry of ``filters``, then 2x2 "same" max-pooling."""
    for i, f in enumerate(filters, 1):
        x = keras.layers.Conv2D(
            f,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        x = BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    return keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)


@registry.register("vgg19")
def vgg19(x, num_classes: int):
    """VGG-19-BN; taps ``block5`` (the pooled output of the last conv block, 4-D, 512 channels)
    and ``fc512``."""
    for i, filters in enumerate(VGG19_BLOCKS, 1):
        x = _vgg_block(x, filters, f"block{i}")
    block5 = x
    gap = keras.layers.GlobalAveragePooling2D(name="gap")(block5)
    fc512 = keras.layers.ReLU(name="fc512_relu")(keras.layers.Dense(512, name="fc512")(gap))
    logits = keras.layers.Dense(num_classes, name="fc_logits")(fc512)
    return logits, {"block5": block5, "fc512": fc512}

"""CNN-6 of the paper's Table 1, for MNIST and Fashion-MNIST.

[Conv(32,5x5)+PReLU]x2, pool; [Conv(64,5x5)+PReLU]x2, pool; [Conv(128,5x5)+PReLU]x2, pool;
GAP (tap ``gap``); FC(512)+PReLU (tap ``fc512``); FC(64)+PReLU (tap ``fc64``); FC(k) logits.
PReLU learns one slope per channel (``shared_axes=[1, 2]``), as in the center-loss network the
paper takes this model from; Keras' default would learn one slope per pixel.
"""

from __future__ import annotations

import keras

from pcl_tf.models import registry


def _conv_block(x, filters: int, name: str):
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 5, padding="same", name=f"{name}_conv{i}")(x)
        x = keras.layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu{i}")(x)
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


@registry.register("cnn6")
def cnn6(x, num_classes: int):
    x = _conv_block(x, 32, "layer1")
    x = _conv_block(x, 64, "layer2")
    x = _conv_block(x, 128, "layer3")
    gap = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    fc512 = keras.layers.PReLU(name="fc512_prelu")(keras.layers.Dense(512, name="fc512")(gap))
    fc64 = keras.layers.PReLU(name="fc64_prelu")(keras.layers.Dense(64, name="fc64")(fc512))
    logits = keras.layers.Dense(num_classes, name="fc_logits")(fc64)
    return logits, {"gap": gap, "fc512": fc512, "fc64": fc64}

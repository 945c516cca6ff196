"""VGG-19 on Fashion-MNIST, softmax only: the black-box source model of the paper's Table 2.

  pcl-train --config=configs/fmnist_vgg19.py:quick --workdir=runs/fmnist_vgg19_quick
  Variants: :quick, :smoke (see configs/common.py).
"""

from pcl_tf.configs import common


def get_config(variants=""):
    return common.make(
        dataset="fashion_mnist", model="vgg19", branches="", schedule="mnist", variants=variants
    )

"""VGG-19 on CIFAR-10, softmax only: the black-box source model of the paper's Table 2.

  pcl-train --config=configs/cifar10_vgg19.py --workdir=runs/cifar10_vgg19
  Variants: :quick, :smoke (see configs/common.py).
"""

from pcl_tf.configs import common


def get_config(variants=""):
    return common.make(
        dataset="cifar10", model="vgg19", branches="", schedule="cifar", variants=variants
    )

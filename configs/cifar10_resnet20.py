"""ResNet-20 on CIFAR-10, a CPU-sized stand-in for ResNet-110 with the same three PCL depths.

  pcl-train --config=configs/cifar10_resnet20.py:quick --workdir=runs/cifar10_r20_quick
  Variants: :quick, :softmax, :official, :smoke (see configs/common.py).
"""

from pcl_tf.configs import common


def get_config(variants=""):
    return common.make(
        dataset="cifar10", model="resnet20", branches="stage2:256,stage3,fc256", schedule="cifar", variants=variants
    )

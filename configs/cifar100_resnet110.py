"""ResNet-110 (Table 1) on CIFAR-100: PCL after layer 3 (GAP -> FC(512)), layer 4 (GAP), FC(1024).

  pcl-train --config=configs/cifar100_resnet110.py --workdir=runs/cifar100_pcl   (GPU-sized)
  Variants: :quick, :softmax, :official, :smoke (see configs/common.py).
"""

from pcl_tf.configs import common


def get_config(variants=""):
    return common.make(
        dataset="cifar100", model="resnet110", branches="layer3:512,layer4,fc1024", schedule="cifar", variants=variants
    )

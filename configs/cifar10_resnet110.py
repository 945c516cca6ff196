"""ResNet-110 (Table 1) on CIFAR-10: PCL after layer 3 (GAP -> FC(512)), layer 4 (GAP), FC(1024).

  pcl-train --config=configs/cifar10_resnet110.py --workdir=runs/cifar10_pcl   (GPU-sized)
  Variants: :quick, :softmax, :official, :official_as_intended, :official_advpgd, :smoke (see
  configs/common.py and docs/official_recipe.md).
"""

from pcl_tf.configs import common


def get_config(variants=""):
    return common.make(
        dataset="cifar10", model="resnet110", branches="layer3:512,layer4,fc1024", schedule="cifar", variants=variants
    )

"""CNN-6 (Table 1) on MNIST with PCL after GAP, FC(512) and FC(64); paper Table 2.

  pcl-train --config=configs/mnist_cnn6.py --workdir=runs/mnist_pcl
  Variants: :quick, :softmax, :official, :smoke (see configs/common.py).
"""

from pcl_tf.configs import common


def get_config(variants=""):
    return common.make(
        dataset="mnist", model="cnn6", branches="gap,fc512,fc64", schedule="mnist", variants=variants
    )

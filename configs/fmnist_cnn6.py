"""CNN-6 (Table 1) on Fashion-MNIST with PCL after GAP, FC(512) and FC(64); paper Table 2.

  pcl-train --config=configs/fmnist_cnn6.py --workdir=runs/fmnist_pcl     (paper: 91.32 % clean)
  pcl-train --config=configs/fmnist_cnn6.py:quick --workdir=runs/fmnist_pcl_quick   (3 epochs on CPU)
  pcl-train --config=configs/fmnist_cnn6.py:quick,softmax --workdir=runs/fmnist_softmax_quick
"""

from pcl_tf.configs import common


def get_config(variants=""):
    return common.make(
        dataset="fashion_mnist", model="cnn6", branches="gap,fc512,fc64", schedule="mnist", variants=variants
    )

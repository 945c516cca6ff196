"""``python -m pcl_tf`` prints the commands; each runs as ``python -m pcl_tf.cli.<name>`` too."""

print(
    "pcl_tf commands:\n"
    "  pcl-train   (python -m pcl_tf.cli.train)   train a PCL or softmax model\n"
    "  pcl-attack  (python -m pcl_tf.cli.attack)  evaluate robustness\n"
    "  pcl-export  (python -m pcl_tf.cli.export)  export a SavedModel for TF Serving\n"
    "  pcl-data    (python -m pcl_tf.cli.data)    prepare a dataset offline"
)

"""Config files, installed as ``pcl_tf.configs``; see common.py for the base and the variants."""

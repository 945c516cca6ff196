"""The version of pcl_tf: the one place it is written (setup.py reads it from this file)."""

__version__ = "0.1.0"

"""Installs pcl_tf: the library, its configs (as ``pcl_tf.configs``) and the console scripts."""

import re

import setuptools


def _version() -> str:
    """``__version__`` from pcl_tf/_version.py, read as text: importing pcl_tf here would need its
    dependencies before they are installed."""
    with open("pcl_tf/_version.py", encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


setuptools.setup(
    name="pcl_tf",
    version=_version(),
    description=(
        "Prototype Conformity Loss (Mustafa et al., ICCV 2019) for TensorFlow/Keras 3, "
        "with honest adversarial evaluation."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.13",
    # configs/ lives at the top of the repository (one Python file per dataset/model) and is
    # installed as the sub-package pcl_tf.configs so that `pcl-train --dataset=...` finds its
    # default config in any kind of install.
    packages=["pcl_tf", "pcl_tf.models", "pcl_tf.cli", "pcl_tf.attacks", "pcl_tf.configs"],
    package_dir={"pcl_tf.configs": "configs"},
    install_requires=[
        # Keras 3 on the TensorFlow backend; 2.16 is the first TF release that ships Keras 3.
        "tensorflow>=2.16,<2.22",
        "keras>=3.0,<3.16",
        # TensorFlow 2.21 no longer pulls TensorBoard in; the per-term loss curves need it.
        "tensorboard",
        "tensorflow-datasets>=4.9,<5",
        # TFDS imports importlib_resources when it prepares a dataset but does not declare it.
        "importlib_resources",
        "cleverhans>=4.0,<5",
        "absl-py>=1.0",
        "numpy>=1.23",
        # absl config files with --config.field=value overrides (config_flags).
        "ml_collections>=0.1.1",
    ],
    extras_require={
        # ART: an independent APGD to cross-check ours against (tests/test_apgd_vs_art.py).
        "test": ["pytest>=7", "adversarial-robustness-toolbox==1.20.1"],
        "plots": ["matplotlib>=3.5"],
    },
    entry_points={
        "console_scripts": [
            "pcl-train=pcl_tf.cli.train:run",
            "pcl-attack=pcl_tf.cli.attack:run",
            "pcl-export=pcl_tf.cli.export:run",
            "pcl-data=pcl_tf.cli.data:run",
        ]
    },
)

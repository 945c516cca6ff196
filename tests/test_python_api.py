"""The public Python API: ``import pcl_tf`` is cheap and versioned, and the example of
docs/python_api.md runs as written (its python blocks, exactly that text)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "python_api.md")


def python_blocks(path):
    with open(path, encoding="utf-8") as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)


def test_import_is_cheap_and_versioned():
    """``import pcl_tf`` loads neither TensorFlow nor CleverHans (fresh process: the CLI's start-up),
    and the version is the one setup.py installs."""
    code = ("import sys, pcl_tf; print(pcl_tf.__version__); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'cleverhans') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    version, loaded = out.split("\n")[:2]
    assert loaded == "[]"
    setup_version = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True,
                                   text=True, check=True).stdout.split()[-1]
    assert version == setup_version


def test_every_public_name_resolves_and_shadows_no_module():
    import pcl_tf
    import pcl_tf.export

    for name in pcl_tf.__all__:
        assert getattr(pcl_tf, name) is not None, name
        # A public name equal to a submodule's would replace it (`from pcl_tf import export`).
        assert not os.path.exists(os.path.join(ROOT, "pcl_tf", name + ".py")), name
        assert not os.path.isdir(os.path.join(ROOT, "pcl_tf", name)), name
    assert pcl_tf.export.export is pcl_tf.export_saved_model
    with pytest.raises(AttributeError):
        pcl_tf.no_such_name  # noqa: B018


def test_docs_example_runs_as_written(tmp_path):
    from pcl_tf import prepare

    blocks = python_blocks(DOC)
    assert blocks, f"no python code block in {DOC}"
    code = "\n".join(blocks)
    namespace = {"__name__": "__docs__"}
    if prepare.is_prepared("fashion_mnist"):
        exec(compile(code, DOC, "exec"), namespace)  # noqa: S102
    else:  # a machine without the dataset: random images of its shape, the same code
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=640):
            exec(compile(code, DOC, "exec"), namespace)  # noqa: S102
    assert namespace["worst"].shape == (64,)
    assert os.path.isdir(namespace["path"])

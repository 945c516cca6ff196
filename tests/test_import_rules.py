"""The layering of the library, checked on the source (``ast``; nothing is imported):

* the attacks (``pcl_tf/attacks/``) never import training code: an attack must not depend on how
  a model was trained, and the attack core is what training uses, not the other way round;
* the export and the work dir (loading a trained model) never import the training run;
* only the CleverHans wrappers import CleverHans (everything else uses pcl_tf's own attack core);
* the library logs, it does not print: only the commands (``pcl_tf/cli/``, ``__main__``) print;
* the commands hold no library logic: they import no file, JSON, array or TensorFlow modules.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "pcl_tf")

TRAINING_MODULES = {"adversarial", "training", "experiment", "training_setup", "custom_loop", "early_stopping",
                    "schedule"}
# The training run (as opposed to the model, pcl_tf.training's PCLModel): what the export and the
# work dir must not depend on (loading a model builds no adversary, no optimizer, no schedule).
TRAINING_RUN_MODULES = TRAINING_MODULES - {"training"}
SERVING_SIDE = {"pcl_tf/building.py", "pcl_tf/workdir.py", "pcl_tf/serving.py", "pcl_tf/versions.py",
                "pcl_tf/export.py", "pcl_tf/rest.py"}
CLEVERHANS_WRAPPERS = {"pcl_tf/attacks/cleverhans_compat.py"}
# The commands parse and check flags, call the library and print what it returns: no file
# globbing, copying, JSON or array work of their own (that is library logic, which a notebook user
# would then miss), and no TensorFlow at module level (tests/test_cli_startup.py).
CLI_FORBIDDEN_IMPORTS = {"glob", "shutil", "json", "subprocess", "numpy", "tensorflow", "keras", "tensorflow_datasets"}

def library_files():
    for directory, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                yield os.path.relpath(path, ROOT).replace(os.sep, "/"), path


def parse(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def imported_modules(tree, relpath):
    """Every module a file imports, as dotted names (relative imports resolved)."""
    package = relpath[: -len(".py")].replace("/", ".").rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield base
            for alias in node.names:  # `from pcl_tf import training` imports pcl_tf.training
                yield f"{base}.{alias.name}"


FILES = dict(library_files())


@pytest.mark.parametrize("relpath", sorted(p for p in FILES if p.startswith("pcl_tf/attacks/")))
def test_attacks_import_no_training_code(relpath):
    forbidden = {f"pcl_tf.{m}" for m in TRAINING_MODULES}
    bad = sorted({m for m in imported_modules(parse(FILES[relpath]), relpath)
                  if any(m == f or m.startswith(f + ".") for f in forbidden)})
    assert not bad, f"{relpath} imports training code: {bad}"


@pytest.mark.parametrize("relpath", sorted(SERVING_SIDE))
def test_the_export_and_the_work_dir_import_no_training_run(relpath):
    forbidden = {f"pcl_tf.{m}" for m in TRAINING_RUN_MODULES}
    bad = sorted({m for m in imported_modules(parse(FILES[relpath]), relpath)
                  if any(m == f or m.startswith(f + ".") for f in forbidden)})
    assert not bad, f"{relpath} imports the training run: {bad}"


@pytest.mark.parametrize("relpath", sorted(FILES))
def test_only_the_cleverhans_wrappers_import_cleverhans(relpath):
    if relpath in CLEVERHANS_WRAPPERS:
        return
    bad = sorted({m for m in imported_modules(parse(FILES[relpath]), relpath)
                  if m == "cleverhans" or m.startswith("cleverhans.")})
    assert not bad, f"{relpath} imports CleverHans ({bad}); use pcl_tf.attacks.core or the wrappers"


@pytest.mark.parametrize("relpath", sorted(p for p in FILES
                                           if not p.startswith("pcl_tf/cli/") and p != "pcl_tf/__main__.py"))
def test_the_library_does_not_print(relpath):
    calls = [node.lineno for node in ast.walk(parse(FILES[relpath]))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]
    assert not calls, f"{relpath} calls print() at line(s) {calls}; log instead (logging.getLogger(__name__))"


@pytest.mark.parametrize("relpath", sorted(p for p in FILES if p.startswith("pcl_tf/cli/") and p != "pcl_tf/cli/common.py"))
def test_the_commands_hold_no_library_logic(relpath):
    bad = sorted({m for m in imported_modules(parse(FILES[relpath]), relpath)
                  if m.split(".")[0] in CLI_FORBIDDEN_IMPORTS})
    assert not bad, f"{relpath} imports {bad}: move that work into the library and call it"


def test_the_rules_see_the_files():
    assert "pcl_tf/attacks/core.py" in FILES and "pcl_tf/training.py" in FILES
    assert "pcl_tf.training" in set(imported_modules(parse(FILES["pcl_tf/experiment.py"]), "pcl_tf/experiment.py"))

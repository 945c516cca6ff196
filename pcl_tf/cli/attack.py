"""pcl-attack: evaluate trained models with the paper's attacks, white-box or black-box.

    pcl-attack --workdir=runs/fmnist_pcl --method=all
    pcl-attack --workdir=runs/fmnist_pcl --method=cw --c=0.1
    pcl-attack --workdir=runs/softmax,runs/pcl --method=fgsm,pgd --eps=0.1,0.3
    pcl-attack --workdir=runs/pcl --source_workdir=runs/vgg19 --method=pgd   (black-box)
    pcl-attack --workdir=runs/softmax,runs/pcl --method=pgd --eps=0,0.05,0.1,0.2,0.3   (table + PNG)
    pcl-attack --workdir=runs/softmax,runs/pcl,runs/vgg19 --method=pgd --transfer     (Table 6)
    pcl-attack --workdir=runs/softmax,runs/pcl --plot_features=fig1.png               (Fig. 1)

Defaults are the paper's for the model's dataset (ε, steps, step size, C&W's c). Prints a
Markdown table and writes it, with the JSON report, next to each model (or to --output).
"""

from __future__ import annotations

from absl import flags

from pcl_tf import attacks, catalogue, io_utils  # the attack table and the catalogue: no TensorFlow
from pcl_tf.cli import common

# Loaded at first use, once the flags are checked (it imports TensorFlow).
evaluate_runs = common.lazy_module("pcl_tf.evaluate_runs")

PROG = "pcl-attack"

flags.DEFINE_list("workdir", None, "Work dir(s) of trained models to evaluate (comma-separated).")
flags.DEFINE_list("method", ["fgsm", "pgd"], f"Attacks: {', '.join(attacks.METHODS)}, or all.")
flags.DEFINE_enum("suite", None, ["paper", "standard", "full"],
                  "Instead of --method: paper = FGSM, BIM, C&W, MIM, PGD; standard = APGD-CE, APGD-T, Square "
                  "(AutoAttack's standard suite); full = both plus the adaptive, feature-space and PGD-restarts attacks.")
flags.DEFINE_list("compare", None, "Print one Table-2-style table from the reports already in these work dirs.")
flags.DEFINE_list("eps", None, "L-inf budget(s) in [0, 1] pixel units; default: the paper's for the dataset.")
flags.DEFINE_integer("steps", None, "Iterations of BIM/MIM/PGD (default 10) or C&W (default 1000).")
flags.DEFINE_float("step_size", None, "Step of BIM/MIM/PGD; default eps/10.")
flags.DEFINE_float("c", None, "C&W initial constant; default 10 for (F-)MNIST, 0.1 for CIFAR/SVHN.")
flags.DEFINE_integer("num_examples", 1000, "Test images to attack (the first N of the test split); 0 = all.")
flags.DEFINE_integer("batch_size", 250, "Images per attack batch.")
flags.DEFINE_integer("seed", 0, "Seed of PGD's random start.")
flags.DEFINE_string("source_workdir", None, "Craft on this model, score on --workdir (black-box).")
flags.DEFINE_string("output", None, "Report path without extension; default <workdir>/reports/<name> (for a model "
                    "shipped in models/, which is never written: pcl_reports/<model>/<name>).")
flags.DEFINE_string("data_dir", None, "TFDS data dir; default: the one the model was trained with.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool("allow_older_checkpoint", False, "If a model's newest checkpoint cannot be read, evaluate the one "
                  "before it (each report records the checkpoint it used).")
flags.DEFINE_bool("audit", True, "Run the gradient-masking audit on every white-box evaluation.")
flags.DEFINE_bool("transfer", False, "Transfer matrix (paper Table 6) over the --workdir models with the first --method.")
flags.DEFINE_string("plot_features", None, "Write Fig. 1 (2-D penultimate features, clean vs PGD) of each model to this PNG.")
FLAGS = flags.FLAGS


SUITES = {
    "paper": attacks.PAPER_METHODS,
    "standard": attacks.AUTOATTACK_METHODS,
    "full": attacks.PAPER_METHODS + attacks.ADAPTIVE_METHODS + attacks.STRONG_METHODS,
}


def _methods():
    if FLAGS.suite:
        if FLAGS["method"].present:
            raise ValueError("give either --suite or --method, not both")
        return list(SUITES[FLAGS.suite])
    methods = [m.strip().lower() for m in FLAGS.method]
    if methods == ["all"]:
        return list(attacks.METHODS)
    for m in methods:
        if m not in attacks.METHODS:
            raise ValueError(f"unknown attack {m!r} in --method; choose from {', '.join(attacks.METHODS)} or all")
    return methods


def _parse_eps():
    values = []
    for text in FLAGS.eps or ():
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"--eps={text!r} is not a number; give values in [0, 1] like --eps=0.1,0.3") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--eps={value:g} is outside [0, 1]; ε is in [0, 1] pixel units, e.g. 0.3 for F-MNIST")
        values.append(value)
    return values


# The flags each mode reads; any other flag given with it would be silently ignored, so it is refused.
_ATTACK_SETTINGS = ("eps", "steps", "step_size", "c", "num_examples", "batch_size", "seed", "data_dir",
                    "allow_older_checkpoint", "progress")
_MODE_FLAGS = {
    "compare": ("compare", "output"),
    "transfer": ("workdir", "method", "transfer", "output") + _ATTACK_SETTINGS,
    "plot_features": ("workdir", "plot_features") + _ATTACK_SETTINGS,
    "black-box": ("workdir", "source_workdir", "method", "suite", "output") + _ATTACK_SETTINGS,
    "white-box": ("workdir", "method", "suite", "audit", "output") + _ATTACK_SETTINGS,
}


def _mode():
    """Which of pcl-attack's jobs the flags ask for."""
    for mode in ("compare", "transfer", "plot_features"):
        if FLAGS[mode].value:
            return mode
    return "black-box" if FLAGS.source_workdir else "white-box"


_MODE_NAMES = {"compare": "--compare", "transfer": "--transfer", "plot_features": "--plot_features",
               "black-box": "--source_workdir (a black-box evaluation)", "white-box": "a white-box evaluation"}


def _refuse_ignored_flags(mode):
    """A flag given (other than its default) that the mode does not read is an error, not a no-op."""
    every_flag = dict.fromkeys(f for names in _MODE_FLAGS.values() for f in names)
    ignored = ["--" + name for name in every_flag
               if name not in _MODE_FLAGS[mode] and FLAGS[name].present and FLAGS[name].value != FLAGS[name].default]
    if ignored:
        raise ValueError(f"{', '.join(ignored)} would be ignored with {_MODE_NAMES[mode]}; drop "
                         f"{'it' if len(ignored) == 1 else 'them'}")


def _check_flags():
    """Every check of the flags that needs no model (common.run makes them before TensorFlow loads)."""
    mode = _mode()
    _refuse_ignored_flags(mode)
    if mode == "compare":
        return
    if FLAGS["method"].present and not [m for m in FLAGS.method if m.strip()]:
        raise ValueError("--method is empty; name at least one attack, e.g. --method=pgd, or use --suite")
    if mode == "transfer" and len(FLAGS.method) > 1:
        raise ValueError(f"--transfer builds one matrix per attack; give one --method (got {', '.join(FLAGS.method)})")
    if not FLAGS.workdir:
        raise ValueError("give --workdir=DIR (a pcl-train work dir), or several separated by commas")
    if FLAGS.steps is not None and FLAGS.steps <= 0:
        raise ValueError(f"--steps={FLAGS.steps} must be > 0")
    if FLAGS.step_size is not None and FLAGS.step_size <= 0:
        raise ValueError(f"--step_size={FLAGS.step_size} must be > 0")
    if FLAGS.c is not None and FLAGS.c <= 0:
        raise ValueError(f"--c={FLAGS.c} must be > 0 (the C&W initial constant)")
    if FLAGS.num_examples < 0 or FLAGS.batch_size <= 0:
        raise ValueError("--num_examples must be >= 0 and --batch_size > 0")
    _parse_eps()
    if mode != "plot_features":
        _methods()  # an unknown attack name
    for flag in ("output", "plot_features"):
        if FLAGS[flag].value:
            _check_writable(flag, FLAGS[flag].value)


def _check_writable(flag, path):
    """Refuses an output path that cannot be written before any attack runs."""
    blocked = io_utils.blocking_ancestor(path)
    if blocked:
        raise ValueError(f"--{flag}={path} cannot be written ({blocked} is not a writable directory); "
                         "choose another path")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; flags look like --method=pgd")
    if FLAGS.compare:
        table = evaluate_runs.compare(FLAGS.compare, output=FLAGS.output)
        print("Accuracy (%) per model and ε, paper Table 2 layout, strong and adaptive attacks as extra columns:")
        print(table)
        return
    methods = _methods()
    if FLAGS.transfer:
        table = evaluate_runs.transfer_matrix(FLAGS.workdir, methods[0], _parse_eps(), settings=_settings(),
                                              output=FLAGS.output)
        print("Accuracy (%) of each target on examples crafted on each source (diagonal: white-box):")
        print(table)
        return
    if FLAGS.plot_features:
        png = evaluate_runs.plot_features(FLAGS.workdir, FLAGS.plot_features, _parse_eps(), settings=_settings())
        print(f"feature plot: {png}")
        return
    common.exit_at_once_on_ctrl_c(PROG, "interrupted: the batches already attacked are kept in the report's .partial "
                                        "journal; run the same command to resume after them")
    evaluation = evaluate_runs.evaluate_workdirs(FLAGS.workdir, methods, _parse_eps(), settings=_settings(),
                                                 source_workdir=FLAGS.source_workdir, output=FLAGS.output,
                                                 run_audit=FLAGS.audit)
    print()
    print("Accuracy (%) on clean and attacked test images; worst case = survived every attack run within ε:")
    print(evaluation.table)


def _settings():
    """The flags every evaluation shares, as the library's settings."""
    return evaluate_runs.AttackSettings(
        steps=FLAGS.steps, step_size=FLAGS.step_size, c=FLAGS.c, num_examples=FLAGS.num_examples,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed, data_dir=FLAGS.data_dir, progress=FLAGS.progress,
        allow_older_checkpoint=FLAGS.allow_older_checkpoint)


def run():
    common.run(main, PROG, errors=(ValueError, catalogue.DatasetError), check_flags=_check_flags)


if __name__ == "__main__":
    run()

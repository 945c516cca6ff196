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

import glob
import os
import shutil

from absl import flags

from pcl_tf import attacks, data, io_utils  # the attack table and the catalogue: no TensorFlow
from pcl_tf.cli import common

# Loaded at first use, once the flags are checked (they import TensorFlow).
tf = common.lazy_module("tensorflow")
audit = common.lazy_module("pcl_tf.audit")
experiment = common.lazy_module("pcl_tf.experiment")
report = common.lazy_module("pcl_tf.report")
robustness = common.lazy_module("pcl_tf.robustness")

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
    "standard": ("apgd-ce", "apgd-t", "square"),
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


def _eps_values(dataset):
    """--eps as floats (checked before anything is loaded), or the paper's ε for the dataset."""
    return _parse_eps() or [attacks.paper_eps(dataset)]


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
        return _compare()
    methods = _methods()
    if FLAGS.transfer:
        return _transfer(methods[0])
    if FLAGS.plot_features:
        return _plot_features()
    if FLAGS.source_workdir:
        all_reports = _black_box(methods)
    else:
        all_reports = []
        for workdir in FLAGS.workdir:
            all_reports += _white_box(workdir, methods)
    if FLAGS.output:
        _write_report(FLAGS.output, all_reports)
    if len({r["eps"] for r in all_reports}) > 1:
        png = (FLAGS.output or os.path.join(_reports_dir(FLAGS.workdir[0]), "eps_sweep")) + "_eps.png"
        report.plot_eps_curves(all_reports, png)
        print(f"robustness vs ε plot: {png}")
    print()
    print("Accuracy (%) on clean and attacked test images; worst case = survived every attack run within ε:")
    print(report.markdown_table(all_reports))


def _test_data(config):
    return data.load(
        config.dataset, "test", batch_size=FLAGS.batch_size,
        data_dir=FLAGS.data_dir or config.data_dir or None, num_examples=FLAGS.num_examples or None,
        num_examples_name="--num_examples",
    )


def _evaluation_args(report_stem, workdirs):
    """The attack settings, plus the journal that makes the evaluation resumable: it lives in
    ``<report stem>.partial/`` until that report is written."""
    return dict(steps=FLAGS.steps, step_size=FLAGS.step_size, c=FLAGS.c, seed=FLAGS.seed,
                progress=FLAGS.progress, num_examples=FLAGS.num_examples or None,
                journal_dir=(FLAGS.output or report_stem) + ".partial", identity=_identity(workdirs))


def _identity(workdirs):
    """What else decides an evaluation's result: each model's checkpoint, the data, the batching."""
    checkpoints = {}
    for workdir in workdirs:
        latest = tf.train.latest_checkpoint(os.path.join(workdir, experiment.CHECKPOINT_DIR))
        checkpoints[workdir] = [os.path.basename(latest or ""), os.path.getmtime(latest + ".index") if latest else 0]
    return {"checkpoints": checkpoints, "batch_size": FLAGS.batch_size, "data_dir": FLAGS.data_dir}


def _stem(kind, methods, eps_values, source=""):
    """The report name for these flags (see :func:`pcl_tf.report.report_stem`)."""
    return report.report_stem(kind, methods, eps_values, FLAGS.num_examples, FLAGS.seed, steps=FLAGS.steps,
                              step_size=FLAGS.step_size, c=FLAGS.c, source=source)


def _load(workdir):
    """A work dir's model and config; its newest checkpoint unless --allow_older_checkpoint."""
    return experiment.load_trained(workdir, allow_older_checkpoint=FLAGS.allow_older_checkpoint)


def _record_checkpoints(reports, models):
    """Each report names the checkpoint of the model it scored (and of the source it crafted on)."""
    for r in reports:
        r["model"]["checkpoint"] = models[r["model"]["workdir"]].restored_checkpoint
        if r.get("source_model") and FLAGS.source_workdir in models:
            r["source_checkpoint"] = models[FLAGS.source_workdir].restored_checkpoint
    return reports


def _write_report(stem, reports):
    """Writes the report, then drops the journal of its (now finished) evaluation."""
    report.write(stem, reports)
    shutil.rmtree(stem + ".partial", ignore_errors=True)
    print(f"report: {stem}.json")


# Reports on a slim copy (a model shipped in models/) go here, under the current directory: no
# pcl_tf command writes into a shipped model.
SLIM_COPY_REPORTS = "pcl_reports"


def _reports_dir(workdir):
    """Where this evaluation's reports of ``workdir`` go: its reports/, or for a slim copy
    pcl_reports/<its name>/ in the current directory."""
    if experiment.is_slim_copy(workdir):
        return os.path.join(SLIM_COPY_REPORTS, os.path.basename(os.path.normpath(workdir)))
    return os.path.join(workdir, "reports")


def _report_dirs(workdir):
    """Where earlier reports of ``workdir`` may be: its own reports/ and, for a slim copy, ours."""
    return list(dict.fromkeys([os.path.join(workdir, "reports"), _reports_dir(workdir)]))


def _white_box(workdir, methods):
    """Every ε on one model through its own gradients, then the audit; writes its reports."""
    model, config = _load(workdir)
    skipped = set(methods) - set(robustness.usable_methods(model, methods))
    if skipped:
        print(f"{workdir}: skipping {', '.join(sorted(skipped))} (the model has no prototypes)")
    dataset = _test_data(config)
    stem = os.path.join(_reports_dir(workdir), _stem("whitebox", methods, _eps_values(config.dataset)))
    reports = []
    for eps in _eps_values(config.dataset):
        print(f"{workdir}: {', '.join(methods)} at eps={eps:g}", flush=True)
        reports.append(robustness.evaluate(model, config, dataset, workdir=workdir, methods=methods, eps=eps,
                                           **_evaluation_args(stem, [workdir])))
    _record_checkpoints(reports, {workdir: model})
    if FLAGS.audit:
        # The model-side checks (gradients, restart spread) at the smallest ε > 0 run: at ε = 0
        # (a sweep's first point) they would measure nothing.
        stats = audit.measure(model, dataset, min((r["eps"] for r in reports if r["eps"] > 0), default=reports[0]["eps"]))
        checks = audit.run_checks(reports, black_reports=_black_box_reports(workdir), stats=stats)
        for r in reports:
            r["audit"] = {"checks": audit.to_json(checks), "statistics": stats}
        print(f"\ngradient-masking audit of {workdir}:")
        print("\n".join(c.line() for c in checks))
    if not FLAGS.output:
        _write_report(stem, reports)
    return reports


def _black_box(methods):
    """Crafts once per batch on --source_workdir and scores every --workdir model."""
    source, source_config = _load(FLAGS.source_workdir)
    targets = {w: _load(w) for w in FLAGS.workdir}
    for workdir, (_, config) in targets.items():
        if config.dataset != source_config.dataset:
            raise ValueError(
                f"--source_workdir is a {source_config.dataset} model but {workdir} is {config.dataset}; "
                "pair models of the same dataset"
            )
    skipped = set(methods) - set(robustness.usable_methods(source, methods))
    if skipped:
        print(f"skipping {', '.join(sorted(skipped))}: the source model has no prototypes")
    dataset = _test_data(source_config)
    source_name = os.path.basename(os.path.normpath(FLAGS.source_workdir))
    stems = {w: os.path.join(_reports_dir(w), _stem("blackbox", methods, _eps_values(source_config.dataset), source_name))
             for w in targets}
    journal_stem = stems[FLAGS.workdir[0]]
    reports = []
    for eps in _eps_values(source_config.dataset):
        print(f"crafting on {FLAGS.source_workdir}: {', '.join(methods)} at eps={eps:g}", flush=True)
        reports += robustness.evaluate_many(
            targets, dataset, methods=methods, eps=eps, source=source, source_workdir=FLAGS.source_workdir,
            **_evaluation_args(journal_stem, [FLAGS.source_workdir] + list(targets)))
    _record_checkpoints(reports, {**{w: m for w, (m, _) in targets.items()}, FLAGS.source_workdir: source})
    if not FLAGS.output:
        for workdir, stem in stems.items():
            report.write(stem, [r for r in reports if r["model"]["workdir"] == workdir])
            print(f"report: {stem}.json")
        shutil.rmtree(journal_stem + ".partial", ignore_errors=True)
    return reports


def _compare():
    reports = []
    for workdir in FLAGS.compare:
        paths = sorted(p for d in _report_dirs(workdir) for p in glob.glob(os.path.join(d, "*box_*.json")))
        if not paths:
            raise ValueError(f"{workdir} has no reports yet; run pcl-attack --workdir={workdir} first")
        for path in paths:
            reports += io_utils.read_json(path)
    table = report.comparison_table(reports)
    if FLAGS.output:
        io_utils.write_text_atomic(FLAGS.output + ".md", table)
    print("Accuracy (%) per model and ε, paper Table 2 layout, strong and adaptive attacks as extra columns:")
    print(table)


def _black_box_reports(workdir):
    """Earlier black-box (transfer) reports of this model, for the white-vs-black-box check."""
    found = []
    for path in sorted(p for d in _report_dirs(workdir) for p in glob.glob(os.path.join(d, "blackbox_*.json"))):
        found += io_utils.read_json(path)
    return found


def _load_same_dataset():
    """Every --workdir model, checked to share one dataset; returns (models, config, test set)."""
    loaded = {w: _load(w) for w in FLAGS.workdir}
    datasets = {config.dataset for _, config in loaded.values()}
    if len(datasets) > 1:
        raise ValueError(f"the --workdir models are of different datasets ({', '.join(sorted(datasets))}); give one dataset's models")
    config = next(iter(loaded.values()))[1]
    dataset = data.load(config.dataset, "test", batch_size=FLAGS.batch_size,
                        data_dir=FLAGS.data_dir or config.data_dir or None, num_examples=FLAGS.num_examples or None,
                        num_examples_name="--num_examples")
    return {w: model for w, (model, _) in loaded.items()}, config, dataset


def _transfer(method):
    if method in attacks.ADAPTIVE_METHODS:
        raise ValueError(f"--transfer needs a CleverHans attack (fgsm, bim, mim, pgd, cw), not {method}")
    models, config, dataset = _load_same_dataset()
    eps = _eps_values(config.dataset)[0]
    params = attacks.default_params(method, config.dataset, eps=eps, steps=FLAGS.steps,
                                    step_size=FLAGS.step_size, c=FLAGS.c)
    matrix = robustness.transfer_matrix(models, dataset, attacks.make_attack(method, params, seed=FLAGS.seed))
    table = report.transfer_table(matrix, method, eps)
    stem = FLAGS.output or os.path.join(_reports_dir(FLAGS.workdir[0]), _stem("transfer", [method], [eps]))
    io_utils.write_json_atomic(stem + ".json", {"method": method, "params": params, "accuracy": matrix})
    io_utils.write_text_atomic(stem + ".md", table)
    print("Accuracy (%) of each target on examples crafted on each source (diagonal: white-box):")
    print(table)


def _plot_features():
    models, config, dataset = _load_same_dataset()
    eps = _eps_values(config.dataset)[0]
    params = attacks.default_params("pgd", config.dataset, eps=eps, steps=FLAGS.steps, step_size=FLAGS.step_size)
    pgd = attacks.make_attack("pgd", params, seed=FLAGS.seed)
    x, y = next(iter(dataset))
    panels = []
    for workdir, model in models.items():
        x_adv = pgd.fn(model.inference_model(), x, y)
        kind = "PCL" if model.pc_layers else "softmax"
        panels.append(robustness.feature_projection(model, x, x_adv, y.numpy(), f"{workdir} ({kind}), PGD ε={eps:g}"))
    report.plot_features(panels, FLAGS.plot_features)
    print(f"feature plot: {FLAGS.plot_features}")


def run():
    common.run(main, PROG, errors=(ValueError, data.DatasetError), check_flags=_check_flags)


if __name__ == "__main__":
    run()

"""Evaluating trained work dirs with the attack table: what ``pcl-attack`` does, as plain functions.

* :func:`evaluate_workdirs` — white-box (each model attacked through its own gradients, then the
  gradient-masking audit) or black-box (crafted on a source model, scored on every target); the
  reports are written next to each model, or to ``output``;
* :func:`compare` — one Table-2-style table from the reports already in some work dirs;
* :func:`transfer_matrix` — paper Table 6: every model attacked with examples crafted on every other;
* :func:`plot_features` — paper Fig. 1: 2-D penultimate features, clean vs PGD.

Where reports go: ``<workdir>/reports/<stem>.json`` (the stem names every setting that decides the
numbers, :func:`pcl_tf.report.report_stem`), or for a slim copy (a model shipped in models/, which no
command writes into) ``pcl_reports/<model>/`` in the current directory. A running evaluation keeps
its journal (:mod:`pcl_tf.journal`) in ``<stem>.partial/`` and resumes from it; the journal is
removed once the report is written.

Progress (which model and ε is being attacked, where a report was written, the audit's lines) is
logged at INFO on this module's logger; ``pcl-attack`` shows those records on stdout.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from pcl_tf import attacks, audit, data, io_utils, report, robustness, workdir as workdirs_lib

logger = logging.getLogger(__name__)

# Reports on a slim copy (a model shipped in models/) go here, under the current directory: no
# pcl_tf command writes into a shipped model.
SLIM_COPY_REPORTS = "pcl_reports"


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """The settings every evaluation shares (pcl-attack's flags of the same names).

    ``steps``, ``step_size`` and ``c`` override the attack table's defaults for the dataset (None:
    the paper's / AutoAttack's); ``num_examples`` is the first N test images (0: all);
    ``data_dir`` the TFDS data dir (None: the one the model was trained with);
    ``allow_older_checkpoint`` evaluates the checkpoint before an unreadable newest one."""

    steps: Optional[int] = None
    step_size: Optional[float] = None
    c: Optional[float] = None
    num_examples: int = 1000
    batch_size: int = 250
    seed: int = 0
    data_dir: Optional[str] = None
    progress: bool = True
    allow_older_checkpoint: bool = False


@dataclasses.dataclass
class Evaluation:
    """What :func:`evaluate_workdirs` returns: one report per model and ε, their Markdown table,
    and the robustness-vs-ε plot written when several ε were run (else None)."""

    reports: List[Dict]
    table: str
    eps_plot: Optional[str] = None


def reports_dir(workdir: str) -> str:
    """Where an evaluation's reports of ``workdir`` go: its reports/, or for a slim copy
    pcl_reports/<its name>/ in the current directory."""
    if workdirs_lib.is_slim_copy(workdir):
        return os.path.join(SLIM_COPY_REPORTS, os.path.basename(os.path.normpath(workdir)))
    return os.path.join(workdir, "reports")


def report_dirs(workdir: str) -> List[str]:
    """Where earlier reports of ``workdir`` may be: its own reports/ and, for a slim copy, ours."""
    return list(dict.fromkeys([os.path.join(workdir, "reports"), reports_dir(workdir)]))


def evaluate_workdirs(workdirs: Sequence[str], methods: Sequence[str], eps: Sequence[float] = (), *,
                      settings: AttackSettings = AttackSettings(), source_workdir: Optional[str] = None,
                      output: Optional[str] = None, run_audit: bool = True) -> Evaluation:
    """Attacks the models of ``workdirs`` with ``methods`` (names of :data:`pcl_tf.attacks.METHODS`)
    at every ``eps`` (default: the paper's ε for the dataset).

    White-box unless ``source_workdir`` is given (then black-box: crafted once per batch on that
    model, scored on every work dir's). Writes one report per model next to it, or all of them
    to ``output`` (a path without extension); with several ε also a robustness-vs-ε PNG."""
    if source_workdir:
        all_reports = _black_box(workdirs, source_workdir, methods, eps, settings, output)
    else:
        all_reports = []
        for workdir in workdirs:
            all_reports += _white_box(workdir, methods, eps, settings, output, run_audit)
    if output:
        _write_report(output, all_reports)
    eps_plot = None
    if len({r["eps"] for r in all_reports}) > 1:
        eps_plot = (output or os.path.join(reports_dir(workdirs[0]), "eps_sweep")) + "_eps.png"
        report.plot_eps_curves(all_reports, eps_plot)
        logger.info("robustness vs ε plot: %s", eps_plot)
    return Evaluation(all_reports, report.markdown_table(all_reports), eps_plot)


def compare(workdirs: Sequence[str], output: Optional[str] = None) -> str:
    """The Table-2-style Markdown table of every report already in ``workdirs`` (also written to
    ``<output>.md`` when given)."""
    reports = []
    for workdir in workdirs:
        paths = sorted(p for d in report_dirs(workdir) for p in glob.glob(os.path.join(d, "*box_*.json")))
        if not paths:
            raise ValueError(f"{workdir} has no reports yet; run pcl-attack --workdir={workdir} first")
        for path in paths:
            reports += io_utils.read_json(path)
    table = report.comparison_table(reports)
    if output:
        io_utils.write_text_atomic(output + ".md", table)
    return table


def transfer_matrix(workdirs: Sequence[str], method: str, eps: Sequence[float] = (), *,
                    settings: AttackSettings = AttackSettings(), output: Optional[str] = None) -> str:
    """Paper Table 6: the accuracy of each model on examples crafted with ``method`` (a CleverHans
    attack) on each model, at the first ``eps`` (default: the paper's). Writes ``<stem>.json`` and
    ``<stem>.md`` (``output``, or a stem in the first work dir's reports) and returns the table."""
    if method in attacks.ADAPTIVE_METHODS:
        raise ValueError(f"--transfer needs a CleverHans attack (fgsm, bim, mim, pgd, cw), not {method}")
    models, config, dataset = _load_same_dataset(workdirs, settings)
    eps = _eps_values(eps, config.dataset)[0]
    params = attacks.default_params(method, config.dataset, eps=eps, steps=settings.steps,
                                    step_size=settings.step_size, c=settings.c)
    matrix = robustness.transfer_matrix(models, dataset, attacks.make_attack(method, params, seed=settings.seed))
    table = report.transfer_table(matrix, method, eps)
    stem = output or os.path.join(reports_dir(workdirs[0]), _stem("transfer", [method], [eps], settings))
    io_utils.write_json_atomic(stem + ".json", {"method": method, "params": params, "accuracy": matrix})
    io_utils.write_text_atomic(stem + ".md", table)
    return table


def plot_features(workdirs: Sequence[str], png: str, eps: Sequence[float] = (), *,
                  settings: AttackSettings = AttackSettings()) -> str:
    """Paper Fig. 1: each model's 2-D penultimate features of the first test batch, clean and
    under PGD at the first ``eps`` (default: the paper's), written to ``png``; returns its path."""
    models, config, dataset = _load_same_dataset(workdirs, settings)
    eps = _eps_values(eps, config.dataset)[0]
    params = attacks.default_params("pgd", config.dataset, eps=eps, steps=settings.steps,
                                    step_size=settings.step_size)
    pgd = attacks.make_attack("pgd", params, seed=settings.seed)
    x, y = next(iter(dataset))
    panels = []
    for workdir, model in models.items():
        x_adv = pgd.fn(model.inference_model(), x, y)
        kind = "PCL" if model.pc_layers else "softmax"
        panels.append(robustness.feature_projection(model, x, x_adv, y.numpy(), f"{workdir} ({kind}), PGD ε={eps:g}"))
    report.plot_features(panels, png)
    return png


# ------------------------------------------------------------------------- white-box and black-box
def _white_box(workdir, methods, eps_values, settings, output, run_audit):
    """Every ε on one model through its own gradients, then the audit; writes its reports."""
    model, config = _load(workdir, settings)
    skipped = set(methods) - set(robustness.usable_methods(model, methods))
    if skipped:
        logger.info("%s: skipping %s (the model has no prototypes)", workdir, ", ".join(sorted(skipped)))
    dataset = _test_data(config, settings)
    eps_values = _eps_values(eps_values, config.dataset)
    stem = os.path.join(reports_dir(workdir), _stem("whitebox", methods, eps_values, settings))
    reports = []
    for eps in eps_values:
        logger.info("%s: %s at eps=%g", workdir, ", ".join(methods), eps)
        reports.append(robustness.evaluate(model, config, dataset, workdir=workdir, methods=methods, eps=eps,
                                           **_evaluation_args(output or stem, [workdir], settings)))
    _record_checkpoints(reports, {workdir: model}, source_workdir=None)
    if run_audit:
        # The model-side checks (gradients, restart spread) at the smallest ε > 0 run: at ε = 0
        # (a sweep's first point) they would measure nothing.
        stats = audit.measure(model, dataset, min((r["eps"] for r in reports if r["eps"] > 0), default=reports[0]["eps"]))
        checks = audit.run_checks(reports, black_reports=_black_box_reports(workdir), stats=stats)
        for r in reports:
            r["audit"] = {"checks": audit.to_json(checks), "statistics": stats}
        logger.info("\ngradient-masking audit of %s:\n%s", workdir, "\n".join(c.line() for c in checks))
    if not output:
        _write_report(stem, reports)
    return reports


def _black_box(workdirs, source_workdir, methods, eps_values, settings, output):
    """Crafts once per batch on ``source_workdir`` and scores every model of ``workdirs``."""
    source, source_config = _load(source_workdir, settings)
    targets = {w: _load(w, settings) for w in workdirs}
    for workdir, (_, config) in targets.items():
        if config.dataset != source_config.dataset:
            raise ValueError(
                f"--source_workdir is a {source_config.dataset} model but {workdir} is {config.dataset}; "
                "pair models of the same dataset"
            )
    skipped = set(methods) - set(robustness.usable_methods(source, methods))
    if skipped:
        logger.info("skipping %s: the source model has no prototypes", ", ".join(sorted(skipped)))
    dataset = _test_data(source_config, settings)
    eps_values = _eps_values(eps_values, source_config.dataset)
    source_name = os.path.basename(os.path.normpath(source_workdir))
    stems = {w: os.path.join(reports_dir(w), _stem("blackbox", methods, eps_values, settings, source_name))
             for w in targets}
    journal_stem = stems[workdirs[0]]
    reports = []
    for eps in eps_values:
        logger.info("crafting on %s: %s at eps=%g", source_workdir, ", ".join(methods), eps)
        reports += robustness.evaluate_many(
            targets, dataset, methods=methods, eps=eps, source=source, source_workdir=source_workdir,
            **_evaluation_args(output or journal_stem, [source_workdir] + list(targets), settings))
    _record_checkpoints(reports, {**{w: m for w, (m, _) in targets.items()}, source_workdir: source},
                        source_workdir=source_workdir)
    if not output:
        with io_utils.write_group():  # the reports, then the journal they make obsolete
            for workdir, stem in stems.items():
                report.write(stem, [r for r in reports if r["model"]["workdir"] == workdir])
                logger.info("report: %s.json", stem)
            shutil.rmtree(journal_stem + ".partial", ignore_errors=True)
    return reports


def _black_box_reports(workdir):
    """Earlier black-box (transfer) reports of this model, for the white-vs-black-box check."""
    found = []
    for path in sorted(p for d in report_dirs(workdir) for p in glob.glob(os.path.join(d, "blackbox_*.json"))):
        found += io_utils.read_json(path)
    return found


# ------------------------------------------------------------------------- helpers
def _eps_values(eps: Sequence[float], dataset: str) -> List[float]:
    """The ε asked for, or the paper's for the dataset."""
    return [float(e) for e in eps] or [attacks.paper_eps(dataset)]


def _load(workdir, settings):
    """A work dir's model and config; its newest checkpoint unless ``allow_older_checkpoint``."""
    return workdirs_lib.load_trained(workdir, allow_older_checkpoint=settings.allow_older_checkpoint)


def _test_data(config, settings):
    return data.load(
        config.dataset, "test", batch_size=settings.batch_size,
        data_dir=settings.data_dir or config.data_dir or None, num_examples=settings.num_examples or None,
        num_examples_name="--num_examples",
    )


def _load_same_dataset(workdirs, settings) -> Tuple[Dict, object, tf.data.Dataset]:
    """Every model of ``workdirs``, checked to share one dataset; returns (models, config, test set)."""
    loaded = {w: _load(w, settings) for w in workdirs}
    datasets = {config.dataset for _, config in loaded.values()}
    if len(datasets) > 1:
        raise ValueError(f"the --workdir models are of different datasets ({', '.join(sorted(datasets))}); give one dataset's models")
    config = next(iter(loaded.values()))[1]
    return {w: model for w, (model, _) in loaded.items()}, config, _test_data(config, settings)


def _stem(kind, methods, eps_values, settings, source=""):
    """The report name for these settings (see :func:`pcl_tf.report.report_stem`)."""
    return report.report_stem(kind, methods, eps_values, settings.num_examples, settings.seed, steps=settings.steps,
                              step_size=settings.step_size, c=settings.c, source=source)


def _evaluation_args(report_stem, workdirs, settings):
    """The attack settings, plus the journal that makes the evaluation resumable: it lives in
    ``<report stem>.partial/`` until that report is written."""
    return dict(steps=settings.steps, step_size=settings.step_size, c=settings.c, seed=settings.seed,
                progress=settings.progress, num_examples=settings.num_examples or None,
                journal_dir=report_stem + ".partial", identity=_identity(workdirs, settings))


def _identity(workdirs, settings):
    """What else decides an evaluation's result: each model's checkpoint, the data, the batching.

    A checkpoint is named and fingerprinted by its ``.index`` file's content (which holds a
    checksum of every tensor): a retrained model with the same checkpoint name is a new
    evaluation, while a copy of the same one (a stash carried to another machine) resumes."""
    checkpoints = {}
    for workdir in workdirs:
        latest = tf.train.latest_checkpoint(os.path.join(workdir, workdirs_lib.CHECKPOINT_DIR))
        checkpoints[workdir] = [os.path.basename(latest or ""), _file_digest(latest + ".index") if latest else ""]
    return {"checkpoints": checkpoints, "batch_size": settings.batch_size, "data_dir": settings.data_dir}


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def _record_checkpoints(reports, models, source_workdir):
    """Each report names the checkpoint of the model it scored (and of the source it crafted on)."""
    for r in reports:
        r["model"]["checkpoint"] = models[r["model"]["workdir"]].restored_checkpoint
        if r.get("source_model") and source_workdir in models:
            r["source_checkpoint"] = models[source_workdir].restored_checkpoint
    return reports


def _write_report(stem, reports):
    """Writes the report, then drops the journal of its (now finished) evaluation."""
    with io_utils.write_group():
        report.write(stem, reports)
        shutil.rmtree(stem + ".partial", ignore_errors=True)
    logger.info("report: %s.json", stem)

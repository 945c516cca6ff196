"""Robustness reports: the JSON record of an evaluation, and Markdown tables people can paste."""

from __future__ import annotations

import datetime
import glob
import json
import math
import os
import platform
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from pcl_tf import attacks, evaluation, io_utils

LABELS = attacks.LABELS  # how tables print each attack: the attack table's labels


def make_report(
    *, workdir: str, config, threat_model: str, source: str, eps: float, methods: Sequence[str],
    params: Dict[str, Dict], summary: Dict, seed: int, cascade: Sequence[str] = (),
) -> Dict:
    """One evaluation of one model at one ε, with everything needed to rerun and compare it.

    ``cascade`` names the attacks that ran only on the images every earlier attack left
    robust: their robust accuracy is cumulative (AutoAttack's reporting)."""
    attacks = {}
    for name in methods:
        attacks[name] = {"params": params[name], "cascade": name in cascade, **summary["attacks"][name]}
    return {
        "model": {
            "workdir": workdir,
            "dataset": config.dataset,
            "architecture": config.model,
            "pcl_branches": config.pcl.branches,
            "pcl_mode": config.pcl.mode if config.pcl.branches else None,
        },
        "threat_model": threat_model,
        "source_model": source,
        "eps": eps,
        "num_examples": summary["num_examples"],
        "clean_accuracy": summary["clean_accuracy"],
        "clean_samples": summary.get("clean_samples"),
        "attacks": attacks,
        "worst_case": summary["worst_case"],
        "seed": seed,
        "environment": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.node(),
            "tensorflow": tf.__version__,
        },
    }


def markdown_table(reports: List[Dict]) -> str:
    """One row per report: model, threat, ε, clean, each attack's robust accuracy, worst case (%)."""
    present = {m for r in reports for m in r["attacks"]}
    # The registry's order: the paper's attacks, the adaptive ones, then the strong suite.
    methods = [m for m in attacks.METHODS if m in present] + sorted(present - set(attacks.METHODS))
    header = ["model", "threat", "ε", "n", "clean"] + [LABELS.get(m, m) for m in methods] + ["worst case"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in reports:
        name = r["model"]["workdir"]
        cells = [name, r["threat_model"], f"{r['eps']:g}", str(r["num_examples"]), _pct(r["clean_accuracy"])]
        cells += [_pct(r["attacks"][m]["robust_accuracy"]) if m in r["attacks"] else "–" for m in methods]
        counted = r["worst_case"].get("attacks", list(r["attacks"]))
        cells.append(_pct(r["worst_case"]["robust_accuracy"]) if counted else "–")  # no attack within ε
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + _cascade_note(reports) + _outside_eps_note(reports)


def _cascade_note(reports: List[Dict]) -> str:
    cascaded = []
    for r in reports:
        cascaded += [m for m, a in r["attacks"].items() if a.get("cascade") and m not in cascaded]
    if not cascaded:
        return ""
    names = ", ".join(LABELS.get(m, m) for m in cascaded)
    return (f"\n{names}: run, as in AutoAttack, only on the images that the attacks before them in the same "
            "evaluation (its report lists them in order) left robust; their numbers are the robust accuracy after "
            "them and those attacks together.\n")


def _outside_eps_note(reports: List[Dict]) -> str:
    """Names the attacks reported but left out of the worst case (not bounded by ε)."""
    outside = []
    for r in reports:
        counted = r["worst_case"].get("attacks", list(r["attacks"]))
        outside += [m for m in r["attacks"] if m not in counted and m not in outside]
    if not outside:
        return ""
    names = ", ".join(LABELS.get(m, m) for m in outside)
    return (f"\n{names}: an L2 attack not bounded by ε, reported on its own (its mean L2 norm is in the JSON), "
            "not part of the ε worst case nor of the images a cascade starts from.\n")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def percent_with_interval(accuracy: float, interval: Tuple[float, float]) -> str:
    """``accuracy [low, high]`` in percent with one decimal: how every table quotes a robust accuracy
    with its confidence interval (``interval`` as ``wilson_interval`` returns it)."""
    low, high = interval
    return f"{100 * accuracy:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> Tuple[float, float]:
    """Wilson's score interval for a proportion (95 % by default): the interval to quote with a
    robust accuracy of ``successes`` robust images out of ``n``. Unlike the normal approximation
    it stays inside [0, 1] and is not empty at 0 or n robust images."""
    if n <= 0:
        raise ValueError(f"a confidence interval needs n > 0 images, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} robust images out of {n} is impossible")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def report_stem(kind: str, methods: Sequence[str], eps_values: Sequence[float], num_examples: int, seed: int,
                steps=None, step_size=None, c=None, source: str = "") -> str:
    """A report's file name without extension, made of everything that decides its numbers (the
    attacks, each ε, the number of test images, the seed, any attack setting given, the source
    model of a black-box evaluation), so that evaluations with other settings never overwrite
    each other; rerunning the same evaluation finds (and resumes) its own report.

    e.g. ``whitebox_fgsm_pgd_eps0.1-0.3_n1000_seed0``, ``blackbox_pgd_eps0.3_n500_seed0_from-vgg19``.
    """
    parts = [kind, "_".join(methods), "eps" + "-".join(f"{e:g}" for e in eps_values),
             f"n{num_examples}" if num_examples else "nall", f"seed{seed}"]
    for name, value in (("steps", steps), ("stepsize", step_size), ("c", c)):
        if value is not None:
            parts.append(f"{name}{value:g}")
    if source:
        parts.append(f"from-{source}")
    return "_".join(parts)


def write(path_stem: str, reports: List[Dict]) -> None:
    """Writes ``<stem>.json`` (the list of reports) and ``<stem>.md`` (the table), atomically."""
    io_utils.write_json_atomic(path_stem + ".json", reports)
    io_utils.write_text_atomic(path_stem + ".md", markdown_table(reports))


def make_portable(reports_dir: str, workdir: str, model_name: str) -> None:
    """Rewrites the reports in ``reports_dir`` (of the model trained in ``workdir``) so that they
    carry no path of the machine that wrote them: the model becomes ``model_name`` and every
    other model (a black-box source, a transfer matrix's rows) its directory's base name —
    wherever the path appears, the audit's sentences and the Markdown tables included. For
    copies that leave the machine (``pcl_tf.workdir.slim_copy``, the models shipped in the repository)."""
    own = {os.path.normpath(workdir), os.path.abspath(workdir)}
    names: Dict[str, str] = {}

    def collect(path):
        if isinstance(path, str) and path:
            names[path] = model_name if {os.path.normpath(path), os.path.abspath(path)} & own else (
                os.path.basename(os.path.normpath(path)))

    jsons = sorted(glob.glob(os.path.join(reports_dir, "*.json")))
    for path in jsons:
        content = io_utils.read_json(path)
        if isinstance(content, list):  # robustness reports
            for r in content:
                collect((r.get("model") or {}).get("workdir"))
                collect(r.get("source_model"))
        elif isinstance(content, dict) and isinstance(content.get("accuracy"), dict):  # a transfer matrix
            for source, row in content["accuracy"].items():
                collect(source)
                for target in row:
                    collect(target)
    # Longest first, and only where the path ends: /runs/pcl never touches /runs/pcl_advpgd.
    patterns = [(re.compile(re.escape(old) + r"(?![\w.\-/])"), new)
                for old, new in sorted(names.items(), key=lambda item: -len(item[0]))]
    for path in jsons + sorted(glob.glob(os.path.join(reports_dir, "*.md"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for pattern, new in patterns:
            text = pattern.sub(lambda _: new, text)
        if path.endswith(".json"):
            io_utils.write_json_atomic(path, json.loads(text))
        else:
            io_utils.write_text_atomic(path, text)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib comes with the `plots` extra
        raise ValueError("plots need matplotlib: pip install 'pcl_tf[plots]'") from None
    return plt


def plot_eps_curves(reports: List[Dict], path: str) -> None:
    """Robust accuracy against ε (paper Fig. 4): one panel per model, one line per attack plus
    the worst case, written as PNG."""
    plt = _pyplot()
    by_model: Dict[str, List[Dict]] = {}
    for r in reports:
        by_model.setdefault(r["model"]["workdir"], []).append(r)
    fig, axes = plt.subplots(1, len(by_model), figsize=(5 * len(by_model), 4), squeeze=False)
    for ax, (name, rs) in zip(axes[0], by_model.items()):
        rs = sorted(rs, key=lambda r: r["eps"])
        eps = [r["eps"] for r in rs]
        for method in rs[0]["attacks"]:
            ax.plot(eps, [100 * r["attacks"][method]["robust_accuracy"] for r in rs], marker="o",
                    label=LABELS.get(method, method))
        ax.plot(eps, [100 * r["worst_case"]["robust_accuracy"] for r in rs], "k--", marker="s", label="worst case")
        ax.set_title(f"{name} ({rs[0]['threat_model']})", fontsize=9)
        ax.set_xlabel("ε (L∞, [0, 1] pixels)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def plot_features(panels: List[Dict], path: str) -> None:
    """Fig. 1: 2-D projections of penultimate features, clean (dots) and attacked (crosses),
    one panel per model. Each panel dict has ``title``, ``clean`` and ``adversarial`` (N, 2)
    arrays and ``labels`` (N,)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, panel in zip(axes[0], panels):
        labels = panel["labels"]
        for c in sorted(set(labels.tolist())):
            m = labels == c
            ax.scatter(*panel["clean"][m].T, s=6, color=cmap(c % 10), alpha=0.5)
            ax.scatter(*panel["adversarial"][m].T, s=14, color=cmap(c % 10), marker="x", alpha=0.8)
        for i in range(min(5, len(labels))):  # a few clean -> attacked moves
            ax.annotate("", xy=panel["adversarial"][i], xytext=panel["clean"][i],
                        arrowprops=dict(arrowstyle="->", lw=0.8))
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("penultimate features (PCA to 2-D): dots clean, crosses attacked; colour = true class", fontsize=9)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)


def _save_png(fig, path: str) -> None:
    with io_utils.open_atomic(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def transfer_table(matrix: Dict[str, Dict[str, float]], method: str, eps: float) -> str:
    """Markdown: rows = source (crafted on), columns = target (scored on), accuracy in %."""
    targets = list(next(iter(matrix.values())))
    lines = [f"| {LABELS.get(method, method)} ε={eps:g}: source ↓ / target → | " + " | ".join(targets) + " |",
             "|" + "---|" * (len(targets) + 1)]
    for source, row in matrix.items():
        lines.append(f"| {source} | " + " | ".join(_pct(row[t]) for t in targets) + " |")
    return "\n".join(lines) + "\n"


# Table 2's columns are the paper's attacks; the attacks that know the defence and the strong
# suite follow, in the attack table's order.
PAPER_COLUMNS = attacks.PAPER_METHODS
STRONG_COLUMNS = attacks.ADAPTIVE_METHODS + attacks.STRONG_METHODS


def comparison_table(reports: List[Dict]) -> str:
    """Paper Table 2 layout over several models, one block per ε: clean; white-box FGSM, BIM,
    C&W, MIM, PGD; black-box (transfer) the same; then the strong and adaptive attacks; and the
    worst case over every white-box attack within ε.

    Only numbers measured on the same images share a row: a row is one model (and checkpoint)
    at one ε on the first ``n`` test images, so evaluations of other sizes get rows of their own
    and the ``n`` column says which. Where an attack ran more than once for a row, the latest
    run is shown. The worst case is per image, over every white-box attack within ε run on the
    row's images (all runs, from every report), when the reports keep per-sample outcomes; from
    older reports without them it is the lowest of their own worst cases, an upper bound,
    printed "≤ x"."""
    rows: Dict[tuple, Dict] = {}
    for r in sorted(reports, key=lambda r: r.get("environment", {}).get("date", "")):
        row = rows.setdefault(_row_key(r), {"cells": {}, "clean": r["clean_accuracy"], "white": []})
        black = r["threat_model"] == "black-box"
        for method, attack in r["attacks"].items():
            row["cells"][("bb " if black else "") + method] = attack["robust_accuracy"]
        if not black and r["worst_case"].get("attacks", list(r["attacks"])):  # a C&W-only report has none
            row["white"].append(r)
    present = {c for row in rows.values() for c in row["cells"]}
    columns = [m for m in PAPER_COLUMNS if m in present]
    columns += ["bb " + m for m in PAPER_COLUMNS if "bb " + m in present]
    columns += [m for m in STRONG_COLUMNS if m in present]
    several_checkpoints = _models_with_several_checkpoints(rows)
    header = ["ε", "model", "n", "clean"] + [_column_label(c) for c in columns] + ["worst case (white-box)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    upper_bounds = False
    for key in sorted(rows, key=lambda k: (k[0], k[1], k[2], str(k[3]))):
        eps, workdir, n, checkpoint = key
        row = rows[key]
        name = f"{workdir} ({checkpoint})" if workdir in several_checkpoints else workdir
        worst, exact = _row_worst_case(row["white"], n)
        upper_bounds |= worst is not None and not exact
        worst_cell = "–" if worst is None else (_pct(worst) if exact else "≤ " + _pct(worst))
        values = [_pct(row["cells"][c]) if c in row["cells"] else "–" for c in columns]
        lines.append("| " + " | ".join([f"{eps:g}", name, str(n), _pct(row["clean"])] + values + [worst_cell]) + " |")
    note = ("\n≤ x: the lowest worst case of several reports written without per-sample outcomes (before "
            "pcl_tf kept them); the per-image worst case over all of them is at most this. Rerun pcl-attack "
            "for the exact figure.\n") if upper_bounds else ""
    return "\n".join(lines) + "\n" + _cascade_note(reports) + _outside_eps_note(reports) + note


def _row_key(r: Dict) -> tuple:
    """What must be equal for two numbers to be about the same images of the same weights."""
    checkpoint = (r["model"].get("checkpoint") or {}).get("name")
    return (r["eps"], r["model"]["workdir"], r["num_examples"], checkpoint)


def _models_with_several_checkpoints(rows: Dict[tuple, Dict]) -> set:
    seen: Dict[str, set] = {}
    for _, workdir, _, checkpoint in rows:
        seen.setdefault(workdir, set()).add(checkpoint)
    return {w for w, checkpoints in seen.items() if len(checkpoints) > 1}


def _row_worst_case(white_reports: List[Dict], n: int):
    """(worst-case robust accuracy, exact?) over the row's white-box reports, or (None, True)."""
    if not white_reports:
        return None, True
    if len(white_reports) == 1:
        return white_reports[0]["worst_case"]["robust_accuracy"], True
    if all(_has_samples(r) for r in white_reports):
        survived = np.ones(n, dtype=bool)
        for r in white_reports:
            survived &= evaluation.unpack_samples(r["clean_samples"], n)
            for method in r["worst_case"].get("attacks", list(r["attacks"])):
                survived &= evaluation.unpack_samples(r["attacks"][method]["robust_samples"], n)
        return float(survived.mean()), True
    return min(r["worst_case"]["robust_accuracy"] for r in white_reports), False


def _has_samples(r: Dict) -> bool:
    counted = r["worst_case"].get("attacks", list(r["attacks"]))
    return bool(r.get("clean_samples")) and all(r["attacks"][m].get("robust_samples") for m in counted)


def _column_label(column: str) -> str:
    black = column.startswith("bb ")
    method = column[3:] if black else column
    label = LABELS.get(method, method)
    return f"{label} (black-box)" if black else label

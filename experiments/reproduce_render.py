"""Renders the tables of ``docs/RESULTS.md`` from a reproduction's work dirs and reports.

Only the part between the ``GENERATED`` markers is rewritten, so the hand-written discussion
around it stays; a cell whose run or evaluation has not finished yet reads "pending". Every
number comes from a ``metrics.json`` or a ``pcl-attack`` report under the reproduction root
(``experiments/reproduce_fmnist.py``); the paper's numbers are quoted from its Tables 2, 5 and 7 and
the published references named beside them.

    python experiments/reproduce_render.py --root=runs/repro --results=docs/RESULTS.md
    python experiments/reproduce_render.py --root=runs/repro --results=docs/RESULTS.md --budget   # the budget curve only
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import reproduce_fmnist as plan
import stash
from pcl_tf import io_utils, report

START, END = "<!-- GENERATED:start (experiments/reproduce_render.py) -->", "<!-- GENERATED:end -->"
PENDING = "pending"

# Paper Table 2, F-MNIST (ε = 0.3, c = 10): clean, white-box FGSM BIM C&W MIM PGD, black-box the same.
PAPER_TABLE2 = {
    "softmax": (91.51, 8.7, 0.1, 0.2, 0.0, 0.0, 46.7, 29.3, 30.8, 29.5, 26.0),
    "pcl": (91.32, 29.0, 22.0, 23.9, 21.8, 20.3, 84.8, 79.0, 79.2, 78.4, 76.3),
    "pcl_advfgsm": (91.03, 55.1, 37.5, 41.7, 40.6, 35.3, 89.1, 87.0, 87.7, 87.9, 85.2),
    "pcl_advpgd": (91.30, 47.2, 40.1, 44.6, 41.3, 40.7, 88.2, 88.0, 88.2, 88.3, 89.7),
}
# Paper Table 5, F-MNIST ε = 0.1 (clean, FGSM, MIM, PGD): PCL ("ours", blue row).
PAPER_TABLE5 = {"pcl": (91.3, 86.6, 80.1, 79.4)}
STRONG = ("adaptive", "feature", "apgd-ce", "apgd-t", "square", "pgd-restarts")
LABELS = {"fgsm": "FGSM", "bim": "BIM", "cw": "C&W", "mim": "MIM", "pgd": "PGD", "adaptive": "adaptive",
          "feature": "feature", "apgd-ce": "APGD-CE", "apgd-t": "+APGD-T", "square": "+Square",
          "pgd-restarts": "+PGD-5×restarts"}


BUDGET_START, BUDGET_END = "<!-- GENERATED-BUDGET:start (experiments/reproduce_render.py --budget) -->", "<!-- GENERATED-BUDGET:end -->"


def render_budget(root: str, results_path: str, models_dir: str = "models") -> None:
    """Writes the budget curve (table and PNG) between its own markers of ``results_path``, so
    that it can be rendered from the budget runs alone, without the other tables' runs: the runs
    shipped in ``models_dir`` from there, the others from ``root``."""
    figures = os.path.join(os.path.dirname(results_path) or ".", "figures")
    with tempfile.TemporaryDirectory() as assembled:
        body = _budget_curve(plan.budget_root(models_dir, assembled, root), figures)
    _replace_block(results_path, BUDGET_START, BUDGET_END, body)


def _replace_block(results_path: str, start: str, end: str, body: str) -> None:
    generated = "\n".join([start, "", body, end])
    if os.path.exists(results_path):
        text = open(results_path, encoding="utf-8").read()
        if start in text and end in text:
            text = text[: text.index(start)] + generated + text[text.index(end) + len(end):]
        else:
            text = text.rstrip() + "\n\n" + generated + "\n"
    else:
        text = "# Reproduction on Fashion-MNIST\n\n" + generated + "\n"
    io_utils.write_text_atomic(results_path, text)


def render(root: str, results_path: str) -> None:
    """Writes the generated part of ``results_path`` and copies the figures beside it."""
    figures = os.path.join(os.path.dirname(results_path) or ".", "figures")
    sections = [
        _budget_table(root),
        _table2(root),
        _table5(root),
        _audit(root),
        _sweep(root, figures),
        _transfer(root),
        _fig1(root, figures),
        _ablation(root),
    ]
    _replace_block(results_path, START, END, "\n".join(sections))


# ----------------------------------------------------------------------------- loading
def _read(path: str):
    return io_utils.read_json(path) if os.path.exists(path) else None


def _first(paths: List[str]):
    """The report in the first of ``paths`` (sorted), or None."""
    return _read(sorted(paths)[0]) if paths else None


def _reports(workdir: str, kind: str) -> List[Dict]:
    found = []
    for path in sorted(glob.glob(os.path.join(workdir, "reports", f"{kind}_*.json"))):
        found += io_utils.read_json(path)
    return found


def _at(reports: List[Dict], eps: float, attack: Optional[str] = None) -> Optional[Dict]:
    """The report at ``eps`` holding ``attack`` (any report at ``eps`` when None)."""
    for r in reports:
        if abs(r["eps"] - eps) < 1e-9 and (attack is None or attack in r["attacks"]):
            return r
    return None


NOT_RUN = "–"


def _pct(value) -> str:
    if value is None:
        return PENDING
    return value if isinstance(value, str) else f"{100 * value:.1f}"


def _robust(reports, eps, attack):
    """The attack's robust accuracy at ``eps``; None while no report at ``eps`` exists, "–" when
    the reports there did not run it (the feature attack on a model without prototypes)."""
    r = _at(reports, eps, attack)
    if r is None:
        return None if _at(reports, eps) is None else NOT_RUN
    return r["attacks"][attack]["robust_accuracy"]


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(cells) -> str:
    return _row(cells) + "\n|" + "---|" * len(cells)


# ----------------------------------------------------------------------------- sections
def _budget_table(root: str) -> str:
    lines = ["## Training budgets", "",
             "Every model: CNN-6 (VGG-19 for the black-box source) on real Fashion-MNIST, Adam 1e-3, batch 256, "
             "trained by `experiments/reproduce_fmnist.py` on the machine named below. Test accuracy on all 10,000 test "
             "images (softmax; PCL models also by the nearest prototype of FC(64), Eq. 6).", "",
             _header(["model", "config", "epochs (CE warm-up)", "train images", "wall time", "images/s",
                      "test acc. (softmax)", "test acc. (Eq. 6, fc64)", "machine"])]
    machine = _machine(root)
    for run in plan.MAIN_RUNS + (plan.SOURCE_RUN,) + plan.ABLATION_RUNS:
        metrics = _read(os.path.join(root, run.name, "metrics.json"))
        config = _read(os.path.join(root, run.name, "config.json"))
        overrides = " ".join(f"{k}={v}" for k, v in run.overrides)
        spec = f"`{run.config.replace('configs/', '')}` {overrides}"
        if metrics is None or config is None:
            lines.append(_row([run.label, spec] + [PENDING] * 7))
            continue
        images = config["train"]["num_examples"] or 60000
        eq6 = metrics["test"].get("prototype_pcl_fc64")
        lines.append(_row([
            run.label, spec, f"{metrics['epochs']} ({metrics['warmup_epochs']})", images,
            f"{metrics['train_seconds'] / 60:.1f} min", metrics.get("train_examples_per_second") or "–",
            _pct(metrics["test"]["softmax"]), _pct(eq6) if eq6 is not None else "–", machine,
        ]))
    return "\n".join(lines) + "\n"


# The paper's numbers the curve is read against: PGD-10 on PCL after 350 epochs (Table 2 at
# ε = 0.3, Table 5 at ε = 0.1), and the softmax baseline's PGD at ε = 0.3 (Table 2).
PAPER_PGD = {("pcl", 0.1): 79.4, ("pcl", 0.3): 20.3, ("softmax", 0.3): 0.0}
BUDGET_EPS = (0.1, 0.3)
# The paper's lr decays (epochs 200 and 250 of 350) at the budget runs' schedule_scale of 1/8.
LR_DECAY_EPOCHS = (25, 31.25)


def _budget_points(root: str) -> List[Dict]:
    """One dict per (run, snapshot) whose training snapshot exists: its metrics and, once its
    evaluation has finished, the reports at each ε."""
    points = []
    for run in plan.BUDGET_RUNS:
        for epoch in plan.BUDGET_SNAPSHOTS:
            metrics = _read(os.path.join(plan.budget_snapshot(root, run.name, epoch), "metrics.json"))
            reports = _read(os.path.join(root, "results", "budget", f"{run.name}_epoch_{epoch:03d}.json")) or []
            points.append({"run": run, "epoch": epoch, "metrics": metrics,
                           "reports": {round(r["eps"], 6): r for r in reports}})
    return points


def _with_ci(count: Optional[int], n: int) -> str:
    """``robust % [low, high]`` with Wilson's 95 % interval."""
    if count is None:
        return PENDING
    return report.percent_with_interval(count / n, report.wilson_interval(count, n))


def _budget_curve(root: str, figures: str) -> str:
    """The budget curve: the paper's recipe at 1/8 of its length, snapshots of one run per model."""
    lines = ["## Does PCL make CNN-6 robust? The paper's recipe at growing budgets", "",
             "Softmax and PCL trained with the paper's recipe shrunk to 1/8 (`configs/fmnist_cnn6.py:paper_cpu`: "
             "SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 256, 44 epochs of which 6 are CE warm-up, lr ×0.1 "
             "at epochs 25 and 31.25, plus gradient clipping at global norm 1, without which SGD at lr 0.1 diverges "
             "on CNN-6 — see above), evaluated at snapshots of "
             "that one run. The lr schedule is the 44-epoch one throughout: snapshots before epoch 25 were taken "
             "at lr 0.1, before any decay, so they are not what a run scheduled to end there would give. "
             "Train time: the run's wall-clock training time up to the snapshot, summed over the sessions it "
             "spanned, on 2-core CPU VMs whose speed differed (~125 to ~430 CNN-6 PCL training images/s) and whose cores "
             "were shared with other jobs: an upper bound on the cost, not a speed measurement. "
             "Each cell: robust accuracy on the first 1,000 test images and its 95 % Wilson interval. "
             "PGD-10: the paper's attack (10 steps of ε/10, random start). Worst case: per image, robust to "
             "every attack run (FGSM, PGD-10, APGD-CE, APGD-T, Square).", "",
             _header(["model", "epochs", "lr after", "train time", "clean (n)"] +
                     [f"{label} ε={e:g}" for e in BUDGET_EPS for label in ("FGSM", "PGD-10", "worst case")])]
    points = _budget_points(root)
    for point in points:
        run, metrics = point["run"], point["metrics"]
        if metrics is None:
            lines.append(_row([run.label, point["epoch"], PENDING, PENDING, PENDING] + [PENDING] * 6))
            continue
        first = next(iter(point["reports"].values()), None)
        n = first["num_examples"] if first else None
        cells = [run.label, point["epoch"], f"{metrics['learning_rate']:.3g}", f"{metrics['train_seconds'] / 3600:.1f} h",
                 f"{_with_ci(round(first['clean_accuracy'] * n), n)} ({n})" if first else PENDING]
        for eps in BUDGET_EPS:
            r = point["reports"].get(eps)
            for attack in ("fgsm", "pgd"):
                cells.append(_with_ci(r["attacks"][attack]["robust_count"], n) if r else PENDING)
            cells.append(f"**{_with_ci(r['worst_case']['robust_count'], n)}**" if r else PENDING)
        lines.append(_row(cells))
    lines += ["", "Paper, after 350 epochs: PCL PGD-10 79.4 % at ε = 0.1 (Table 5) and 20.3 % at ε = 0.3 (Table 2); "
              "softmax 0.0 % at ε = 0.3.", ""]
    png = os.path.join(figures, "fmnist_budget_curve.png")
    if _plot_budget_curve(points, png):
        lines += ["![robust accuracy against training epochs](figures/fmnist_budget_curve.png)", ""]
    lines.append(_budget_final_tables(root))
    return "\n".join(lines) + "\n"


def _plot_budget_curve(points: List[Dict], path: str) -> bool:
    """Robust accuracy against epochs, one panel per ε: PGD-10 (solid) and the worst case
    (dashed) per model with their 95 % intervals, the paper's 350-epoch numbers as dotted
    lines. False (nothing written) while no snapshot has been evaluated."""
    evaluated = [p for p in points if p["reports"]]
    if not evaluated:
        return False
    from pcl_tf.report import _pyplot  # matplotlib, headless

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(BUDGET_EPS), figsize=(6 * len(BUDGET_EPS), 4.2), squeeze=False)
    colours = {"paper8_softmax": "tab:blue", "paper8_pcl": "tab:red"}
    for ax, eps in zip(axes[0], BUDGET_EPS):
        for run in plan.BUDGET_RUNS:
            mine = [p for p in evaluated if p["run"] is run and eps in p["reports"]]
            if not mine:
                continue
            epochs = [p["epoch"] for p in mine]
            for key, style, marker, label in (("pgd", "-", "o", "PGD-10"), ("worst", "--", "s", "worst case")):
                counts = [p["reports"][eps]["worst_case"]["robust_count"] if key == "worst"
                          else p["reports"][eps]["attacks"]["pgd"]["robust_count"] for p in mine]
                ns = [p["reports"][eps]["num_examples"] for p in mine]
                values = [100 * c / n for c, n in zip(counts, ns)]
                cis = [report.wilson_interval(c, n) for c, n in zip(counts, ns)]
                # (clamped at 0: at a count of 0 or n the bound equals the value up to float rounding)
                errors = [[max(0.0, v - 100 * lo) for v, (lo, _) in zip(values, cis)],
                          [max(0.0, 100 * hi - v) for v, (_, hi) in zip(values, cis)]]
                ax.errorbar(epochs, values, yerr=errors, fmt=style, marker=marker, capsize=3, color=colours.get(run.name),
                            label=f"{run.label}: {label}")
            paper = PAPER_PGD.get((run.name.split("_", 1)[1], eps))
            if paper is not None:
                ax.axhline(paper, color=colours.get(run.name), linestyle=":", linewidth=1.2,
                           label=f"paper {run.label} PGD-10 (350 epochs): {paper:g} %")
        sizes = sorted({p["reports"][eps]["num_examples"] for p in evaluated if eps in p["reports"]})
        ax.set_title(f"F-MNIST CNN-6, paper recipe at 1/8, ε = {eps:g} (n = {'/'.join(map(str, sizes))} per point)",
                     fontsize=9)
        for decay in LR_DECAY_EPOCHS:
            ax.axvline(decay, color="grey", linestyle="-.", linewidth=0.8)
            ax.text(decay, 97, " lr ×0.1", fontsize=7, color="grey")
        ax.set_xlabel("training epochs (snapshots of one 44-epoch run)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_xlim(0, max(plan.BUDGET_SNAPSHOTS) + 2)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _machine(root: str) -> str:
    for run in plan.MAIN_RUNS:
        for r in _reports(os.path.join(root, run.name), "whitebox"):
            return f"{r['environment']['machine']}, 2-core CPU"
    return "2-core CPU VM"


@dataclasses.dataclass
class TableEntry:
    """One model's row of the Table 2 / Table 5 layouts: its label, its key in the paper's tables
    (or "" for none), its white-box and black-box reports and its C&W report (or None)."""

    label: str
    paper_key: str
    white: List[Dict]
    black: List[Dict]
    cw: Optional[List[Dict]]
    paper_label: str = ""  # the paper row's label, when not the model's


def _main_entries(root: str) -> List[TableEntry]:
    entries = []
    for run in plan.MAIN_RUNS:
        d = os.path.join(root, run.name)
        entries.append(TableEntry(run.label, run.name, _reports(d, "whitebox"), _reports(d, "blackbox"),
                                  _first(glob.glob(os.path.join(d, "reports", "whitebox_cw*.json")))))
    return entries


def _cell(reports: List[Dict], eps: float, attack: str, with_ci: bool) -> str:
    """An attack's robust accuracy at ``eps`` (with its Wilson interval when ``with_ci``)."""
    if not with_ci:
        return _pct(_robust(reports, eps, attack))
    r = _at(reports, eps, attack)
    if r is None:
        return PENDING if _at(reports, eps) is None else NOT_RUN
    return _with_ci(r["attacks"][attack]["robust_count"], r["num_examples"])


def _clean_and_worst(w: Optional[Dict], with_ci: bool) -> Tuple[str, str]:
    if w is None:
        return PENDING, PENDING
    if not with_ci:
        return _pct(w["clean_accuracy"]), f"**{_pct(w['worst_case']['robust_accuracy'])}**"
    n = w["num_examples"]
    return _with_ci(round(w["clean_accuracy"] * n), n), f"**{_with_ci(w['worst_case']['robust_count'], n)}**"


def _table2_rows(entries: List[TableEntry], with_ci: bool) -> List[str]:
    lines = [_header(["model", "n", "clean", "FGSM", "BIM", "C&W (n)", "MIM", "PGD", "bb FGSM", "bb BIM", "bb MIM",
                      "bb PGD"] + [LABELS[m] for m in STRONG] + ["**worst case**"])]
    for e in entries:
        w = _at(e.white, 0.3, "pgd")
        clean, worst = _clean_and_worst(w, with_ci)
        if not e.cw:
            cw_cell = PENDING
        else:
            cw = e.cw[0]
            cw_cell = (_with_ci(cw["attacks"]["cw"]["robust_count"], cw["num_examples"]) if with_ci
                       else _pct(cw["attacks"]["cw"]["robust_accuracy"])) + f" ({cw['num_examples']})"
        black = [_cell(e.black, 0.3, m, with_ci) if e.black is not None else NOT_RUN for m in ("fgsm", "bim", "mim", "pgd")]
        cells = [e.label, w["num_examples"] if w else PENDING, clean]
        cells += [_cell(e.white, 0.3, m, with_ci) for m in ("fgsm", "bim")] + [cw_cell]
        cells += [_cell(e.white, 0.3, m, with_ci) for m in ("mim", "pgd")] + black
        cells += [_cell(e.white, 0.3, m, with_ci) for m in STRONG] + [worst]
        lines.append(_row(cells))
        if e.paper_key in PAPER_TABLE2:
            p = PAPER_TABLE2[e.paper_key]
            # clean, white-box FGSM BIM C&W MIM PGD, black-box FGSM BIM MIM PGD (its black-box C&W left out)
            values = [10000, *p[:6], p[6], p[7], p[9], p[10]]
            lines.append(_row([f"*paper: {e.paper_label or e.label}*"] + [f"*{v}*" for v in values]
                              + ["–"] * (len(STRONG) + 1)))
    return lines


def _table5_rows(entries: List[TableEntry], with_ci: bool) -> List[str]:
    lines = [_header(["model", "n", "clean", "FGSM", "MIM", "PGD", "bb PGD"] + [LABELS[m] for m in STRONG]
                     + ["**worst case**"])]
    for e in entries:
        w = _at(e.white, 0.1, "pgd")
        clean, worst = _clean_and_worst(w, with_ci)
        cells = [e.label, w["num_examples"] if w else PENDING, clean]
        cells += [_cell(e.white, 0.1, m, with_ci) for m in ("fgsm", "mim", "pgd")]
        cells += [_cell(e.black, 0.1, "pgd", with_ci) if e.black is not None else NOT_RUN]
        cells += [_cell(e.white, 0.1, m, with_ci) for m in STRONG] + [worst]
        lines.append(_row(cells))
        if e.paper_key in PAPER_TABLE5:
            p = PAPER_TABLE5[e.paper_key]
            lines.append(_row([f"*paper: {e.paper_label or e.label}*", "*10000*"] + [f"*{v}*" for v in p]
                              + ["–"] * (len(STRONG) + 2)))
    return lines


def _table2(root: str) -> str:
    lines = ["## Table 2 — F-MNIST, ε = 0.3 (C&W: c = 10)", "",
             "White-box: the paper's attacks (FGSM, BIM, MIM, PGD: 10 steps of ε/10, PGD from a random start; "
             "C&W-L2: 1000 iterations, lr 0.01, one constant), then the attacks that know the defence and "
             "AutoAttack's sequence (the `+` columns run only on the images still robust and are cumulative). "
             "Worst case: robust to every L∞ attack of the row (C&W-L2 is not bounded by ε and is reported on its "
             "own). Black-box: crafted on the VGG-19 source, scored on the model. Paper rows in *italics*.", ""]
    lines += _table2_rows(_main_entries(root), with_ci=False)
    lines += ["", "Black-box C&W (1000 iterations on VGG-19) did not fit the CPU budget and is not run."]
    return "\n".join(lines) + "\n"


def _table5(root: str) -> str:
    lines = ["## Table 5 — F-MNIST, ε = 0.1", ""] + _table5_rows(_main_entries(root), with_ci=False)
    lines += ["", "Reference (inspire-group/privacy-vs-robustness): PGD adversarial training on F-MNIST at ε = 0.1 reaches 90.88 % clean, "
              "68.06 % under PGD-20 (inspire-group/privacy-vs-robustness)."]
    return "\n".join(lines) + "\n"


def _budget_final_entries(root: str) -> List[TableEntry]:
    """The last snapshot of each budget run, with its full white-box and C&W reports (no black-box)."""
    entries = []
    for run in plan.BUDGET_RUNS:
        full = _read(plan.budget_result(root, run.name, plan.BUDGET_FINAL_EPOCH, "_full") + ".json") or []
        cw = _read(plan.budget_result(root, run.name, plan.BUDGET_FINAL_EPOCH, "_cw") + ".json")
        entries.append(TableEntry(f"{run.label}, {plan.BUDGET_FINAL_EPOCH} epochs", run.name.split("_", 1)[1],
                                  full, None, cw, paper_label=f"{run.label}, 350 epochs"))
    return entries


def _budget_final_tables(root: str) -> str:
    entries = _budget_final_entries(root)
    return "\n".join([
        f"### The {plan.BUDGET_FINAL_EPOCH}-epoch models in the layouts of the paper's Table 2 (ε = 0.3) and Table 5 (ε = 0.1)", "",
        f"The end of each run above, evaluated on the same first {plan.BUDGET_EXAMPLES:,} test images with the paper's "
        "attacks (FGSM; BIM, MIM and PGD: 10 steps of ε/10, PGD from a random start; C&W-L2 with c = 10, 1000 "
        f"iterations, on the first {plan.BUDGET_CW_EXAMPLES}) and the strong suite (the adaptive attack on the PC "
        "loss, the feature-space attack, APGD-CE; the `+` columns run only on images still robust and are "
        "cumulative). Every cell: robust accuracy % and its 95 % Wilson interval. Worst case: per image, robust "
        "to every L∞ attack of the row. Black-box (bb) columns: not run for these models (–). Paper rows, after "
        "350 epochs on all 10,000 test images, in *italics*.", "",
        "**ε = 0.3 (Table 2's layout)**", "", *_table2_rows(entries, with_ci=True), "",
        "**ε = 0.1 (Table 5's layout)**", "", *_table5_rows(entries, with_ci=True), ""])


def _audit(root: str) -> str:
    lines = ["## Gradient-masking audit", "", "Every check `pcl-attack` computed on the white-box reports (both ε), "
             "flags first.", ""]
    for run in plan.MAIN_RUNS:
        white = _at(_reports(os.path.join(root, run.name), "whitebox"), 0.3, "pgd")
        if white is None or "audit" not in white:
            lines.append(f"- **{run.label}**: {PENDING}")
            continue
        checks = sorted(white["audit"]["checks"], key=lambda c: {"flag": 0, "pass": 1}.get(c["status"], 2))
        flags = [c for c in checks if c["status"] == "flag"]
        summary = f"{len(flags)} flag(s)" if flags else "no flags"
        lines.append(f"- **{run.label}** ({summary}):")
        lines += [f"  - {c['status'].upper()} {c['name']}: {c['detail']}" for c in checks]
    return "\n".join(lines) + "\n"


def _sweep(root: str, figures: str) -> str:
    reports = _read(os.path.join(root, "results", "sweep.json"))
    lines = ["## Fig. 4 — accuracy against ε (white-box FGSM and PGD)", ""]
    if not reports:
        return "\n".join(lines + [PENDING]) + "\n"
    png = os.path.join(root, "results", "sweep_eps.png")
    if os.path.exists(png):
        os.makedirs(figures, exist_ok=True)
        shutil.copyfile(png, os.path.join(figures, "fmnist_eps_sweep.png"))
        lines += ["![robust accuracy against ε](figures/fmnist_eps_sweep.png)", ""]
    eps_values = sorted({r["eps"] for r in reports})
    lines.append(_header(["model", "attack"] + [f"ε={e:g}" for e in eps_values]))
    labels = {os.path.join(root, run.name): run.label for run in plan.MAIN_RUNS}
    for workdir in dict.fromkeys(r["model"]["workdir"] for r in reports):
        mine = [r for r in reports if r["model"]["workdir"] == workdir]
        for attack in ("fgsm", "pgd"):
            lines.append(_row([labels.get(workdir, workdir), LABELS[attack]] +
                              [_pct(_robust(mine, e, attack)) for e in eps_values]))
    lines += ["", f"n = {reports[0]['num_examples']} test images per point."]
    return "\n".join(lines) + "\n"


def _transfer(root: str) -> str:
    result = _read(os.path.join(root, "results", "transfer.json"))
    lines = ["## Table 6 — transfer of PGD (ε = 0.3) between the models", "",
             "Rows: the model the examples are crafted on; columns: the model scored (diagonal: white-box)."]
    if not result:
        return "\n".join(lines + ["", PENDING]) + "\n"
    labels = {os.path.join(root, run.name): run.label for run in plan.MAIN_RUNS + (plan.SOURCE_RUN,)}
    # the plan's order (MAIN_RUNS, then the source), then anything else
    names = [n for n in labels if n in result["accuracy"]] + [n for n in result["accuracy"] if n not in labels]
    lines += ["", _header(["source ↓ / target →"] + [labels.get(n, n) for n in names])]
    for source in names:
        lines.append(_row([labels.get(source, source)] + [_pct(result["accuracy"][source][t]) for t in names]))
    return "\n".join(lines) + "\n"


def _fig1(root: str, figures: str) -> str:
    png = os.path.join(root, "results", "fig1.png")
    lines = ["## Fig. 1 — penultimate features, clean (dots) and PGD ε = 0.3 (crosses)", ""]
    if not os.path.exists(png):
        return "\n".join(lines + [PENDING]) + "\n"
    os.makedirs(figures, exist_ok=True)
    shutil.copyfile(png, os.path.join(figures, "fmnist_features.png"))
    return "\n".join(lines + ["![features of softmax and PCL models](figures/fmnist_features.png)"]) + "\n"


def _ablation(root: str) -> str:
    lines = ["## Table 7 — PCL at different CNN-6 taps (ε = 0.1, smaller budget)", "",
             "Each row: CNN-6 trained on 20,000 images for 1 CE epoch + 1 joint epoch with the PC loss on the "
             "listed taps only (none = softmax). The paper's Table 7 is on CIFAR-10 / ResNet-110: its trend, not its "
             "numbers, is what can be compared.", "",
             _header(["PC loss on", "n", "clean", "FGSM", "PGD", "+APGD-CE (cumulative)"])]
    for run in plan.ABLATION_RUNS:
        reports = _read(os.path.join(root, "results", run.name + ".json"))
        r = reports[0] if reports else None
        cells = [run.label, r["num_examples"] if r else PENDING, _pct(r and r["clean_accuracy"])]
        cells += [_pct(r and r["attacks"][m]["robust_accuracy"]) for m in ("fgsm", "pgd", "apgd-ce")]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs/repro")
    parser.add_argument("--results", default="docs/RESULTS.md")
    parser.add_argument("--budget", action="store_true", help="render only the budget curve (its own block)")
    parser.add_argument("--models_dir", default="models",
                        help="--budget: the budget runs shipped here are read from there (the others from --root)")
    args = parser.parse_args(argv)
    stash.refuse_unwritable(parser, files={"results": args.results})
    if args.budget:
        render_budget(args.root, args.results, args.models_dir)
    else:
        render(args.root, args.results)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()

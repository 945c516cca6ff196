"""Catastrophic overfitting of single-step adversarial training, and N-FGSM's guard against it.

"Fast" adversarial training (one FGSM step of 1.25 ε from a random start; Wong, Rice & Kolter
2020) can collapse at large ε: within an epoch the model learns to defeat the one gradient step
it is trained against, its FGSM accuracy rises while its PGD accuracy falls towards 0, and it
does not recover (Andriushchenko & Flammarion 2020). N-FGSM (de Jorge et al. 2022) guards
against it at FGSM's cost: a step of ε from larger noise, U(-2ε, 2ε), not projected back to the
ε-ball. pcl_tf ships N-FGSM as the guard (GradAlign, the other published guard, needs a double
backward pass: about 3x the cost of a step here).

This driver trains both methods with the softmax CNN-6 on real Fashion-MNIST at the same
settings — the shared recipe of ``time_to_robustness.py`` (Adam, one-cycle lr, clipping), the
same fixed training ε, epochs and images, adversarial from the first step on adversarial images
only — and records clean, FGSM and PGD-10 accuracy at that ε on 1,000 held-out training images
after every epoch (robust early stopping's validation, ``train.robust_val_examples``).

    python bench/catastrophic_overfitting.py --root=runs/co                  # ε 0.3, 8 epochs of 20,000 images
    python bench/catastrophic_overfitting.py --root=runs/co --eps=0.4 --epochs=10
    python bench/catastrophic_overfitting.py --root=runs/co --eps=0.2 --methods=fgsm,nfgsm   # N-FGSM's noise alone
    python bench/catastrophic_overfitting.py --root=runs/co --stage=render   # table, JSON and PNG so far
    python bench/catastrophic_overfitting.py --root=runs/co --stash=bench/in_progress/co --stage=stash   # carry to a later session

Resumable like the other drivers (each training resumes from its checkpoint). Prints one
Markdown table (epoch by epoch, both methods), writes
``bench/results/catastrophic_overfitting.json`` and ``docs/figures/catastrophic_overfitting.png``
(``catastrophic_overfitting_eps0.4_10ep.*`` for the second command, ``..._eps0.2_fgsm_nfgsm.*``
for the third: each setting and pair of methods its own report).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The trainings run through the reproduction driver's resumable step runner (experiments/).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments"))

import stash  # noqa: E402  (experiments/stash.py; imports TensorFlow quietly, so first)
import common  # noqa: E402  (bench/common.py)
from reproduce_fmnist import Step, run_step  # noqa: E402
from time_to_robustness import METHODS as BUDGET_METHODS, RECIPE, Method, _train_args, save_figure  # noqa: E402

from pcl_tf import history, io_utils  # noqa: E402

VALIDATION_EXAMPLES = 1000
# The budget benchmark's methods (less the twins stopped by APGD-CE: these curves are PGD-10's),
# and plain FGSM training (one step of ε from the clean image, the ``advfgsm`` variant's attack,
# on adversarial images only at a fixed ε): the textbook case of
# catastrophic overfitting. Beside N-FGSM — the same step of ε, from noise — it is the ablation of
# N-FGSM's guard alone; beside fast AT, of the random start.
METHODS = {**{name: m for name, m in BUDGET_METHODS.items() if not m.same_step_as},
           "fgsm": Method("fgsm", "FGSM (no random start)", "softmax,madry,advfgsm")}
DEFAULT_METHODS = ("fastat", "nfgsm")
CURVES = (("val_clean_accuracy", "clean", ":"), ("val_fgsm_accuracy", "FGSM", "--"),
          ("val_robust_accuracy", "PGD-10", "-"))


@dataclasses.dataclass(frozen=True)
class Setting:
    """What the compared runs share: the fixed training and validation ε, the epochs the one-cycle
    is planned over, the training images per epoch, and an optional ε ramp (the training ε grows
    linearly from 0 over that many epochs; validation stays at the full ε). The defaults are the
    setting of the first report (bench/results/catastrophic_overfitting.json)."""

    eps: float = 0.3
    epochs: int = 8
    train_examples: int = 20000
    eps_ramp_epochs: float = 0.0

    def suffix(self) -> str:
        """What sets it apart from the default besides ε: "_16ep", "_5000img", "_ramp3". Every
        setting names its own runs: a finished 8-epoch run must not be reported (or extended, its
        one-cycle re-planned) as a 16-epoch one under the same root."""
        return ((f"_{self.epochs}ep" if self.epochs != DEFAULT.epochs else "")
                + (f"_{self.train_examples}img" if self.train_examples != DEFAULT.train_examples else "")
                + (f"_ramp{self.eps_ramp_epochs:g}" if self.eps_ramp_epochs else ""))


DEFAULT = Setting()


def run_name(method: str, setting: Setting) -> str:
    """One run's directory under --root (the default setting's names are those of its stashed runs)."""
    return f"{method}_eps{setting.eps:g}" + setting.suffix()


# These runs are planned in epochs, not minutes: the budget recipe's one-cycle over the planned
# steps, no time budget.
SCHEDULE = {"train.lr_schedule": "one_cycle", "train.time_budget_minutes": 0}


def train_step(root: str, method: str, setting: Setting) -> Step:
    """One method's training: ``setting.train_examples`` images per epoch plus the held-out
    validation slice, adversarial from the first step at the setting's ε."""
    name = run_name(method, setting)
    workdir = os.path.join(root, name)
    ramp = {"adv.eps_ramp_epochs": setting.eps_ramp_epochs} if setting.eps_ramp_epochs else {}
    fields = {**SCHEDULE, **ramp, "train.epochs": setting.epochs, "train.warmup_epochs": 0,
              "train.num_examples": setting.train_examples + VALIDATION_EXAMPLES,
              "train.robust_val_examples": VALIDATION_EXAMPLES, "train.robust_val_eps": setting.eps,
              "eval.num_examples": VALIDATION_EXAMPLES}
    return Step(f"train_{name}", _train_args(METHODS[method], workdir, setting.eps, fields),
                os.path.join(workdir, "metrics.json"))


def curves(root: str, methods: List[str], setting: Setting) -> Dict[str, Dict[str, List]]:
    """Each method's per-epoch validation accuracies so far (history.json is written as each epoch ends)."""
    found = {}
    for method in methods:
        past = history.read(os.path.join(root, run_name(method, setting)))
        if past.get("val_robust_accuracy"):
            found[method] = {key: past.get(key, []) for key, _, _ in CURVES} | {"epoch": past["epoch"]}
    return found


def diagnosis(curve: Dict[str, List], floor: float = 0.05, gap: float = 0.30) -> Dict[str, object]:
    """Whether a run ended in catastrophic overfitting: its last validated epoch leaves PGD-10
    accuracy below ``floor`` while FGSM accuracy is at least ``gap`` above it (the model beats the
    one-step attack it trains against, not the multi-step one). Also the PGD peak, so a reader can
    tell a collapse after real robustness from a run that was never robust."""
    points = [(e, r, f) for e, r, f in zip(curve["epoch"], curve["val_robust_accuracy"], curve["val_fgsm_accuracy"])
              if r is not None and f is not None]
    if not points:
        return {"collapsed": False, "epochs": 0}
    peak = max(points, key=lambda p: p[1])
    last = points[-1]
    return {"collapsed": last[1] < floor and last[2] - last[1] >= gap, "epochs": last[0],
            "peak_pgd": peak[1], "peak_epoch": peak[0], "last_pgd": last[1], "last_fgsm": last[2]}


def describe(label: str, found: Dict[str, object]) -> str:
    if not found["epochs"]:
        return f"{label}: no validated epoch yet"
    return (f"{label}: PGD-10 peaked at {100 * found['peak_pgd']:.1f} % (epoch {found['peak_epoch']}), "
            f"{100 * found['last_pgd']:.1f} % after epoch {found['epochs']} while FGSM leaves {100 * found['last_fgsm']:.1f} %: "
            + ("catastrophic overfitting" if found["collapsed"] else "no collapse"))


def table(found: Dict[str, Dict[str, List]]) -> str:
    methods = list(found)
    header = ["epoch"] + [f"{METHODS[m].label}: {label}" for m in methods for _, label, _ in CURVES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    epochs = sorted({e for curve in found.values() for e in curve["epoch"]})
    for epoch in epochs:
        cells = [str(epoch)]
        for m in methods:
            curve = found[m]
            position = curve["epoch"].index(epoch) if epoch in curve["epoch"] else None
            for key, _, _ in CURVES:
                value = curve[key][position] if position is not None and position < len(curve[key]) else None
                cells.append("–" if value is None else f"{100 * value:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(found: Dict[str, Dict[str, List]], setting: Setting, path: str) -> None:
    """Validation accuracy against epochs: one colour per method, one line style per attack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (method, curve), colour in zip(found.items(), ("tab:red", "tab:green", "tab:blue", "tab:orange")):
        for key, label, style in CURVES:
            points = [(e, 100 * v) for e, v in zip(curve["epoch"], curve[key]) if v is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", color=colour,
                    label=f"{METHODS[method].label}: {label}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(f"accuracy on {VALIDATION_EXAMPLES} held-out images (%)")
    ax.set_ylim(-2, 102)
    ramp = (f"\ntraining ε ramped from 0 over the first {setting.eps_ramp_epochs:g} epochs"
            if setting.eps_ramp_epochs else "")
    ax.set_title(f"Fashion-MNIST CNN-6, single-step adversarial training at ε = {setting.eps:g}{ramp}", fontsize=10)
    save_figure(fig, ax, path)


def output_name(setting: Setting, methods: Sequence[str] = DEFAULT_METHODS) -> str:
    """The default report name of one setting and pair of methods, so that runs at another ε or
    length, or of other methods, never write over the ε 0.3 / 8-epoch fast AT vs N-FGSM report
    (``catastrophic_overfitting_eps0.2_16ep`` for ε 0.2 over 16 epochs,
    ``catastrophic_overfitting_eps0.2_fgsm_nfgsm`` for plain FGSM against N-FGSM)."""
    return ("catastrophic_overfitting" + (f"_eps{setting.eps:g}" if setting.eps != DEFAULT.eps else "")
            + setting.suffix()
            + ("_" + "_".join(methods) if tuple(methods) != DEFAULT_METHODS else ""))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="where the runs and logs go (resumable)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"from {', '.join(METHODS)}")
    parser.add_argument("--eps", type=float, default=DEFAULT.eps, help="the fixed training and validation ε")
    parser.add_argument("--epochs", type=int, default=DEFAULT.epochs)
    parser.add_argument("--train_examples", type=int, default=DEFAULT.train_examples, help="training images per epoch")
    parser.add_argument("--eps_ramp_epochs", type=float, default=0.0,
                        help="grow the training ε linearly from 0 over this many epochs (0: full ε from the start)")
    parser.add_argument("--stage", choices=("all", "render", "stash"), default="all",
                        help="stash: copy the runs' resumable state and the results into --stash")
    stash.add_flag(parser)
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    parser.add_argument("--json", help="default: bench/results/<name>.json, the name saying ε, epochs and "
                                        "images where they differ from the defaults")
    parser.add_argument("--png", help="default: docs/figures/<name>.png, likewise")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    setting = Setting(args.eps, args.epochs, args.train_examples, args.eps_ramp_epochs)
    stem = output_name(setting, methods)
    args.json = args.json or os.path.join("bench", "results", stem + ".json")
    args.png = args.png or os.path.join("docs", "figures", stem + ".png")
    if args.eps_ramp_epochs < 0:
        parser.error(f"--eps_ramp_epochs must be >= 0 (0: no ramp), got {args.eps_ramp_epochs:g}")
    stash.refuse_unwritable(parser, folders={"root": args.root}, files={"json": args.json, "png": args.png})
    if stash.handle(args, parser):
        return
    if args.stage == "all":
        for method in methods:
            run_step(train_step(args.root, method, setting), args.root, args.dry_run)
    if args.dry_run:
        return
    found = curves(args.root, methods, setting)
    if not found:
        print("no finished epochs yet")
        return
    print(table(found))
    diagnoses = {method: diagnosis(curve) for method, curve in found.items()}
    for method, found_diagnosis in diagnoses.items():
        print(describe(METHODS[method].label, found_diagnosis))
    io_utils.write_json_atomic(args.json, {
        **common.environment(), **dataclasses.asdict(setting), "validation_examples": VALIDATION_EXAMPLES, "recipe": {"variant": RECIPE, **SCHEDULE}, "curves": found,
        "diagnosis": diagnoses, "command": " ".join(sys.argv)})
    plot(found, setting, args.png)
    print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()

"""Reproduce the paper on Fashion-MNIST with CNN-6 at a stated CPU budget (paper Tables 2, 5, 7, Figs. 1, 4).

Trains softmax, PCL, PCL + AdvTrain_FGSM, PCL + AdvTrain_PGD and Madry's PGD adversarial training,
plus the VGG-19 black-box source, then evaluates every model with ``pcl-attack``: the full suite
white-box at ε = 0.3 (Table 2) and 0.1 (Table 5), the paper's attacks black-box from VGG-19, an ε
sweep (Fig. 4), a PGD transfer matrix (Table 6), the Fig. 1 feature plots, and the Table 7 ablation
(PCL on each CNN-6 tap alone and in combinations, at a smaller budget). ``--stage=render`` writes
``docs/RESULTS.md`` from the reports (see :mod:`reproduce_render`).

Every step is a ``pcl-train`` / ``pcl-attack`` command run as a subprocess, logged to
``<root>/logs/<step>.log`` and skipped when its output already exists; ``pcl-train`` resumes
from its last checkpoint. So the whole job is resumable: kill it at any point (or let a session
end) and run the same command again.

    python experiments/reproduce_fmnist.py --root=runs/repro                      # everything, in order
    python experiments/reproduce_fmnist.py --root=runs/repro --stage=train        # only the trainings
    python experiments/reproduce_fmnist.py --root=runs/repro --dry_run            # print the commands
    python experiments/reproduce_fmnist.py --root=runs/repro --stage=render --results=docs/RESULTS.md

The budget curve (the paper's recipe at 1/8 of its length, softmax and PCL) runs only when named,
carried across sessions by a stash, and ships its finished runs into models/:

    python experiments/reproduce_fmnist.py --root=runs/repro --stash=models/in_progress --stage=budget_train
    python experiments/reproduce_fmnist.py --root=runs/repro --stash=models/in_progress --stage=budget_evaluate
    python experiments/reproduce_fmnist.py --root=runs/repro --stash=models/in_progress --stage=stash
    python experiments/reproduce_fmnist.py --root=runs/repro --stage=ship     # models/fmnist_cnn6_paper8_*

The budgets (epochs, examples) are the plan below; each run's wall time and machine are read
from its ``metrics.json`` when rendering. The paper's schedules (350 epochs of SGD) stay in
``configs/fmnist_cnn6.py`` for GPU users.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import stash  # noqa: E402  (experiments/stash.py)
from pcl_tf import report
from pcl_tf import workdir as workdirs

CNN6 = "configs/fmnist_cnn6.py"
VGG19 = "configs/fmnist_vgg19.py"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training: a config with variants, plus field overrides (the CPU budget)."""

    name: str
    label: str
    config: str
    overrides: Tuple[Tuple[str, object], ...] = ()

    def train_command(self, root: str) -> List[str]:
        args = ["pcl_tf.cli.train", f"--config={self.config}", f"--workdir={workdir(root, self.name)}", "--verbose=2"]
        return args + [f"--config.{field}={value}" for field, value in self.overrides]


def _budget(epochs: int, warmup: int, **more) -> Tuple[Tuple[str, object], ...]:
    fields = {"train.epochs": epochs, "train.warmup_epochs": warmup, **more}
    return tuple(fields.items())


# The models of Table 2 (Adam 1e-3, batch 256, the whole 60k training split). PGD adversarial
# training costs ~9x a clean epoch here, so those runs get fewer epochs; every budget is
# reported with the results.
MAIN_RUNS = (
    Run("softmax", "Softmax", f"{CNN6}:quick,softmax", _budget(6, 2)),
    Run("pcl", "Ours (PCL)", f"{CNN6}:quick", _budget(6, 2)),
    Run("pcl_advfgsm", "Ours + AdvTrain_FGSM", f"{CNN6}:quick,advfgsm", _budget(4, 1)),
    Run("pcl_advpgd", "Ours + AdvTrain_PGD", f"{CNN6}:quick,advpgd", _budget(2, 1)),
    # Madry at a fixed ε = 0.3 from random weights sat at chance (CE 2.3028) for its whole first
    # epoch here; ε ramps up linearly over the first epoch instead (stated in docs/RESULTS.md).
    Run("madry", "Madry PGD-AT (softmax)", f"{CNN6}:quick,softmax,madry", _budget(2, 1, **{"adv.eps_ramp_epochs": 1})),
)
# The black-box source of Table 2: a separately trained VGG-19 (20k images, 2 epochs).
SOURCE_RUN = Run("vgg19_source", "VGG-19 (source)", f"{VGG19}:quick", _budget(2, 1, **{"train.num_examples": 20000}))

# Table 7 on CNN-6: PCL on each tap alone and in combinations; "none" is softmax at that budget
# (20k training images, 1 CE epoch + 1 joint epoch).
ABLATION_TAPS = ("", "gap", "fc512", "fc64", "fc512,fc64", "gap,fc64", "gap,fc512", "gap,fc512,fc64")
_ABLATION_BUDGET = {"train.num_examples": 20000}
ABLATION_RUNS = tuple(
    Run(f"ablation_{taps.replace(',', '+')}", taps.replace(",", " + "), f"{CNN6}:quick",
        _budget(2, 1, **{"pcl.branches": taps}, **_ABLATION_BUDGET))
    if taps else Run("ablation_none", "none (softmax)", f"{CNN6}:quick,softmax", _budget(2, 1, **_ABLATION_BUDGET))
    for taps in ABLATION_TAPS
)

# The budget curve: the paper's recipe at 1/8 of its length (`paper_cpu`: 44 epochs of SGD lr 0.1,
# 6 of them CE, decays at 25 and 31.25, gradients clipped at norm 1), softmax and PCL, evaluated at
# snapshots of the same run (the lr schedule is the 44-epoch one throughout: the epoch-11 and -22
# snapshots are taken before any decay, at lr 0.1).
BUDGET_SNAPSHOTS = (11, 22, 33, 44)
BUDGET_RUNS = (
    Run("paper8_softmax", "Softmax", f"{CNN6}:paper_cpu,softmax",
        (("train.snapshot_epochs", "(" + ",".join(map(str, BUDGET_SNAPSHOTS)) + ")"),)),
    Run("paper8_pcl", "Ours (PCL)", f"{CNN6}:paper_cpu",
        (("train.snapshot_epochs", "(" + ",".join(map(str, BUDGET_SNAPSHOTS)) + ")"),)),
)
# The paper's attacks (FGSM, PGD-10) and AutoAttack's standard suite, at both ε, on the first 1,000
# test images; the report's worst case is per sample over all of them.
BUDGET_METHODS = "fgsm,pgd,apgd-ce,apgd-t,square"
BUDGET_EPS = "0.1,0.3"
BUDGET_EXAMPLES = 1000
# The end of each budget run (its last snapshot) in the paper's Table 2 and 5 layouts: the paper's
# attacks and the strong suite at both ε on the same 1,000 images, C&W-L2 on the first 100.
BUDGET_FINAL_EPOCH = max(BUDGET_SNAPSHOTS)
BUDGET_CW_EXAMPLES = 100

SWEEP_EPS = "0,0.05,0.1,0.15,0.2,0.25,0.3,0.4"
BLACK_BOX_METHODS = "fgsm,bim,mim,pgd"  # C&W's 1000 iterations on VGG-19 do not fit the CPU budget
# pcl-attack --suite=full less C&W, spelled out (the report file is named after the methods), at
# both ε in one call so the audit sees the ε trend. C&W-L2 (1000 iterations, ~1 image/s here) runs
# on its own, on fewer images: it does not depend on ε and is not part of the ε worst case.
FULL_WITHOUT_CW = "fgsm,bim,mim,pgd,adaptive,feature,apgd-ce,apgd-t,square,pgd-restarts"
ABLATION_METHODS = "fgsm,pgd,apgd-ce"


def workdir(root: str, name: str) -> str:
    return os.path.join(root, name)


def _report(directory: str, kind: str, methods: str, eps: Tuple[float, ...], n: int, source: str = "") -> str:
    """The JSON report `pcl-attack` writes into a work dir for these settings (seed 0)."""
    return os.path.join(directory, "reports", report.report_stem(kind, methods.split(","), eps, n, 0, source=source) + ".json")


def budget_result(root: str, name: str, epoch: int, suffix: str = "") -> str:
    """The stem (no extension) of a budget evaluation's report; ``suffix`` names the final tables'."""
    return os.path.join(root, "results", "budget", f"{name}_epoch_{epoch:03d}{suffix}")


def budget_snapshot(root: str, name: str, epoch: int) -> str:
    """The snapshot work dir that `pcl-train` keeps at the end of ``epoch`` (train.snapshot_epochs)."""
    return os.path.join(workdir(root, name), "snapshots", f"epoch_{epoch:03d}")


@dataclasses.dataclass(frozen=True)
class Step:
    """A command and the file whose existence means it is done."""

    name: str
    args: List[str]
    done_when: str
    # A file the step needs that another, still running step makes (a training's snapshot): until
    # it exists the step is skipped and a later run of the driver picks it up.
    needs: str = ""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Test images per evaluation: black-box, sweeps, transfer and ablation (``n``); the white-box
    full suites, whose APGD-T and Square dominate the cost (``strong``); C&W (``cw``)."""

    n: int = 500
    strong: int = 300
    cw: int = 100


def plan(root: str, sizes: Sizes, models_dir: str = "") -> Dict[str, List[Step]]:
    """Every step, by stage, in the order they run. A budget run already shipped into
    ``models_dir`` (:func:`ship`) counts as trained and evaluated: its steps are done."""
    main_dirs = [workdir(root, r.name) for r in MAIN_RUNS]
    source = workdir(root, SOURCE_RUN.name)
    n = f"--num_examples={sizes.n}"

    def train(run):
        return Step(f"train_{run.name}", run.train_command(root), os.path.join(workdir(root, run.name), "metrics.json"))

    def attack(name, args, done_when, needs=""):
        return Step(name, ["pcl_tf.cli.attack", "--progress=false"] + args, done_when, needs)

    evaluate = [
        attack("blackbox", [f"--workdir={','.join(main_dirs)}", f"--source_workdir={source}",
                            f"--method={BLACK_BOX_METHODS}", "--eps=0.3,0.1", n],
               _report(main_dirs[-1], "blackbox", BLACK_BOX_METHODS, (0.3, 0.1), sizes.n, source=SOURCE_RUN.name)),
    ]
    for d, run in zip(main_dirs, MAIN_RUNS):
        evaluate.append(attack(f"whitebox_{run.name}", [f"--workdir={d}", f"--method={FULL_WITHOUT_CW}", "--eps=0.3,0.1",
                                                        f"--num_examples={sizes.strong}"],
                               _report(d, "whitebox", FULL_WITHOUT_CW, (0.3, 0.1), sizes.strong)))
    for d, run in zip(main_dirs, MAIN_RUNS):
        evaluate.append(attack(f"cw_{run.name}", [f"--workdir={d}", "--method=cw", "--eps=0.3",
                                                  f"--num_examples={sizes.cw}", "--audit=false"],
                               _report(d, "whitebox", "cw", (0.3,), sizes.cw)))
    sweep = os.path.join(root, "results", "sweep")
    evaluate += [
        attack("sweep", [f"--workdir={','.join(main_dirs)}", "--method=fgsm,pgd", f"--eps={SWEEP_EPS}", n,
                         f"--output={sweep}"], sweep + ".json"),
        attack("transfer", [f"--workdir={','.join([source] + main_dirs)}", "--method=pgd", "--eps=0.3", n,
                            "--transfer", f"--output={os.path.join(root, 'results', 'transfer')}"],
               os.path.join(root, "results", "transfer.json")),
        attack("fig1", [f"--workdir={main_dirs[0]},{main_dirs[1]}", "--eps=0.3", "--batch_size=1000",
                        f"--plot_features={os.path.join(root, 'results', 'fig1.png')}"],
               os.path.join(root, "results", "fig1.png")),
    ]
    ablation = []
    for run in ABLATION_RUNS:
        out = os.path.join(root, "results", run.name)
        ablation += [train(run), attack(f"attack_{run.name}", [f"--workdir={workdir(root, run.name)}",
                                                               f"--method={ABLATION_METHODS}", "--eps=0.1", n,
                                                               f"--output={out}"], out + ".json")]
    budget_train, budget_evaluate = [], []
    for run in BUDGET_RUNS:
        steps = [train(run)]
        for epoch in BUDGET_SNAPSHOTS:
            snapshot = budget_snapshot(root, run.name, epoch)
            out = budget_result(root, run.name, epoch)
            steps.append(attack(
                f"budget_{run.name}_epoch_{epoch:03d}",
                [f"--workdir={snapshot}", f"--method={BUDGET_METHODS}", f"--eps={BUDGET_EPS}",
                 f"--num_examples={BUDGET_EXAMPLES}", f"--output={out}"], out + ".json",
                needs=os.path.join(snapshot, "metrics.json")))
        snapshot = budget_snapshot(root, run.name, BUDGET_FINAL_EPOCH)
        full, cw = (budget_result(root, run.name, BUDGET_FINAL_EPOCH, suffix) for suffix in ("_full", "_cw"))
        steps += [
            attack(f"budget_{run.name}_final_full",
                   [f"--workdir={snapshot}", f"--method={FULL_WITHOUT_CW}", "--eps=0.3,0.1",
                    f"--num_examples={BUDGET_EXAMPLES}", f"--output={full}"], full + ".json",
                   needs=os.path.join(snapshot, "metrics.json")),
            attack(f"budget_{run.name}_final_cw",
                   [f"--workdir={snapshot}", "--method=cw", "--eps=0.3", f"--num_examples={BUDGET_CW_EXAMPLES}",
                    "--audit=false", f"--output={cw}"], cw + ".json",
                   needs=os.path.join(snapshot, "metrics.json")),
        ]
        shipped = shipped_copy(models_dir, run.name)
        if shipped:
            steps = [dataclasses.replace(step, done_when=os.path.join(shipped, "metrics.json"), needs="") for step in steps]
        budget_train.append(steps[0])
        budget_evaluate += steps[1:]
    return {
        "budget_train": budget_train,
        "budget_evaluate": budget_evaluate,
        "train": [train(r) for r in MAIN_RUNS + (SOURCE_RUN,)],
        "evaluate": evaluate,
        "ablation": ablation,
    }


def run_step(step: Step, root: str, dry_run: bool) -> None:
    command = [sys.executable, "-m"] + step.args
    if os.path.exists(step.done_when):
        print(f"[done]    {step.name}", flush=True)
        return
    if step.needs and not os.path.exists(step.needs):
        print(f"[waiting] {step.name}: {step.needs} does not exist yet", flush=True)
        return
    print(f"[run]     {step.name}: {' '.join(command[2:])}", flush=True)
    if dry_run:
        return
    log = os.path.join(root, "logs", step.name + ".log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    os.makedirs(os.path.join(root, "results"), exist_ok=True)
    start = time.time()
    with open(log, "a") as out:
        out.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        out.flush()
        rc = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"reproduce_fmnist: step {step.name} failed (exit {rc}); see {log}, then rerun to resume")
    print(f"[ok]      {step.name} in {time.time() - start:.0f} s", flush=True)


def stash_budget_runs(root: str, destination: str, models_dir: str) -> None:
    """The resumable state and finished reports of the budget runs not yet shipped into
    ``models_dir``, into ``destination`` (:mod:`stash`; committed, so a later session goes on where
    this one stopped)."""
    unshipped = [run.name for run in BUDGET_RUNS if not shipped_copy(models_dir, run.name)]
    stash.stash(root, destination, runs=unshipped, results_under=[os.path.join("results", "budget")])


def shipped_name(run_name: str) -> str:
    """The directory under models/ that a finished budget run ships as."""
    return f"fmnist_cnn6_{run_name}"


def shipped_copy(models_dir: str, run_name: str) -> Optional[str]:
    """The budget run's shipped copy in ``models_dir`` (:func:`ship`), or None while it has none."""
    path = os.path.join(models_dir, shipped_name(run_name)) if models_dir else ""
    return path if path and os.path.isfile(os.path.join(path, "metrics.json")) else None


def ship(root: str, models_dir: str) -> List[str]:
    """Ships each finished and fully evaluated budget run into ``models_dir``: a slim copy of its
    last snapshot (pcl_tf.workdir.slim_copy: weights, prototypes, config, metrics; no optimizer
    state), with every budget report of the run in its reports/ (made portable: no machine paths)
    and each snapshot's metrics.json under snapshots/ — all the budget curve is rendered from.
    A run still training or not yet evaluated is skipped with a line saying so; an existing
    destination is never written over. Returns the directories written."""
    shipped = []
    for run in BUDGET_RUNS:
        final = budget_snapshot(root, run.name, BUDGET_FINAL_EPOCH)
        stems = [budget_result(root, run.name, e) for e in BUDGET_SNAPSHOTS]
        stems += [budget_result(root, run.name, BUDGET_FINAL_EPOCH, suffix) for suffix in ("_full", "_cw")]
        missing = [p for p in [os.path.join(final, "metrics.json")] + [s + ".json" for s in stems] if not os.path.exists(p)]
        destination = os.path.join(models_dir, shipped_name(run.name))

        def build(scratch, run=run, final=final, stems=stems):
            copy = workdirs.slim_copy(final, os.path.join(scratch, "copy"))
            reports = _makedirs(os.path.join(copy, "reports"))
            for epoch in BUDGET_SNAPSHOTS:
                # each snapshot's reports made portable on their own: they name that snapshot
                staging = _makedirs(os.path.join(scratch, f"epoch_{epoch:03d}"))
                for stem in stems:
                    if os.path.basename(stem).startswith(f"{run.name}_epoch_{epoch:03d}"):
                        for extension in (".json", ".md"):
                            if os.path.exists(stem + extension):
                                shutil.copyfile(stem + extension, os.path.join(staging, os.path.basename(stem) + extension))
                report.make_portable(staging, budget_snapshot(root, run.name, epoch),
                                     f"{shipped_name(run.name)}@epoch_{epoch:03d}")
                for name in os.listdir(staging):
                    os.rename(os.path.join(staging, name), os.path.join(reports, name))
                snapshot = _makedirs(os.path.join(copy, "snapshots", f"epoch_{epoch:03d}"))
                shutil.copyfile(os.path.join(budget_snapshot(root, run.name, epoch), "metrics.json"),
                                os.path.join(snapshot, "metrics.json"))
            return copy

        if stash.ship_once(run.name, destination, missing, build):
            shipped.append(destination)
    return shipped


def budget_root(models_dir: str, destination: str, root: str = "") -> str:
    """Assembles, under ``destination`` (links, nothing copied), what the budget curve is rendered
    from: each budget run shipped in ``models_dir`` from its shipped copy, each other one from the
    reproduction ``root`` (when given) — so the curve can be rendered in a session whose root no
    longer holds the finished runs."""
    budget = _makedirs(os.path.join(destination, "results", "budget"))
    for run in BUDGET_RUNS:
        shipped = shipped_copy(models_dir, run.name)
        if shipped:
            shipped = os.path.abspath(shipped)
            run_dir, reports = shipped, os.path.join(shipped, "reports")
        elif root:
            run_dir, reports = os.path.abspath(workdir(root, run.name)), os.path.abspath(os.path.join(root, "results", "budget"))
        else:
            continue
        if os.path.isdir(run_dir):
            os.symlink(run_dir, os.path.join(destination, run.name))
        for name in sorted(os.listdir(reports)) if os.path.isdir(reports) else []:
            if name.startswith(run.name + "_epoch_"):
                os.symlink(os.path.join(reports, name), os.path.join(budget, name))
    return destination


def _makedirs(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs/repro", help="where work dirs, logs and results go")
    parser.add_argument("--stage", default="all",
                        choices=("all", "train", "evaluate", "ablation", "budget_train", "budget_evaluate", "render", "stash",
                                 "ship"),
                        help="all = train, evaluate, ablation, render (the budget curve runs only when named)")
    parser.add_argument("--only", default="", help="comma-separated step names to run (default: every step of the stage)")
    parser.add_argument("--num_examples", type=int, default=Sizes.n,
                        help="test images for black-box, sweep, transfer and ablation evaluations")
    parser.add_argument("--strong_examples", type=int, default=Sizes.strong,
                        help="test images for the white-box full suites (APGD-T, Square, ...)")
    parser.add_argument("--cw_examples", type=int, default=Sizes.cw, help="test images for C&W-L2 (1000 iterations)")
    parser.add_argument("--results", default="docs/RESULTS.md", help="the Markdown file --stage=render writes")
    parser.add_argument("--models_dir", default="models",
                        help="where --stage=ship puts slim copies of the finished budget runs (a run shipped there "
                             "counts as done)")
    parser.add_argument("--dry_run", action="store_true", help="print the commands without running them")
    parser.add_argument("--stash", default="",
                        help="a folder that carries the budget runs across sessions: read before the budget stages "
                             "(a run with no checkpoint resumes from it), written by --stage=stash")
    args = parser.parse_args(argv)
    sizes = Sizes(args.num_examples, args.strong_examples, args.cw_examples)
    if min(dataclasses.astuple(sizes)) <= 0:
        parser.error(f"the numbers of test images must be > 0, got {sizes}")
    stages = plan(args.root, sizes, args.models_dir)
    only = {name for name in args.only.split(",") if name}
    unknown = only - {step.name for steps in stages.values() for step in steps}
    if unknown:
        parser.error(f"--only: no step named {', '.join(sorted(unknown))}; --dry_run lists them")
    written = "stash" if args.stage == "stash" else "models_dir" if args.stage == "ship" else "root"
    stash.refuse_unwritable(parser, folders={written: getattr(args, written)},
                            files={"results": args.results if args.stage in ("all", "render") else ""})
    if args.stage == "stash":
        if not args.stash:
            parser.error("--stage=stash needs --stash=DIR")
        stash_budget_runs(args.root, args.stash, args.models_dir)
        return
    if args.stage == "ship":
        ship(args.root, args.models_dir)
        return
    if args.stash and args.stage.startswith("budget") and not args.dry_run:
        stash.unstash(args.root, args.stash)
    for stage in ("train", "evaluate", "ablation", "budget_train", "budget_evaluate"):
        if args.stage == stage or (args.stage == "all" and not stage.startswith("budget")):
            for step in stages[stage]:
                if not only or step.name in only:
                    run_step(step, args.root, args.dry_run)
    if args.stage in ("all", "render") and not args.dry_run:
        import reproduce_render

        reproduce_render.render(args.root, args.results)
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()

"""Which attack should robust early stopping validate with? Held-out robust accuracy of trained
work dirs under each of robust early stopping's validation attacks, side by side, with their cost.

Robust early stopping keeps the epoch with the highest held-out robust accuracy, so its attack must
rank epochs as the strong evaluation would. PGD-10 on the cross-entropy (Rice et al.'s criterion)
is cheap but blind to vanishing gradients, which long single-step training can develop; APGD-CE
(AutoAttack's first attack) sees them at several times the cost. For every work dir this measures
clean, FGSM and robust accuracy under each attack on the run's own held-out slice (the last
``train.robust_val_examples`` training images it never trained on; ``--examples`` when the run had
none) with exactly the code training uses (:class:`pcl_tf.early_stopping.RobustValidation`), and
the seconds each attack took — the ratio is measured in the same process, minutes apart. By default
PGD-10, APGD-CE cut to 20 iterations (about twice PGD-10's gradients) and APGD-CE at AutoAttack's 100.

    python bench/validation_attacks.py --workdirs=runs/ttr/nfgsm_30min_eps0.1/best_robust,runs/ttr/nfgsm_60min_eps0.1/best_robust

Writes bench/results/validation_attacks.json (``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments"))

from pcl_tf.cli.common import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()
import common  # noqa: E402  (bench/common.py)
import stash  # noqa: E402  (experiments/stash.py: the drivers' shared check of output paths)
import tensorflow as tf  # noqa: E402
from pcl_tf import early_stopping, experiment, io_utils, report  # noqa: E402
from pcl_tf import workdir as workdirs  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "validation_attacks.json")


def measure(workdir: str, attacks, examples: int) -> dict:
    """Held-out clean / FGSM / robust accuracy of ``workdir``'s model under each attack, and seconds."""
    model, config = workdirs.load_trained(workdir)
    if not config.train.robust_val_examples:
        config.train.robust_val_examples = examples
    dataset, eps = experiment.robust_validation_data(config), experiment.robust_validation_eps(config)
    row = {"workdir": workdir, "eps": eps, "n": int(config.train.robust_val_examples), "attacks": {}}
    with tempfile.TemporaryDirectory() as unused:  # measure() writes nothing; the callback wants a place
        for attack in attacks:
            name, steps = parse_attack(attack)
            validation = early_stopping.RobustValidation(dataset, eps, os.path.join(unused, "best"),
                                                         lambda: {}, None, attack=name, steps=steps)
            validation.set_model(model)
            validation.dataset = dataset.take(1)
            validation.measure()  # compiles the attack on one batch: compiling is not part of its cost
            validation.dataset = dataset
            start = time.perf_counter()
            result = validation.measure()
            row["attacks"][attack] = {"steps": validation.steps, "seconds": round(time.perf_counter() - start, 1),
                                      **{k: round(v, 4) for k, v in result.items()}}
    return row


def parse_attack(spec: str):
    """``"apgd-ce:20"`` -> ``("apgd-ce", 20)``; ``"pgd"`` -> ``("pgd", None)`` (its default iterations)."""
    name, _, steps = spec.partition(":")
    if name not in early_stopping.ATTACK_STEPS or (steps and not (steps.isdigit() and int(steps) > 0)):
        raise ValueError(f"{spec!r} is not an attack: give NAME or NAME:ITERATIONS, NAME one of "
                         f"{', '.join(early_stopping.ATTACK_STEPS)}")
    return name, int(steps) if steps else None


def table(rows, attacks) -> str:
    head = ["work dir", "n", "ε", "clean", "FGSM"]
    head += [f"{parse_attack(a)[0]} ({rows[0]['attacks'][a]['steps']} it.)" for a in attacks]
    head += [f"{attacks[-1]} − {attacks[0]}", "seconds (" + " / ".join(attacks) + ")"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        first = r["attacks"][attacks[0]]
        robust = [r["attacks"][a]["val_robust_accuracy"] for a in attacks]
        cells = [r["workdir"], str(r["n"]), f"{r['eps']:g}", _percent(first["val_clean_accuracy"], r["n"]),
                 _percent(first["val_fgsm_accuracy"], r["n"])] + [_percent(v, r["n"]) for v in robust]
        cells += [f"{100 * (robust[-1] - robust[0]):+.1f}", " / ".join(f"{r['attacks'][a]['seconds']:.0f}" for a in attacks)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _percent(accuracy: float, n: int) -> str:
    return report.percent_with_interval(accuracy, report.wilson_interval(round(accuracy * n), n))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdirs", required=True, help="comma-separated pcl-train work dirs (or their best_robust/)")
    parser.add_argument("--attacks", default="pgd,apgd-ce:20,apgd-ce",
                        help=f"NAME or NAME:ITERATIONS, NAME from {', '.join(early_stopping.ATTACK_STEPS)}; "
                             "the first is the baseline of the difference column")
    parser.add_argument("--examples", type=int, default=1000,
                        help="held-out images for a run trained without robust early stopping (its last N training images)")
    parser.add_argument("--out", default=RESULTS, help="the JSON written")
    args = parser.parse_args(argv)
    attacks = args.attacks.split(",")
    for attack in attacks:
        try:
            parse_attack(attack)
        except ValueError as e:
            parser.error(f"--attacks: {e}")
    if args.examples <= 0:
        parser.error(f"--examples={args.examples} must be a positive number of images")
    stash.refuse_unwritable(parser, files={"out": args.out})  # before half an hour of measuring, not after
    missing = [w for w in args.workdirs.split(",") if not os.path.isdir(w)]
    if missing:
        parser.error(f"no work dir {', '.join(missing)}; give pcl-train work dirs")
    # Every (run, attack) pair compiles its own functions, by design; TensorFlow's warning about
    # "excessive retracing" would say so after the fifth.
    tf.get_logger().setLevel("ERROR")
    try:
        rows = [measure(w, attacks, args.examples) for w in args.workdirs.split(",")]
    except workdirs.WorkdirError as e:
        parser.exit(2, f"{parser.prog}: {e}\n")
    print(table(rows, attacks))
    io_utils.write_json_atomic(args.out, {**common.environment(), "attacks": attacks, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

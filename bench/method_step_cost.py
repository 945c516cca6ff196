"""What one training step of each time-to-robustness method costs, in clean steps, measured side by side.

bench/time_to_robustness.py gives every method the same wall-clock budget, and this 2-core VM's
speed differs from day to day by up to 2x, so the steps a budget bought mix the method's cost with
the day's. This benchmark separates them: it builds each method's training step exactly as the
benchmark trains it (configs/fmnist_cnn6.py with the method's variants and the ``budget`` recipe;
adversarial from the first step, PCL's joint loss on), times them alternately on the same real
Fashion-MNIST batches held in memory, several rounds each in one run, and reports the medians'
ratios: each step's cost in clean softmax steps (plain CE, the same recipe), and the steps a
minute buys relative to ``--reference`` (TRADES unless told). Robust early stopping's validations
are not part of a step and not measured here.

    python bench/method_step_cost.py [--methods=trades,trades5] [--steps=10] [--rounds=3] [--out=...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import time_to_robustness as ttr  # noqa: E402  (first: it loads TensorFlow quietly, via experiments/stash.py)
import common  # noqa: E402  (bench/common.py)
import stash  # noqa: E402  (experiments/stash.py, on the path time_to_robustness set)
import tensorflow as tf  # noqa: E402

from pcl_tf import checkpointing, io_utils, training_setup  # noqa: E402
from pcl_tf.configs import fmnist_cnn6  # noqa: E402

CLEAN = "clean"  # the softmax CNN-6's plain CE step under the same recipe: the unit of cost
# Methods that only change what robust early stopping validates with take their twin's step.
STEP_METHODS = [name for name, method in ttr.METHODS.items() if not method.same_step_as]


def method_config(name: str, eps: float = 0.1):
    """The config bench/time_to_robustness.py trains ``name`` with (``clean``: the softmax
    baseline's plain CE step under the same recipe), adversarial from the first step."""
    if name == CLEAN:
        return fmnist_cnn6.get_config(f"softmax,{ttr.RECIPE}")
    config = fmnist_cnn6.get_config(f"{ttr.METHODS[name].variants},{ttr.RECIPE}")
    config.adv.start = "first_step"
    config.adv.eps_min = config.adv.eps_max = eps
    return config


def build(name: str, batch_size: int):
    """``name``'s compiled model, its PC terms on (the joint stage) where it has any."""
    config = method_config(name)
    config.train.batch_size = batch_size
    model = training_setup.build_model(config, ttr.STEPS_PER_EPOCH)
    training_setup.compile_model(model, config, ttr.STEPS_PER_EPOCH, train_seconds=checkpointing.RunState.create().seconds)
    model.pc_active.assign(1.0 if config.pcl.branches else 0.0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(STEP_METHODS),
                        help=f"comma-separated, from {', '.join(STEP_METHODS)} (a clean step is always timed)")
    parser.add_argument("--reference", default="trades", help="the method steps per minute are compared with")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed round (>= 1)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method (>= 1)")
    parser.add_argument("--batch_size", type=int, default=ttr.BATCH_SIZE)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "method_step_cost.json"))
    args = parser.parse_args(argv)
    names = [m for m in args.methods.split(",") if m]
    unknown = [m for m in names + [args.reference] if m not in STEP_METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(STEP_METHODS)}")
    if min(args.steps, args.rounds, args.batch_size) < 1:
        parser.error("--steps, --rounds and --batch_size must be at least 1")
    names = [CLEAN] + list(dict.fromkeys(names + [args.reference]))
    stash.refuse_unwritable(parser, files={"out": args.out})

    # Every model traces its own train function from the same Keras closure, which TensorFlow counts
    # as retracing one function and warns about on each model past the fifth; each traces once.
    tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
    dataset = common.timed_batches(args.steps, args.batch_size)
    models = {name: build(name, args.batch_size) for name in names}
    for model in models.values():  # trace and compile outside the timing
        model.fit(dataset.take(1), epochs=1, verbose=0, shuffle=False)
    seconds = {name: [] for name in names}
    for r in range(args.rounds):
        for name, model in models.items():
            seconds[name].append(common.fit_seconds(model, dataset) / args.steps)
            print(f"round {r + 1}/{args.rounds} {name:>12}: {seconds[name][-1]:6.3f} s/step", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    cost = {name: median[name] / median[CLEAN] for name in names}
    per_minute = {name: median[args.reference] / median[name] for name in names}
    result = {
        "benchmark": "method_step_cost", "model": "cnn6", "dataset": "fashion_mnist", "recipe": ttr.RECIPE,
        "batch_size": args.batch_size, "steps_per_round": args.steps, "rounds": args.rounds, "reference": args.reference,
        "seconds_per_step": {k: round(v, 4) for k, v in median.items()},
        "all_rounds": {k: [round(v, 4) for v in vs] for k, vs in seconds.items()},
        "cost_in_clean_steps": {k: round(v, 2) for k, v in cost.items()},
        f"steps_per_minute_over_{args.reference}": {k: round(v, 2) for k, v in per_minute.items()},
        **common.environment(),
    }
    io_utils.write_json_atomic(args.out, result)
    print(f"\n| method | s / step (median of {args.rounds}) | cost in clean steps | steps per minute over {args.reference} |")
    print("|---|---|---|---|")
    for name in names:
        print(f"| {name} | {median[name]:.3f} | {cost[name]:.2f} | {per_minute[name]:.2f} |")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

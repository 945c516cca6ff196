"""Attack throughput against the cost of the raw input gradients the attack needs.

For PGD-10 and C&W-L2 on CNN-6 (Fashion-MNIST shape, the trained quick model when a work dir
is given, else fresh weights) this times, side by side in one run:

  attack        the pcl_tf attack (CleverHans TF2 through pcl_tf.attacks.cleverhans_compat)
  raw_gradients the same number of plain input-gradient computations (a compiled
                tf.function of d CE / d x) on the same model and batch

and reports adversarial images/s for each and the ratio raw_time / attack_time (1.0 = the
attack costs no more than its gradients; target >= 0.9).

    python bench/attack_throughput.py [--workdir=runs/pcl] [--batch_size=250] [--cw_steps=100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from pcl_tf import data, io_utils  # noqa: E402
from pcl_tf.attacks import cleverhans_compat as ch  # noqa: E402



def timed(fn, rounds):
    fn()  # trace / warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--pgd_steps", type=int, default=10)
    parser.add_argument("--cw_steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "attack_throughput.json"))
    args = parser.parse_args(argv)

    twin = common.load_twin(args.workdir)
    x, y = next(iter(data.load("fashion_mnist", "test", batch_size=args.batch_size)))
    x, y = tf.constant(x), tf.constant(y)

    @tf.function
    def input_gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=twin(x)))
        return tape.gradient(loss, x)

    def raw(n):
        def run():
            for _ in range(n):
                g = input_gradient(x, y)
            g.numpy()
        return run

    cases = {
        "pgd": (lambda: ch.pgd(twin, x, y, eps=0.3, steps=args.pgd_steps, step_size=0.03).numpy(), args.pgd_steps),
        # One search round, fixed iterations (no early abort), so the work is known.
        "cw": (lambda: ch.cw_l2(twin, x, y, c=10.0, steps=args.cw_steps, binary_search_steps=1,
                                abort_early=False).numpy(), args.cw_steps),
    }
    results = {}
    for name, (attack, gradients) in cases.items():
        attack_s = timed(attack, args.rounds)
        raw_s = timed(raw(gradients), args.rounds)
        results[name] = {
            "gradients_per_image": gradients,
            "attack_images_per_second": round(args.batch_size / attack_s, 2),
            "raw_gradient_images_per_second": round(args.batch_size / raw_s, 2),
            "ratio_raw_time_over_attack_time": round(raw_s / attack_s, 3),
        }
        print(f"{name}: attack {args.batch_size / attack_s:8.2f} img/s | same {gradients} raw gradients "
              f"{args.batch_size / raw_s:8.2f} img/s | ratio {raw_s / attack_s:.3f}", flush=True)
    out = {
        "benchmark": "attack_throughput", "model": "cnn6", "workdir": args.workdir,
        "batch_size": args.batch_size, "rounds": args.rounds, "results": results, "target_ratio": ">= 0.9",
        **common.environment(),
    }
    io_utils.write_json_atomic(args.out, out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

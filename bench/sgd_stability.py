"""Does the paper's SGD (lr 0.1, momentum 0.9, batch 256) train CNN-6 from scratch, and what is the
smallest change that makes it?

Each variant starts from the same random CNN-6 (seed 0, Keras' default initialisers) and sees the
same real Fashion-MNIST batches; it trains plain cross-entropy (the paper's CE warm-up) for
``--steps`` steps or until the loss is not finite. Printed and written per variant: the step it
diverged at (or "–"), the loss every 10 steps, the largest global gradient norm and logit seen,
and the training accuracy of its last 20 steps.

    python bench/sgd_stability.py [--steps=235] [--variants=paper,warmup1,clip1,...]
"""

from __future__ import annotations

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from pcl_tf import catalogue, data, io_utils, models, schedule, training  # noqa: E402

# name -> (lr warm-up steps, global gradient-norm clip or None, momentum)
VARIANTS = {
    "paper": (0, None, 0.9),          # SGD lr 0.1, momentum 0.9, nothing else
    "warmup1": (235, None, 0.9),      # + linear lr warm-up over one epoch (235 steps)
    "clip1": (0, 1.0, 0.9),           # + global gradient-norm clipping at 1
    "clip5": (0, 5.0, 0.9),           # + global gradient-norm clipping at 5
    "warmup1_clip5": (235, 5.0, 0.9),
    "no_momentum": (0, None, 0.0),    # the paper states no momentum: plain SGD at lr 0.1
}


def run_variant(name, batches, steps):
    warmup_steps, clip, momentum = VARIANTS[name]
    keras.utils.set_random_seed(0)
    info = catalogue.info("fashion_mnist")
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=10, mean=info.mean, std=info.std)
    twin = models.logits_model(network)
    lr = schedule.learning_rate_schedule(0.1, warmup_steps=warmup_steps)
    optimizer = training.make_optimizer("sgd", lr, momentum=momentum, weight_decay=1e-4)
    optimizer.build(twin.trainable_variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = twin(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits))
        grads = tape.gradient(loss, twin.trainable_variables)
        norm = tf.linalg.global_norm(grads)
        if clip is not None:
            grads, _ = tf.clip_by_global_norm(grads, clip, use_norm=norm)
        optimizer.apply(grads, twin.trainable_variables)
        correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), tf.cast(y, tf.int32)), tf.float32))
        return loss, norm, tf.reduce_max(tf.abs(logits)), correct

    trace, diverged, max_norm, max_logit, accs = [], None, 0.0, 0.0, []
    for i, (x, y) in enumerate(batches.take(steps)):
        loss, norm, logit, acc = (float(v) for v in step(x, y))
        if not math.isfinite(loss):
            diverged = i + 1
            break
        max_norm, max_logit = max(max_norm, norm), max(max_logit, logit)
        accs = (accs + [acc])[-20:]
        if i % 10 == 0:
            trace.append((i + 1, round(loss, 4), round(norm, 2)))
    return {"variant": name, "warmup_steps": warmup_steps, "clip_global_norm": clip, "momentum": momentum,
            "diverged_at_step": diverged, "steps": steps, "max_grad_norm": round(max_norm, 2),
            "max_abs_logit": round(max_logit, 1), "last20_train_accuracy": round(sum(accs) / max(len(accs), 1), 4),
            "trace_step_loss_gradnorm": trace}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=235, help="steps per variant (235 = one epoch at batch 256)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "sgd_stability.json"))
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    # The same shuffled batches for every variant (seeded pipeline, cached in memory).
    batches = data.load("fashion_mnist", "train", batch_size=256, shuffle=True, seed=0, drop_remainder=True).take(args.steps).cache()
    results = []
    print("| variant | lr warm-up steps | clip | momentum | diverged at step | max grad norm | max |logit| | train acc. (last 20 steps) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        r = run_variant(name, batches, args.steps)
        results.append(r)
        print(f"| {name} | {r['warmup_steps']} | {r['clip_global_norm'] or '–'} | {r['momentum']} | "
              f"{r['diverged_at_step'] or '–'} | {r['max_grad_norm']} | {r['max_abs_logit']} | "
              f"{100 * r['last20_train_accuracy']:.1f} |", flush=True)
    io_utils.write_json_atomic(args.out, {"benchmark": "sgd_stability", **common.environment(), "results": results})
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

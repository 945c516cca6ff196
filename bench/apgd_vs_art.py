"""APGD throughput: pcl_tf's in-graph APGD against IBM ART's AutoProjectedGradientDescent.

``--loss=ce`` (default): APGD-CE. ``--loss=dlr-t``: APGD-T as AutoAttack runs it — the targeted
DLR loss against each of the 9 classes with the highest clean logits after the true one, one
targeted run per class (ART: ``AutoProjectedGradientDescent(targeted=True,
loss_type="difference_logits_ratio")`` once per target rank, kept per image when it succeeds;
pcl_tf: ``apgd_t(..., n_target_classes=9)``).

Same model (CNN-6, Fashion-MNIST shape: the trained model of --workdir, else fresh weights),
same real Fashion-MNIST test images, same settings (L∞, ε, initial step 2ε, --steps iterations,
one random start, cross-entropy), in one run. Reports adversarial images/s for each, the ratio,
and both robust accuracies (they should agree within sampling noise). For scale it also times
the floor: the same number of plain input gradients (steps + 1, a compiled loop) on our batch. Ours is timed after a
warm-up call (tracing); ART at batch size = its number of images (--art_batch_size to change),
on --art_images images (default: as many as ours) when it is too slow for all of them.

With fresh weights most images are misclassified, and both attacks skip those; so without
--workdir the labels are the model's own clean predictions, and every image is attacked.

    python bench/apgd_vs_art.py [--workdir=runs/pcl] [--images=100] [--art_images=100] [--steps=100]

Needs the test extra adversarial-robustness-toolbox.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from pcl_tf import data, io_utils  # noqa: E402
from pcl_tf.attacks import apgd  # noqa: E402



def raw_gradients_seconds(twin, x, y, count):
    """Seconds for ``count`` CE input gradients on the whole batch, compiled, after a warm-up."""

    @tf.function
    def gradients(x, y):
        for _ in tf.range(count):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=twin(x)))
            x = tf.clip_by_value(x + 1e-3 * tf.sign(tape.gradient(loss, x)), 0.0, 1.0)
        return x

    x, y = tf.constant(x), tf.constant(y)
    gradients(x, y)
    start = time.perf_counter()
    gradients(x, y).numpy()
    return time.perf_counter() - start


def robust_accuracy(twin, x_adv, y):
    return float(np.mean(np.argmax(twin.predict(x_adv, batch_size=250, verbose=0), axis=1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--images", type=int, default=100, help="images attacked by pcl_tf's APGD")
    parser.add_argument("--art_images", type=int, default=None, help="images attacked by ART (default: --images)")
    parser.add_argument("--art_batch_size", type=int, default=None, help="ART batch size (default: all its images)")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", choices=("ce", "dlr-t"), default="ce")
    parser.add_argument("--targets", type=int, default=9, help="--loss=dlr-t: target classes per image")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "apgd_vs_art.json"))
    args = parser.parse_args(argv)
    art_images = args.images if args.art_images is None else min(args.art_images, args.images)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "PyTorch not found" from art.estimators.certification
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.estimators.classification import TensorFlowV2Classifier
        import art

    twin = common.load_twin(args.workdir)
    x, y = next(iter(data.load("fashion_mnist", "test", batch_size=args.images)))
    x = np.asarray(x, np.float32)
    true = np.asarray(y, np.int32)
    clean = np.argmax(twin.predict(x, batch_size=250, verbose=0), axis=1).astype(np.int32)
    labels = true if args.workdir else clean  # fresh weights: attack every image (see the docstring)
    attacked = int(np.sum(clean == labels))

    targets = args.targets if args.loss == "dlr-t" else 1

    def ours_attack(seed):
        if args.loss == "ce":
            return apgd.apgd_ce(twin, x, labels, args.eps, steps=args.steps, seed=seed)
        return apgd.apgd_t(twin, x, labels, args.eps, steps=args.steps, n_target_classes=targets, seed=seed)

    ours_attack(args.seed)  # trace / warm up
    start = time.perf_counter()
    ours = ours_attack(args.seed + 1).numpy()
    ours_s = time.perf_counter() - start
    raw_s = raw_gradients_seconds(twin, x, labels, targets * (args.steps + 1))

    classifier = TensorFlowV2Classifier(
        twin, nb_classes=10, input_shape=tuple(x.shape[1:]), clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    attack = AutoProjectedGradientDescent(
        classifier, norm=np.inf, eps=args.eps, eps_step=2 * args.eps, max_iter=args.steps,
        targeted=args.loss == "dlr-t", nb_random_init=1, batch_size=args.art_batch_size or art_images,
        loss_type="cross_entropy" if args.loss == "ce" else "difference_logits_ratio", verbose=False,
    )
    np.random.seed(args.seed)  # ART's random start comes from NumPy's global generator
    x_art, y_art = x[:art_images], labels[:art_images]
    start = time.perf_counter()
    if args.loss == "ce":
        theirs = attack.generate(x_art, y_art).astype(np.float32)
    else:  # AutoAttack's APGD-T: one targeted run per target rank, on the images still robust
        logits = twin.predict(x_art, batch_size=250, verbose=0)
        fooled = np.argmax(logits, axis=1) != y_art  # misclassified images are not attacked
        logits[np.arange(len(y_art)), y_art] = -np.inf
        ranked = np.argsort(-logits, axis=1)
        theirs = x_art.copy()
        for rank in range(targets):
            rows = np.flatnonzero(~fooled)
            if not len(rows):
                break
            adv = attack.generate(x_art[rows], np.eye(10, dtype=np.float32)[ranked[rows, rank]]).astype(np.float32)
            now = np.argmax(twin.predict(adv, batch_size=250, verbose=0), axis=1) != y_art[rows]
            theirs[rows[now]] = adv[now]
            fooled[rows[now]] = True
    art_s = time.perf_counter() - start

    ours_ips, art_ips = len(x) / ours_s, art_images / art_s
    acc_ours = robust_accuracy(twin, ours, labels)
    acc_ours_same = robust_accuracy(twin, ours[:art_images], labels[:art_images])
    acc_art = robust_accuracy(twin, theirs, labels[:art_images])
    note = "" if art_images == len(x) else f" (ART on the first {art_images} of the {len(x)} images: it is slow)"
    name = "APGD-CE" if args.loss == "ce" else f"APGD-T ({targets} targets)"
    print(f"{name}, {args.steps} iterations, eps={args.eps}, CNN-6 on Fashion-MNIST test images{note}", flush=True)
    print(f"pcl_tf : {ours_ips:8.2f} img/s ({len(x)} images in {ours_s:.2f} s), robust acc {acc_ours:.3f} "
          f"({acc_ours_same:.3f} on ART's images)")
    print(f"ART    : {art_ips:8.2f} img/s ({art_images} images in {art_s:.2f} s), robust acc {acc_art:.3f}")
    print(f"floor  : {len(x) / raw_s:8.2f} img/s for the same {targets * (args.steps + 1)} raw input gradients "
          f"(pcl_tf APGD costs {ours_s / raw_s:.2f}x its gradients)")
    print(f"ratio  : pcl_tf is {ours_ips / art_ips:.2f}x ART's throughput")

    out = {
        "benchmark": "apgd_vs_art", "model": "cnn6", "workdir": args.workdir,
        "labels": "true" if args.workdir else "clean predictions (fresh weights)",
        "attack": {"loss": args.loss, "norm": "linf", "eps": args.eps, "initial_step": 2 * args.eps, "steps": args.steps,
                   "restarts": 1, "target_classes": targets if args.loss == "dlr-t" else None},
        "attacked_images": attacked,
        "pcl_tf": {"images": len(x), "seconds": round(ours_s, 3), "images_per_second": round(ours_ips, 2),
                   "robust_accuracy": acc_ours, "robust_accuracy_on_art_images": acc_ours_same},
        "art": {"version": art.__version__, "images": art_images, "batch_size": args.art_batch_size or art_images,
                "seconds": round(art_s, 3), "images_per_second": round(art_ips, 2), "robust_accuracy": acc_art},
        "raw_gradients": {"count": targets * (args.steps + 1), "seconds": round(raw_s, 3),
                          "images_per_second": round(len(x) / raw_s, 2)},
        "ratio_pcl_tf_over_art": round(ours_ips / art_ips, 3),
        **common.environment(),
    }
    io_utils.write_json_atomic(args.out, out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""Training throughput: plain CE ``model.fit`` vs PCL ``train_step`` on the same backbone.

Both train CNN-6 (paper Table 1) on the same real Fashion-MNIST batches, held in memory so the
input pipeline is not what is measured; the PCL model has its three PC branches active (the
joint stage of Algorithm 1). The two are timed alternately, several rounds each, in one run
(this machine is noisy), and the ratio of the medians is reported.

    python bench/train_throughput.py [--steps=40] [--rounds=3] [--out=bench/results/train_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from pcl_tf import data, io_utils, models, training  # noqa: E402


def batches(steps: int, batch_size: int):
    ds = data.load("fashion_mnist", "train", batch_size=batch_size, drop_remainder=True)
    return ds.take(steps).cache()


def plain_ce(info):
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=info.num_classes,
                                   mean=info.mean, std=info.std)
    model = models.logits_model(network)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    return model


def pcl(info):
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=info.num_classes,
                                   branches="gap,fc512,fc64", mean=info.mean, std=info.std)
    model = training.PCLModel(network, info.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), centroid_optimizer=keras.optimizers.SGD(0.5))
    model.pc_active.assign(1.0)
    return model


def images_per_second(model, dataset, images: int) -> float:
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0)
    return images / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "train_throughput.json"))
    args = parser.parse_args(argv)
    info = data.info("fashion_mnist")
    dataset = batches(args.steps, args.batch_size)
    images = args.steps * args.batch_size
    models_ = {"plain_ce_fit": plain_ce(info), "pcl_train_step": pcl(info)}
    for model in models_.values():  # trace, compile and warm the cache outside the timing
        model.fit(dataset.take(2), epochs=1, verbose=0)
    rates = {name: [] for name in models_}
    for r in range(args.rounds):
        for name, model in models_.items():
            rates[name].append(images_per_second(model, dataset, images))
            print(f"round {r + 1}/{args.rounds} {name:>15}: {rates[name][-1]:7.1f} img/s", flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["pcl_train_step"] / medians["plain_ce_fit"]
    result = {
        "benchmark": "train_throughput",
        "model": "cnn6", "dataset": "fashion_mnist", "batch_size": args.batch_size,
        "steps_per_round": args.steps, "rounds": args.rounds,
        "images_per_second": {k: round(v, 1) for k, v in medians.items()},
        "all_rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "ratio_pcl_over_plain": round(ratio, 3),
        "target_ratio": 0.9,
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
    io_utils.write_json_atomic(args.out, result)
    print(f"\n| path | img/s |\n|---|---|\n| plain CE fit | {medians['plain_ce_fit']:.1f} |\n"
          f"| PCL train_step (3 branches) | {medians['pcl_train_step']:.1f} |\n\n"
          f"ratio PCL / plain CE: {ratio:.3f} (target >= 0.90); written to {args.out}")


if __name__ == "__main__":
    main()

"""Training steps/s of CNN-6 + PCL on one device vs MirroredStrategy over two logical CPU devices.

Both run the path pcl-train runs: one device through Keras' ``fit``, two replicas through
:mod:`pcl_tf.custom_loop` (the loop used whenever there is more than one replica), on the same
real Fashion-MNIST global batches held in memory, timed alternately for several rounds in one
process. On a 2-core CPU no speed-up is expected — both logical devices share the same cores —
so this shows what the replication costs, not a gain; on GPUs each replica gets its own device.

    python bench/distribute_throughput.py [--steps=20] [--rounds=3] [--out=bench/results/distribute_throughput.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pcl_tf import distribute  # noqa: E402

distribute.split_cpu(2)  # before TensorFlow initialises its devices

import keras  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from pcl_tf import catalogue, custom_loop, io_utils, models, training  # noqa: E402


def pcl_model(info):
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=info.num_classes,
                                   branches="gap,fc512,fc64", mean=info.mean, std=info.std)
    model = training.PCLModel(network, info.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), centroid_optimizer=keras.optimizers.SGD(0.5))
    model.pc_active.assign(1.0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256, help="the global batch")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "distribute_throughput.json"))
    args = parser.parse_args(argv)
    info = catalogue.info("fashion_mnist")
    batches = common.timed_batches(args.steps, args.batch_size)
    strategies = {"1 device (fit)": distribute.make_strategy("default"),
                  "2 logical devices (mirrored)": distribute.make_strategy("mirrored")}
    runs = {}
    for name, strategy in strategies.items():
        with strategy.scope():
            model = pcl_model(info)
        if strategy.num_replicas_in_sync > 1:
            def run(steps, model=model, strategy=strategy):
                custom_loop.fit(model, strategy, batches.repeat(), epochs=1, initial_epoch=0, steps_per_epoch=steps)
        else:
            def run(steps, model=model):
                model.fit(batches.repeat(), epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        run(2)  # trace and warm up outside the timing
        runs[name] = run
    rates = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(args.steps)
            rates[name].append(args.steps / (time.perf_counter() - start))
            print(f"round {r + 1}/{args.rounds} {name:>30}: {rates[name][-1]:.2f} steps/s", flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    one, two = medians.values()
    result = {
        "benchmark": "distribute_throughput", "model": "cnn6 + PCL (gap, fc512, fc64)", "dataset": "fashion_mnist",
        "global_batch_size": args.batch_size, "steps_per_round": args.steps, "rounds": args.rounds,
        "steps_per_second": {k: round(v, 3) for k, v in medians.items()},
        "all_rounds": {k: [round(v, 3) for v in vs] for k, vs in rates.items()},
        "ratio_two_over_one": round(two / one, 3),
        **common.environment(),
    }
    io_utils.write_json_atomic(args.out, result)
    print("\n| devices | steps/s (median) | images/s |\n|---|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.2f} | {value * args.batch_size:.0f} |")
    print(f"\n2 devices / 1 device: {two / one:.3f}\nwritten to {args.out}")


if __name__ == "__main__":
    main()

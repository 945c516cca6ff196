"""Training throughput of CNN-6 on Fashion-MNIST: plain CE ``fit``, PCL, PCL + adversarial training.

Paths, all on the same real Fashion-MNIST batches held in memory (the input pipeline is not what
is measured), the PCL ones with their three PC branches active (the joint stage of Algorithm 1):

  plain_ce_fit      Keras' own fit on the logits-only model with sparse CE
  pcl_train_step    PCLModel.train_step (CE + 3 PC terms, centroid optimizer)
  pcl_advfgsm       + FGSM copies of every batch (batch doubled)
  pcl_advpgd10      + PGD-10 copies of every batch (batch doubled)

They are timed alternately, several rounds each, in one run (this machine is noisy); the
ratios of the medians are reported: PCL / plain CE (target >= 0.90) and the cost of an
adversarial-training step over a clean PCL step, in clean images/s (PGD-10 target <= 8x).

    python bench/train_throughput.py [--steps=40] [--rounds=3] [--paths=...] [--out=bench/results/train_throughput.json]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from pcl_tf import adversarial, catalogue, io_utils, models, training  # noqa: E402


def plain_ce(info):
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=info.num_classes,
                                   mean=info.mean, std=info.std)
    model = models.logits_model(network)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    return model


def pcl(info, adversary=None):
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=info.num_classes,
                                   branches="gap,fc512,fc64", mean=info.mean, std=info.std)
    model = training.PCLModel(network, info.num_classes, adversary=adversary)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), centroid_optimizer=keras.optimizers.SGD(0.5))
    model.pc_active.assign(1.0)
    return model


PATHS = {
    "plain_ce_fit": plain_ce,
    "pcl_train_step": pcl,
    "pcl_advfgsm": lambda info: pcl(info, adversarial.AdversarialAugmentation("fgsm", 0.1, 0.5)),
    "pcl_advpgd10": lambda info: pcl(info, adversarial.AdversarialAugmentation("pgd", 0.1, 0.5, steps=10)),
}


def images_per_second(model, dataset, images: int) -> float:
    return images / common.fit_seconds(model, dataset)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "train_throughput.json"))
    args = parser.parse_args(argv)
    info = catalogue.info("fashion_mnist")
    dataset = common.timed_batches(args.steps, args.batch_size)
    images = args.steps * args.batch_size
    models_ = {name: PATHS[name](info) for name in args.paths.split(",")}
    for model in models_.values():  # trace and compile outside the timing
        model.fit(dataset.take(2), epochs=1, verbose=0, shuffle=False)
    rates = {name: [] for name in models_}
    for r in range(args.rounds):
        for name, model in models_.items():
            rates[name].append(images_per_second(model, dataset, images))
            print(f"round {r + 1}/{args.rounds} {name:>15}: {rates[name][-1]:7.1f} img/s", flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratios = {}
    if {"pcl_train_step", "plain_ce_fit"} <= set(medians):
        ratios["pcl_over_plain_ce"] = medians["pcl_train_step"] / medians["plain_ce_fit"]
    for name in ("pcl_advfgsm", "pcl_advpgd10"):
        if name in medians and "pcl_train_step" in medians:
            ratios[f"{name}_cost_over_clean_pcl"] = medians["pcl_train_step"] / medians[name]
    result = {
        "benchmark": "train_throughput",
        "model": "cnn6", "dataset": "fashion_mnist", "batch_size": args.batch_size,
        "steps_per_round": args.steps, "rounds": args.rounds,
        "images_per_second": {k: round(v, 1) for k, v in medians.items()},
        "all_rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "targets": {"pcl_over_plain_ce": ">= 0.90", "pcl_advpgd10_cost_over_clean_pcl": "<= 8"},
        **common.environment(),
    }
    io_utils.write_json_atomic(args.out, result)
    print("\n| path | clean img/s (median) |\n|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value:.1f} |")
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

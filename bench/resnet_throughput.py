"""ResNet training throughput: pcl_tf's train step against itself with Keras' own BatchNormalization,
and against the same architecture in PyTorch, on this CPU.

Paths, per model (``--models``: resnet20, resnet110), each a full ``PCLModel.train_step`` built
from the model's CIFAR-10 config (SGD, weight decay, the config's branches) on random 32x32x3
batches held in memory (the input pipeline is not measured):

  ce_keras_bn   softmax (cross-entropy only), Keras 3's BatchNormalization (separate moments and
                normalise ops: pcl_tf before the fused layer)
  ce            softmax, pcl_tf's FusedBatchNormalization (TensorFlow's fused kernel)
  pcl_keras_bn  CE + the PC terms on the config's branches, Keras' BN
  pcl           CE + PC, fused BN
  pcl_pgd10     PCL + PGD-10 adversarial copies of every batch (slow; not in the default paths)
  ce_xla        ce with the train step compiled by XLA (``config.jit_compile = True``)
  pcl_xla       pcl with XLA
  torch_ce      the same architecture in PyTorch (bench/torch_resnet.py; SGD, cross-entropy),
                where PyTorch is installed (``pip install torch``; never required)

The paths are timed alternately, ``--rounds`` rounds of ``--steps`` steps each, in one run (this
machine is noisy); medians and the ratios of medians are printed and written as JSON.
``--profile`` also traces a few steps of ``ce_keras_bn`` and ``ce`` with TensorFlow's profiler and
prints where the time goes, by op type.

    python bench/resnet_throughput.py                                   # resnet20 and resnet110
    python bench/resnet_throughput.py --models=resnet110 --rounds=2 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from typing import Callable, Dict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402  (bench/common.py)
import profile_ops  # noqa: E402  (bench/profile_ops.py)
import pcl_tf  # noqa: E402
from pcl_tf import io_utils, training_setup  # noqa: E402
from pcl_tf.models import resnet  # noqa: E402

CONFIGS = {"resnet20": "cifar10_resnet20", "resnet110": "cifar10_resnet110"}
PATHS = ("ce_keras_bn", "ce", "pcl_keras_bn", "pcl", "pcl_pgd10", "ce_xla", "pcl_xla", "torch_ce")
DEFAULT_PATHS = ("ce_keras_bn", "ce", "pcl_keras_bn", "pcl", "torch_ce")


@contextlib.contextmanager
def _batch_norm(layer_class):
    """Builds the ResNet with ``layer_class`` as its BN layer (Keras' own or the fused one)."""
    previous = resnet.BatchNormalization
    resnet.BatchNormalization = layer_class
    try:
        yield
    finally:
        resnet.BatchNormalization = previous


def keras_step(model_name: str, path: str, batch_size: int) -> Callable[[], None]:
    """One compiled PCLModel train step on a fixed random batch, as a callable."""
    base = path.replace("_keras_bn", "").replace("_xla", "")
    variants = {"ce": "softmax", "pcl": "", "pcl_pgd10": "advpgd"}[base]
    config = pcl_tf.get_config(CONFIGS[model_name], variants)
    config.train.batch_size = batch_size
    config.jit_compile = path.endswith("_xla")
    layer = keras.layers.BatchNormalization if path.endswith("_keras_bn") else resnet.FusedBatchNormalization
    with _batch_norm(layer):
        model = training_setup.build_model(config, steps_per_epoch=100)
    training_setup.compile_model(model, config, steps_per_epoch=100)
    model.pc_active.assign(1.0)  # the joint stage: PC terms on (none for softmax), adversary on
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(batch_size, 32, 32, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, batch_size).astype(np.int64))
    model.train_on_batch(x, y)  # builds and traces outside the timing
    return lambda: model.train_on_batch(x, y)


def torch_step(model_name: str, batch_size: int, keras_parameters: int):
    """The same architecture's SGD step in PyTorch, or None without PyTorch."""
    try:
        import torch
        import torch_resnet
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    net, step = torch_resnet.sgd_step(model_name, batch_size)
    if torch_resnet.parameter_count(net) != keras_parameters:
        raise SystemExit(f"the PyTorch {model_name} has {torch_resnet.parameter_count(net)} parameters, the Keras one "
                         f"{keras_parameters}: not the same architecture")
    return step


def trainable_parameters(model_name: str) -> int:
    """Trainable parameters of the logits-only network (no PC branches), as PyTorch counts them."""
    config = pcl_tf.get_config(CONFIGS[model_name], "softmax")
    network = training_setup.build_model(config).network
    return int(sum(np.prod(w.shape) for w in network.trainable_weights))


def images_per_second(step: Callable[[], None], steps: int, batch_size: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet110")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS), help="comma-separated subset of " + ",".join(PATHS))
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also trace ce_keras_bn and ce: time by op type")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "resnet_throughput.json"))
    args = parser.parse_args(argv)
    paths = args.paths.split(",")
    unknown_models = sorted(set(args.models.split(",")) - set(CONFIGS))
    if unknown_models:
        parser.error(f"unknown model(s) {', '.join(unknown_models)}; choose from {', '.join(CONFIGS)}")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; choose from {', '.join(PATHS)}")
    results: Dict[str, Dict] = {}
    for model_name in args.models.split(","):
        steps = {}
        for path in paths:
            if path == "torch_ce":
                step = torch_step(model_name, args.batch_size, trainable_parameters(model_name))
                if step is None:
                    print("PyTorch is not installed: no torch_ce path", flush=True)
                    continue
                steps[path] = step
            else:
                steps[path] = keras_step(model_name, path, args.batch_size)
        rates = {path: [] for path in steps}
        for r in range(args.rounds):
            for path, step in steps.items():
                rates[path].append(images_per_second(step, args.steps, args.batch_size))
                print(f"{model_name} round {r + 1}/{args.rounds} {path:>13}: {rates[path][-1]:7.1f} img/s", flush=True)
        medians = {path: statistics.median(values) for path, values in rates.items()}
        ratios = {f"{a}_over_{b}": medians[a] / medians[b]
                  for a, b in (("ce", "ce_keras_bn"), ("pcl", "pcl_keras_bn"), ("ce", "torch_ce"), ("pcl", "torch_ce"),
                               ("ce_xla", "ce"), ("pcl_xla", "pcl"),
                               ("ce_keras_bn", "torch_ce"), ("pcl_keras_bn", "torch_ce"))
                  if a in medians and b in medians}
        results[model_name] = {"images_per_second": {k: round(v, 1) for k, v in medians.items()},
                               "all_rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
                               "ratios": {k: round(v, 3) for k, v in ratios.items()}}
        if args.profile:
            results[model_name]["profile"] = {
                path: profile_ops.top_ops(steps[path], steps=2) for path in ("ce_keras_bn", "ce") if path in steps}
        del steps
    result = {"benchmark": "resnet_throughput", "batch_size": args.batch_size, "steps_per_round": args.steps,
              "rounds": args.rounds, "models": results, "command": " ".join(sys.argv),
              "target": "pcl_over_torch_ce >= 1.0 and ce_over_torch_ce >= 1.0 on resnet110", **common.environment()}
    io_utils.write_json_atomic(args.out, result)
    for model_name, r in results.items():
        print(f"\n{model_name}, batch {args.batch_size}: images/s, median of {args.rounds} rounds of {args.steps} steps"
              "\n\n| path | img/s | rounds |\n|---|---|---|")
        for path, value in r["images_per_second"].items():
            print(f"| {path} | {value:.1f} | {', '.join(f'{v:.1f}' for v in r['all_rounds'][path])} |")
        print()
        for name, value in r["ratios"].items():
            print(f"{name}: {value:.3f}")
        for path, ops in r.get("profile", {}).items():
            print(f"\n{model_name} {path}: time by op type (TensorFlow profiler, 2 steps)\n\n| op type | ms | share |\n|---|---|---|")
            for op in ops:
                print(f"| {op['op']} | {op['ms']:.1f} | {100 * op['share']:.1f} % |")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()

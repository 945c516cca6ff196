"""The CIFAR ResNets of pcl_tf.models.resnet written in PyTorch, for side-by-side speed comparisons.

The same architecture as the Keras one, layer for layer (same parameter count, checked by
``bench/resnet_throughput.py``): Conv(16, 3x3)+BN+ReLU stem; three stages of widths 16/32/64 with
stride 2 in the first 3x3 conv entering stages 2 and 3; post-activation residual blocks (basic:
3x3, 3x3; bottleneck: 1x1, 3x3, 1x1 x4), projection shortcut (1x1 conv + BN) where the shape
changes; GAP -> FC(fc_units)+ReLU -> FC(classes). Convs without bias, BN momentum 0.1 (PyTorch's
convention for Keras' 0.9) and epsilon 1e-5. PyTorch is optional: only this benchmark imports it.
"""

from __future__ import annotations

import torch
from torch import nn

BASIC = ((1, 3), (1, 3))
BOTTLENECK = ((1, 1), (1, 3), (4, 1))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))


class Block(nn.Module):
    def __init__(self, cin: int, width: int, layout, stride: int):
        super().__init__()
        stride_unit = next(i for i, (_, kernel) in enumerate(layout) if kernel == 3)
        units, c = [], cin
        for i, (multiplier, kernel) in enumerate(layout):
            units.append(_conv_bn(c, multiplier * width, kernel, stride if i == stride_unit else 1))
            if i < len(layout) - 1:
                units.append(nn.ReLU(inplace=True))
            c = multiplier * width
        self.body = nn.Sequential(*units)
        self.shortcut = _conv_bn(cin, c, 1, stride) if stride != 1 or cin != c else nn.Identity()
        self.out_channels = c

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, layout, blocks_per_stage: int, fc_units: int, num_classes: int = 10):
        super().__init__()
        layers, c = [_conv_bn(3, 16, 3, 1), nn.ReLU(inplace=True)], 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                unit = Block(c, width, layout, 2 if stage > 0 and block == 0 else 1)
                layers.append(unit)
                c = unit.out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c, fc_units), nn.ReLU(inplace=True),
                                  nn.Linear(fc_units, num_classes))

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


NETWORKS = {
    "resnet20": lambda: ResNet(BASIC, 3, 256),
    "resnet110": lambda: ResNet(BOTTLENECK, 12, 1024),
}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())



def sgd_step(name: str, batch_size: int):
    """(network, step): one SGD step (lr 0.1, momentum 0.9, weight decay 1e-4, cross-entropy) of
    ``name`` on a fixed random batch, already run once so the timing excludes the first call."""
    net = NETWORKS[name]()
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (batch_size,), generator=generator)

    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    step()
    return net, step


def main(argv=None):
    """Times the PyTorch step alone, in its own process (no TensorFlow loaded): the check that the
    interleaved measurement of ``resnet_throughput.py`` does not handicap PyTorch."""
    import argparse
    import os
    import statistics
    import time

    parser = argparse.ArgumentParser(description="PyTorch ResNet SGD step alone, images/s")
    parser.add_argument("--models", default="resnet110,resnet20")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    torch.set_num_threads(os.cpu_count() or 1)
    for name in args.models.split(","):
        _, step = sgd_step(name, args.batch_size)
        rates = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
        print(f"{name}: {', '.join(f'{r:.1f}' for r in rates)} img/s (median {statistics.median(rates):.1f})")


if __name__ == "__main__":
    main()

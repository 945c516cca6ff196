"""Model families and the PCL branch builder: taps, output shapes, parameter counts, errors,
weight sharing with the logits-only twin, and a finite forward pass.

Every family is built once per module (ResNet-110 has 375 Keras layers) and run on batches of 2.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Sequence, Tuple

import keras
import numpy as np
import pytest

from pcl_tf import models
from pcl_tf.models import cnn6, resnet, vgg

BATCH = 2
NUM_CLASSES = 10
MNIST = dict(mean=[0.1307], std=[0.3081])
CIFAR = dict(mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    input_shape: Tuple[int, int, int]
    branches: Sequence[str]
    taps: Dict[str, tuple]  # tap name -> shape of the tap, without the batch axis
    features: Dict[str, int]  # "feat_<tap>" -> feature width
    params: int  # model.count_params() of build_network(...) with these branches
    normalization: Dict[str, list]

    @property
    def id(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{self.name}-{shape}-{'+'.join(self.branches) or 'none'}"


# Independent parameter formulas.  count_params() counts every weight, trainable or not, so a BN
# layer counts 4 per channel (gamma, beta, moving mean, moving variance).  The Normalization layer
# counts 0: given a fixed mean and variance, Keras 3 stores them as constants, not weights.
def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def conv_bn(cin: int, cout: int, k: int) -> int:
    return conv(cin, cout, k, bias=False) + 4 * cout


def dense(cin: int, cout: int) -> int:
    return cin * cout + cout


def cnn6_params(channels: int, classes: int) -> int:
    total, cin = 0, channels
    for width in (32, 64, 128):
        total += conv(cin, width, 5) + conv(width, width, 5) + 2 * width  # 2 per-channel PReLUs
        cin = width
    # FC layers: PReLU on a 2-D tensor has one slope per unit.
    return total + dense(128, 512) + 512 + dense(512, 64) + 64 + dense(64, classes)


def resnet_params(
    channels: int, classes: int, blocks: int, bottleneck: bool, fc: int, branch: Tuple[int, int]
) -> int:
    """Stem, three stages of widths 16/32/64, GAP->FC(fc)->FC(classes), and one Dense branch of
    ``branch = (input width, units)``."""
    total, cin = conv_bn(channels, 16, 3), 16
    for width in (16, 32, 64):
        cout = 4 * width if bottleneck else width
        for block in range(blocks):
            if bottleneck:
                total += conv_bn(cin, width, 1) + conv_bn(width, width, 3) + conv_bn(width, cout, 1)
            else:
                total += conv_bn(cin, width, 3) + conv_bn(width, width, 3)
            if cin != cout:  # projection shortcut; every stride-2 block also changes the width
                total += conv_bn(cin, cout, 1)
            cin = cout
    return total + dense(cin, fc) + dense(fc, classes) + dense(*branch)


def vgg19_params(channels: int, classes: int) -> int:
    widths = [64, 64, 128, 128] + [256] * 4 + [512] * 8
    total, cin = 0, channels
    for width in widths:
        total += conv_bn(cin, width, 3)
        cin = width
    return total + dense(512, 512) + dense(512, classes)


# By hand: cnn6, 1 channel, 10 classes, no branches (branches of GAP or identity add nothing):
#   convs 832 + 25,632 + 51,264 + 102,464 + 204,928 + 409,728 = 794,848; PReLU 2*(32+64+128) = 448;
#   FC 66,048 + 512 + 32,832 + 64 + 650 = 100,106; total 895,402.
# By hand: resnet20, 3 channels, 10 classes: stem 496; stage1 6*2,368 = 14,208; stage2
#   4,736 + 9,344 + 640 (projection) + 4*9,344 = 52,096; stage3 18,688 + 37,120 + 2,304 +
#   4*37,120 = 206,592; FC(256) 16,640; logits 2,570; branch stage2 -> FC(256) 8,448; total 301,050.
CASES = (
    Case(
        "cnn6",
        (28, 28, 1),
        ["gap", "fc512", "fc64"],
        {"gap": (128,), "fc512": (512,), "fc64": (64,)},
        {"feat_gap": 128, "feat_fc512": 512, "feat_fc64": 64},
        895_402,
        MNIST,
    ),
    Case(
        "resnet110",
        (32, 32, 3),
        ["layer3:512", "layer4", "fc1024"],
        {"layer3": (16, 16, 128), "layer4": (8, 8, 256), "fc1024": (1024,)},
        {"feat_layer3": 512, "feat_layer4": 256, "feat_fc1024": 1024},
        1_501_690,
        CIFAR,
    ),
    Case(
        "resnet20",
        (32, 32, 3),
        ["stage2:256", "stage3", "fc256"],
        {"stage2": (16, 16, 32), "stage3": (8, 8, 64), "fc256": (256,)},
        {"feat_stage2": 256, "feat_stage3": 64, "feat_fc256": 256},
        301_050,
        CIFAR,
    ),
    Case("vgg19", (28, 28, 1), [], {"block5": (1, 1, 512), "fc512": (512,)}, {}, 20_307_530, MNIST),
    Case(
        "vgg19",
        (32, 32, 3),
        ["fc512"],
        {"block5": (1, 1, 512), "fc512": (512,)},
        {"feat_fc512": 512},
        20_308_682,
        CIFAR,
    ),
)
IDS = [case.id for case in CASES]
BRANCHED = [case for case in CASES if case.branches]

FORMULAS = {
    "cnn6-28x28x1-gap+fc512+fc64": cnn6_params(1, NUM_CLASSES),
    "resnet110-32x32x3-layer3:512+layer4+fc1024": resnet_params(
        3, NUM_CLASSES, blocks=12, bottleneck=True, fc=1024, branch=(128, 512)
    ),
    "resnet20-32x32x3-stage2:256+stage3+fc256": resnet_params(
        3, NUM_CLASSES, blocks=3, bottleneck=False, fc=256, branch=(32, 256)
    ),
    "vgg19-28x28x1-none": vgg19_params(1, NUM_CLASSES),
    "vgg19-32x32x3-fc512": vgg19_params(3, NUM_CLASSES),
}

BACKBONES = {
    "cnn6": cnn6.cnn6,
    "resnet110": resnet.resnet110,
    "resnet20": resnet.resnet20,
    "vgg19": vgg.vgg19,
}


def build(case: Case, **kwargs):
    kwargs.setdefault("num_classes", NUM_CLASSES)
    kwargs.setdefault("branches", case.branches)
    return models.build_network(
        case.name, input_shape=case.input_shape, **case.normalization, **kwargs
    )


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def built(request):
    """(case, network built with the family's branch config), once per module."""
    return request.param, build(request.param)


def zeros(case: Case) -> np.ndarray:
    return np.zeros((BATCH,) + case.input_shape, np.float32)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tap_names(case):
    assert models.tap_names(case.name, case.input_shape, NUM_CLASSES) == tuple(case.taps)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tap_shapes(case):
    _, taps = BACKBONES[case.name](keras.Input(case.input_shape), NUM_CLASSES)
    assert {name: tuple(t.shape[1:]) for name, t in taps.items()} == case.taps


def test_output_keys_and_shapes(built):
    case, network = built
    expected = {"logits": NUM_CLASSES, **case.features}
    assert set(network.output) == set(expected)
    outputs = network(zeros(case), training=False)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        k: (BATCH, width) for k, width in expected.items()
    }
    for key, value in outputs.items():
        assert np.all(np.isfinite(value)), key


def test_parameter_count(built):
    case, network = built
    assert network.count_params() == case.params
    assert FORMULAS[case.id] == case.params
    assert network.get_layer("normalize").count_params() == 0


@pytest.mark.parametrize("case", BRANCHED, ids=[case.id for case in BRANCHED])
def test_branch_ce_adds_aux_logits(case):
    classes = 7  # not NUM_CLASSES, so that a head of the wrong width would show
    network = build(case, num_classes=classes, branch_ce=True)
    outputs = network(zeros(case), training=False)
    aux = {models.AUX_LOGITS_PREFIX + spec.tap for spec in models.parse_branches(case.branches)}
    assert set(outputs) == {"logits", *case.features} | aux
    for key in aux:
        assert tuple(outputs[key].shape) == (BATCH, classes)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_unknown_tap_names_available_taps(case):
    with pytest.raises(ValueError, match="no tap 'nowhere'") as error:
        build(case, branches=["nowhere:16"])
    for tap in case.taps:
        assert tap in str(error.value)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'resnet999'.*resnet110"):
        models.build_network("resnet999", input_shape=(32, 32, 3), num_classes=NUM_CLASSES)


def test_registered_families():
    assert {"cnn6", "resnet110", "resnet20", "vgg19"} <= set(models.available())


def test_logits_model_shares_weights(built):
    case, network = built
    twin = models.logits_model(network)
    x = zeros(case)
    before = np.asarray(twin(x, training=False))
    np.testing.assert_allclose(before, network(x, training=False)["logits"], rtol=1e-6, atol=1e-6)
    bias = network.get_layer("fc_logits").bias
    original = bias.numpy()
    try:
        bias.assign(original + 1.0)
        after = np.asarray(twin(x, training=False))
    finally:
        bias.assign(original)
    np.testing.assert_allclose(after, before + 1.0, rtol=1e-5, atol=1e-5)

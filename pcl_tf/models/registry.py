"""Model registry: a family name -> a backbone function, and the builder that adds PCL branches.

A backbone function has the signature ``fn(x, num_classes) -> (logits, taps)``: ``x`` is the
normalised input tensor (symbolic), ``logits`` the final class scores (float32), and ``taps`` an
ordered dict mapping a tap name (a depth of the network, e.g. ``"gap"`` or ``"layer3"``) to the
features available there, either 4-D (N, H, W, C) or 2-D (N, D).  Which taps get a PCL branch, and
how wide that branch is, is decided by the config, not by the backbone: that is what the paper's
Table 7 ablation varies.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras

Backbone = Callable[[keras.KerasTensor, int], Tuple[keras.KerasTensor, Dict[str, keras.KerasTensor]]]

_BACKBONES: Dict[str, Backbone] = {}

LOGITS = "logits"
FEATURE_PREFIX = "feat_"
AUX_LOGITS_PREFIX = "aux_logits_"


def register(name: str) -> Callable[[Backbone], Backbone]:
    """Decorator that registers a backbone function under ``name``."""

    def wrap(fn: Backbone) -> Backbone:
        if name in _BACKBONES:
            raise ValueError(f"model {name!r} is registered twice")
        _BACKBONES[name] = fn
        return fn

    return wrap


def available() -> Tuple[str, ...]:
    """Names of all registered model families, sorted."""
    return tuple(sorted(_BACKBONES))


@dataclasses.dataclass(frozen=True)
class BranchSpec:
    """One PCL-supervised depth: the tap it reads and the auxiliary branch G_phi on top of it.

    ``units=None`` means the branch is GAP (for 4-D taps) or the identity (for 2-D taps), as for
    the CNN-6 taps of Table 1; an integer adds ``Dense(units)`` as the paper's G_phi (e.g.
    ResNet-110's ``layer3 -> GAP -> FC(512)``).
    """

    tap: str
    units: Optional[int] = None

    @property
    def feature_name(self) -> str:
        return FEATURE_PREFIX + self.tap


def parse_branches(specs) -> Tuple[BranchSpec, ...]:
    """Accepts a comma-separated string (as configs hold it, ``"layer3:512,layer4"``) or a
    sequence of ``"tap"``, ``"tap:units"``, ``(tap, units)`` or ``BranchSpec`` items."""
    if isinstance(specs, str):
        specs = [s for s in (part.strip() for part in specs.split(",")) if s]
    parsed = []
    for spec in specs:
        if isinstance(spec, BranchSpec):
            parsed.append(spec)
        elif isinstance(spec, str):
            tap, _, units = spec.partition(":")
            parsed.append(BranchSpec(tap.strip(), int(units) if units.strip() else None))
        else:
            tap, units = spec
            parsed.append(BranchSpec(str(tap), None if units in (None, 0) else int(units)))
    names = [b.tap for b in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"a tap appears twice among the PCL branches: {names}")
    return tuple(parsed)


def build_network(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    branches: Sequence = (),
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    branch_ce: bool = False,
    precision: str = "none",
) -> keras.Model:
    """Builds a functional model returning a dict of named outputs.

    Outputs: ``"logits"`` (N, num_classes); ``"feat_<tap>"`` (N, D) for each branch, the features
    the PrototypeConformityLoss is applied to; and with ``branch_ce`` an ``"aux_logits_<tap>"``
    CE head per branch (paper Eq. 8).

    Inputs are images in [0, 1]; the per-dataset normalisation ``(x - mean) / std`` is the model's
    first layer, so every attack and every ε is in pixel units.

    ``precision`` is a mixed-precision policy (:data:`PRECISION_POLICIES`): the layers compute
    in it with float32 variables, while the input normalisation and the logits stay float32
    (the feature taps are cast to float32 by the PC loss).
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(available())}")
    if precision not in PRECISION_POLICIES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_POLICIES)}")
    with _dtype_policy(PRECISION_POLICIES[precision]):
        return _build(name, input_shape, num_classes, branches, mean, std, branch_ce)


PRECISION_POLICIES = {"none": "float32", "mixed_bfloat16": "mixed_bfloat16", "mixed_float16": "mixed_float16"}


@contextlib.contextmanager
def _dtype_policy(policy: str):
    """Keras' global dtype policy set to ``policy`` while the layers are created, then restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _build(name, input_shape, num_classes, branches, mean, std, branch_ce):
    branch_specs = parse_branches(branches)
    inputs = keras.Input(shape=tuple(input_shape), name="image", dtype="float32")
    x = inputs
    if mean is not None and std is not None:
        channels = input_shape[-1]
        mean = _per_channel(mean, channels)
        variance = [s * s for s in _per_channel(std, channels)]
        x = keras.layers.Normalization(mean=mean, variance=variance, name="normalize", dtype="float32")(x)
    logits, taps = _BACKBONES[name](x, num_classes)
    outputs = {LOGITS: keras.layers.Activation("linear", dtype="float32", name=LOGITS)(logits)}
    for spec in branch_specs:
        if spec.tap not in taps:
            raise ValueError(
                f"model {name!r} has no tap {spec.tap!r} for a PCL branch; its taps are "
                f"{', '.join(taps)}"
            )
        feature = taps[spec.tap]
        if len(feature.shape) == 4:
            feature = keras.layers.GlobalAveragePooling2D(name=f"branch_{spec.tap}_gap")(feature)
        if spec.units:
            feature = keras.layers.Dense(spec.units, name=f"branch_{spec.tap}_fc")(feature)
        outputs[spec.feature_name] = keras.layers.Activation(
            "linear", dtype="float32", name=spec.feature_name
        )(feature)
        if branch_ce:
            outputs[AUX_LOGITS_PREFIX + spec.tap] = keras.layers.Dense(
                num_classes, dtype="float32", name=AUX_LOGITS_PREFIX + spec.tap
            )(feature)
    return keras.Model(inputs, outputs, name=name)


def logits_model(network: keras.Model) -> keras.Model:
    """The inference twin: same input, logits only, sharing every weight with ``network``.

    Attacks and the SavedModel export use this one, so that neither the auxiliary branches nor
    the prototype layers are part of what they see.
    """
    return keras.Model(network.input, network.output[LOGITS], name=f"{network.name}_logits")


def tap_names(name: str, input_shape: Sequence[int], num_classes: int) -> Tuple[str, ...]:
    """The taps a model family offers for PCL branches (builds a throw-away graph)."""
    inputs = keras.Input(shape=tuple(input_shape))
    _, taps = _BACKBONES[name](inputs, num_classes)
    return tuple(taps)


def _per_channel(values, channels: int):
    values = list(values) if isinstance(values, (list, tuple)) else [float(values)]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"expected {channels} per-channel values, got {values}")
    return values

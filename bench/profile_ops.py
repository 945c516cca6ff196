"""Where a TensorFlow step's time goes, by op type: TensorFlow's profiler, read without TensorBoard.

:func:`top_ops` traces a few calls of a step function with ``tf.profiler.experimental`` and sums
the host's TensorFlow op events of the trace (the ``*.xplane.pb`` the profiler writes, parsed with
the XPlane protobuf that ships with TensorFlow) by op type (oneDNN's kernels keep their names:
``_MklNativeConv2DBackpropFilter``, ``_MklNativeFusedBatchNormGradV3``, ``Mul``...). The
runtime's own events and function-call ops, which contain the ops' events, are left out, so the
sum over op types is the kernels' time of the step (on all threads: more than wall time on 2 cores).
"""

from __future__ import annotations

import collections
import glob
import os
import tempfile
from typing import Callable, Dict, List

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

# Ops whose events contain other ops' events: counting them would count their children twice.
CONTAINERS = ("PartitionedCall", "StatefulPartitionedCall", "While", "If", "StatelessIf", "StatelessWhile")


def _op_type(name: str):
    """``"model/conv1/Conv2D:_MklNativeConv2D"`` -> ``"_MklNativeConv2D"``; None for the runtime's
    own events (``ExecutorState::Process``, ``EagerLocalExecute: __inference_f``, ``f``), which
    contain the ops' events."""
    if ":" not in name or "::" in name or ": " in name:
        return None
    op = name.rsplit(":", 1)[-1]
    return None if op in CONTAINERS else op


def op_time_by_type(logdir: str) -> Dict[str, float]:
    """Seconds per op type over every host thread of the newest trace in ``logdir``."""
    paths = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise FileNotFoundError(f"no profiler trace in {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals: Dict[str, float] = collections.defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                op = _op_type(names.get(event.metadata_id, ""))
                if op:
                    totals[op] += event.duration_ps * 1e-12
    return dict(totals)


def top_ops(step: Callable[[], None], steps: int = 2, k: int = 12) -> List[Dict]:
    """The ``k`` op types that take the most time over ``steps`` calls of ``step`` (already
    warmed up): ``[{"op", "ms", "share"}, ...]``, share of all the op time traced."""
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(steps):
                step()
        finally:
            tf.profiler.experimental.stop()
        totals = op_time_by_type(logdir)
    total = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:k]
    return [{"op": op, "ms": 1e3 * seconds / steps, "share": seconds / total} for op, seconds in ranked]

"""bench/profile_ops.py: op types from profiler event names, and a real trace of a tiny step."""

import os
import sys

import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench"))

import profile_ops  # noqa: E402


def test_op_types_are_read_off_kernel_events_and_runtime_events_are_left_out():
    assert profile_ops._op_type("gradient_tape/Conv2DBackpropFilter:_MklNativeConv2DBackpropFilter") == \
        "_MklNativeConv2DBackpropFilter"
    assert profile_ops._op_type("ExecutorState::Process") is None
    assert profile_ops._op_type("EagerLocalExecute: __inference_f_33") is None
    assert profile_ops._op_type("f") is None
    assert profile_ops._op_type("model/StatefulPartitionedCall:StatefulPartitionedCall") is None


def test_a_traced_convolution_step_is_mostly_convolution():
    x, kernel = tf.random.normal((8, 16, 16, 8)), tf.random.normal((3, 3, 8, 8))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 1, "SAME") ** 2)
        return tape.gradient(loss, kernel)

    step()
    ops = profile_ops.top_ops(step, steps=3)
    assert abs(sum(op["share"] for op in ops) - 1.0) < 1e-6 or len(ops) == 12
    # The forward convolution and its filter gradient share the time (about half each, varying with the
    # machine's load), so the claim is about convolutions together, not about one of them alone.
    assert "Conv2D" in ops[0]["op"] and ops[0]["ms"] > 0
    assert sum(op["share"] for op in ops if "Conv2D" in op["op"]) > 0.5

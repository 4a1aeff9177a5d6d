"""A tiny random CNN backbone for tests: input [N,3,H,W] -> conv s2 -> relu ("l1") -> conv s2 ->
relu ("l2"). Fixed seed; no weights from anywhere. Usage: make_tiny_backbone.py OUT.onnx"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)
w1 = rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32)
w2 = rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32)
b1 = np.zeros(8, np.float32)
b2 = np.zeros(16, np.float32)
conv = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
nodes = [
    helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], **conv),
    helper.make_node("Relu", ["c1"], ["l1"]),
    helper.make_node("Conv", ["l1", "w2", "b2"], ["c2"], **conv),
    helper.make_node("Relu", ["c2"], ["l2"]),
]
graph = helper.make_graph(
    nodes, "tiny",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    [helper.make_tensor_value_info("l2", TensorProto.FLOAT, None)],
    [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, sys.argv[1])

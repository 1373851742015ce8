"""FLOP counting with mmengine's analyzer, taught mmdwnet's custom aggregation ops.

FLOPs are multiply-accumulates, as the paper and the official code count them.  mmengine's
``FlopAnalyzer`` traces the model with TorchScript; the autograd functions of
:mod:`mmdwnet.ops` appear there as ``prim::PythonOp`` nodes, counted here:

* ``_LocalAggregate`` (I-D-DW, sliding attention values): N*C*H*W*k*k;
* ``_LocalCorrelate`` (sliding attention logits): N*C*H*W*k*k.
"""
from functools import reduce
from operator import mul

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape


def _numel(shape):
    return reduce(mul, shape, 1)


def _aggregate_flops(inputs, outputs):
    x_shape, w_shape = get_shape(inputs[0]), get_shape(inputs[1])
    k = w_shape[2]
    return _numel(x_shape) * k * k


def _correlate_flops(inputs, outputs):
    q_shape, out_shape = get_shape(inputs[0]), get_shape(outputs[0])
    k = out_shape[2]
    return _numel(q_shape) * k * k


def _matmul_flops(inputs, outputs):
    """``aten::matmul`` with broadcasting: output elements x inner size.  (mmengine's handle
    counts ``prod(a.shape) * b.shape[-1]`` and misses batch dims that only ``b`` has, e.g. one
    static window weight applied to every window of ``LocalMLP(share_positions=True)``.)"""
    return _numel(get_shape(outputs[0])) * get_shape(inputs[0])[-1]


OP_HANDLES = {
    'aten::matmul': _matmul_flops,
    'prim::PythonOp._LocalAggregate': _aggregate_flops,
    'prim::PythonOp._LocalCorrelate': _correlate_flops,
}


def flop_analyzer(model, inputs):
    """``mmengine.analysis.FlopAnalyzer`` for ``model(*inputs)`` with mmdwnet's op handles."""
    analyzer = FlopAnalyzer(model, inputs)
    for name, handle in OP_HANDLES.items():
        analyzer.set_op_handle(name, handle)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


def count_flops(model, input_shape=(3, 224, 224), inputs=None):
    """Total FLOPs (multiply-accumulates) of ``model`` on one input of ``input_shape``."""
    if inputs is None:
        inputs = (torch.randn(1, *input_shape), )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return flop_analyzer(model, inputs).total()
    finally:
        model.train(was_training)


def count_params(model):
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())

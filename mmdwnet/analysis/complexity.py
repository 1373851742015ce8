"""FLOP counting with mmengine's analyzer: the one place of the counting rules for mmdwnet's ops.

FLOPs are multiply-accumulates, as the paper and the official code count them.  mmengine's
``FlopAnalyzer`` traces the model with TorchScript, where the ops of :mod:`mmdwnet.ops.library`
appear as ``mmdwnet::<op>`` nodes.  Their rules are the ``flops`` of the op specs
(:mod:`mmdwnet.ops.spec`, the one place of the ops' counting rules; :data:`OP_HANDLES`):

* ``mmdwnet::local_aggregate`` (I-D-DW, sliding attention values): N*C*H*W*k*k;
* ``mmdwnet::local_correlate`` (sliding attention logits): N*C*H*W*k*k;
* ``mmdwnet::local_aggregate_pointwise`` (fused I-D-DW): the 1x1 conv making the kernels,
  N*H*W*R*G*k*k, plus the aggregation, N*C*H*W*k*k (what the two-step form counts);
* ``mmdwnet::dynamic_depthwise_conv2d`` (D-DW): N*C*H*W*k*k, as the equivalent grouped conv;
* ``aten::matmul`` with broadcasting (see :func:`_matmul_flops`).
* ``aten::scaled_dot_product_attention`` (torch >= 2 attention layers, e.g. mmpretrain's):
  the two matmuls of the explicit form (see :func:`_sdpa_flops`).

:func:`flop_analyzer` (and so ``tools/analysis_tools/get_flops.py``) gives them to the analyzer it
makes. ``import mmdwnet`` does not touch mmengine's default handle table; call
:func:`register_handles` once to make ``mmengine.analysis.get_model_complexity_info`` and the
toolboxes' ``get_flops`` tools count mmdwnet models the same way.

Two counting conventions (:data:`CONVENTIONS`), because published FLOPs use both:

* ``'all'`` (the default, and every figure mmdwnet reports unless it says otherwise): every
  product in the traced graph, the attention products (``q @ k^T``, ``attn @ v``) and the
  dynamic kernels' aggregations included -- as the official code's ``flops()`` methods count
  (Swin-T 4.49G, DWNet-T 3.74G, I-D-DWNet-T 4.39G in ``paper_tables.yaml``);
* ``'modules'``: only layers a module-hook counter sees (convolutions, linear layers, norms,
  pooling: ptflops and mmcv 1.x's ``get_model_complexity_info``, with which mmcls 0.x's
  ``get_flops`` counted); the products of two activations (:data:`FUNCTIONAL_PRODUCTS`, and the
  mmdwnet ops but the fused I-D-DW op's 1x1 conv, :data:`MODULE_HANDLES`) are not counted.
  Twins' model zoo and mmpretrain's metafile report Twins-SVT-S this way (2.8G / 2.82G), and
  Table 13 copies that row.
"""
from functools import reduce
from operator import mul

from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

from mmdwnet.ops.spec import SPECS


def _numel(shape):
    return reduce(mul, shape, 1)


def _uncounted(inputs, outputs):
    """An op the convention does not count."""
    return 0


def _spec_handle(rule):
    """mmengine handle ``(inputs, outputs) -> FLOPs`` (TorchScript values) of a FLOP rule of
    :mod:`mmdwnet.ops.spec`, which takes tensor arguments as shapes and the others as values."""

    def arg(value):
        return get_shape(value) if value.type().kind() == 'TensorType' else value.toIValue()

    def handle(inputs, outputs):
        return rule([arg(v) for v in inputs], [get_shape(v) for v in outputs])

    handle.__doc__ = rule.__doc__
    return handle


def _matmul_flops(inputs, outputs):
    """``aten::matmul`` with broadcasting: output elements x inner size.  (mmengine's handle
    counts ``prod(a.shape) * b.shape[-1]`` and misses batch dims that only ``b`` has, e.g. one
    static window weight applied to every window of ``LocalMLP(share_positions=True)``.)"""
    return _numel(get_shape(outputs[0])) * get_shape(inputs[0])[-1]


def _sdpa_flops(inputs, outputs):
    """``aten::scaled_dot_product_attention(q (..., L, E), k (..., S, E), v (..., S, Ev))``, the
    attention of torch >= 2 layers (mmpretrain's ``MultiheadAttention``): ``q @ k^T`` and
    ``attn @ v``, batch x L x S x (E + Ev), as the two matmuls of the explicit form count."""
    q, k, v = (get_shape(t) for t in inputs[:3])
    return _numel(q[:-1]) * k[-2] * (q[-1] + v[-1])


OP_HANDLES = {
    'aten::matmul': _matmul_flops,
    'aten::scaled_dot_product_attention': _sdpa_flops,
    # the mmdwnet ops: the FLOP rules of their specs
    **{s.qualname: _spec_handle(s.flops) for s in SPECS if s.flops is not None},
}
# what a module-hook counter sees of the mmdwnet ops ('modules' convention): the part of an op
# that is a layer in the official code (the fused I-D-DW op's 1x1 conv), else nothing
MODULE_HANDLES = {s.qualname: _spec_handle(s.module_flops) if s.module_flops else _uncounted
                  for s in SPECS if s.flops is not None}


CONVENTIONS = ('all', 'modules')
# ops multiplying two activations (attention logits and values, dynamic kernels applied to the
# input): functional code, invisible to module-hook counters ('modules' convention)
FUNCTIONAL_PRODUCTS = ('aten::matmul', 'aten::bmm', 'aten::baddbmm', 'aten::einsum',
                       'aten::scaled_dot_product_attention')


def register_handles() -> None:
    """Add :data:`OP_HANDLES` to mmengine's default FLOP handles, for the rest of the process
    (every ``FlopAnalyzer`` and ``get_model_complexity_info`` made afterwards uses them).
    Explicit: ``import mmdwnet`` does not call it; :func:`flop_analyzer` does not need it."""
    from mmengine.analysis import complexity_analysis
    complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.update(OP_HANDLES)


def check_convention(convention: str) -> str:
    """``convention`` if it is one of :data:`CONVENTIONS`, else a ValueError saying which are."""
    if convention not in CONVENTIONS:
        raise ValueError(f'unknown FLOP counting convention {convention!r}; use one of '
                         f'{CONVENTIONS} (see mmdwnet.analysis.complexity)')
    return convention


def flop_analyzer(model: nn.Module, inputs: Tuple[Any, ...],
                  convention: str = 'all') -> FlopAnalyzer:
    """``mmengine.analysis.FlopAnalyzer`` for ``model(*inputs)`` with mmdwnet's op handles,
    counting by ``convention`` (see the module docstring)."""
    check_convention(convention)
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**OP_HANDLES)
    if convention == 'modules':
        # zero handles, not None: mmengine 0.10 only skips None-handled ops it has no handle for
        analyzer.set_op_handle(**dict.fromkeys(FUNCTIONAL_PRODUCTS, _uncounted))
        analyzer.set_op_handle(**MODULE_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


def count_flops(model: nn.Module, input_shape: Sequence[int] = (3, 224, 224),
                inputs: Optional[Tuple[Any, ...]] = None, convention: str = 'all') -> int:
    """Total FLOPs (multiply-accumulates) of ``model`` on one input of ``input_shape``, counted
    by ``convention`` (``'all'`` or ``'modules'``, see the module docstring)."""
    if inputs is None:
        inputs = (torch.randn(1, *input_shape), )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return flop_analyzer(model, inputs, convention).total()
    finally:
        model.train(was_training)


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())

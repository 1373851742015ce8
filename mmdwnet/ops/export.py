"""The mmdwnet ops as standard PyTorch ops, for exporters that cannot see custom operators.

Contract used by :mod:`mmdwnet.ops`: every public op first asks :func:`exporting`; when it is
True the op returns its spec's decomposition (:mod:`mmdwnet.ops.decompositions`, re-exported
here under the ops' names: same arguments, same result).  Those use only ``Pad``, ``Slice``,
``Mul``, ``Add``, ``ReduceSum``, ``Reshape`` and ``Concat`` (and one 1x1 ``Conv`` with a static
weight), all of which take symbolic batch and spatial sizes, so they never fix the batch or the
image size of a graph (the dynamic depth-wise conv is not a grouped convolution over the batch
folded into channels, which the TorchScript exporter could not export: "convolution for kernel
of unknown shape").

Which exporter sees what (:func:`exporting`):

* ``torch.onnx.export`` -- TorchScript exporter (``dynamo=False``) and the ``torch.export``-based
  exporter (``dynamo=True``) alike: the decompositions below.  Both set
  ``torch.onnx.is_in_onnx_export()``.  A portable ONNX graph must consist of operators that
  ONNX runtimes implement; a custom-domain node ``mmdwnet::local_aggregate`` would load in no
  runtime, and the old ``prim::PythonOp`` route froze the kernels' result for the example input
  into a constant.  The decomposition gives a graph that onnxruntime runs, equal to eager.
* ``torch.onnx.export`` inside :func:`keep_operators`: the ``torch.ops.mmdwnet`` operators, one
  node each, which the exporter must be told how to write: :mod:`mmdwnet.deployment.ort_ops`
  writes them as onnxruntime custom nodes (``ai.onnx.contrib`` domain) that run mmdwnet's
  kernels through onnxruntime-extensions.
* ``torch.export.export`` alone: the ``torch.ops.mmdwnet`` operators stay in the graph as
  single nodes (their fake implementations give the shapes), so an
  :class:`~torch.export.ExportedProgram` runs the same fast kernels as eager.  To turn such a
  program into standard ops (e.g. to hand it to ``torch.onnx.export``, which cannot translate
  ``mmdwnet::`` nodes and says so), run ``program.run_decompositions(decompositions())``.

One standard op is written differently while an ONNX exporter traces (either graph kind):
:func:`softmax` over an axis other than the last (sliding-window attention), which onnxruntime
runs as transpose, softmax, transpose.
"""
from typing import Callable, ContextManager, Dict

import torch
from torch import Tensor

from mmdwnet.utils.thread_switch import ThreadSwitch

from .decompositions import (dynamic_depthwise_conv2d, local_aggregate,  # noqa: F401
                             local_aggregate_pointwise, local_correlate)
from .spec import SPECS

__all__ = ['exporting', 'keep_operators', 'decompositions', 'softmax', 'local_aggregate',
           'local_aggregate_pointwise', 'local_correlate', 'dynamic_depthwise_conv2d']

_KEEP = ThreadSwitch()


def exporting() -> bool:
    """True while an ONNX exporter traces the model (``torch.onnx.is_in_onnx_export()``, set
    by both the TorchScript and the dynamo exporter) outside :func:`keep_operators`: the ops
    then return their decompositions (``torch.export`` alone keeps the operators, see the
    module docstring)."""
    return bool(torch.onnx.is_in_onnx_export()) and not _KEEP.value


def keep_operators() -> ContextManager[None]:
    """Within, in this thread, ONNX exporters see the ``torch.ops.mmdwnet`` operators (one
    node each) instead of their decompositions: :func:`exporting` is False.  The exporter then
    needs a translation of those nodes (``custom_translation_table`` of the dynamo exporter,
    ``torch.onnx.register_custom_op_symbolic`` for TorchScript), e.g.
    :func:`mmdwnet.deployment.ort_ops.export_custom_ops`."""
    return _KEEP.override(True)


def softmax(x: Tensor, dim: int) -> Tensor:
    """``x.softmax(dim)``; while an ONNX exporter traces (``torch.onnx.is_in_onnx_export()``,
    with or without :func:`keep_operators`) written as ``exp(x - max) / sum`` over ``dim``.

    onnxruntime (1.32, CPU) runs ``Softmax`` over an axis other than the last as transpose,
    softmax, transpose: 3.8 ms against 0.6 ms for this form on a (1, 3, 49, 56, 56) tensor over
    axis 2, one thread (PyTorch: 0.7 ms).  Same values within float32 rounding; a row of
    ``-inf`` but one finite entry (masked neighbourhoods) stays exact.

    Args:
        x (Tensor): any shape.
        dim (int): the axis normalised.

    Returns:
        Tensor: the shape of ``x``.
    """
    if not torch.onnx.is_in_onnx_export():
        return x.softmax(dim)
    e = (x - x.amax(dim, keepdim=True)).exp()
    return e / e.sum(dim, keepdim=True)


def decompositions() -> Dict[torch._ops.OpOverload, Callable]:
    """Decomposition table for :meth:`torch.export.ExportedProgram.run_decompositions`.

    Maps every public ``torch.ops.mmdwnet`` operator to its spec's standard-op form
    (:mod:`mmdwnet.ops.decompositions`), e.g.
    ``torch.onnx.export(program.run_decompositions(decompositions()))``.  Merge it into
    ``torch.export.default_decompositions()`` to lower the rest of the program to core ATen too.
    """
    from . import library  # noqa: F401  (defines the torch.ops.mmdwnet operators)
    return {getattr(torch.ops.mmdwnet, s.name).default: s.decomposition for s in SPECS
            if s.public}

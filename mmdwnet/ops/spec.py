"""One specification per mmdwnet operator: the single list the rest is made from.

An :class:`OpSpec` holds what PyTorch and the tools need to know about an op:

* ``schema`` -- its ``torch.library`` schema under ``mmdwnet::`` (:mod:`mmdwnet.ops.library`
  registers ``torch.ops.mmdwnet.<name>`` from it);
* ``check`` -- the argument check run by the operator before any backend
  (:mod:`mmdwnet.ops.checks`), and ``kinds`` (argument names and dimensions) for the size-free
  check of the fake implementation;
* ``fake`` -- output shapes, dtypes, devices and strides (``torch.compile`` / ``torch.export``);
* ``decomposition`` -- the op in standard PyTorch ops (:mod:`mmdwnet.ops.decompositions`, or
  autograd of those for the backward ops): what the exporters emit
  (:func:`mmdwnet.ops.export.decompositions`) and what the tests compare every backend with;
* ``flops`` -- the FLOP rule (multiply-accumulates), read by :mod:`mmdwnet.analysis.complexity`,
  and ``module_flops``, the part a module-hook counter sees (``'modules'`` convention);
* ``public`` -- whether :mod:`mmdwnet.ops` exposes it (the others serve backward rules);
* ``layout`` -- brings a backend's result to the op's output layout (contiguous; D-DW:
  channels-last when ``x`` is; backward ops: an empty gradient for an absent bias).

FLOP rules take ``args`` (tensor arguments as shapes, the others as values) and ``outputs``
(output shapes).  This module depends on torch only.
"""
from dataclasses import dataclass
from math import prod
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import checks
from . import decompositions as dec

__all__ = ['OpSpec', 'SPECS', 'spec', 'PUBLIC']


def _contiguous(out: Tensor, *args: Any) -> Tensor:
    """The default output layout: contiguous."""
    return out.contiguous()


@dataclass(frozen=True)
class OpSpec:
    """What defines one ``torch.ops.mmdwnet`` operator (see the module docstring)."""

    name: str
    schema: str
    check: Callable[..., None]
    kinds: Tuple[Tuple[str, ...], Tuple[int, ...]]
    fake: Callable
    decomposition: Callable
    flops: Optional[Callable[[Sequence, Sequence], int]] = None
    module_flops: Optional[Callable[[Sequence, Sequence], int]] = None
    public: bool = False
    #: brings a backend's result (any strides; None for an absent bias's gradient) to the op's
    #: output layout: ``layout(result, *args)``
    layout: Callable = _contiguous

    @property
    def qualname(self) -> str:
        """``mmdwnet::<name>``, as TorchScript graphs and FLOP counters name the op."""
        return f'mmdwnet::{self.name}'


# --------------------------------------------------------------------------- output layouts
def ddw_format(x: Tensor) -> torch.memory_format:
    """Memory format of the D-DW output: channels-last iff ``x`` is channels-last (only), as a
    depth-wise conv's would be; every other output is contiguous."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _ddw_layout(out: Tensor, x: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
    return out.contiguous(memory_format=ddw_format(x))


def _with_bias_grad(out: tuple, *args) -> Tuple[Tensor, ...]:
    """Backward ops: contiguous gradients; an absent bias gets an empty (0, ) gradient (the
    bias is argument 4 of the I-D-DW backward, argument 3 of the D-DW one)."""
    *grads, gb = out
    bias = args[4] if len(args) == 7 else args[3]
    gb = args[1].new_zeros(0) if gb is None or bias is None else gb.contiguous()
    return (*(g.contiguous() for g in grads), gb)


def _like(t: Tensor) -> Tensor:
    return t.new_empty(t.shape)


def _bias_grad(bias: Optional[Tensor], ref: Tensor) -> Tensor:
    """Gradient slot of an optional bias: its shape, or empty (0, ) when there is no bias."""
    return ref.new_empty(0 if bias is None else bias.shape[0])


# ------------------------------------------------------------------------ backward references
def _vjp(fn: Callable, primals: Sequence[Tensor], cotangent: Tensor) -> Tuple[Tensor, ...]:
    return torch.func.vjp(fn, *primals)[1](cotangent)


def _scatter_reference(grad: Tensor, weight: Tensor) -> Tensor:
    """Transpose of the aggregation w.r.t. x: the vector-Jacobian product of its decomposition."""
    return _vjp(lambda x: dec.local_aggregate(x, weight), (torch.zeros_like(grad), ), grad)[0]


def _pointwise_backward_reference(grad, x, feat, weight, bias, groups, kernel_size):
    if bias is None:
        gx, gf, gw = _vjp(lambda a, f, w: dec.local_aggregate_pointwise(
            a, f, w, None, groups, kernel_size), (x, feat, weight), grad)
        return gx, gf, gw, weight.new_zeros(0)
    return _vjp(lambda a, f, w, b: dec.local_aggregate_pointwise(a, f, w, b, groups, kernel_size),
                (x, feat, weight, bias), grad)


def _ddw_backward_reference(grad, x, kernels, bias):
    if bias is None:
        gx, gk = _vjp(lambda a, k: dec.dynamic_depthwise_conv2d(a, k), (x, kernels), grad)
        return gx, gk, kernels.new_zeros(0)
    return _vjp(dec.dynamic_depthwise_conv2d, (x, kernels, bias), grad)


# -------------------------------------------------------------------------------- FLOP rules
def _window_flops(args, outputs):
    """local_aggregate / local_scatter (x, weight (., G, k, k, H, W)): N*C*H*W*k*k."""
    return prod(args[0]) * args[1][2]**2


def _correlate_flops(args, outputs):
    """local_correlate(q, k_map, k, G) -> (N, G, k, k, H, W): N*C*H*W*k*k."""
    return prod(args[0]) * args[2]**2


def _pointwise_conv_flops(args, outputs):
    """The 1x1 conv making the I-D-DW kernels (a Conv2d layer in the official code):
    N*H*W*R*G*k*k."""
    x, feat, weight = args[:3]
    return x[0] * x[2] * x[3] * feat[1] * weight[0]


def _pointwise_flops(args, outputs):
    """local_aggregate_pointwise: the 1x1 conv plus the aggregation, N*C*H*W*k*k."""
    return _pointwise_conv_flops(args, outputs) + prod(args[0]) * args[5]**2


def _ddw_flops(args, outputs):
    """dynamic_depthwise_conv2d(x, kernels (N, C, k, k), bias): N*C*H*W*k*k."""
    return prod(args[0]) * args[1][-1]**2


# ------------------------------------------------------------------------------- the specs
SPECS: Tuple[OpSpec, ...] = (
    OpSpec('local_aggregate', '(Tensor x, Tensor weight) -> Tensor',
           checks.check_local_aggregate, (('x', 'weight'), (4, 6)),
           fake=lambda x, weight: _like(x), decomposition=dec.local_aggregate,
           flops=_window_flops, public=True),
    OpSpec('local_scatter', '(Tensor grad, Tensor weight) -> Tensor',
           checks.check_local_scatter, (('grad', 'weight'), (4, 6)),
           fake=lambda grad, weight: _like(grad), decomposition=_scatter_reference,
           flops=_window_flops),
    OpSpec('local_correlate',
           '(Tensor q, Tensor k_map, SymInt kernel_size, SymInt groups) -> Tensor',
           checks.check_local_correlate, (('q', 'k_map', 'kernel_size', 'groups'), (4, 4, 0, 0)),
           fake=lambda q, k_map, kernel_size, groups: q.new_empty(
               q.shape[0], groups, kernel_size, kernel_size, q.shape[2], q.shape[3]),
           decomposition=dec.local_correlate, flops=_correlate_flops, public=True),
    OpSpec('local_aggregate_pointwise',
           '(Tensor x, Tensor feat, Tensor weight, Tensor? bias, SymInt groups, '
           'SymInt kernel_size) -> Tensor',
           checks.check_local_aggregate_pointwise,
           (('x', 'feat', 'weight', 'bias', 'groups', 'kernel_size'), (4, 4, 4, -1, 0, 0)),
           fake=lambda x, feat, weight, bias, groups, kernel_size: _like(x),
           decomposition=dec.local_aggregate_pointwise, flops=_pointwise_flops,
           module_flops=_pointwise_conv_flops, public=True),
    OpSpec('local_aggregate_pointwise_backward',
           '(Tensor grad, Tensor x, Tensor feat, Tensor weight, Tensor? bias, SymInt groups, '
           'SymInt kernel_size) -> (Tensor, Tensor, Tensor, Tensor)',
           checks.check_local_aggregate_pointwise_backward,
           (('grad', 'x', 'feat', 'weight', 'bias', 'groups', 'kernel_size'),
            (4, 4, 4, 4, -1, 0, 0)),
           fake=lambda grad, x, feat, weight, bias, groups, kernel_size: (
               _like(x), _like(feat), _like(weight), _bias_grad(bias, weight)),
           decomposition=_pointwise_backward_reference, layout=_with_bias_grad),
    OpSpec('dynamic_depthwise_conv2d', '(Tensor x, Tensor kernels, Tensor? bias) -> Tensor',
           checks.check_dynamic_depthwise_conv2d, (('x', 'kernels', 'bias'), (4, 4, -1)),
           fake=lambda x, kernels, bias: torch.empty(
               x.shape, dtype=x.dtype, device=x.device, memory_format=ddw_format(x)),
           decomposition=dec.dynamic_depthwise_conv2d, flops=_ddw_flops, public=True,
           layout=_ddw_layout),
    OpSpec('dynamic_depthwise_conv2d_backward',
           '(Tensor grad, Tensor x, Tensor kernels, Tensor? bias) -> (Tensor, Tensor, Tensor)',
           checks.check_dynamic_depthwise_conv2d_backward,
           (('grad', 'x', 'kernels', 'bias'), (4, 4, 4, -1)),
           fake=lambda grad, x, kernels, bias: (_like(x), _like(kernels),
                                                _bias_grad(bias, kernels)),
           decomposition=_ddw_backward_reference, layout=_with_bias_grad),
)

_BY_NAME: Dict[str, OpSpec] = {s.name: s for s in SPECS}
#: names of the ops :mod:`mmdwnet.ops` exposes as functions
PUBLIC: Tuple[str, ...] = tuple(s.name for s in SPECS if s.public)


def spec(name: str) -> OpSpec:
    """The spec of op ``name`` (``'local_aggregate'``, ...)."""
    return _BY_NAME[name]

"""The mmdwnet operators, defined once with :mod:`torch.library` under ``mmdwnet::``.

Public ops (called by :mod:`mmdwnet.ops`' functions):

* ``mmdwnet::local_aggregate(x, weight)`` -- position-varying grouped k x k aggregation;
* ``mmdwnet::local_correlate(q, k_map, kernel_size, groups)`` -- its transpose w.r.t. the
  weights (sliding-window attention logits);
* ``mmdwnet::local_aggregate_pointwise(x, feat, weight, bias, groups, kernel_size)`` -- the
  I-D-DW op: aggregation with kernels ``conv1x1(feat, weight, bias)`` made chunk by chunk;
* ``mmdwnet::dynamic_depthwise_conv2d(x, kernels, bias)`` -- per-image depth-wise conv (D-DW).

Helpers used by the backward rules: ``mmdwnet::local_scatter`` (transpose of the aggregation
w.r.t. its input), ``mmdwnet::local_aggregate_pointwise_backward`` and
``mmdwnet::dynamic_depthwise_conv2d_backward``.

Each op has: an eager implementation that asks :func:`mmdwnet.ops.backends.select` for a
backend (chunking and other size decisions happen there, in eager code only); a fake
implementation (shapes only, symbolic sizes welcome) for ``torch.compile`` /
``torch.export``; a backward rule (``register_autograd``) written with these same ops, so
``local_aggregate``, ``local_correlate`` and ``local_scatter`` are differentiable twice; and an
autocast rule.  FLOP counting rules live in :mod:`mmdwnet.analysis.complexity`.

Autocast policy: under ``torch.autocast('cpu')`` the ops compute in float32 (floating inputs
are cast up; the compiled CPU kernels are float32 and CPU low precision saves nothing for
these memory-bound loops); under ``torch.autocast('cuda')`` they keep the autocast dtype
(float16/bfloat16 inputs, like convolutions), and every backend accumulates low-precision
inputs in float32.  Outside autocast each op runs in its inputs' dtype (pure float16/bfloat16
models: float32 accumulation, results in the input dtype).

Output memory layout: contiguous, except ``dynamic_depthwise_conv2d``, whose output is
channels-last when ``x`` is (as a depth-wise conv's would be); every backend's result is
brought to that layout here, so the fake and real strides agree.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import backends, checks

__all__ = ['OPS']


def _contiguous(t: Tensor) -> Tensor:
    return t.contiguous()


def _ddw_format(x: Tensor) -> torch.memory_format:
    """Memory format of the D-DW output: channels-last iff ``x`` is channels-last (only)."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


# ------------------------------------------------------------------------ local_aggregate
@torch.library.custom_op('mmdwnet::local_aggregate', mutates_args=())
def local_aggregate(x: Tensor, weight: Tensor) -> Tensor:
    """x (N, C, H, W), weight (N|1, G, k, k, H, W) -> (N, C, H, W)."""
    checks.check_local_aggregate(x, weight)
    w = weight.contiguous()
    return _contiguous(backends.select(x, w).aggregate(x, w, w.shape[2]))


@local_aggregate.register_fake
def _(x, weight):
    checks.check_kinds('local_aggregate', ('x', 'weight'), (4, 6), (x, weight))
    return x.new_empty(x.shape)


@torch.library.custom_op('mmdwnet::local_scatter', mutates_args=())
def local_scatter(grad: Tensor, weight: Tensor) -> Tensor:
    """Transpose of ``local_aggregate`` w.r.t. x: grad (N, C, H, W) -> (N, C, H, W)."""
    checks.check_local_scatter(grad, weight)
    w = weight.contiguous()
    return _contiguous(backends.select(grad, w).scatter(grad, w, w.shape[2]))


@local_scatter.register_fake
def _(grad, weight):
    checks.check_kinds('local_scatter', ('grad', 'weight'), (4, 6), (grad, weight))
    return grad.new_empty(grad.shape)


@torch.library.custom_op('mmdwnet::local_correlate', mutates_args=())
def local_correlate(q: Tensor, k_map: Tensor, kernel_size: int, groups: int) -> Tensor:
    """q, k_map (N, C, H, W) -> (N, G, k, k, H, W)."""
    checks.check_local_correlate(q, k_map, kernel_size, groups)
    out = backends.select(q, k_map).correlate(q, k_map, groups, kernel_size)
    return _contiguous(out)


@local_correlate.register_fake
def _(q, k_map, kernel_size, groups):
    checks.check_kinds('local_correlate', ('q', 'k_map'), (4, 4), (q, k_map))
    n, _, h, w = q.shape
    return q.new_empty(n, groups, kernel_size, kernel_size, h, w)


def _weight_grad(grad_w: Tensor, weight: Tensor) -> Tensor:
    """Weights shared by the batch (leading size 1) get the batch sum."""
    return grad_w.sum(0, keepdim=True) if weight.shape[0] == 1 else grad_w


def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _aggregate_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    gx = gw = None
    if ctx.needs_input_grad[0]:
        gx = local_scatter(grad, weight)
    if ctx.needs_input_grad[1]:
        gw = _weight_grad(local_correlate(grad, x, weight.shape[2], weight.shape[1]), weight)
    return gx, gw


def _scatter_backward(ctx, grad):
    g, weight = ctx.saved_tensors
    gg = gw = None
    if ctx.needs_input_grad[0]:
        gg = local_aggregate(grad, weight)
    if ctx.needs_input_grad[1]:
        gw = _weight_grad(local_correlate(g, grad, weight.shape[2], weight.shape[1]), weight)
    return gg, gw


def _correlate_setup(ctx, inputs, output):
    q, k_map, _, _ = inputs
    ctx.save_for_backward(q, k_map)


def _correlate_backward(ctx, grad):
    q, k_map = ctx.saved_tensors
    grad = grad.contiguous()
    gq = local_aggregate(k_map, grad) if ctx.needs_input_grad[0] else None
    gk = local_scatter(q, grad) if ctx.needs_input_grad[1] else None
    return gq, gk, None, None


local_aggregate.register_autograd(_aggregate_backward, setup_context=_save_inputs)
local_scatter.register_autograd(_scatter_backward, setup_context=_save_inputs)
local_correlate.register_autograd(_correlate_backward, setup_context=_correlate_setup)


# ------------------------------------------------------------ local_aggregate_pointwise
def _w2d(weight: Tensor) -> Tensor:
    return weight.reshape(weight.shape[0], -1)


@torch.library.custom_op('mmdwnet::local_aggregate_pointwise', mutates_args=())
def local_aggregate_pointwise(x: Tensor, feat: Tensor, weight: Tensor, bias: Optional[Tensor],
                              groups: int, kernel_size: int) -> Tensor:
    """x (N, C, H, W), feat (N, R, H, W), weight (G*k*k, R, 1, 1), bias (G*k*k) -> (N, C, H, W)."""
    checks.check_local_aggregate_pointwise(x, feat, weight, bias, groups, kernel_size)
    backend = backends.select(x, feat, weight, bias)
    return _contiguous(backend.aggregate_pointwise(x, feat, _w2d(weight), bias, groups,
                                                   kernel_size))


@local_aggregate_pointwise.register_fake
def _(x, feat, weight, bias, groups, kernel_size):
    checks.check_kinds('local_aggregate_pointwise', ('x', 'feat', 'weight', 'bias'),
                       (4, 4, 4, -1), (x, feat, weight, bias))
    return x.new_empty(x.shape)


@torch.library.custom_op('mmdwnet::local_aggregate_pointwise_backward', mutates_args=())
def local_aggregate_pointwise_backward(grad: Tensor, x: Tensor, feat: Tensor, weight: Tensor,
                                       bias: Optional[Tensor], groups: int,
                                       kernel_size: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> (grad x, grad feat, grad weight, grad bias (empty when bias is None))."""
    checks.check_local_aggregate_pointwise_backward(grad, x, feat, weight, bias, groups,
                                                    kernel_size)
    backend = backends.select(grad, x, feat, weight, bias)
    gx, gf, gw, gb = backend.aggregate_pointwise_backward(grad, x, feat, _w2d(weight), bias,
                                                          groups, kernel_size)
    gb = weight.new_zeros(0) if gb is None else gb
    return (_contiguous(gx), _contiguous(gf.view(feat.shape)),
            _contiguous(gw.view(weight.shape)), _contiguous(gb))


@local_aggregate_pointwise_backward.register_fake
def _(grad, x, feat, weight, bias, groups, kernel_size):
    checks.check_kinds('local_aggregate_pointwise_backward',
                       ('grad', 'x', 'feat', 'weight', 'bias'), (4, 4, 4, 4, -1),
                       (grad, x, feat, weight, bias))
    gb = weight.new_empty(0 if bias is None else weight.shape[0])
    return (x.new_empty(x.shape), feat.new_empty(feat.shape), weight.new_empty(weight.shape), gb)


def _pointwise_setup(ctx, inputs, output):
    x, feat, weight, bias, groups, kernel_size = inputs
    ctx.save_for_backward(x, feat, weight, bias)
    ctx.groups, ctx.kernel_size = groups, kernel_size


def _pointwise_backward(ctx, grad):
    x, feat, weight, bias = ctx.saved_tensors
    gx, gf, gw, gb = local_aggregate_pointwise_backward(grad, x, feat, weight, bias, ctx.groups,
                                                        ctx.kernel_size)
    return gx, gf, gw, (gb if bias is not None else None), None, None


local_aggregate_pointwise.register_autograd(_pointwise_backward, setup_context=_pointwise_setup)


# ------------------------------------------------------------- dynamic_depthwise_conv2d
@torch.library.custom_op('mmdwnet::dynamic_depthwise_conv2d', mutates_args=())
def dynamic_depthwise_conv2d(x: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
    """x (N, C, H, W), kernels (N, C, k, k), bias (C) -> (N, C, H, W)."""
    checks.check_dynamic_depthwise_conv2d(x, kernels, bias)
    out = backends.select(x, kernels, bias).dynamic_depthwise(x, kernels, bias)
    return out.contiguous(memory_format=_ddw_format(x))


@dynamic_depthwise_conv2d.register_fake
def _(x, kernels, bias):
    checks.check_kinds('dynamic_depthwise_conv2d', ('x', 'kernels', 'bias'), (4, 4, -1),
                       (x, kernels, bias))
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=_ddw_format(x))


@torch.library.custom_op('mmdwnet::dynamic_depthwise_conv2d_backward', mutates_args=())
def dynamic_depthwise_conv2d_backward(grad: Tensor, x: Tensor, kernels: Tensor,
                                      bias: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """-> (grad x, grad kernels, grad bias (empty when bias is None))."""
    checks.check_dynamic_depthwise_conv2d_backward(grad, x, kernels, bias)
    backend = backends.select(grad, x, kernels, bias)
    gx, gk, gb = backend.dynamic_depthwise_backward(grad, x, kernels, bias)
    gb = kernels.new_zeros(0) if gb is None else gb
    return _contiguous(gx), _contiguous(gk), _contiguous(gb)


@dynamic_depthwise_conv2d_backward.register_fake
def _(grad, x, kernels, bias):
    checks.check_kinds('dynamic_depthwise_conv2d_backward', ('grad', 'x', 'kernels', 'bias'),
                       (4, 4, 4, -1), (grad, x, kernels, bias))
    gb = kernels.new_empty(0 if bias is None else bias.shape[0])
    return x.new_empty(x.shape), kernels.new_empty(kernels.shape), gb


def _ddw_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _ddw_backward(ctx, grad):
    x, kernels, bias = ctx.saved_tensors
    gx, gk, gb = dynamic_depthwise_conv2d_backward(grad, x, kernels, bias)
    return gx, gk, (gb if bias is not None else None)


dynamic_depthwise_conv2d.register_autograd(_ddw_backward, setup_context=_ddw_setup)

# ------------------------------------------------------------------------------ autocast
OPS = (local_aggregate, local_scatter, local_correlate, local_aggregate_pointwise,
       local_aggregate_pointwise_backward, dynamic_depthwise_conv2d,
       dynamic_depthwise_conv2d_backward)

_LOW_OR_FP32 = (torch.float32, torch.float16, torch.bfloat16)


def _register_autocast(op, device_type: str) -> None:
    """Autocast rule (see the module docstring): cast floating inputs to float32 on CPU and to
    the autocast dtype on CUDA, then run the op with autocast off."""
    lib = torch.library.Library('mmdwnet', 'FRAGMENT')
    key = 'Autocast' + device_type.upper()

    def kernel(keyset, *args):
        dtype = torch.float32 if device_type == 'cpu' else torch.get_autocast_dtype(device_type)
        args = [a.to(dtype) if isinstance(a, Tensor) and a.dtype in _LOW_OR_FP32 and
                a.device.type == device_type else a for a in args]
        with torch.autocast(device_type, enabled=False):
            return op._opoverload(*args)

    lib.impl(op._name, kernel, key, with_keyset=True)
    _libraries.append(lib)


_libraries = []
for _op in OPS:
    for _device in ('cpu', 'cuda'):
        _register_autocast(_op, _device)

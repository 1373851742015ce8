"""The ``torch.ops.mmdwnet`` operators, registered with :mod:`torch.library` from the specs of
:mod:`mmdwnet.ops.spec` (one loop: schema, eager implementation, fake, autocast) plus their
backward rules.

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

Each op's eager implementation checks its arguments (the spec's ``check``, shape arithmetic
only), asks :func:`mmdwnet.ops.backends.select` for a backend (chunking and other size
decisions happen there, in eager code only) and brings the backend's result to the op's layout.
Its fake implementation (shapes only, symbolic sizes welcome) serves ``torch.compile`` /
``torch.export``; the backward rules (``register_autograd``) are written with these same ops,
so ``local_aggregate``, ``local_correlate`` and ``local_scatter`` are differentiable twice.

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
import torch
from torch import Tensor

from . import backends, checks
from .spec import SPECS, OpSpec

__all__ = ['OPS']


def _define(spec: OpSpec):
    """``torch.library.custom_op`` of ``spec``: checked eager implementation and fake."""
    check, name, layout = spec.check, spec.name, spec.layout
    kind_names, kind_dims = spec.kinds

    def implementation(*args):
        check(*args)
        backend = backends.select(name, *(a for a in args if isinstance(a, Tensor)))
        return layout(getattr(backend, name)(*args), *args)

    def fake(*args):
        checks.check_kinds(name, kind_names, kind_dims, args)
        return spec.fake(*args)

    implementation.__name__ = name
    op = torch.library.custom_op(f'mmdwnet::{name}', implementation, mutates_args=(),
                                 schema=spec.schema)
    op.register_fake(fake)
    return op


OPS = {spec.name: _define(spec) for spec in SPECS}
local_aggregate = OPS['local_aggregate']
local_scatter = OPS['local_scatter']
local_correlate = OPS['local_correlate']
local_aggregate_pointwise = OPS['local_aggregate_pointwise']
local_aggregate_pointwise_backward = OPS['local_aggregate_pointwise_backward']
dynamic_depthwise_conv2d = OPS['dynamic_depthwise_conv2d']
dynamic_depthwise_conv2d_backward = OPS['dynamic_depthwise_conv2d_backward']


# ------------------------------------------------------------------------------- autograd
def _weight_grad(grad_w: Tensor, weight: Tensor) -> Tensor:
    """Weights shared by the batch (leading size 1) get the batch sum."""
    return grad_w.sum(0, keepdim=True) if weight.shape[0] == 1 else grad_w


def _save_tensors(ctx, inputs, output):
    """Save the (optional) tensor inputs; the int ones (sizes, maybe symbolic) go to ctx.ints."""
    ctx.save_for_backward(*(t for t in inputs if t is None or isinstance(t, Tensor)))
    ctx.ints = tuple(t for t in inputs if t is not None and not isinstance(t, Tensor))


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


def _correlate_backward(ctx, grad):
    q, k_map = ctx.saved_tensors
    grad = grad.contiguous()
    gq = local_aggregate(k_map, grad) if ctx.needs_input_grad[0] else None
    gk = local_scatter(q, grad) if ctx.needs_input_grad[1] else None
    return gq, gk, None, None


def _pointwise_backward(ctx, grad):
    x, feat, weight, bias = ctx.saved_tensors
    gx, gf, gw, gb = local_aggregate_pointwise_backward(grad, x, feat, weight, bias, *ctx.ints)
    return gx, gf, gw, (gb if bias is not None else None), None, None


def _ddw_backward(ctx, grad):
    x, kernels, bias = ctx.saved_tensors
    gx, gk, gb = dynamic_depthwise_conv2d_backward(grad, x, kernels, bias)
    return gx, gk, (gb if bias is not None else None)


local_aggregate.register_autograd(_aggregate_backward, setup_context=_save_tensors)
local_scatter.register_autograd(_scatter_backward, setup_context=_save_tensors)
local_correlate.register_autograd(_correlate_backward, setup_context=_save_tensors)
local_aggregate_pointwise.register_autograd(_pointwise_backward, setup_context=_save_tensors)
dynamic_depthwise_conv2d.register_autograd(_ddw_backward, setup_context=_save_tensors)

# ------------------------------------------------------------------------------ autocast
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
for _op in OPS.values():
    for _device in ('cpu', 'cuda'):
        _register_autocast(_op, _device)

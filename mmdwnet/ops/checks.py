"""Argument checks of the ``torch.ops.mmdwnet`` operators: shape arithmetic only, O(1) per call.

Every operator runs its check before any backend sees the tensors (as torchvision's C++ ops
do), so calling ``torch.ops.mmdwnet.<op>`` directly with inconsistent arguments raises a
``ValueError`` naming the argument, the shape it has and the one expected, instead of a kernel
reading out of bounds or dividing by a zero group count.  The public functions of
:mod:`mmdwnet.ops` run the same checks (through the operator, or before the decomposition
while exporting).

What is checked: tensor dimensions and shapes against each other; groups >= 1 and dividing
the channels; kernel sizes 1 .. :data:`MAX_KERNEL_SIZE` and consistent between arguments;
one floating dtype for all tensors; one device for all tensors.  Strides are free (every
backend makes what it needs contiguous).

The fake (meta) implementations run :func:`check_kinds` only -- dimensions, dtypes, devices,
which never depend on symbolic sizes -- so ``torch.compile(dynamic=True)`` adds no guards on
the sizes; the sizes are checked when the compiled graph runs the operator.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ['MAX_KERNEL_SIZE', 'FLOATING', 'check_kinds', 'check_local_aggregate',
           'check_local_scatter',
           'check_local_correlate', 'check_local_aggregate_pointwise',
           'check_local_aggregate_pointwise_backward', 'check_dynamic_depthwise_conv2d',
           'check_dynamic_depthwise_conv2d_backward']

#: Largest kernel size k: the Triton kernels hold a (next_pow2(k*k), 16) tile, which Triton
#: caps at 2**20 elements; larger windows are no local operation anyway.
MAX_KERNEL_SIZE = 256
#: dtypes the ops compute in (float16/bfloat16 accumulate in float32).
FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _fail(op: str, message: str) -> None:
    raise ValueError(f'mmdwnet.ops.{op}: {message}')


def _tensor(op: str, name: str, t, dims: int, layout: str = '') -> None:
    layout = f' {layout}' if layout else ''
    if not isinstance(t, Tensor):
        _fail(op, f'{name} must be a {dims}-D tensor{layout}, got {type(t).__name__}')
    if t.dim() != dims:
        _fail(op, f'{name} must be a {dims}-D tensor{layout}, got shape {tuple(t.shape)}')


def _int(op: str, name: str, value, minimum: int = 1, maximum: Optional[int] = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        upper = '' if maximum is None else f' and <= {maximum}'
        _fail(op, f'{name} must be an int >= {minimum}{upper}, got {value!r}')


def _kernel_size(op: str, name: str, k) -> None:
    _int(op, name, k, 1, MAX_KERNEL_SIZE)


def _groups(op: str, name: str, groups, channels: int) -> None:
    _int(op, name, groups)
    if channels % groups != 0:
        _fail(op, f'{channels} channels cannot be split into {groups} weight groups ({name}); '
                  'use a group count dividing the channels')


def _same_kind(op: str, names: Sequence[str], tensors: Sequence[Optional[Tensor]]) -> None:
    """One floating dtype and one device for every tensor (None entries skipped)."""
    first = None
    for name, t in zip(names, tensors):
        if t is None:
            continue
        if t.dtype not in FLOATING:
            _fail(op, f'{name} has dtype {t.dtype}; the ops take float32, float64, float16 or '
                      'bfloat16 tensors')
        if first is None:
            first = (name, t)
            continue
        if t.dtype != first[1].dtype:
            _fail(op, f'{name} has dtype {t.dtype} but {first[0]} has {first[1].dtype}; cast '
                      'them to one dtype (or run under torch.autocast)')
        if t.device != first[1].device:
            _fail(op, f'{name} is on {t.device} but {first[0]} is on {first[1].device}; move '
                      'them to one device')


def _same_shape(op: str, name: str, t: Tensor, ref_name: str, ref: Tensor) -> None:
    if t.shape != ref.shape:
        _fail(op, f'{name} {tuple(t.shape)} must have the shape of {ref_name} '
                  f'{tuple(ref.shape)}')


def _bias(op: str, bias: Optional[Tensor], size: int, what: str) -> None:
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (size, )):
        shape = tuple(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__
        _fail(op, f'bias {shape} must be {what} = ({size}, )')


# -------------------------------------------------------------------------------- the ops
def _aggregate_like(op: str, xname: str, x: Tensor, weight: Tensor) -> None:
    _tensor(op, xname, x, 4, '(N, C, H, W)')
    _tensor(op, 'weight', weight, 6, '(N, G, k, k, H, W)')
    n, c, h, w = x.shape
    nw, g, kh, kw, wh, ww = weight.shape
    if kh != kw:
        _fail(op, f'weight needs a square kernel (weight dims 2 and 3), got {kh}x{kw}')
    _kernel_size(op, 'kernel size (weight dims 2 and 3)', kh)
    if nw not in (1, n) or (wh, ww) != (h, w):
        _fail(op, f'weight {tuple(weight.shape)} does not match input {tuple(x.shape)}: '
                  f'expected ({n} or 1, G, k, k, {h}, {w})')
    _groups(op, 'weight dim 1', g, c)
    _same_kind(op, (xname, 'weight'), (x, weight))


def check_local_aggregate(x: Tensor, weight: Tensor) -> None:
    """x (N, C, H, W), weight (N|1, G, k, k, H, W), G dividing C."""
    _aggregate_like('local_aggregate', 'x', x, weight)


def check_local_scatter(grad: Tensor, weight: Tensor) -> None:
    """grad (N, C, H, W), weight (N|1, G, k, k, H, W), G dividing C."""
    _aggregate_like('local_scatter', 'grad', grad, weight)


def check_local_correlate(q: Tensor, k_map: Tensor, kernel_size: int, groups: int) -> None:
    """q, k_map (N, C, H, W) of one shape; 1 <= kernel_size <= MAX; groups dividing C."""
    op = 'local_correlate'
    _tensor(op, 'q', q, 4, '(N, C, H, W)')
    _tensor(op, 'k_map', k_map, 4, '(N, C, H, W)')
    _same_shape(op, 'k_map', k_map, 'q', q)
    _kernel_size(op, 'kernel_size', kernel_size)
    _groups(op, 'groups', groups, q.shape[1])
    _same_kind(op, ('q', 'k_map'), (q, k_map))


def _pointwise(op: str, x: Tensor, feat: Tensor, weight: Tensor, bias: Optional[Tensor],
               groups: int, kernel_size: int) -> None:
    _tensor(op, 'x', x, 4, '(N, C, H, W)')
    _tensor(op, 'feat', feat, 4, '(N, R, H, W)')
    _tensor(op, 'weight', weight, 4, '(G*k*k, R, 1, 1)')
    _kernel_size(op, 'kernel_size', kernel_size)
    _groups(op, 'groups', groups, x.shape[1])
    n, c, h, w = x.shape
    if feat.shape[0] != n or tuple(feat.shape[2:]) != (h, w):
        _fail(op, f'feat {tuple(feat.shape)} must be (N, R, H, W) matching x {tuple(x.shape)}')
    rows = groups * kernel_size**2
    if tuple(weight.shape) != (rows, feat.shape[1], 1, 1):
        _fail(op, f'weight {tuple(weight.shape)} must be (G*k*k, R, 1, 1) = '
                  f'({rows}, {feat.shape[1]}, 1, 1) for groups={groups}, '
                  f'kernel_size={kernel_size}')
    _bias(op, bias, rows, '(G*k*k, )')


def check_local_aggregate_pointwise(x: Tensor, feat: Tensor, weight: Tensor,
                                    bias: Optional[Tensor], groups: int,
                                    kernel_size: int) -> None:
    """x (N, C, H, W), feat (N, R, H, W), weight (G*k*k, R, 1, 1), bias (G*k*k) or None."""
    op = 'local_aggregate_pointwise'
    _pointwise(op, x, feat, weight, bias, groups, kernel_size)
    _same_kind(op, ('x', 'feat', 'weight', 'bias'), (x, feat, weight, bias))


def check_local_aggregate_pointwise_backward(grad: Tensor, x: Tensor, feat: Tensor,
                                             weight: Tensor, bias: Optional[Tensor], groups: int,
                                             kernel_size: int) -> None:
    """The forward's checks and grad (N, C, H, W) of x's shape."""
    op = 'local_aggregate_pointwise_backward'
    _pointwise(op, x, feat, weight, bias, groups, kernel_size)
    _tensor(op, 'grad', grad, 4, '(N, C, H, W)')
    _same_shape(op, 'grad', grad, 'x', x)
    _same_kind(op, ('grad', 'x', 'feat', 'weight', 'bias'), (grad, x, feat, weight, bias))


def _ddw(op: str, x: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> None:
    _tensor(op, 'x', x, 4, '(N, C, H, W)')
    _tensor(op, 'kernels', kernels, 4, '(N, C, k, k)')
    n, c = x.shape[:2]
    k = kernels.shape[-1]
    if tuple(kernels.shape) != (n, c, k, k):
        _fail(op, f'kernels {tuple(kernels.shape)} must be (N, C, k, k) = ({n}, {c}, k, k)')
    _kernel_size(op, 'kernel size (kernels dims 2 and 3)', k)
    _bias(op, bias, c, '(C, )')


def check_dynamic_depthwise_conv2d(x: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> None:
    """x (N, C, H, W), kernels (N, C, k, k), bias (C) or None."""
    op = 'dynamic_depthwise_conv2d'
    _ddw(op, x, kernels, bias)
    _same_kind(op, ('x', 'kernels', 'bias'), (x, kernels, bias))


def check_dynamic_depthwise_conv2d_backward(grad: Tensor, x: Tensor, kernels: Tensor,
                                            bias: Optional[Tensor]) -> None:
    """The forward's checks and grad (N, C, H, W) of x's shape."""
    op = 'dynamic_depthwise_conv2d_backward'
    _ddw(op, x, kernels, bias)
    _tensor(op, 'grad', grad, 4, '(N, C, H, W)')
    _same_shape(op, 'grad', grad, 'x', x)
    _same_kind(op, ('grad', 'x', 'kernels', 'bias'), (grad, x, kernels, bias))


def check_kinds(op: str, names: Sequence[str], dims: Sequence[int], args: Sequence) -> None:
    """The size-free part of an op's check (for fake tensors): ``args[i]``, named ``names[i]``,
    is a tensor of ``dims[i]`` dimensions (negative: ``-dims[i]`` dimensions or None; 0: not a
    tensor); all tensors share one floating dtype and one device."""
    tensors, tensor_names = [], []
    for name, dim, value in zip(names, dims, args):
        if dim == 0 or (dim < 0 and value is None):
            continue
        _tensor(op, name, value, abs(dim), '')
        tensors.append(value)
        tensor_names.append(name)
    _same_kind(op, tensor_names, tensors)

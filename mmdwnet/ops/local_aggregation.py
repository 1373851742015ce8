"""Position-varying local aggregation in pure PyTorch (CPU and CUDA).

The inhomogeneous dynamic depth-wise conv (I-D-DW) of the paper aggregates, at every position,
the k x k neighbourhood of each channel with a weight shared by a group of channels::

    out[n, c, h, w] = sum_{i,j} W[n, c // (C/G), i, j, h, w] * x[n, c, h + i - k//2, w + j - k//2]

(zero padding).  The official op is a cupy CUDA kernel.  Here three primitives, each a loop over
the k*k offsets that only ever holds tensors of the input's size (the ``F.unfold`` formulation
materialises a k*k-times larger tensor), implement it and its transposes:

* ``_aggregate(x, w)``   -- the formula above;
* ``_scatter(g, w)``     -- its transpose w.r.t. ``x`` (gradient of the input);
* ``_correlate(g, x)``   -- its transpose w.r.t. ``w`` (gradient of the weights), which is also
  the query-key correlation of sliding-window attention.

Two autograd functions are built from them: :func:`local_aggregate` (I-D-DW, the value
aggregation of sliding-window attention, locally connected layers) and :func:`local_correlate`
(sliding-window attention logits).  Each one's backward is made of the other primitives, so
double the memory of the inputs is the most either needs.
"""
import torch
import torch.nn.functional as F
from torch.autograd import Function

__all__ = ['local_aggregate', 'local_correlate', 'local_aggregate_unfold', 'check_weight_shape']


def check_weight_shape(x, weight):
    """Validate ``x`` (N, C, H, W) against ``weight`` (N|1, G, k, k, H, W); return (G, k)."""
    if x.dim() != 4 or weight.dim() != 6:
        raise ValueError(f'local_aggregate expects x of shape (N, C, H, W) and weight of shape '
                         f'(N, G, k, k, H, W); got {tuple(x.shape)} and {tuple(weight.shape)}')
    n, c, h, w = x.shape
    wn, g, kh, kw, wh, ww = weight.shape
    if kh != kw or kh % 2 == 0:
        raise ValueError(f'local_aggregate needs an odd square kernel, got {kh}x{kw}')
    if (wh, ww) != (h, w) or wn not in (1, n):
        raise ValueError(f'weight {tuple(weight.shape)} does not match input {tuple(x.shape)}: '
                         f'expected ({n} or 1, G, k, k, {h}, {w})')
    if c % g != 0:
        raise ValueError(f'{c} channels cannot be split into {g} weight groups')
    return g, kh


def _offsets(k):
    return [(i, j) for i in range(k) for j in range(k)]


def _aggregate(x, w):
    """x: (N, G, Cg, H, W); w: (N|1, G, k, k, H, W) -> (N, G, Cg, H, W)."""
    k = w.shape[2]
    p = k // 2
    h, wd = x.shape[-2:]
    xp = F.pad(x, (p, p, p, p))
    out = torch.zeros_like(x)
    for i, j in _offsets(k):
        out.addcmul_(xp[..., i:i + h, j:j + wd], w[:, :, i, j].unsqueeze(2))
    return out


def _scatter(g, w):
    """Transpose of ``_aggregate`` w.r.t. x.  g: (N, G, Cg, H, W) -> (N, G, Cg, H, W)."""
    k = w.shape[2]
    p = k // 2
    h, wd = g.shape[-2:]
    gp = g.new_zeros(g.shape[:-2] + (h + 2 * p, wd + 2 * p))
    for i, j in _offsets(k):
        gp[..., i:i + h, j:j + wd].addcmul_(g, w[:, :, i, j].unsqueeze(2))
    return gp[..., p:p + h, p:p + wd]


def _correlate(g, x, k):
    """Transpose of ``_aggregate`` w.r.t. w.  g, x: (N, G, Cg, H, W) -> (N, G, k, k, H, W)."""
    p = k // 2
    n, grp, _, h, wd = x.shape
    xp = F.pad(x, (p, p, p, p))
    out = x.new_empty(n, grp, k, k, h, wd)
    for i, j in _offsets(k):
        out[:, :, i, j] = (g * xp[..., i:i + h, j:j + wd]).sum(2)
    return out


def _grouped(t, groups):
    n, c, h, w = t.shape
    return t.reshape(n, groups, c // groups, h, w)


class _LocalAggregate(Function):

    @staticmethod
    def forward(ctx, x, weight):
        groups, _ = check_weight_shape(x, weight)
        ctx.save_for_backward(x, weight)
        return _aggregate(_grouped(x, groups), weight).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        groups, k = weight.shape[1], weight.shape[2]
        g = _grouped(grad_out.contiguous(), groups)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _scatter(g, weight).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            grad_w = _correlate(g, _grouped(x, groups), k)
            if weight.shape[0] == 1 and x.shape[0] > 1:
                grad_w = grad_w.sum(0, keepdim=True)
        return grad_x, grad_w


class _LocalCorrelate(Function):

    @staticmethod
    def forward(ctx, q, k_map, kernel_size, groups):
        ctx.save_for_backward(q, k_map)
        ctx.groups = groups
        return _correlate(_grouped(q, groups), _grouped(k_map, groups), kernel_size)

    @staticmethod
    def backward(ctx, grad_logits):
        q, k_map = ctx.saved_tensors
        groups = ctx.groups
        grad_logits = grad_logits.contiguous()
        grad_q = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_q = _aggregate(_grouped(k_map, groups), grad_logits).reshape(q.shape)
        if ctx.needs_input_grad[1]:
            grad_k = _scatter(_grouped(q, groups), grad_logits).reshape(k_map.shape)
        return grad_q, grad_k, None, None


def local_aggregate(x, weight):
    """Aggregate each k x k neighbourhood with position-varying, group-shared weights.

    Args:
        x (Tensor): input of shape (N, C, H, W).
        weight (Tensor): weights of shape (N, G, k, k, H, W), or (1, G, k, k, H, W) for weights
            shared by every image (a locally connected layer); channel ``c`` uses group
            ``c // (C / G)``; k odd.

    Returns:
        Tensor: (N, C, H, W), zero padding, stride 1.
    """
    return _LocalAggregate.apply(x.contiguous(), weight.contiguous())


def local_correlate(q, k_map, kernel_size, groups):
    """Correlate every query with the keys of its k x k neighbourhood, per channel group.

    ``out[n, g, i, j, h, w] = sum_{c in g} q[n, c, h, w] * k_map[n, c, h+i-k//2, w+j-k//2]``
    (zero padding).  Used for the logits of sliding-window attention (one group per head).

    Args:
        q (Tensor): (N, C, H, W).
        k_map (Tensor): (N, C, H, W).
        kernel_size (int): odd neighbourhood size k.
        groups (int): number of channel groups G (heads); must divide C.

    Returns:
        Tensor: (N, G, k, k, H, W).
    """
    if q.shape != k_map.shape or q.dim() != 4:
        raise ValueError(f'local_correlate expects two (N, C, H, W) tensors of one shape, got '
                         f'{tuple(q.shape)} and {tuple(k_map.shape)}')
    if q.shape[1] % groups != 0:
        raise ValueError(f'{q.shape[1]} channels cannot be split into {groups} groups')
    if kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be odd, got {kernel_size}')
    return _LocalCorrelate.apply(q.contiguous(), k_map.contiguous(), kernel_size, groups)


def local_aggregate_unfold(x, weight):
    """Reference ``F.unfold`` formulation of :func:`local_aggregate` (k*k-times the memory).

    Kept for tests and benchmarks only.
    """
    groups, k = check_weight_shape(x, weight)
    n, c, h, w = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(n, groups, c // groups, k * k, h, w)
    return (cols * weight.reshape(weight.shape[0], groups, 1, k * k, h, w)).sum(3).view(n, c, h, w)

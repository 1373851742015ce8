"""The mmdwnet ops written with standard PyTorch ops: the definition of each op.

Each function here is the op of the same name in :mod:`mmdwnet.ops` (same arguments, same
result), written as a loop over the ``k x k`` offsets of the window: zero-pad the input once
(:func:`same_padding`), take the shifted ``(H, W)`` slice of each offset and multiply-add it
with that offset's weight.  Only ``Pad``, ``Slice``, ``Mul``, ``Add``, ``ReduceSum``,
``Reshape`` and ``Concat`` (and one 1x1 ``Conv`` with a static weight) appear, all of which take
symbolic batch and spatial sizes, so the forms never fix the batch or the image size of a
graph.  In particular the dynamic depth-wise conv is *not* a grouped convolution over the batch
folded into channels (the eager form): ONNX ``Conv`` needs a static ``group`` and a kernel of
known shape.

Users: the exporters (:mod:`mmdwnet.ops.export`), the op specs (:mod:`mmdwnet.ops.spec`:
``decomposition``), and the tests, which compare every backend with these forms.

The "same" padding rule lives here, once: :func:`same_padding`.
"""
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['same_padding', 'local_aggregate', 'local_aggregate_pointwise', 'local_correlate',
           'dynamic_depthwise_conv2d']


def same_padding(k: int) -> Tuple[int, int]:
    """Zero padding (before, after) of a k x k window with "same" output size: before =
    (k - 1) // 2 (top/left), after = k // 2 (bottom/right), as PyTorch's ``padding='same'``;
    an even k puts the extra row/column at the bottom/right."""
    return (k - 1) // 2, k // 2


def _neighbours(x: Tensor, kernel_size: int) -> Iterator[Tuple[int, int, Tensor]]:
    """(i, j, x shifted by offset (i, j)) for the k x k offsets, zero padding.

    ``shifted[..., h, w] = x[..., h + i - (k-1)//2, w + j - (k-1)//2]`` (zero outside), same
    shape as ``x`` (..., H, W).
    """
    before, after = same_padding(kernel_size)
    xp = F.pad(x, (before, after, before, after))
    for i in range(kernel_size):
        rows = xp[..., i:xp.shape[-2] - (kernel_size - 1 - i), :]
        for j in range(kernel_size):
            yield i, j, rows[..., j:xp.shape[-1] - (kernel_size - 1 - j)]


def local_aggregate(x: Tensor, weight: Tensor) -> Tensor:
    """Standard-op form of :func:`mmdwnet.ops.local_aggregate`.

    ``out[n, c, h, w] = sum_ij weight[n, c // (C/G), i, j, h, w] * x[n, c, h+i-pb, w+j-pb]``,
    ``pb = (k - 1) // 2``, zero padding.

    Args:
        x (Tensor): (N, C, H, W).
        weight (Tensor): (N or 1, G, k, k, H, W).

    Returns:
        Tensor: (N, C, H, W).
    """
    n, c, h, w = x.shape
    groups, k = weight.shape[1], weight.shape[2]
    xg = x.reshape(n, groups, c // groups, h, w)
    out = None
    for i, j, shifted in _neighbours(xg, k):
        term = shifted * weight[:, :, i, j].unsqueeze(2)
        out = term if out is None else out + term
    return out.reshape(n, c, h, w)


def local_aggregate_pointwise(x: Tensor, feat: Tensor, weight: Tensor, bias: Optional[Tensor],
                              groups: int, kernel_size: int) -> Tensor:
    """Standard-op form of :func:`mmdwnet.ops.local_aggregate_pointwise`:
    ``local_aggregate(x, conv1x1(feat, weight, bias).view(N, G, k, k, H, W))``.

    Args:
        x (Tensor): (N, C, H, W).
        feat (Tensor): (N, R, H, W).
        weight (Tensor): (G*k*k, R, 1, 1) or (G*k*k, R).
        bias (Tensor | None): (G*k*k, ).
        groups (int): G.
        kernel_size (int): k.

    Returns:
        Tensor: (N, C, H, W).
    """
    n, _, h, w = x.shape
    kernels = F.conv2d(feat, weight.reshape(weight.shape[0], -1, 1, 1), bias)
    return local_aggregate(x, kernels.reshape(n, groups, kernel_size, kernel_size, h, w))


def local_correlate(q: Tensor, k_map: Tensor, kernel_size: int, groups: int) -> Tensor:
    """Standard-op form of :func:`mmdwnet.ops.local_correlate`.

    ``out[n, g, i, j, h, w] = sum_{c in g} q[n, c, h, w] * k_map[n, c, h+i-pb, w+j-pb]``.

    Args:
        q (Tensor): (N, C, H, W).
        k_map (Tensor): (N, C, H, W).
        kernel_size (int): k.
        groups (int): G, dividing C.

    Returns:
        Tensor: (N, G, k, k, H, W).
    """
    n, c, h, w = q.shape
    qg = q.reshape(n, groups, c // groups, h, w)
    kg = k_map.reshape(n, groups, c // groups, h, w)
    logits = [(qg * shifted).sum(2, keepdim=True) for _, _, shifted in _neighbours(kg, kernel_size)]
    return torch.cat(logits, 2).reshape(n, groups, kernel_size, kernel_size, h, w)


def dynamic_depthwise_conv2d(x: Tensor, kernels: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """Standard-op form of :func:`mmdwnet.ops.dynamic_depthwise_conv2d`.

    Each image's depth-wise conv as :func:`local_aggregate` with one weight per (image, channel)
    broadcast over the positions: a sum of shifted inputs times scalars, so neither the batch
    size nor the kernels need to be known when the graph is built.

    Args:
        x (Tensor): (N, C, H, W).
        kernels (Tensor): (N, C, k, k).
        bias (Tensor | None): (C, ).

    Returns:
        Tensor: (N, C, H, W).
    """
    out = local_aggregate(x, kernels[..., None, None])  # weights broadcast over positions
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)

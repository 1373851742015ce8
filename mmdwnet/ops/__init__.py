"""mmdwnet's operators: local aggregation (I-D-DW, sliding-window attention) and D-DW.

Layout (one job per module; torch is the only dependency, no import cycle):

* :mod:`.spec` -- one :class:`~mmdwnet.ops.spec.OpSpec` per op (schema, argument check,
  fake, decomposition, FLOP rule): the list everything else is made from;
* :mod:`.checks` -- the argument checks each operator runs before a backend (O(1));
* :mod:`.decompositions` -- the ops in standard PyTorch ops, and the "same" padding rule;
* :mod:`.library` -- registers ``torch.ops.mmdwnet.*`` from the specs (eager dispatch to a
  backend, fake, autograd, autocast);
* :mod:`.backends` -- the :class:`~mmdwnet.ops.backends.Backend` base class, the registry and
  the per-call choice (``MMDWNET_OPS_BACKEND``), and the built-in backends;
* :mod:`.export` -- what exporters see (:func:`~mmdwnet.ops.export.exporting`,
  :func:`~mmdwnet.ops.export.decompositions`).

The functions here call the ``torch.ops.mmdwnet.*`` operators; while an ONNX exporter traces
the model (:func:`mmdwnet.ops.export.exporting`) they return the decomposition instead.

Kernel sizes may be odd or even; the output keeps the input size with zero padding
``(k - 1) // 2`` before (top/left) and ``k // 2`` after (bottom/right), exactly PyTorch's
``padding='same'`` (an even k gets the extra row/column at the bottom/right).
"""
from typing import Optional

import torch
from torch import Tensor

from . import export, library  # noqa: F401  (library registers the torch.ops.mmdwnet ops)
from .spec import PUBLIC

__all__ = list(PUBLIC)  # local_aggregate, local_correlate, local_aggregate_pointwise, D-DW


def local_aggregate(x: Tensor, weight: Tensor) -> Tensor:
    """Aggregate each k x k neighbourhood with position-varying, group-shared weights.

    ``out[n, c, h, w] = sum_{i,j} weight[n, c // (C/G), i, j, h, w] * x[n, c, h+i-pb, w+j-pb]``
    with zero padding, ``pb = (k - 1) // 2``.

    Args:
        x (Tensor): input of shape (N, C, H, W).
        weight (Tensor): weights of shape (N, G, k, k, H, W), or (1, G, k, k, H, W) for weights
            shared by every image (a locally connected layer); channel ``c`` uses group
            ``c // (C / G)``; k odd or even.

    Returns:
        Tensor: (N, C, H, W), contiguous, stride 1.
    """
    if export.exporting():
        return export.local_aggregate(x, weight)
    return torch.ops.mmdwnet.local_aggregate(x, weight)


def local_aggregate_pointwise(x: Tensor, feat: Tensor, weight: Tensor, bias: Optional[Tensor],
                              groups: int, kernel_size: int) -> Tensor:
    """I-D-DW aggregation whose kernels are a 1x1 conv of ``feat``, never held in full.

    Equal to ``local_aggregate(x, F.conv2d(feat, weight, bias).view(N, G, k, k, H, W))``, but
    the kernels are computed a few images, or a few rows of one image, at a time (and recomputed
    in the backward pass), so the (N, G*k*k, H, W) tensor, 16x the input at the tiny model's
    first stage, is never allocated (compiled CPU kernels: row tiles of
    ``mmdwnet.ops.backends.cpu.KERNEL_TILE_BYTES``; Triton: tiles on chip; pure PyTorch: whole
    images).

    Args:
        x (Tensor): (N, C, H, W) input to aggregate.
        feat (Tensor): (N, R, H, W) features the kernels are generated from.
        weight (Tensor): (G*k*k, R, 1, 1) weight of the 1x1 conv (output channel
            ``g*k*k + i*k + j`` is group g's weight at offset (i, j)).
        bias (Tensor | None): (G*k*k, ) bias of the 1x1 conv.
        groups (int): G, dividing C.
        kernel_size (int): k (odd or even).

    Returns:
        Tensor: (N, C, H, W).
    """
    if export.exporting():
        return export.local_aggregate_pointwise(x, feat, weight, bias, groups, kernel_size)
    return torch.ops.mmdwnet.local_aggregate_pointwise(x, feat, weight, bias, groups,
                                                       kernel_size)


def local_correlate(q: Tensor, k_map: Tensor, kernel_size: int, groups: int) -> Tensor:
    """Correlate every query with the keys of its k x k neighbourhood, per channel group.

    ``out[n, g, i, j, h, w] = sum_{c in g} q[n, c, h, w] * k_map[n, c, h+i-pb, w+j-pb]``
    (zero padding, ``pb = (k - 1) // 2``).  Used for the logits of sliding-window attention
    (one group per head).

    Args:
        q (Tensor): (N, C, H, W).
        k_map (Tensor): (N, C, H, W).
        kernel_size (int): neighbourhood size k (odd or even).
        groups (int): number of channel groups G (heads); must divide C.

    Returns:
        Tensor: (N, G, k, k, H, W).
    """
    if export.exporting():
        return export.local_correlate(q, k_map, kernel_size, groups)
    return torch.ops.mmdwnet.local_correlate(q, k_map, kernel_size, groups)


def dynamic_depthwise_conv2d(x: Tensor, kernels: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """Depth-wise conv with one k x k kernel per image and channel (D-DW), zero padding.

    The batch runs as one op: one call of the compiled channels-last kernel on CPU float32
    (its backward too, compiled; an even k's backward is the grouped conv's gradient), else one
    grouped conv over the batch folded into channels.

    Args:
        x (Tensor): (N, C, H, W).
        kernels (Tensor): (N, C, k, k), k odd or even.
        bias (Tensor | None): (C, ).

    Returns:
        Tensor: (N, C, H, W); channels-last memory when ``x`` is channels-last.
    """
    if export.exporting():
        return export.dynamic_depthwise_conv2d(x, kernels, bias)
    return torch.ops.mmdwnet.dynamic_depthwise_conv2d(x, kernels, bias)

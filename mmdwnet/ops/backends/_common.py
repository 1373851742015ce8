"""Pieces shared by the eager backends: the bounded kernel workspace and the
chunked I-D-DW (pointwise + aggregation) loop that the reference and CPU backends both run.

Kernel workspace (I-D-DW): generating the (B, G*k*k, H*W) kernels of a batch chunk into a fresh
100 MB tensor costs more in page faults than the aggregation itself, so each thread keeps one
buffer and reuses it.  The buffer is bounded: requests up to :data:`WORKSPACE_CAP_BYTES` reuse
(and may grow) it; a larger request (one huge image, e.g. 1024x1024 inputs) gets a one-off
tensor, freed when the op returns, and the thread's cached buffer is dropped as well, so no
more than the cap stays allocated per thread.  :func:`release_workspace` frees it at once.
"""
import threading
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['WORKSPACE_CAP_BYTES', 'workspace', 'release_workspace',
           'workspace_bytes', 'workspace_matmul', 'pointwise_forward', 'pointwise_backward']

#: Largest kernel workspace (bytes) a thread keeps between calls.
WORKSPACE_CAP_BYTES = 64 << 20

_workspace = threading.local()


def workspace(shape: Tuple[int, ...], ref: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape`` like ``ref``: the thread's reused CPU buffer when it
    fits the cap, else a one-off allocation (and the cached buffer is released)."""
    if ref.device.type != 'cpu':
        return ref.new_empty(shape)  # the caching allocator already reuses memory
    numel = 1
    for s in shape:
        numel *= s
    if numel * ref.element_size() > WORKSPACE_CAP_BYTES:
        release_workspace()
        return ref.new_empty(shape)
    buf = getattr(_workspace, 'buf', None)
    if buf is None or buf.dtype != ref.dtype or buf.numel() < numel:
        buf = ref.new_empty(numel)
        _workspace.buf = buf
    return buf[:numel].view(shape)


def release_workspace() -> None:
    """Free this thread's cached kernel workspace."""
    _workspace.buf = None


def workspace_bytes() -> int:
    """Bytes held by this thread's cached kernel workspace."""
    buf = getattr(_workspace, 'buf', None)
    return 0 if buf is None else buf.numel() * buf.element_size()


def workspace_matmul(w2d: Tensor, bias: Optional[Tensor], fv: Tensor) -> Tensor:
    """1x1 conv as a matmul: (O, R) x (B, R, HW) -> (B, O, HW) in the kernel workspace."""
    out = workspace((fv.shape[0], w2d.shape[0], fv.shape[2]), fv)
    if bias is None:
        return torch.matmul(w2d, fv, out=out)
    return torch.baddbmm(bias.view(1, -1, 1), w2d.expand(fv.shape[0], -1, -1), fv, out=out)


def _slices(n: int, step: int):
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def pointwise_forward(x: Tensor, feat: Tensor, w2d: Tensor, bias: Optional[Tensor], groups: int,
                      k: int, step: int, aggregate: Callable) -> Tensor:
    """``aggregate(x, w2d @ feat + bias)`` made ``step`` images at a time.

    ``aggregate(x_chunk, kernels, out_chunk)`` writes one chunk; ``kernels`` is the
    (B, G, k*k, H*W) workspace (the callee may change it in place).
    """
    n, c, h, w = x.shape
    fv = feat.reshape(n, feat.shape[1], h * w)
    out = x.new_empty(n, c, h, w)
    for sl in _slices(n, step):
        kern = workspace_matmul(w2d, bias, fv[sl]).view(-1, groups, k * k, h * w)
        aggregate(x[sl], kern, out[sl])
    return out


def pointwise_backward(grad: Tensor, x: Tensor, feat: Tensor, w2d: Tensor, bias: Optional[Tensor],
                       groups: int, k: int, step: int, scatter: Callable, correlate: Callable):
    """Gradients of :func:`pointwise_forward`, the kernels recomputed chunk by chunk.

    ``scatter(g_chunk, kernels, out_chunk)`` writes the input gradient of a chunk,
    ``correlate(g_chunk, x_chunk, kernels)`` overwrites ``kernels`` with the kernel gradient.

    Returns:
        tuple: (grad x, grad feat, grad w2d, grad bias or None).
    """
    n, c, h, w = x.shape
    fv = feat.reshape(n, feat.shape[1], h * w)
    grad = grad.contiguous()
    gx = torch.empty_like(grad)
    gf = x.new_empty(n, feat.shape[1], h * w)
    gw = torch.zeros_like(w2d)
    gb = torch.zeros_like(bias) if bias is not None else None
    for sl in _slices(n, step):
        kern = workspace_matmul(w2d, bias, fv[sl]).view(-1, groups, k * k, h * w)
        scatter(grad[sl], kern, gx[sl])
        correlate(grad[sl], x[sl], kern)
        gk = kern.view(kern.shape[0], -1, h * w)
        gw += (gk @ fv[sl].transpose(1, 2)).sum(0)
        if gb is not None:
            gb += gk.sum((0, 2))
        torch.matmul(w2d.t(), gk, out=gf[sl])
    return gx, gf.view(feat.shape), gw, gb

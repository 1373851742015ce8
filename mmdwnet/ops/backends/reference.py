"""Reference backend: pure PyTorch, any device, float32/float64 (float16/bfloat16 inputs are
computed in float32 and returned in their dtype).

Every primitive is a loop over the k*k offsets of in-place multiply-adds on tensors of the
input's size, laid out so that each one is a single long contiguous run per channel (fast on
CPU, where short rows of 7-14 elements and broadcasting dominate the cost otherwise):

* the input is flattened to ``(N, G, C/G, L)`` with ``pa*W + pa`` zeros before and after its
  ``H*W`` positions (``pa = k // 2``); the neighbour at offset ``(i, j)`` of every output
  position is then the contiguous slice starting at ``margin + (i - pb)*W + (j - pb)``
  (``pb = (k - 1) // 2``, see :func:`~mmdwnet.ops.decompositions.same_padding`);
* reads that wrap around a row end are cancelled by masking, per column offset ``j``, the
  source columns they would read (``k`` masked copies of the input, never of the weights);
* the batch is processed in chunks that keep the working set in cache (CPU).

The straightforward formulations :func:`local_aggregate_unfold` and ``local_aggregate_loop``
(differentiable by autograd) serve tests and benchmarks; the loop over the k x k offsets is the
standard-op form that the exporters see, :func:`mmdwnet.ops.decompositions.local_aggregate`.

Registered as the backend ``reference`` (alias ``torch``): any device, every op.
"""
import functools
import sys

import torch
import torch.nn.functional as F
from torch import Tensor

from ..decompositions import local_aggregate as local_aggregate_loop  # noqa: F401
from ..decompositions import same_padding
from ._common import pointwise_backward, pointwise_forward
from .base import PrimitiveBackend

NAME = 'reference'

# Per-chunk budgets (bytes) on CPU: the input working set (flattened input, its k masked copies,
# output) and the generated kernels of the I-D-DW op.  On other devices one chunk.
CHUNK_BYTES = 64 << 20
KERNEL_CHUNK_BYTES = 64 << 20

_LOW = (torch.float16, torch.bfloat16)


def available() -> bool:
    return True


def supports(*tensors) -> bool:
    return True


def _fp32_compute(fn):
    """Run ``fn`` in float32 for float16/bfloat16 inputs and cast its results back."""

    @functools.wraps(fn)
    def wrapper(*args):
        dtype = next(a.dtype for a in args if isinstance(a, Tensor))
        if dtype not in _LOW:
            return fn(*args)
        out = fn(*[a.float() if isinstance(a, Tensor) else a for a in args])
        if isinstance(out, tuple):
            return tuple(None if o is None else o.to(dtype) for o in out)
        return out.to(dtype)

    return wrapper


class _Flat:
    """Geometry of the flattened, zero-extended layout of an (H, W) map for a k x k window."""

    def __init__(self, h, w, k):
        self.h, self.w, self.k = h, w, k
        self.pb, pa = same_padding(k)
        self.hw = h * w
        self.margin = pa * w + pa
        self.length = self.hw + 2 * self.margin

    def start(self, i, j):
        """First flat index of the neighbour at offset (i, j) of output position 0."""
        return self.margin + (i - self.pb) * self.w + (j - self.pb)

    def pad(self, x, groups):
        """(N, C, H, W) (any strides) -> (N, G, C/G, L) contiguous, zero-extended."""
        n, c = x.shape[:2]
        return F.pad(x.reshape(n, c, self.hw), (self.margin, self.margin)).view(
            n, groups, c // groups, self.length)

    def column_masks(self, ref):
        """(k, L) masks: row j zeroes the source columns that column offset j reads wrapped."""
        col = (torch.arange(self.length, device=ref.device) - self.margin) % self.w
        d = torch.arange(self.k, device=ref.device).view(-1, 1) - self.pb
        keep = torch.where(d < 0, col < self.w + d, col >= d)
        return keep.to(ref.dtype)

    def shifted(self, x, groups, masks):
        """k padded copies of ``x``: copy j has the wrapped columns of column offset j zeroed."""
        xf = self.pad(x, groups)
        return [xf if j == self.pb else xf * masks[j] for j in range(self.k)]

    def chunk(self, n, channels, itemsize, device, kernels=0):
        """Samples per chunk within the budgets (CPU only); ``kernels`` per sample if made."""
        if device.type != 'cpu':
            return n
        step = CHUNK_BYTES // max(channels * self.length * itemsize * (self.k + 3), 1)
        if kernels:
            step = min(step, KERNEL_CHUNK_BYTES // (kernels * self.hw * itemsize))
        return max(1, min(n, step))


def _aggregate(out, xs, wv, flat):
    """out (B, G, Cg, HW) += sum_o xs[j](offset o) * wv[:, :, o]; wv (B|1, G, k*k, HW)."""
    k, hw = flat.k, flat.hw
    for i in range(k):
        for j in range(k):
            s = flat.start(i, j)
            out.addcmul_(xs[j][..., s:s + hw], wv[:, :, i * k + j].unsqueeze(2))
    return out


def _scatter(g, wv, flat, masks):
    """Transpose of :func:`_aggregate` w.r.t. x: g (B, G, Cg, HW) -> (B, G, Cg, HW)."""
    k, hw = flat.k, flat.hw
    grad = g.new_zeros(g.shape[:-1] + (flat.length, ))
    buf = torch.empty_like(grad)
    for j in range(k):
        acc = grad if j == flat.pb else buf
        if j != flat.pb:
            acc.zero_()
        for i in range(k):
            s = flat.start(i, j)
            acc[..., s:s + hw].addcmul_(g, wv[:, :, i * k + j].unsqueeze(2))
        if j != flat.pb:
            grad.addcmul_(acc, masks[j])
    return grad[..., flat.margin:flat.margin + hw]


def _correlate(out, g, xs, flat):
    """Transpose of :func:`_aggregate` w.r.t. w: out (B, G, k*k, HW) = sum_c g * xs[j](o)."""
    k, hw = flat.k, flat.hw
    cg = g.shape[2]
    tmp = torch.empty_like(g) if cg > 12 else None
    for i in range(k):
        for j in range(k):
            s = flat.start(i, j)
            src, dst = xs[j][..., s:s + hw], out[:, :, i * k + j]
            if tmp is not None:
                torch.sum(torch.mul(g, src, out=tmp), 2, out=dst)
            else:
                torch.mul(g[:, :, 0], src[:, :, 0], out=dst)
                for c in range(1, cg):
                    dst.addcmul_(g[:, :, c], src[:, :, c])
    return out


def _chunks(x, k, kernels=0):
    n, c, h, w = x.shape
    flat = _Flat(h, w, k)
    step = flat.chunk(n, c, x.element_size(), x.device, kernels)
    return flat, flat.column_masks(x), [slice(a, min(a + step, n)) for a in range(0, n, step)]


def _rows(wv, sl):
    return wv if wv.shape[0] == 1 else wv[sl]


@_fp32_compute
def aggregate(x: Tensor, w: Tensor, k: int) -> Tensor:
    n, c, h, wd = x.shape
    groups = w.shape[1]
    flat, masks, slices = _chunks(x, k)
    wv = w.reshape(w.shape[0], groups, k * k, flat.hw)
    out = x.new_zeros(n, groups, c // groups, flat.hw)
    for sl in slices:
        _aggregate(out[sl], flat.shifted(x[sl], groups, masks), _rows(wv, sl), flat)
    return out.view(n, c, h, wd)


@_fp32_compute
def scatter(g: Tensor, w: Tensor, k: int) -> Tensor:
    n, c, h, wd = g.shape
    groups = w.shape[1]
    flat, masks, slices = _chunks(g, k)
    wv = w.reshape(w.shape[0], groups, k * k, flat.hw)
    gv = g.reshape(n, groups, c // groups, flat.hw)
    out = g.new_empty(n, groups, c // groups, flat.hw)
    for sl in slices:
        out[sl] = _scatter(gv[sl].contiguous(), _rows(wv, sl), flat, masks)
    return out.view(n, c, h, wd)


@_fp32_compute
def correlate(g: Tensor, x: Tensor, groups: int, k: int) -> Tensor:
    n, c, h, wd = x.shape
    flat, masks, slices = _chunks(x, k)
    gv = g.reshape(n, groups, c // groups, flat.hw)
    out = x.new_empty(n, groups, k * k, flat.hw)
    for sl in slices:
        _correlate(out[sl], gv[sl].contiguous(), flat.shifted(x[sl], groups, masks), flat)
    return out.view(n, groups, k, k, h, wd)


def _pointwise_parts(x, w2d, groups, k):
    """Chunk size and the per-chunk aggregation / transposes on the flat layout."""
    n, c, h, wd = x.shape
    flat = _Flat(h, wd, k)
    masks = flat.column_masks(x)
    step = flat.chunk(n, c, x.element_size(), x.device, w2d.shape[0])

    def agg(xc, kern, out):
        out.zero_()
        _aggregate(out.view(-1, groups, c // groups, flat.hw), flat.shifted(xc, groups, masks),
                   kern, flat)

    def sct(gc, kern, out):
        out.view(-1, groups, c // groups, flat.hw)[:] = _scatter(
            gc.reshape(-1, groups, c // groups, flat.hw), kern, flat, masks)

    def cor(gc, xc, kern):
        _correlate(kern, gc.reshape(-1, groups, c // groups, flat.hw),
                   flat.shifted(xc, groups, masks), flat)

    return step, agg, sct, cor


@_fp32_compute
def aggregate_pointwise(x, feat, w2d, bias, groups, k):
    step, agg, _, _ = _pointwise_parts(x, w2d, groups, k)
    return pointwise_forward(x, feat, w2d, bias, groups, k, step, agg)


@_fp32_compute
def aggregate_pointwise_backward(grad, x, feat, w2d, bias, groups, k):
    step, _, sct, cor = _pointwise_parts(x, w2d, groups, k)
    return pointwise_backward(grad, x, feat, w2d, bias, groups, k, step, sct, cor)


def _ddw_input(x, k):
    """(1, N*C, H', W') input of the grouped conv and its symmetric conv padding."""
    n, c, h, w = x.shape
    pb, pa = same_padding(k)
    if pb == pa:
        return x.reshape(1, n * c, h, w), pb
    return F.pad(x, (pb, pa, pb, pa)).reshape(1, n * c, h + k - 1, w + k - 1), 0


@_fp32_compute
def dynamic_depthwise(x: Tensor, kernels: Tensor, bias) -> Tensor:
    """One grouped conv over the batch folded into channels."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    xin, pad = _ddw_input(x, k)
    out = F.conv2d(xin, kernels.reshape(n * c, 1, k, k),
                   None if bias is None else bias.repeat(n), padding=pad, groups=n * c)
    return out.view(n, c, h, w)


@_fp32_compute
def dynamic_depthwise_backward(grad, x, kernels, bias):
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    xin, pad = _ddw_input(x, k)
    gx, gk, gb = torch.ops.aten.convolution_backward(
        grad.reshape(1, n * c, h, w), xin, kernels.reshape(n * c, 1, k, k),
        None if bias is None else [n * c], [1, 1], [pad, pad], [1, 1], False, [0, 0], n * c,
        [True, True, bias is not None])
    gx = gx.view(n, c, *xin.shape[-2:])
    if pad == 0:  # padded explicitly (even k): the gradient of the padding is a crop
        pb = same_padding(k)[0]
        gx = gx[..., pb:pb + h, pb:pb + w]
    return (gx.contiguous(), gk.view(n, c, k, k),
            None if bias is None else gb.view(n, c).sum(0))


# ------------------------------------------------------------------ reference formulations
def local_aggregate_unfold(x: Tensor, weight: Tensor) -> Tensor:
    """``F.unfold`` formulation of the aggregation (k*k-times the memory); tests/benchmarks."""
    n, c, h, w = x.shape
    groups, k = weight.shape[1], weight.shape[2]
    pb, pa = same_padding(k)
    cols = F.unfold(F.pad(x, (pb, pa, pb, pa)), k).view(n, groups, c // groups, k * k, h, w)
    wv = weight.reshape(weight.shape[0], groups, 1, k * k, h, w)
    return (cols * wv).sum(3).view(n, c, h, w)


class ReferenceBackend(PrimitiveBackend):
    """Pure PyTorch, any device and dtype, every op; the fallback of every other backend."""

    name = NAME
    primitives = sys.modules[__name__]
    priority = 0


#: the instance :mod:`mmdwnet.ops.backends` registers
BACKEND = ReferenceBackend()

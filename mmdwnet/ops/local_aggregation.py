"""Position-varying local aggregation in pure PyTorch (CPU and CUDA).

The inhomogeneous dynamic depth-wise conv (I-D-DW) of the paper aggregates, at every position,
the k x k neighbourhood of each channel with a weight shared by a group of channels::

    out[n, c, h, w] = sum_{i,j} W[n, c // (C/G), i, j, h, w] * x[n, c, h + i - k//2, w + j - k//2]

(zero padding).  The official op is a cupy CUDA kernel; the ``F.unfold`` formulation
(:func:`local_aggregate_unfold`, kept as the reference) materialises a k*k-times larger tensor.

Here every op is a loop over the k*k offsets of in-place multiply-adds on tensors of the input's
size, laid out so that each one is a single long contiguous run per channel (fast on CPU, where
short rows of 7-14 elements and broadcasting dominate the cost otherwise):

* the input is flattened to ``(N, G, C/G, L)`` with ``p*W + p`` zeros before and after its
  ``H*W`` positions (``p = k // 2``); the neighbour at offset ``(i, j)`` of every output position
  is then the contiguous slice ``[i*W + j, i*W + j + H*W)``;
* reads that wrap around a row end (column ``w + j - p`` outside ``[0, W)``) are cancelled by
  masking, per column offset ``j``, the source columns they would read (``k`` masked copies of
  the input, never of the much larger weight);
* the batch is processed in chunks that keep the working set in cache.

Three primitives on that layout implement the aggregation and its transposes:

* :func:`_aggregate` -- the formula above;
* :func:`_scatter` -- its transpose w.r.t. ``x`` (gradient of the input);
* :func:`_correlate` -- its transpose w.r.t. ``w`` (gradient of the weights), which is also the
  query-key correlation of sliding-window attention.

Autograd functions built from them: :func:`local_aggregate` (I-D-DW, the value aggregation of
sliding-window attention, locally connected layers), :func:`local_correlate` (sliding-window
attention logits) and :func:`local_aggregate_pointwise`, which fuses the I-D-DW kernel
generator's last 1x1 conv into the aggregation so that the (N, G*k*k, H, W) kernels are never
held for the whole batch (they are recomputed chunk by chunk in the backward pass).
Everything is plain PyTorch, so CUDA tensors take the same code path.
"""
import threading

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import cpu_kernels

__all__ = [
    'local_aggregate', 'local_correlate', 'local_aggregate_pointwise', 'local_aggregate_unfold',
    'local_aggregate_loop', 'dynamic_depthwise_conv2d', 'check_weight_shape'
]

# Per-chunk budgets (bytes) on CPU: the input working set (flattened input, its k masked
# copies, output) and the generated kernels of :func:`local_aggregate_pointwise`.  Chunks trade
# cache locality against the number of (parallel) ops; on a busy machine every op costs a
# thread hand-over, so chunks are large.  On CUDA the whole batch is one chunk.
CHUNK_BYTES = 64 << 20
KERNEL_CHUNK_BYTES = 64 << 20

_workspace = threading.local()


def _kernel_buffer(shape, ref):
    """A reusable CPU buffer for generated kernels: fresh 100 MB allocations cost more in page
    faults than the aggregation itself.  Other devices allocate normally (caching allocator)."""
    if ref.device.type != 'cpu':
        return ref.new_empty(shape)
    numel = 1
    for s in shape:
        numel *= s
    buf = getattr(_workspace, 'buf', None)
    if buf is None or buf.dtype != ref.dtype or buf.numel() < numel:
        buf = ref.new_empty(numel)
        _workspace.buf = buf
    return buf[:numel].view(shape)


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


# ---------------------------------------------------------------------------- flat layout
class _Flat:
    """Geometry of the flattened, zero-extended layout of an (H, W) map for a k x k window."""

    def __init__(self, h, w, k):
        self.h, self.w, self.k, self.p = h, w, k, k // 2
        self.hw = h * w
        self.margin = self.p * w + self.p
        self.length = self.hw + 2 * self.margin

    def start(self, i, j):
        """First flat index of the neighbour at offset (i, j) of output position 0."""
        return i * self.w + j

    def pad(self, x, groups):
        """(N, C, H, W) (any strides) -> (N, G, C/G, L) contiguous, zero-extended."""
        n, c = x.shape[:2]
        return F.pad(x.reshape(n, c, self.hw), (self.margin, self.margin)).view(
            n, groups, c // groups, self.length)

    def column_masks(self, ref):
        """(k, L) masks: row j zeroes the source columns that column offset j reads wrapped."""
        col = (torch.arange(self.length, device=ref.device) - self.margin) % self.w
        d = torch.arange(self.k, device=ref.device).view(-1, 1) - self.p
        keep = torch.where(d < 0, col < self.w + d, col >= d)
        return keep.to(ref.dtype)

    def shifted(self, xf, masks):
        """k tensors: ``xf`` with the wrapped columns of column offset j zeroed."""
        return [xf if j == self.p else xf * masks[j] for j in range(self.k)]

    def chunk(self, n, channels, itemsize, device, kernels=0, compiled=False):
        """Samples per chunk within the budgets (CPU only); ``kernels`` per sample if made.
        The compiled kernels (``compiled``) need no input working set."""
        if device.type != 'cpu':
            return n
        step = n if compiled else CHUNK_BYTES // max(
            channels * self.length * itemsize * (self.k + 3), 1)
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
    """Transpose of :func:`_aggregate` w.r.t. x: g (B, G, Cg, HW) -> (B, G, Cg, L) flat grad."""
    k, hw = flat.k, flat.hw
    grad = g.new_zeros(g.shape[:-1] + (flat.length, ))
    buf = torch.empty_like(grad)
    for j in range(k):
        acc = grad if j == flat.p else buf
        if j != flat.p:
            acc.zero_()
        for i in range(k):
            s = flat.start(i, j)
            acc[..., s:s + hw].addcmul_(g, wv[:, :, i * k + j].unsqueeze(2))
        if j != flat.p:
            grad.addcmul_(acc, masks[j])
    return grad


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


def _batch_slices(n, step):
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def _weight_rows(wv, sl):
    return wv if wv.shape[0] == 1 else wv[sl]


# ---------------------------------------------------------------------------- autograd
class _LocalAggregate(Function):

    @staticmethod
    def forward(ctx, x, weight):
        groups, k = check_weight_shape(x, weight)
        ctx.save_for_backward(x, weight)
        if cpu_kernels.use_for(x, weight):
            return cpu_kernels.aggregate(x, weight, groups, k)
        n, c, h, w = x.shape
        flat = _Flat(h, w, k)
        wv = weight.reshape(weight.shape[0], groups, k * k, flat.hw)
        masks = flat.column_masks(x)
        out = x.new_zeros(n, groups, c // groups, flat.hw)
        for sl in _batch_slices(n, flat.chunk(n, c, x.element_size(), x.device)):
            xs = flat.shifted(flat.pad(x[sl], groups), masks)
            _aggregate(out[sl], xs, _weight_rows(wv, sl), flat)
        return out.view(n, c, h, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        groups, k = weight.shape[1], weight.shape[2]
        n, c, h, w = x.shape
        if cpu_kernels.use_for(x, weight, grad_out):
            grad_x = grad_w = None
            if ctx.needs_input_grad[0]:
                grad_x = cpu_kernels.scatter(grad_out, weight, groups, k)
            if ctx.needs_input_grad[1]:
                grad_w = cpu_kernels.correlate(grad_out, x, groups, k).view(
                    n, groups, k, k, h, w)
                if weight.shape[0] == 1 and n > 1:
                    grad_w = grad_w.sum(0, keepdim=True)
            return grad_x, grad_w
        flat = _Flat(h, w, k)
        wv = weight.reshape(weight.shape[0], groups, k * k, flat.hw)
        g = grad_out.reshape(n, groups, c // groups, flat.hw)
        masks = flat.column_masks(x)
        grad_x = x.new_empty(n, groups, c // groups, flat.hw) \
            if ctx.needs_input_grad[0] else None
        grad_w = x.new_empty(n, groups, k * k, flat.hw) if ctx.needs_input_grad[1] else None
        for sl in _batch_slices(n, flat.chunk(n, c, x.element_size(), x.device)):
            gs = g[sl].contiguous()
            if grad_x is not None:
                gx = _scatter(gs, _weight_rows(wv, sl), flat, masks)
                grad_x[sl] = gx[..., flat.margin:flat.margin + flat.hw]
            if grad_w is not None:
                xs = flat.shifted(flat.pad(x[sl], groups), masks)
                _correlate(grad_w[sl], gs, xs, flat)
        if grad_x is not None:
            grad_x = grad_x.view(n, c, h, w)
        if grad_w is not None:
            grad_w = grad_w.view(n, groups, k, k, h, w)
            if weight.shape[0] == 1 and n > 1:
                grad_w = grad_w.sum(0, keepdim=True)
        return grad_x, grad_w


class _LocalCorrelate(Function):

    @staticmethod
    def forward(ctx, q, k_map, kernel_size, groups):
        n, c, h, w = q.shape
        ctx.save_for_backward(q, k_map)
        ctx.groups = groups
        if cpu_kernels.use_for(q, k_map):
            return cpu_kernels.correlate(q, k_map, groups, kernel_size).view(
                n, groups, kernel_size, kernel_size, h, w)
        flat = _Flat(h, w, kernel_size)
        masks = flat.column_masks(q)
        out = q.new_empty(n, groups, kernel_size**2, flat.hw)
        qv = q.reshape(n, groups, c // groups, flat.hw)
        for sl in _batch_slices(n, flat.chunk(n, c, q.element_size(), q.device)):
            ks = flat.shifted(flat.pad(k_map[sl], groups), masks)
            _correlate(out[sl], qv[sl].contiguous(), ks, flat)
        return out.view(n, groups, kernel_size, kernel_size, h, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits):
        q, k_map = ctx.saved_tensors
        groups = ctx.groups
        n, c, h, w = q.shape
        k = grad_logits.shape[2]
        if cpu_kernels.use_for(q, k_map, grad_logits):
            gl = grad_logits.reshape(n, groups, k * k, h, w)
            grad_q = cpu_kernels.aggregate(k_map, gl, groups, k) \
                if ctx.needs_input_grad[0] else None
            grad_k = cpu_kernels.scatter(q, gl, groups, k) if ctx.needs_input_grad[1] else None
            return grad_q, grad_k, None, None
        flat = _Flat(h, w, k)
        masks = flat.column_masks(q)
        gl = grad_logits.reshape(n, groups, k * k, flat.hw)
        grad_q = q.new_zeros(n, groups, c // groups, flat.hw) \
            if ctx.needs_input_grad[0] else None
        grad_k = q.new_empty(n, groups, c // groups, flat.hw) \
            if ctx.needs_input_grad[1] else None
        qv = q.reshape(n, groups, c // groups, flat.hw)
        for sl in _batch_slices(n, flat.chunk(n, c, q.element_size(), q.device)):
            gls = gl[sl].contiguous()
            if grad_q is not None:
                ks = flat.shifted(flat.pad(k_map[sl], groups), masks)
                _aggregate(grad_q[sl], ks, gls, flat)
            if grad_k is not None:
                gk = _scatter(qv[sl].contiguous(), gls, flat, masks)
                grad_k[sl] = gk[..., flat.margin:flat.margin + flat.hw]
        return (None if grad_q is None else grad_q.view(q.shape),
                None if grad_k is None else grad_k.view(k_map.shape), None, None)


class _LocalAggregatePointwise(Function):
    """local_aggregate(x, conv1x1(feat, weight, bias)) with the kernels made chunk by chunk."""

    @staticmethod
    def _layout(x, feat, weight, k):
        """Flat layout, its column masks, the 1x1 weight as a matrix, features as (N, F, H*W)."""
        flat = _Flat(x.shape[2], x.shape[3], k)
        return (flat, flat.column_masks(x), weight.reshape(weight.shape[0], -1),
                feat.reshape(x.shape[0], feat.shape[1], flat.hw))

    @staticmethod
    def forward(ctx, x, feat, weight, bias, groups, k):
        n, c, h, w = x.shape
        flat, masks, w2d, fv = _LocalAggregatePointwise._layout(x, feat, weight, k)
        out = x.new_zeros(n, groups, c // groups, flat.hw)
        fast = cpu_kernels.use_for(x, feat, weight)
        step = flat.chunk(n, c, x.element_size(), x.device, weight.shape[0], fast)
        if fast:
            out = out.view(n, c, h, w)
        for sl in _batch_slices(n, step):
            kern = _pointwise(w2d, bias, fv[sl]).view(-1, groups, k * k, flat.hw)
            if fast:
                cpu_kernels.aggregate_masking(x[sl], kern, groups, k, out=out[sl])
                continue
            xs = flat.shifted(flat.pad(x[sl], groups), masks)
            _aggregate(out[sl], xs, kern, flat)
        ctx.save_for_backward(x, feat, weight, bias)
        ctx.groups, ctx.k = groups, k
        return out.view(n, c, h, w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, feat, weight, bias = ctx.saved_tensors
        groups, k = ctx.groups, ctx.k
        n, c, h, w = x.shape
        flat, masks, w2d, fv = _LocalAggregatePointwise._layout(x, feat, weight, k)
        g = grad_out.reshape(n, groups, c // groups, flat.hw)
        need_x, need_f, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x = x.new_empty(n, groups, c // groups, flat.hw) if need_x else None
        grad_f = x.new_empty(n, feat.shape[1], flat.hw) if need_f else None
        grad_w2d = torch.zeros_like(w2d) if need_w else None
        grad_b = torch.zeros_like(bias) if (need_b and bias is not None) else None
        fast = cpu_kernels.use_for(x, feat, weight, grad_out)
        step = flat.chunk(n, c, x.element_size(), x.device, weight.shape[0], fast)
        for sl in _batch_slices(n, step):
            gs = g[sl].contiguous()
            kern = _pointwise(w2d, bias, fv[sl]).view(-1, groups, k * k, flat.hw)
            if fast:
                gs4, xs4 = gs.view(-1, c, h, w), x[sl]
            if need_x:
                if fast:
                    cpu_kernels.scatter(gs4, kern, groups, k, out=grad_x[sl].view(-1, c, h, w))
                else:
                    gx = _scatter(gs, kern, flat, masks)
                    grad_x[sl] = gx[..., flat.margin:flat.margin + flat.hw]
            if need_f or need_w or grad_b is not None:
                if fast:
                    cpu_kernels.correlate(gs4, xs4, groups, k, out=kern)
                    gk = kern.view(kern.shape[0], -1, flat.hw)
                else:
                    xs = flat.shifted(flat.pad(x[sl], groups), masks)
                    gk = _correlate(kern, gs, xs, flat).view(kern.shape[0], -1, flat.hw)
                if need_w:
                    grad_w2d += (gk @ fv[sl].transpose(1, 2)).sum(0)
                if grad_b is not None:
                    grad_b += gk.sum((0, 2))
                if need_f:
                    grad_f[sl] = w2d.t() @ gk
        return (None if grad_x is None else grad_x.view(x.shape),
                None if grad_f is None else grad_f.view(feat.shape),
                None if grad_w2d is None else grad_w2d.view(weight.shape), grad_b, None, None)


def _pointwise(w2d, bias, fv):
    """1x1 conv as a matmul: (O, R) x (B, R, HW) -> (B, O, HW) in the kernel buffer."""
    out = _kernel_buffer((fv.shape[0], w2d.shape[0], fv.shape[2]), fv)
    if bias is None:
        return torch.matmul(w2d, fv, out=out)
    return torch.baddbmm(bias.view(1, -1, 1), w2d.expand(fv.shape[0], -1, -1), fv, out=out)


# ---------------------------------------------------------------------------- public API
def local_aggregate(x, weight):
    """Aggregate each k x k neighbourhood with position-varying, group-shared weights.

    Args:
        x (Tensor): input of shape (N, C, H, W).
        weight (Tensor): weights of shape (N, G, k, k, H, W), or (1, G, k, k, H, W) for weights
            shared by every image (a locally connected layer); channel ``c`` uses group
            ``c // (C / G)``; k odd.

    Returns:
        Tensor: (N, C, H, W), contiguous, zero padding, stride 1.
    """
    check_weight_shape(x, weight)
    return _LocalAggregate.apply(x, weight.contiguous())


def local_aggregate_pointwise(x, feat, weight, bias, groups, kernel_size):
    """I-D-DW aggregation whose kernels are a 1x1 conv of ``feat``, never held in full.

    Equal to ``local_aggregate(x, F.conv2d(feat, weight, bias).view(N, G, k, k, H, W))``, but
    the kernels are computed for a few images at a time (and recomputed in the backward pass),
    so the (N, G*k*k, H, W) tensor, 16x the input at the tiny model's first stage, is never
    allocated.

    Args:
        x (Tensor): (N, C, H, W) input to aggregate.
        feat (Tensor): (N, R, H, W) features the kernels are generated from.
        weight (Tensor): (G*k*k, R, 1, 1) weight of the 1x1 conv (output channel
            ``g*k*k + i*k + j`` is group g's weight at offset (i, j)).
        bias (Tensor | None): (G*k*k, ) bias of the 1x1 conv.
        groups (int): G, dividing C.
        kernel_size (int): odd k.

    Returns:
        Tensor: (N, C, H, W).
    """
    n, c, h, w = x.shape
    if feat.dim() != 4 or feat.shape[0] != n or tuple(feat.shape[2:]) != (h, w):
        raise ValueError(f'feat {tuple(feat.shape)} must be (N, R, H, W) matching x '
                         f'{tuple(x.shape)}')
    if weight.shape[0] != groups * kernel_size**2 or weight.shape[1] != feat.shape[1] \
            or tuple(weight.shape[2:]) not in ((1, 1), ()):
        raise ValueError(f'weight {tuple(weight.shape)} must be (G*k*k, R, 1, 1) = '
                         f'({groups * kernel_size**2}, {feat.shape[1]}, 1, 1)')
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f'local_aggregate_pointwise needs an odd kernel_size, got {kernel_size}')
    if groups < 1 or c % groups != 0:
        raise ValueError(f'{c} channels cannot be split into {groups} weight groups')
    return _LocalAggregatePointwise.apply(x, feat, weight, bias, groups, kernel_size)


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
    return _LocalCorrelate.apply(q, k_map, kernel_size, groups)


def dynamic_depthwise_conv2d(x, kernels, bias=None):
    """Depth-wise conv with one k x k kernel per image and channel (D-DW), zero padding.

    The batch runs as one op: a grouped conv over the batch folded into channels, or, on CPU
    float32 when no gradient is needed, one call of the compiled channels-last kernel.

    Args:
        x (Tensor): (N, C, H, W).
        kernels (Tensor): (N, C, k, k), k odd.
        bias (Tensor | None): (C, ).

    Returns:
        Tensor: (N, C, H, W).
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    if kernels.shape != (n, c, k, k) or k % 2 == 0:
        raise ValueError(f'kernels {tuple(kernels.shape)} must be (N, C, k, k) = ({n}, {c}, k, k) '
                         'with an odd k')
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, kernels, bias))
    tensors = (x, kernels) if bias is None else (x, kernels, bias)
    if not needs_grad and not torch.jit.is_tracing() and cpu_kernels.use_for(*tensors):
        return cpu_kernels.dynamic_depthwise(x, kernels, bias)
    out = F.conv2d(x.reshape(1, n * c, h, w), kernels.reshape(n * c, 1, k, k),
                   None if bias is None else bias.repeat(n), padding=k // 2, groups=n * c)
    return out.view(n, c, h, w)


def local_aggregate_unfold(x, weight):
    """Reference ``F.unfold`` formulation of :func:`local_aggregate` (k*k-times the memory).

    Kept for tests and benchmarks only.
    """
    groups, k = check_weight_shape(x, weight)
    n, c, h, w = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(n, groups, c // groups, k * k, h, w)
    return (cols * weight.reshape(weight.shape[0], groups, 1, k * k, h, w)).sum(3).view(n, c, h, w)


def local_aggregate_loop(x, weight):
    """Straightforward reference: a loop over offsets of shifted, zero-padded 2-D slices.

    Differentiable through autograd (no custom backward); kept for tests and benchmarks.
    """
    groups, k = check_weight_shape(x, weight)
    n, c, h, w = x.shape
    p = k // 2
    xp = F.pad(x, (p, p, p, p)).view(n, groups, c // groups, h + 2 * p, w + 2 * p)
    out = 0
    for i in range(k):
        for j in range(k):
            out = out + xp[..., i:i + h, j:j + w] * weight[:, :, i, j].unsqueeze(2)
    return out.reshape(n, c, h, w)

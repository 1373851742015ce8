"""Triton backend of the local-aggregation ops (the CUDA path; CPU under ``TRITON_INTERPRET=1``).

Registered as the backend ``triton`` (:class:`TritonBackend`, built from this module's
primitives): ``NAME``, :func:`available`, :func:`supports` and the primitives :func:`aggregate`,
:func:`scatter`, :func:`correlate`, :func:`aggregate_pointwise`,
:func:`aggregate_pointwise_backward`, :func:`dynamic_depthwise`,
:func:`dynamic_depthwise_backward`.  Shapes (``pb = (k - 1) // 2``, zero padding; an even ``k``
pads ``(k - 1) // 2`` before and ``k // 2`` after, like PyTorch's ``padding='same'``)::

    aggregate   out[n, c, h, w] = sum_ij w[n, c // (C/G), i, j, h, w] * x[n, c, h+i-pb, w+j-pb]
    scatter     the transpose of aggregate w.r.t. x (its input gradient)
    correlate   out[n, g, i, j, h, w] = sum_{c in g} g[n, c, h, w] * x[n, c, h+i-pb, w+j-pb]

How the kernels work.  A program owns one image, one weight group (or, in the pointwise ops,
all groups) and a tile of ``P`` consecutive pixels.  The window of the tile is read with one
masked 2-D gather ``(offsets, pixels)`` per channel -- the ``k*k`` shifted views of the same few
rows, served from the SM's L1/L2 after the first touch -- and reduced over the offsets in
registers, so every op is one kernel launch and one pass over global memory (the pure-PyTorch
path makes ``k*k`` launches, each a full pass).  Arithmetic is float32 whatever the input dtype;
results are stored in the input's dtype.

* :func:`aggregate_pointwise` computes each group's ``(k*k, P)`` kernel tile on chip as a
  ``tl.dot`` of the 1x1-conv weight ``(k*k, R)`` and the tile's features ``(R, P)``; the
  ``(N, G*k*k, H, W)`` kernels never exist in global memory.  Its backward recomputes them:
  at the tile's own pixels for the kernel gradient (``tl.dot`` again), and at the source pixels
  of the transposed window for the input gradient (a loop over ``R`` of gathered features).
  The 1x1 weight/bias gradients are per-image float32 partial sums (``tl.atomic_add`` over the
  pixel tiles of one image, then a sum over images).  Matrix products follow PyTorch's conv
  setting: float32 operands use TF32 when ``torch.backends.cudnn.allow_tf32`` (the cuDNN 1x1
  conv that this op replaces would), IEEE float32 otherwise; float16/bfloat16 operands run
  natively with float32 accumulation (float32 under the interpreter, whose bfloat16 ``tl.dot``
  multiplies raw bits).
* One window kernel serves :func:`aggregate`, :func:`scatter` (the transposed window) and
  :func:`dynamic_depthwise` and its input gradient (a weight stride of 0 over the pixels); one
  correlation kernel serves :func:`correlate` and the D-DW kernel gradient (summed over pixels
  in the program).

Tile sizes are fixed heuristics (``P`` keeps a ``(k*k, P)`` float32 tile at <= 8192 elements);
they have not been tuned on a GPU.

CPU tensors run in Triton's interpreter, which must be switched on *before Triton is first
imported* (``TRITON_INTERPRET=1`` in the environment of the process): Triton jits its own
standard library (``tl.sum``, ...) at import, so setting the variable later has no effect; the
tests therefore run the kernels in a subprocess.  Every launch goes through
``torch.library.wrap_triton``, which is the identity in eager mode; the wrappers below can
therefore be the bodies of ``torch.library.triton_op`` registrations, and ``torch.compile``
then sees into the kernels.  :func:`kernels` returns the jitted kernels.

Importing this module never fails: without Triton, :func:`available` is False.
"""
import sys
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from mmdwnet.ops.backends.base import PrimitiveBackend
from mmdwnet.ops.decompositions import same_padding

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install without Triton: the backend is unavailable
    triton = tl = None
# Annotation of the kernels' compile-time arguments (a real object: the interpreter does not
# resolve string annotations).
constexpr = None if tl is None else tl.constexpr

__all__ = ['NAME', 'available', 'supports', 'aggregate', 'scatter', 'correlate',
           'aggregate_pointwise', 'aggregate_pointwise_backward', 'dynamic_depthwise',
           'dynamic_depthwise_backward', 'kernels']

NAME = 'triton'
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TILE_ELEMENTS = 8192  # elements of a (k*k, P) float32 register tile


def _jit(fn: Callable) -> Callable:
    return fn if triton is None else triton.jit(fn)


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter: ``TRITON_INTERPRET=1`` was set when Triton
    was imported (its standard library is jitted then; see the module docstring)."""
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(tl.sum, InterpretedFunction) and isinstance(_window_kernel,
                                                                  InterpretedFunction)


def available() -> bool:
    """Triton is importable and can run: a CUDA device, or the interpreter switched on."""
    return triton is not None and (torch.cuda.is_available() or interpreting())


def supports(*tensors: Optional[Tensor]) -> bool:
    """Whether these tensors (``None`` ignored) can run here: CUDA tensors (CPU ones under
    ``TRITON_INTERPRET=1``) of dtype float32, float16 or bfloat16."""
    if not available():
        return False
    for t in tensors:
        if t is None:
            continue
        if t.dtype not in DTYPES:
            return False
        if t.device.type != 'cuda' and not (t.device.type == 'cpu' and interpreting()):
            return False
    return True


def _require(*tensors: Optional[Tensor]) -> None:
    if triton is None:
        raise RuntimeError('the Triton ops backend needs the triton package (pip install '
                           'triton); choose another backend with MMDWNET_OPS_BACKEND')
    if not supports(*tensors):
        found = ', '.join(f'{t.dtype} on {t.device}' for t in tensors if t is not None)
        raise RuntimeError(
            f'the Triton ops backend runs CUDA tensors (CPU tensors only with '
            f'TRITON_INTERPRET=1 set before Triton is imported) of dtype '
            f'float32/float16/bfloat16; got {found}. Use MMDWNET_OPS_BACKEND=torch or cpu for '
            'these tensors.')


# ---------------------------------------------------------------------------- kernels
# Geometry shared by all of them: ``o`` runs
# over the k*k window offsets (padded to KKP), ``p`` over the tile's pixels; the window pixel
# of (o, p) is ``p + SIGN * (offset - PB)`` (SIGN=+1: the aggregation window, -1: its transpose).

@_jit
def _window_kernel(x_ptr, w_ptr, b_ptr, out_ptr, H, W, G, CG, stride_wn, stride_wg, stride_wo,
                   stride_wp, K: constexpr, PB: constexpr, KKP: constexpr,
                   P: constexpr, SIGN: constexpr, HAS_BIAS: constexpr):
    """out[n, c, p] = sum_o w[n, g, o, q] * x[n, c, p + SIGN * (o - PB)] (+ bias[c]), where
    q = p (SIGN=+1) or the window pixel (SIGN=-1: the transpose, weights at the source)."""
    pid = tl.program_id(0)
    n = (pid // G).to(tl.int64)
    g = pid % G
    hw = H * W
    p = tl.program_id(1) * P + tl.arange(0, P)
    o = tl.arange(0, KKP)
    sh = (p // W)[None, :] + SIGN * (o // K - PB)[:, None]
    sw = (p % W)[None, :] + SIGN * (o % K - PB)[:, None]
    mask = ((o < K * K)[:, None] & (p < hw)[None, :] & (sh >= 0) & (sh < H) & (sw >= 0)
            & (sw < W))
    src = sh * W + sw
    if SIGN > 0:
        wpix = p[None, :]
    else:
        wpix = src
    w_base = w_ptr + n * stride_wn + g.to(tl.int64) * stride_wg
    wt = tl.load(w_base + o[:, None] * stride_wo + wpix * stride_wp, mask=mask,
                 other=0.).to(tl.float32)
    for cc in range(CG):
        c = g * CG + cc
        base = (n * (G * CG) + c) * hw
        xv = tl.load(x_ptr + base + src, mask=mask, other=0.).to(tl.float32)
        acc = tl.sum(wt * xv, axis=0)
        if HAS_BIAS:
            acc += tl.load(b_ptr + c).to(tl.float32)
        tl.store(out_ptr + base + p, acc.to(out_ptr.dtype.element_ty), mask=p < hw)


@_jit
def _correlate_kernel(g_ptr, x_ptr, out_ptr, H, W, G, CG, TILES, K: constexpr,
                      PB: constexpr, KKP: constexpr, P: constexpr,
                      REDUCE: constexpr):
    """out[n, gr, o, p] = sum_{c in gr} g[n, c, p] * x[n, c, p + o - PB]; with REDUCE, summed
    over p into out[n, gr, o] (the program loops over all TILES pixel tiles)."""
    pid = tl.program_id(0)
    n = (pid // G).to(tl.int64)
    gr = pid % G
    hw = H * W
    o = tl.arange(0, KKP)
    total = tl.zeros([KKP], dtype=tl.float32)
    if REDUCE:
        first = 0
        last = TILES
    else:
        first = tl.program_id(1)
        last = first + 1
    for t in range(first, last):
        p = t * P + tl.arange(0, P)
        sh = (p // W)[None, :] + (o // K - PB)[:, None]
        sw = (p % W)[None, :] + (o % K - PB)[:, None]
        mask = ((o < K * K)[:, None] & (p < hw)[None, :] & (sh >= 0) & (sh < H) & (sw >= 0)
                & (sw < W))
        src = sh * W + sw
        acc = tl.zeros([KKP, P], dtype=tl.float32)
        for cc in range(CG):
            base = (n * (G * CG) + gr * CG + cc) * hw
            gv = tl.load(g_ptr + base + p, mask=p < hw, other=0.).to(tl.float32)
            xv = tl.load(x_ptr + base + src, mask=mask, other=0.).to(tl.float32)
            acc += gv[None, :] * xv
        if REDUCE:
            total += tl.sum(acc, axis=1)
        else:
            dst = out_ptr + ((n * G + gr) * (K * K) + o[:, None]) * hw + p[None, :]
            tl.store(dst, acc.to(out_ptr.dtype.element_ty),
                     mask=(o < K * K)[:, None] & (p < hw)[None, :])
    if REDUCE:
        tl.store(out_ptr + (n * G + gr) * (K * K) + o, total.to(out_ptr.dtype.element_ty),
                 mask=o < K * K)


@_jit
def _pointwise_kernel(x_ptr, f_ptr, w_ptr, b_ptr, out_ptr, H, W, G, CG, R,
                      K: constexpr, PB: constexpr, KKP: constexpr,
                      RP: constexpr, P: constexpr, HAS_BIAS: constexpr,
                      DOT_DTYPE: constexpr, PRECISION: constexpr):
    """out[n, c, p] = sum_o kern[g, o, p] * x[n, c, p + o - PB] with the kernel tile
    kern[g] = w[g*KK:(g+1)*KK] @ f[n, :, tile] (+ bias) made on chip, per group g."""
    n = tl.program_id(0).to(tl.int64)
    hw = H * W
    p = tl.program_id(1) * P + tl.arange(0, P)
    o = tl.arange(0, KKP)
    r = tl.arange(0, RP)
    sh = (p // W)[None, :] + (o // K - PB)[:, None]
    sw = (p % W)[None, :] + (o % K - PB)[:, None]
    mask = ((o < K * K)[:, None] & (p < hw)[None, :] & (sh >= 0) & (sh < H) & (sw >= 0)
            & (sw < W))
    src = sh * W + sw
    feat = tl.load(f_ptr + (n * R + r[:, None]) * hw + p[None, :],
                   mask=(r < R)[:, None] & (p < hw)[None, :], other=0.).to(DOT_DTYPE)
    for g in range(G):
        rows = g * (K * K) + o
        w2 = tl.load(w_ptr + rows[:, None] * R + r[None, :],
                     mask=(o < K * K)[:, None] & (r < R)[None, :], other=0.).to(DOT_DTYPE)
        kern = tl.dot(w2, feat, input_precision=PRECISION)
        if HAS_BIAS:
            kern += tl.load(b_ptr + rows, mask=o < K * K, other=0.).to(tl.float32)[:, None]
        for cc in range(CG):
            base = (n * (G * CG) + g * CG + cc) * hw
            xv = tl.load(x_ptr + base + src, mask=mask, other=0.).to(tl.float32)
            tl.store(out_ptr + base + p, tl.sum(kern * xv, axis=0).to(out_ptr.dtype.element_ty),
                     mask=p < hw)


@_jit
def _pointwise_backward_kernel(g_ptr, x_ptr, f_ptr, w_ptr, b_ptr, gx_ptr, gf_ptr, gw_ptr,
                               gb_ptr, H, W, G, CG, R, K: constexpr, PB: constexpr,
                               KKP: constexpr, RP: constexpr, P: constexpr,
                               HAS_BIAS: constexpr, NEED_X: constexpr,
                               NEED_F: constexpr, NEED_W: constexpr,
                               NEED_B: constexpr, DOT_DTYPE: constexpr,
                               PRECISION: constexpr):
    """Gradients of :func:`_pointwise_kernel`: gx (transposed window, kernels recomputed at the
    source pixels), gf (w^T @ kernel gradient), per-image partial gw / gb (atomics)."""
    n = tl.program_id(0).to(tl.int64)
    hw = H * W
    kk = K * K
    p = tl.program_id(1) * P + tl.arange(0, P)
    o = tl.arange(0, KKP)
    r = tl.arange(0, RP)
    om = o < kk
    pm = p < hw
    rm = r < R
    # aggregation window (kernel gradient) and its transpose (input gradient)
    sh = (p // W)[None, :] + (o // K - PB)[:, None]
    sw = (p % W)[None, :] + (o % K - PB)[:, None]
    fwd_mask = om[:, None] & pm[None, :] & (sh >= 0) & (sh < H) & (sw >= 0) & (sw < W)
    fwd_src = sh * W + sw
    sh = (p // W)[None, :] - (o // K - PB)[:, None]
    sw = (p % W)[None, :] - (o % K - PB)[:, None]
    bwd_mask = om[:, None] & pm[None, :] & (sh >= 0) & (sh < H) & (sw >= 0) & (sw < W)
    bwd_src = sh * W + sw
    feat = tl.load(f_ptr + (n * R + r[:, None]) * hw + p[None, :],
                   mask=rm[:, None] & pm[None, :], other=0.).to(DOT_DTYPE)
    gfeat = tl.zeros([RP, P], dtype=tl.float32)
    for g in range(G):
        rows = g * kk + o
        if NEED_F or NEED_W or NEED_B:
            gk = tl.zeros([KKP, P], dtype=tl.float32)
            for cc in range(CG):
                base = (n * (G * CG) + g * CG + cc) * hw
                gv = tl.load(g_ptr + base + p, mask=pm, other=0.).to(tl.float32)
                xv = tl.load(x_ptr + base + fwd_src, mask=fwd_mask, other=0.).to(tl.float32)
                gk += gv[None, :] * xv
            if NEED_F:
                w2t = tl.load(w_ptr + rows[None, :] * R + r[:, None],
                              mask=om[None, :] & rm[:, None], other=0.).to(DOT_DTYPE)
                gfeat += tl.dot(w2t, gk.to(DOT_DTYPE), input_precision=PRECISION)
            if NEED_W:
                part = tl.dot(gk.to(DOT_DTYPE), tl.trans(feat), input_precision=PRECISION)
                tl.atomic_add(gw_ptr + (n * (G * kk) + rows[:, None]) * R + r[None, :], part,
                              mask=om[:, None] & rm[None, :])
            if NEED_B:
                tl.atomic_add(gb_ptr + n * (G * kk) + rows, tl.sum(gk, axis=1), mask=om)
        if NEED_X:
            ks = tl.zeros([KKP, P], dtype=tl.float32)
            if HAS_BIAS:
                ks += tl.load(b_ptr + rows, mask=om, other=0.).to(tl.float32)[:, None]
            for rr in range(R):
                wc = tl.load(w_ptr + rows * R + rr, mask=om, other=0.).to(tl.float32)
                fv = tl.load(f_ptr + (n * R + rr) * hw + bwd_src, mask=bwd_mask,
                             other=0.).to(tl.float32)
                ks += wc[:, None] * fv
            for cc in range(CG):
                base = (n * (G * CG) + g * CG + cc) * hw
                gv = tl.load(g_ptr + base + bwd_src, mask=bwd_mask, other=0.).to(tl.float32)
                tl.store(gx_ptr + base + p, tl.sum(ks * gv, axis=0).to(gx_ptr.dtype.element_ty),
                         mask=pm)
    if NEED_F:
        tl.store(gf_ptr + (n * R + r[:, None]) * hw + p[None, :],
                 gfeat.to(gf_ptr.dtype.element_ty), mask=rm[:, None] & pm[None, :])


_KERNELS = (_window_kernel, _correlate_kernel, _pointwise_kernel, _pointwise_backward_kernel)


def kernels() -> Dict[str, Callable]:
    """The jitted kernels (for ``torch.library.wrap_triton`` / ``triton_op`` users)."""
    return {fn.__name__.strip('_'): fn for fn in _KERNELS}


def _launch(kernel: Callable, grid: Tuple[int, ...], *args, **meta) -> None:
    wrap = getattr(torch.library, 'wrap_triton', None)
    (wrap(kernel) if wrap is not None else kernel)[grid](*args, **meta)


# ---------------------------------------------------------------------------- launch geometry
def _pow2(n: int, least: int = 16) -> int:
    return max(least, triton.next_power_of_2(n))


def _tiles(hw: int, k: int, rows: int = 0) -> Tuple[int, int, int, int]:
    """(KKP, P, number of pixel tiles, num_warps) for a k x k window (and ``rows`` features)."""
    kkp = _pow2(k * k)
    p = max(16, min(128, _pow2(hw), TILE_ELEMENTS // max(kkp, rows)))
    warps = 8 if kkp * p >= TILE_ELEMENTS else 4
    return kkp, p, triton.cdiv(hw, p), warps


def _window(x: Tensor, w: Tensor, bias: Optional[Tensor], k: int, groups: int,
            w_strides: Tuple[int, int, int, int], sign: int) -> Tensor:
    n, c, h, wd = x.shape
    kkp, p, tiles, warps = _tiles(h * wd, k)
    out = torch.empty_like(x)
    _launch(_window_kernel, (n * groups, tiles), x, w, x if bias is None else bias, out, h, wd,
            groups, c // groups, *w_strides, K=k, PB=same_padding(k)[0], KKP=kkp, P=p, SIGN=sign,
            HAS_BIAS=bias is not None, num_warps=warps)
    return out


def _group_weight_strides(w: Tensor) -> Tuple[int, int, int, int]:
    """Strides (image, group, offset, pixel) of contiguous (N|1, G, k, k, H, W) weights."""
    nw, g, k = w.shape[:3]
    hw = w.shape[4] * w.shape[5]
    return (0 if nw == 1 else g * k * k * hw), k * k * hw, hw, 1


def _correlate(g: Tensor, x: Tensor, groups: int, k: int, reduce: bool) -> Tensor:
    n, c, h, w = x.shape
    kkp, p, tiles, warps = _tiles(h * w, k)
    shape = (n, groups, k, k) if reduce else (n, groups, k, k, h, w)
    out = x.new_empty(shape)
    _launch(_correlate_kernel, (n * groups, 1 if reduce else tiles), g, x, out, h, w, groups,
            c // groups, tiles, K=k, PB=same_padding(k)[0], KKP=kkp, P=p, REDUCE=reduce,
            num_warps=warps)
    return out


def _dot_config(*tensors: Tensor) -> Tuple['tl.dtype', Optional[str]]:
    """(operand dtype, input precision) of the on-chip matrix products (module docstring);
    precision None is the target's default (TF32 on NVIDIA GPUs for float32)."""
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) == 1 and not interpreting() and torch.float32 not in dtypes:
        return (tl.float16 if torch.float16 in dtypes else tl.bfloat16), None
    tf32 = torch.backends.cudnn.allow_tf32 and not interpreting()
    return tl.float32, None if tf32 else 'ieee'


# ---------------------------------------------------------------------------- the protocol
def aggregate(x: Tensor, w: Tensor, k: int) -> Tensor:
    """x (N, C, H, W), w (N|1, G, k, k, H, W) -> (N, C, H, W) (module docstring formula)."""
    _require(x, w)
    x, w = x.contiguous(), w.contiguous()
    return _window(x, w, None, k, w.shape[1], _group_weight_strides(w), 1)


def scatter(g: Tensor, w: Tensor, k: int) -> Tensor:
    """Gradient of :func:`aggregate` w.r.t. x: g (N, C, H, W), w (N|1, G, k, k, H, W)."""
    _require(g, w)
    g, w = g.contiguous(), w.contiguous()
    return _window(g, w, None, k, w.shape[1], _group_weight_strides(w), -1)


def correlate(g: Tensor, x: Tensor, groups: int, k: int) -> Tensor:
    """g, x (N, C, H, W) -> (N, G, k, k, H, W): sum over each group's channels of g times the
    k x k window of x (gradient of :func:`aggregate` w.r.t. per-image weights)."""
    _require(g, x)
    return _correlate(g.contiguous(), x.contiguous(), groups, k, reduce=False)


def aggregate_pointwise(x: Tensor, feat: Tensor, w2d: Tensor, bias: Optional[Tensor],
                        groups: int, k: int) -> Tensor:
    """``aggregate(x, (w2d @ feat + bias).view(N, G, k, k, H, W))`` with the kernels made per
    tile on chip.  x (N, C, H, W), feat (N, R, H, W), w2d (G*k*k, R), bias (G*k*k,) or None."""
    _require(x, feat, w2d, bias)
    x, feat, w2d = x.contiguous(), feat.contiguous(), w2d.contiguous()
    n, c, h, w = x.shape
    r = feat.shape[1]
    rp = _pow2(r)
    kkp, p, tiles, warps = _tiles(h * w, k, rp)
    dot_dtype, precision = _dot_config(feat, w2d)
    out = torch.empty_like(x)
    _launch(_pointwise_kernel, (n, tiles), x, feat, w2d, x if bias is None else bias.contiguous(),
            out, h, w, groups, c // groups, r, K=k, PB=same_padding(k)[0], KKP=kkp, RP=rp, P=p,
            HAS_BIAS=bias is not None, DOT_DTYPE=dot_dtype, PRECISION=precision,
            num_warps=warps)
    return out


def aggregate_pointwise_backward(
        grad: Tensor, x: Tensor, feat: Tensor, w2d: Tensor, bias: Optional[Tensor], groups: int,
        k: int) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Gradients of :func:`aggregate_pointwise`: (gx, gfeat, gw2d, gbias or None)."""
    _require(grad, x, feat, w2d, bias)
    grad, x = grad.contiguous(), x.contiguous()
    feat, w2d = feat.contiguous(), w2d.contiguous()
    n, c, h, w = x.shape
    r = feat.shape[1]
    rp = _pow2(r)
    kkp, p, tiles, warps = _tiles(h * w, k, rp)
    dot_dtype, precision = _dot_config(feat, w2d)
    gx, gfeat = torch.empty_like(x), torch.empty_like(feat)
    gw = torch.zeros((n, ) + tuple(w2d.shape), device=x.device, dtype=torch.float32)
    gb = None if bias is None else torch.zeros((n, bias.shape[0]), device=x.device,
                                               dtype=torch.float32)
    _launch(_pointwise_backward_kernel, (n, tiles), grad, x, feat, w2d,
            x if bias is None else bias.contiguous(), gx, gfeat, gw, gw if gb is None else gb,
            h, w, groups, c // groups, r, K=k, PB=same_padding(k)[0], KKP=kkp, RP=rp, P=p,
            HAS_BIAS=bias is not None, NEED_X=True, NEED_F=True, NEED_W=True,
            NEED_B=gb is not None, DOT_DTYPE=dot_dtype, PRECISION=precision, num_warps=warps)
    return (gx, gfeat, gw.sum(0).to(w2d.dtype),
            None if gb is None else gb.sum(0).to(bias.dtype))


def dynamic_depthwise(x: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
    """Depth-wise conv with one k x k kernel per image and channel: x (N, C, H, W), kernels
    (N, C, k, k), bias (C,) or None -> (N, C, H, W)."""
    _require(x, kernels, bias)
    x, kernels = x.contiguous(), kernels.contiguous()
    n, c, k = kernels.shape[0], kernels.shape[1], kernels.shape[-1]
    return _window(x, kernels, None if bias is None else bias.contiguous(), k, c,
                   (c * k * k, k * k, 1, 0), 1)


def dynamic_depthwise_backward(grad: Tensor, x: Tensor, kernels: Tensor,
                               bias: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Gradients of :func:`dynamic_depthwise`: (gx, gkernels, gbias or None)."""
    _require(grad, x, kernels, bias)
    grad, x, kernels = grad.contiguous(), x.contiguous(), kernels.contiguous()
    c, k = kernels.shape[1], kernels.shape[-1]
    gx = _window(grad, kernels, None, k, c, (c * k * k, k * k, 1, 0), -1)
    gk = _correlate(grad, x, c, k, reduce=True).to(kernels.dtype)
    gb = None if bias is None else grad.sum((0, 2, 3), dtype=torch.float32).to(bias.dtype)
    return gx, gk.view(kernels.shape), gb


class TritonBackend(PrimitiveBackend):
    """The Triton kernels: CUDA tensors (CPU ones under ``TRITON_INTERPRET=1``, when requested
    by name), float32/float16/bfloat16, every op."""

    name = NAME
    primitives = sys.modules.get(__name__)  # None when loaded by file path (tests)
    devices = ('cuda', )
    dtypes = DTYPES
    priority = 10

    def available(self) -> bool:
        return available()

    def supports(self, *tensors: Optional[Tensor]) -> bool:
        return supports(*tensors)

    def interpreting(self) -> bool:
        """Whether Triton runs in its CPU interpreter (:func:`interpreting`)."""
        return interpreting()

    def require(self, *tensors: Optional[Tensor]) -> None:
        # The interpreter's own test (TRITON_INTERPRET=1 must have been set before Triton was
        # imported; setting it later changes nothing), not the variable itself.
        if triton is not None and any(t.device.type == 'cpu' for t in tensors if t is not None) \
                and not interpreting():
            raise RuntimeError('MMDWNET_OPS_BACKEND=triton runs CPU tensors only in the Triton '
                               'interpreter: set TRITON_INTERPRET=1 before Python starts (Triton '
                               'reads it when imported), move the tensors to CUDA, or choose '
                               'another backend (auto, reference, openmp)')
        if not available():
            raise RuntimeError('MMDWNET_OPS_BACKEND=triton was requested but that backend is not '
                               'available here' + (' (Triton is not installed)' if triton is None
                                                   else '') + '; use auto or reference')


#: the instance :mod:`mmdwnet.ops.backends` registers
BACKEND = TritonBackend()

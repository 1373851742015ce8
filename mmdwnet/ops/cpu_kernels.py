"""Optional C/OpenMP CPU kernels of the local aggregation primitives (float32).

The pure-PyTorch ops of :mod:`mmdwnet.ops.local_aggregation` run k*k whole-tensor multiply-adds
per call; on a CPU each of them streams the output through memory and costs a thread hand-over.
These kernels do one pass instead: one parallel loop over (image, weight group), the k x k
weights of an output row are reused from L1 cache by every channel of the group.

They are plain C (no PyTorch headers), compiled once with the system C compiler into a cache
folder (about a second; ``make install`` builds it) and called through :mod:`ctypes` on the
tensors' memory.  Without a compiler, on other devices/dtypes, or with
``MMDWNET_OPS_BACKEND=torch`` the pure-PyTorch path runs; both give the same results (tested).

Cache folder: ``$MMDWNET_OPS_CACHE`` or ``~/.cache/mmdwnet/ops``.
"""
import ctypes
import hashlib
import os
import os.path as osp
import shutil
import subprocess
import tempfile
import threading

import torch

__all__ = [
    'available', 'build', 'aggregate', 'scatter', 'correlate', 'dynamic_depthwise', 'use_for'
]

_SOURCE = r'''
#include <string.h>
#include <omp.h>

#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* x, out: (N, C, H, W); w: (Nw, G, K*K, H, W); Nw is 1 or N; all contiguous float32.
   out[n,c,h,v] = sum_{i,j} w[n,g,i*K+j,h,v] * x[n,c,h+i-p,v+j-p]   (g = c / (C/G)) */
void mmdw_aggregate(const float *x, const float *w, float *out, long N, long Nw, long C, long G,
                    long H, long W, long K, int nthreads) {
    const long cg = C / G, hw = H * W, p = K / 2;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G;
        const float *wg = w + ((Nw == 1 ? 0 : n) * G + g) * K * K * hw;
        for (long c = g * cg; c < (g + 1) * cg; ++c)
            memset(out + (n * C + c) * hw, 0, sizeof(float) * hw);
        for (long h = 0; h < H; ++h) {
            for (long c = g * cg; c < (g + 1) * cg; ++c) {
                const float *xc = x + (n * C + c) * hw;
                float *orow = out + (n * C + c) * hw + h * W;
                for (long i = 0; i < K; ++i) {
                    const long hs = h + i - p;
                    if (hs < 0 || hs >= H) continue;
                    for (long j = 0; j < K; ++j) {
                        const long dx = j - p, v0 = MAX(0, -dx), v1 = MIN(W, W - dx);
                        const float *wr = wg + (i * K + j) * hw + h * W;
                        const float *xr = xc + hs * W + dx;
                        for (long v = v0; v < v1; ++v) orow[v] += wr[v] * xr[v];
                    }
                }
            }
        }
    }
}

/* Transpose w.r.t. x: gx[n,c,y,u] = sum_{i,j} w[n,g,i*K+j,y-i+p,u-j+p] * g[n,c,y-i+p,u-j+p]. */
void mmdw_scatter(const float *go, const float *w, float *gx, long N, long Nw, long C, long G,
                  long H, long W, long K, int nthreads) {
    const long cg = C / G, hw = H * W, p = K / 2;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G;
        const float *wg = w + ((Nw == 1 ? 0 : n) * G + g) * K * K * hw;
        for (long c = g * cg; c < (g + 1) * cg; ++c)
            memset(gx + (n * C + c) * hw, 0, sizeof(float) * hw);
        for (long y = 0; y < H; ++y) {
            for (long c = g * cg; c < (g + 1) * cg; ++c) {
                const float *gc = go + (n * C + c) * hw;
                float *xrow = gx + (n * C + c) * hw + y * W;
                for (long i = 0; i < K; ++i) {
                    const long h = y - i + p;
                    if (h < 0 || h >= H) continue;
                    for (long j = 0; j < K; ++j) {
                        const long dx = j - p, u0 = MAX(0, dx), u1 = MIN(W, W + dx);
                        const float *wr = wg + (i * K + j) * hw + h * W - dx;
                        const float *gr = gc + h * W - dx;
                        for (long u = u0; u < u1; ++u) xrow[u] += wr[u] * gr[u];
                    }
                }
            }
        }
    }
}

/* Transpose w.r.t. w: gw[n,g,i*K+j,h,v] = sum_{c in g} go[n,c,h,v] * x[n,c,h+i-p,v+j-p]. */
void mmdw_correlate(const float *go, const float *x, float *gw, long N, long C, long G, long H,
                    long W, long K, int nthreads) {
    const long cg = C / G, hw = H * W, p = K / 2;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G;
        float *wg = gw + (n * G + g) * K * K * hw;
        memset(wg, 0, sizeof(float) * K * K * hw);
        for (long h = 0; h < H; ++h) {
            for (long c = g * cg; c < (g + 1) * cg; ++c) {
                const float *gr = go + (n * C + c) * hw + h * W;
                const float *xc = x + (n * C + c) * hw;
                for (long i = 0; i < K; ++i) {
                    const long hs = h + i - p;
                    if (hs < 0 || hs >= H) continue;
                    for (long j = 0; j < K; ++j) {
                        const long dx = j - p, v0 = MAX(0, -dx), v1 = MIN(W, W - dx);
                        float *wr = wg + (i * K + j) * hw + h * W;
                        const float *xr = xc + hs * W + dx;
                        for (long v = v0; v < v1; ++v) wr[v] += gr[v] * xr[v];
                    }
                }
            }
        }
    }
}

/* Zero the weights whose neighbour column falls outside the map (w: (T, K*K, H, W)); after this
   the aggregation can run over whole flattened maps (mmdw_aggregate_flat). */
void mmdw_mask_columns(float *w, long T, long H, long W, long K, int nthreads) {
    const long p = K / 2, hw = H * W;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < T; ++t)
        for (long ij = 0; ij < K * K; ++ij) {
            const long dx = ij % K - p;
            if (dx == 0) continue;
            float *wr = w + (t * K * K + ij) * hw;
            for (long h = 0; h < H; ++h)
                for (long v = (dx < 0 ? 0 : W - dx); v < (dx < 0 ? -dx : W); ++v)
                    wr[h * W + v] = 0.f;
        }
}

/* mmdw_aggregate for column-masked weights and a zero-extended input xp (N, C, HW + 2*m),
   m = p*W + p: every neighbour read is in bounds, so blocks of 16 outputs accumulate the K*K
   products in registers. */
#define BLK 16
void mmdw_aggregate_flat(const float *xp, const float *w, float *out, long N, long Nw, long C,
                         long G, long H, long W, long K, int nthreads) {
    const long cg = C / G, hw = H * W, p = K / 2, m = p * W + p, L = hw + 2 * m, kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G;
        const float *wg = w + ((Nw == 1 ? 0 : n) * G + g) * kk * hw;
        long offs[kk];
        for (long ij = 0; ij < kk; ++ij) offs[ij] = (ij / K - p) * W + (ij % K - p);
        for (long q0 = 0; q0 < hw; q0 += BLK) {
            const long nb = MIN(BLK, hw - q0);
            long c = g * cg;
            if (nb == BLK) {  /* 4 channels at a time share each weight load */
                for (; c + 4 <= (g + 1) * cg; c += 4) {
                    const float *x0 = xp + (n * C + c) * L + m + q0;
                    float acc[4][BLK] = {{0}};
                    for (long ij = 0; ij < kk; ++ij) {
                        const float *wr = wg + ij * hw + q0, *xr = x0 + offs[ij];
                        for (int u = 0; u < 4; ++u)
                            for (int b = 0; b < BLK; ++b) acc[u][b] += wr[b] * xr[u * L + b];
                    }
                    for (int u = 0; u < 4; ++u)
                        for (int b = 0; b < BLK; ++b) out[(n * C + c + u) * hw + q0 + b] = acc[u][b];
                }
            }
            for (; c < (g + 1) * cg; ++c) {
                const float *xc = xp + (n * C + c) * L + m + q0;
                float *o = out + (n * C + c) * hw + q0;
                if (nb == BLK) {
                    float acc[BLK] = {0};
                    for (long ij = 0; ij < kk; ++ij) {
                        const float *wr = wg + ij * hw + q0, *xr = xc + offs[ij];
                        for (int b = 0; b < BLK; ++b) acc[b] += wr[b] * xr[b];
                    }
                    for (int b = 0; b < BLK; ++b) o[b] = acc[b];
                } else {
                    for (long b = 0; b < nb; ++b) {
                        float a = 0.f;
                        for (long ij = 0; ij < kk; ++ij) a += wg[ij * hw + q0 + b] * xc[offs[ij] + b];
                        o[b] = a;
                    }
                }
            }
        }
    }
}

/* Dynamic depth-wise conv on channels-last memory: x, out (N, H, W, C); wt (N, K*K, C) per-image
   kernels; bias (C) or NULL.  out[n,h,v,c] = bias[c] + sum_{i,j} wt[n,i*K+j,c] x[n,h+i-p,v+j-p,c]
   Blocks of 16 channels accumulate the K*K taps in registers. */
void mmdw_ddw_nhwc(const float *x, const float *wt, const float *bias, float *out, long N,
                   long C, long H, long W, long K, int nthreads) {
    const long p = K / 2, kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * H; ++t) {
        const long n = t / H, h = t % H;
        const float *wn = wt + n * kk * C;
        for (long v = 0; v < W; ++v) {
            float *o = out + (t * W + v) * C;
            long c0 = 0;
            if (C % BLK == 0 && v >= p && v + 3 + p < W) {  /* 4 pixels share each weight load */
                for (; c0 < C; c0 += BLK) {
                    float acc[4][BLK];
                    for (int u = 0; u < 4; ++u)
                        for (int b = 0; b < BLK; ++b) acc[u][b] = bias ? bias[c0 + b] : 0.f;
                    for (long i = 0; i < K; ++i) {
                        const long hs = h + i - p;
                        if (hs < 0 || hs >= H) continue;
                        for (long j = 0; j < K; ++j) {
                            const float *xi = x + ((n * H + hs) * W + v + j - p) * C + c0;
                            const float *wi = wn + (i * K + j) * C + c0;
                            for (int u = 0; u < 4; ++u)
                                for (int b = 0; b < BLK; ++b) acc[u][b] += wi[b] * xi[u * C + b];
                        }
                    }
                    for (int u = 0; u < 4; ++u)
                        for (int b = 0; b < BLK; ++b) o[u * C + c0 + b] = acc[u][b];
                }
                v += 3;
                continue;
            }
            for (; c0 + BLK <= C; c0 += BLK) {
                float acc[BLK];
                for (int b = 0; b < BLK; ++b) acc[b] = bias ? bias[c0 + b] : 0.f;
                for (long i = 0; i < K; ++i) {
                    const long hs = h + i - p;
                    if (hs < 0 || hs >= H) continue;
                    for (long j = 0; j < K; ++j) {
                        const long vs = v + j - p;
                        if (vs < 0 || vs >= W) continue;
                        const float *xi = x + ((n * H + hs) * W + vs) * C + c0;
                        const float *wi = wn + (i * K + j) * C + c0;
                        for (int b = 0; b < BLK; ++b) acc[b] += wi[b] * xi[b];
                    }
                }
                for (int b = 0; b < BLK; ++b) o[c0 + b] = acc[b];
            }
            for (long c = c0; c < C; ++c) {
                float a = bias ? bias[c] : 0.f;
                for (long i = 0; i < K; ++i) {
                    const long hs = h + i - p;
                    if (hs < 0 || hs >= H) continue;
                    for (long j = 0; j < K; ++j) {
                        const long vs = v + j - p;
                        if (vs < 0 || vs >= W) continue;
                        a += wn[(i * K + j) * C + c] * x[((n * H + hs) * W + vs) * C + c];
                    }
                }
                o[c] = a;
            }
        }
    }
}
'''

_lock = threading.Lock()
_state = {}


def _cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def _compile_flags():
    flags = ['-O3', '-fopenmp', '-fPIC', '-shared', '-fno-strict-aliasing']
    cpu = _cpu_flags()
    if {'avx2', 'fma'} <= cpu:
        flags += ['-mavx2', '-mfma']
    # (AVX-512 flags were measured slower for these memory-bound loops on AMD EPYC.)
    return flags


def _cache_dir():
    return os.environ.get('MMDWNET_OPS_CACHE') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache'), 'mmdwnet',
        'ops')


def build(verbose=False):
    """Compile (or find in the cache) the kernel library; return its path or None.

    Raises nothing: a missing compiler or a failed build leaves the pure-PyTorch path.
    """
    cc = os.environ.get('CC') or shutil.which('gcc') or shutil.which('cc')
    flags = _compile_flags()
    key = hashlib.sha256((_SOURCE + ' '.join(flags)).encode()).hexdigest()[:16]
    lib = osp.join(_cache_dir(), f'mmdw_local_aggregation_{key}.so')
    if osp.isfile(lib):
        return lib
    if cc is None:
        if verbose:
            print('mmdwnet.ops: no C compiler found; using the pure-PyTorch aggregation')
        return None
    try:
        os.makedirs(osp.dirname(lib), exist_ok=True)
        with tempfile.TemporaryDirectory(dir=osp.dirname(lib)) as tmp:
            src = osp.join(tmp, 'local_aggregation.c')
            with open(src, 'w') as f:
                f.write(_SOURCE)
            out = osp.join(tmp, 'lib.so')
            proc = subprocess.run([cc, *flags, src, '-o', out], capture_output=True, text=True)
            if proc.returncode != 0:  # e.g. an old compiler without the ISA flags: portable build
                proc = subprocess.run([cc, *flags[:5], src, '-o', out], capture_output=True,
                                      text=True)
            if proc.returncode != 0:
                if verbose:
                    print(f'mmdwnet.ops: building the CPU kernels failed:\n{proc.stderr}')
                return None
            os.replace(out, lib)  # atomic: concurrent builds do not see half-written files
    except OSError as e:
        if verbose:
            print(f'mmdwnet.ops: cannot build the CPU kernels ({e})')
        return None
    return lib


def _library():
    if 'lib' not in _state:
        with _lock:
            if 'lib' not in _state:
                lib = None
                if os.environ.get('MMDWNET_OPS_BACKEND', 'auto') != 'torch':
                    path = build()
                    if path is not None:
                        try:
                            lib = ctypes.CDLL(path)
                            f, l, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
                            lib.mmdw_aggregate.argtypes = [f, f, f] + [l] * 7 + [i]
                            lib.mmdw_scatter.argtypes = [f, f, f] + [l] * 7 + [i]
                            lib.mmdw_correlate.argtypes = [f, f, f] + [l] * 6 + [i]
                            lib.mmdw_ddw_nhwc.argtypes = [f, f, f, f] + [l] * 5 + [i]
                            lib.mmdw_mask_columns.argtypes = [f] + [l] * 4 + [i]
                            lib.mmdw_aggregate_flat.argtypes = [f, f, f] + [l] * 7 + [i]
                        except OSError:
                            lib = None
                _state['lib'] = lib
    return _state['lib']


def available():
    """True when the compiled CPU kernels can be used."""
    return _library() is not None


def use_for(*tensors):
    """True when the kernels apply: CPU float32 tensors, kernels built, backend not 'torch'."""
    if os.environ.get('MMDWNET_OPS_BACKEND', 'auto') == 'torch':
        return False
    if not all(t.device.type == 'cpu' and t.dtype == torch.float32 for t in tensors):
        return False
    return available()


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr())


def aggregate(x, w, groups, k, out=None):
    """x (N, C, H, W), w (N|1, G, k*k, H, W) -> (N, C, H, W) (contiguous ``out`` if given)."""
    x, w = x.contiguous(), w.contiguous()
    n, c, h, wd = x.shape
    out = torch.empty_like(x) if out is None else out
    _library().mmdw_aggregate(_ptr(x), _ptr(w), _ptr(out), n, w.shape[0], c, groups, h, wd, k,
                              torch.get_num_threads())
    return out


def aggregate_masking(x, w, groups, k, out=None):
    """:func:`aggregate` that first zeroes, in place, the entries of ``w`` (contiguous, ours to
    change) whose neighbour column is outside the map; those never contribute, so the result is
    the same, and the kernel runs over whole flattened maps (fast for small maps)."""
    n, c, h, wd = x.shape
    m = (k // 2) * (wd + 1)
    xp = torch.nn.functional.pad(x.reshape(n, c, h * wd), (m, m))  # zero-extended, contiguous
    out = x.new_empty(n, c, h, wd) if out is None else out
    lib, nt = _library(), torch.get_num_threads()
    lib.mmdw_mask_columns(_ptr(w), w.shape[0] * groups, h, wd, k, nt)
    lib.mmdw_aggregate_flat(_ptr(xp), _ptr(w), _ptr(out), n, w.shape[0], c, groups, h, wd, k, nt)
    return out


def scatter(g, w, groups, k, out=None):
    """Gradient w.r.t. x of :func:`aggregate`: g (N, C, H, W) -> (N, C, H, W)."""
    g, w = g.contiguous(), w.contiguous()
    n, c, h, wd = g.shape
    out = torch.empty_like(g) if out is None else out
    _library().mmdw_scatter(_ptr(g), _ptr(w), _ptr(out), n, w.shape[0], c, groups, h, wd, k,
                            torch.get_num_threads())
    return out


def correlate(g, x, groups, k, out=None):
    """Gradient w.r.t. w of :func:`aggregate`: -> (N, G, k*k, H, W) (into ``out`` if given)."""
    g, x = g.contiguous(), x.contiguous()
    n, c, h, wd = x.shape
    if out is None:
        out = x.new_empty(n, groups, k * k, h, wd)
    _library().mmdw_correlate(_ptr(g), _ptr(x), _ptr(out), n, c, groups, h, wd, k,
                              torch.get_num_threads())
    return out


def dynamic_depthwise(x, kernels, bias=None):
    """Per-image depth-wise conv: x (N, C, H, W), kernels (N, C, k, k), bias (C, ) or None.

    Runs on channels-last memory; returns (N, C, H, W) with channels-last strides (what a
    channels-last conv returns).  Inference only (no autograd).
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    xl = x.permute(0, 2, 3, 1).contiguous()
    wt = kernels.reshape(n, c, k * k).transpose(1, 2).contiguous()
    out = x.new_empty(n, h, w, c)
    b = bias.contiguous() if bias is not None else None
    _library().mmdw_ddw_nhwc(_ptr(xl), _ptr(wt), None if b is None else _ptr(b), _ptr(out), n,
                             c, h, w, k, torch.get_num_threads())
    return out.permute(0, 3, 1, 2)

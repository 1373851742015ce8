/* C/OpenMP CPU kernels of the mmdwnet local-aggregation primitives (float32, contiguous).
 *
 * Plain C, no PyTorch headers: mmdwnet/ops/backends/cpu.py compiles this file once with the
 * system C compiler into a verified cache folder and calls it through ctypes, with the argument
 * types read from the prototypes below (keep every exported function "void mmdw_*(...)" with
 * parameters of type float pointer, long or int).
 *
 * Kernel size K may be odd or even: "same" output size, zero padding PB = (K-1)/2 before (top,
 * left) and PA = K/2 after (bottom, right), exactly PyTorch's padding='same'.
 */
#include <string.h>
#include <omp.h>

#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* x, out: (N, C, H, W); w: (Nw, G, K*K, H, W); Nw is 1 or N; all contiguous float32.
   out[n,c,h,v] = sum_{i,j} w[n,g,i*K+j,h,v] * x[n,c,h+i-PB,v+j-PB]   (g = c / (C/G)) */
void mmdw_aggregate(const float *x, const float *w, float *out, long N, long Nw, long C, long G,
                    long H, long W, long K, int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2;
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

/* Transpose w.r.t. x: gx[n,c,y,u] = sum_{i,j} w[n,g,i*K+j,y-i+PB,u-j+PB] * g[n,c,y-i+PB,u-j+PB]. */
void mmdw_scatter(const float *go, const float *w, float *gx, long N, long Nw, long C, long G,
                  long H, long W, long K, int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2;
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

/* Transpose w.r.t. w: gw[n,g,i*K+j,h,v] = sum_{c in g} go[n,c,h,v] * x[n,c,h+i-PB,v+j-PB]. */
void mmdw_correlate(const float *go, const float *x, float *gw, long N, long C, long G, long H,
                    long W, long K, int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2;
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
   the aggregation can run over flattened rows (mmdw_aggregate_rows). */
void mmdw_mask_columns(float *w, long T, long H, long W, long K, int nthreads) {
    const long p = (K - 1) / 2, hw = H * W;
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

/* Output rows [R0, R1) of mmdw_aggregate, for column-masked weights of those rows only.
   xt: (N, C, LT) zero-extended input rows, LT = (R1-R0)*W + (K-1)*(W+1): xt[n,c,PB*(W+1)+q] is
   x[n,c] at flat position R0*W + q (zero outside the map), so every neighbour read is in bounds
   and blocks of 16 outputs accumulate the K*K products in registers.  w: (Nw, G, K*K, (R1-R0)*W)
   (mmdw_mask_columns applied); out: (N, C, H, W), rows [R0, R1) written.  The whole map is
   R0 = 0, R1 = H; a row tile lets the caller generate the per-position kernels a few rows at a
   time (no full (G, K*K, H, W) kernel tensor).  No array sized by K lives on the stack (a large
   kernel size must not overflow an OpenMP thread's stack): the offset of tap (i, j) is computed
   in place. */
#define BLK 16
#define OFFSET(i, j) (((i) - p) * W + ((j) - p))
void mmdw_aggregate_rows(const float *xt, const float *w, float *out, long N, long Nw, long C,
                         long G, long H, long W, long K, long R0, long R1, int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2, lt = (R1 - R0) * W,
               base = p * (W + 1), L = lt + (K - 1) * (W + 1), kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G;
        const float *wg = w + ((Nw == 1 ? 0 : n) * G + g) * kk * lt;
        float *on = out + n * C * hw + R0 * W;
        for (long q0 = 0; q0 < lt; q0 += BLK) {
            const long nb = MIN(BLK, lt - q0);
            long c = g * cg;
            if (nb == BLK) {  /* 4 channels at a time share each weight load */
                for (; c + 4 <= (g + 1) * cg; c += 4) {
                    const float *x0 = xt + (n * C + c) * L + base + q0;
                    float acc[4][BLK] = {{0}};
                    for (long i = 0, ij = 0; i < K; ++i)
                        for (long j = 0; j < K; ++j, ++ij) {
                            const float *wr = wg + ij * lt + q0, *xr = x0 + OFFSET(i, j);
                            for (int u = 0; u < 4; ++u)
                                for (int b = 0; b < BLK; ++b) acc[u][b] += wr[b] * xr[u * L + b];
                        }
                    for (int u = 0; u < 4; ++u)
                        for (int b = 0; b < BLK; ++b) on[(c + u) * hw + q0 + b] = acc[u][b];
                }
            }
            for (; c < (g + 1) * cg; ++c) {
                const float *xc = xt + (n * C + c) * L + base + q0;
                float *o = on + c * hw + q0;
                if (nb == BLK) {
                    float acc[BLK] = {0};
                    for (long i = 0, ij = 0; i < K; ++i)
                        for (long j = 0; j < K; ++j, ++ij) {
                            const float *wr = wg + ij * lt + q0, *xr = xc + OFFSET(i, j);
                            for (int b = 0; b < BLK; ++b) acc[b] += wr[b] * xr[b];
                        }
                    for (int b = 0; b < BLK; ++b) o[b] = acc[b];
                } else {
                    for (long b = 0; b < nb; ++b) {
                        float a = 0.f;
                        for (long i = 0, ij = 0; i < K; ++i)
                            for (long j = 0; j < K; ++j, ++ij)
                                a += wg[ij * lt + q0 + b] * xc[OFFSET(i, j) + b];
                        o[b] = a;
                    }
                }
            }
        }
    }
}

/* The two transposes of mmdw_aggregate_rows, for the I-D-DW backward a row tile at a time (same
   xt layout, same weights w (Nw = N)).  Column-wrapped taps are not special-cased: the scatter's
   weights are column-masked (their products are zero), and the kernel gradient of a masked tap
   is garbage that the caller zeroes with mmdw_mask_columns.
   Input gradient: gxt (N, C, LT) = sum over taps of w * go, scattered into the xt layout
   (gxt[n,c,PB*(W+1) + q + OFFSET(i,j)] += w[n,g,i*K+j,q] * go[n,c,(R0*W) + q]); the caller adds
   its in-map part into the gradient of x.
   Kernel gradient: gw (N, G, K*K, (R1-R0)*W) = sum_{c in g} go[n,c,R0*W+q] * xt[n,c,PB*(W+1)+q+OFFSET(i,j)]. */
void mmdw_scatter_rows(const float *go, const float *w, float *gxt, long N, long C, long G,
                       long H, long W, long K, long R0, long R1, int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2, lt = (R1 - R0) * W,
               base = p * (W + 1), L = lt + (K - 1) * (W + 1), kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G;
        const float *wg = w + (n * G + g) * kk * lt;
        for (long c = g * cg; c < (g + 1) * cg; ++c) {
            const float *gr = go + (n * C + c) * hw + R0 * W;
            float *xc = gxt + (n * C + c) * L + base;
            memset(gxt + (n * C + c) * L, 0, sizeof(float) * L);
            for (long i = 0, ij = 0; i < K; ++i)
                for (long j = 0; j < K; ++j, ++ij) {
                    const float *wr = wg + ij * lt;
                    float *xr = xc + OFFSET(i, j);
                    for (long q = 0; q < lt; ++q) xr[q] += wr[q] * gr[q];
                }
        }
    }
}

void mmdw_correlate_rows(const float *go, const float *xt, float *gw, long N, long C, long G,
                         long H, long W, long K, long R0, long R1, int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2, lt = (R1 - R0) * W,
               base = p * (W + 1), L = lt + (K - 1) * (W + 1), kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G;
        float *wg = gw + (n * G + g) * kk * lt;
        for (long q0 = 0; q0 < lt; q0 += BLK) {
            const long nb = MIN(BLK, lt - q0);
            for (long i = 0, ij = 0; i < K; ++i)
                for (long j = 0; j < K; ++j, ++ij) {
                    float acc[BLK] = {0};
                    for (long c = g * cg; c < (g + 1) * cg; ++c) {
                        const float *gr = go + (n * C + c) * hw + R0 * W + q0;
                        const float *xr = xt + (n * C + c) * L + base + q0 + OFFSET(i, j);
                        if (nb == BLK)
                            for (int b = 0; b < BLK; ++b) acc[b] += gr[b] * xr[b];
                        else
                            for (long b = 0; b < nb; ++b) acc[b] += gr[b] * xr[b];
                    }
                    for (long b = 0; b < nb; ++b) wg[ij * lt + q0 + b] = acc[b];
                }
        }
    }
}

/* Dynamic depth-wise conv on channels-last memory: x, out (N, H, W, C); wt (N, K*K, C) per-image
   kernels; bias (C) or NULL.  out[n,h,v,c] = bias[c] + sum_{i,j} wt[n,i*K+j,c] x[n,h+i-PB,v+j-PB,c]
   Blocks of 16 channels accumulate the K*K taps in registers. */
void mmdw_ddw_nhwc(const float *x, const float *wt, const float *bias, float *out, long N,
                   long C, long H, long W, long K, int nthreads) {
    const long p = (K - 1) / 2, pa = K / 2, kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * H; ++t) {
        const long n = t / H, h = t % H;
        const float *wn = wt + n * kk * C;
        for (long v = 0; v < W; ++v) {
            float *o = out + (t * W + v) * C;
            long c0 = 0;
            if (C % BLK == 0 && v >= p && v + 3 + pa < W) {  /* 4 pixels share each weight load */
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

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

#define BLK 16
/* 8 floats as one vector (GCC/Clang vector extensions: AVX registers with -mavx2, pairs of SSE
   registers without), loaded and stored unaligned. */
typedef float vf8 __attribute__((vector_size(32)));
static inline vf8 load8(const float *p) { vf8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, vf8 v) { memcpy(p, &v, sizeof v); }

#define OFFSET(i, j) (((i) - p) * W + ((j) - p))

/* aggregate_block's full blocks for U <= 4 channels sharing each weight load (2U vector
   accumulators) */
static inline __attribute__((always_inline)) void aggregate_block_u(
    const int U, const float *wb, long ws, const float *x0, float *o0, long L, long hw, long W,
    long K, long i0, long i1) {
    const long p = (K - 1) / 2;
    vf8 acc[4][2];
    for (int u = 0; u < U; ++u) acc[u][0] = acc[u][1] = (vf8){0};
    for (long i = i0, ij = i0 * K; i < i1; ++i)
        for (long j = 0; j < K; ++j, ++ij) {
            const float *wr = wb + ij * ws, *xr = x0 + OFFSET(i, j);
            const vf8 w0 = load8(wr), w1 = load8(wr + 8);
            for (int u = 0; u < U; ++u) {
                acc[u][0] += w0 * load8(xr + u * L);
                acc[u][1] += w1 * load8(xr + u * L + 8);
            }
        }
    for (int u = 0; u < U; ++u) {
        store8(o0 + u * hw, acc[u][0]);
        store8(o0 + u * hw + 8, acc[u][1]);
    }
}

/* One block of nb <= BLK consecutive flattened outputs q0.. of the channels [c0, c1) of one
   group: out[c, q0 + b] = sum_{i,j} wb[(i*K+j) * ws + b] * x_c[q0 + b + OFFSET(i, j)], where
   xc0 points at channel c0's input at flat position q0 in the zero-extended layout (channels L
   floats apart) and oc0 at channel c0's output at q0 (channels hw floats apart).  The weights of
   tap (i, j) are the nb floats at wb + (i*K+j) * ws (column-masked); only the tap rows
   [i0, i1) are read (the others read only zero padding for every position of the block). */
static inline void aggregate_block(const float *wb, long ws, const float *xc0, float *oc0,
                                   long c0, long c1, long L, long hw, long W, long K, long nb,
                                   long i0, long i1) {
    if (nb == BLK) {  /* 4 channels at a time share each weight load, then the 1-3 left */
        long c = c0;
        for (; c + 4 <= c1; c += 4)
            aggregate_block_u(4, wb, ws, xc0 + (c - c0) * L, oc0 + (c - c0) * hw, L, hw, W, K,
                              i0, i1);
        const float *x0 = xc0 + (c - c0) * L;
        float *o0 = oc0 + (c - c0) * hw;
        if (c1 - c == 3) aggregate_block_u(3, wb, ws, x0, o0, L, hw, W, K, i0, i1);
        else if (c1 - c == 2) aggregate_block_u(2, wb, ws, x0, o0, L, hw, W, K, i0, i1);
        else if (c1 - c == 1) aggregate_block_u(1, wb, ws, x0, o0, L, hw, W, K, i0, i1);
        return;
    }
    const long p = (K - 1) / 2;
    for (long c = c0; c < c1; ++c) {
        const float *xc = xc0 + (c - c0) * L;
        float *o = oc0 + (c - c0) * hw;
        for (long b = 0; b < nb; ++b) {
            float a = 0.f;
            for (long i = i0, ij = i0 * K; i < i1; ++i)
                for (long j = 0; j < K; ++j, ++ij) a += wb[ij * ws + b] * xc[OFFSET(i, j) + b];
            o[b] = a;
        }
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
void mmdw_aggregate_rows(const float *xt, const float *w, float *out, long N, long Nw, long C,
                         long G, long H, long W, long K, long R0, long R1, int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2, lt = (R1 - R0) * W,
               base = p * (W + 1), L = lt + (K - 1) * (W + 1), kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G, c0 = g * cg;
        const float *wg = w + ((Nw == 1 ? 0 : n) * G + g) * kk * lt;
        float *on = out + n * C * hw + R0 * W;
        for (long q0 = 0; q0 < lt; q0 += BLK)
            aggregate_block(wg + q0, lt, xt + (n * C + c0) * L + base + q0, on + c0 * hw + q0,
                            c0, c0 + cg, L, hw, W, K, MIN(BLK, lt - q0), 0, K);
    }
}

/* The kernels of one block of nb <= BLK flattened positions q0.. of one group, generated from
   the reduced features: kern[t * BLK + b] = bias[t] + sum_r wg[t * R + r] * fq[r * hw + b]
   (t < KK taps; wg: the group's (KK, R) rows of the generator weight, bias NULL for none; fq:
   the features at q0, channels hw floats apart), then the taps whose neighbour column is
   outside the map zeroed (column of position q0 + b: (col0 + b) % W).  Entries b >= nb are 0.
   Only the tap rows [i0, i1) are made (t from i0*K to i1*K). */
static inline void generate_block(float *kern, const float *wg, const float *bias,
                                  const float *fq, long hw, long R, long K, long W, long col0,
                                  long nb, long i0, long i1) {
    const long p = (K - 1) / 2, KK = i1 * K;
    long t = i0 * K;
    if (nb == BLK) {
        for (; t + 4 <= KK; t += 4) {  /* 4 taps share each feature load; 8 vector accumulators */
            vf8 acc[4][2];
            for (int u = 0; u < 4; ++u) {
                const float b0 = bias ? bias[t + u] : 0.f;
                acc[u][0] = acc[u][1] = (vf8){b0, b0, b0, b0, b0, b0, b0, b0};
            }
            for (long r = 0; r < R; ++r) {
                const vf8 f0 = load8(fq + r * hw), f1 = load8(fq + r * hw + 8);
                for (int u = 0; u < 4; ++u) {
                    const float wv = wg[(t + u) * R + r];
                    acc[u][0] += wv * f0;
                    acc[u][1] += wv * f1;
                }
            }
            for (int u = 0; u < 4; ++u) {
                store8(kern + (t + u) * BLK, acc[u][0]);
                store8(kern + (t + u) * BLK + 8, acc[u][1]);
            }
        }
        for (; t < KK; ++t) {  /* the last taps, still 16 positions on vectors */
            const float b0 = bias ? bias[t] : 0.f;
            vf8 a0 = {b0, b0, b0, b0, b0, b0, b0, b0}, a1 = a0;
            for (long r = 0; r < R; ++r) {
                const float wv = wg[t * R + r];
                a0 += wv * load8(fq + r * hw);
                a1 += wv * load8(fq + r * hw + 8);
            }
            store8(kern + t * BLK, a0);
            store8(kern + t * BLK + 8, a1);
        }
    }
    for (; t < KK; ++t) {
        float *kt = kern + t * BLK;
        const float b0 = bias ? bias[t] : 0.f;
        for (long b = 0; b < BLK; ++b) kt[b] = b < nb ? b0 : 0.f;
        for (long r = 0; r < R; ++r) {
            const float wv = wg[t * R + r], *fr = fq + r * hw;
            for (long b = 0; b < nb; ++b) kt[b] += wv * fr[b];
        }
    }
    /* columns: only a block that holds a position within p (K-1-p) columns of the left (right)
       edge has taps to zero; each tap column dx then gets one keep-mask for its K taps */
    long cols[BLK];
    int edge = 0;
    for (long b = 0, v = col0; b < BLK; ++b, v = (v + 1 == W ? 0 : v + 1)) {
        cols[b] = v;
        edge |= b < nb && (v < p || v >= W - (K - 1 - p));
    }
    if (!edge) return;
    for (long j = 0; j < K; ++j) {
        const long dx = j - p;
        if (dx == 0) continue;
        int keep[BLK];
        for (int b = 0; b < BLK; ++b) keep[b] = cols[b] + dx >= 0 && cols[b] + dx < W;
        for (long i = i0; i < i1; ++i) {
            float *kt = kern + (i * K + j) * BLK;
            for (int b = 0; b < BLK; ++b) kt[b] = keep[b] ? kt[b] : 0.f;
        }
    }
}

/* The I-D-DW forward with its kernel generation fused in: out[n,c,q] = sum_{i,j}
   kern[n,g,i*K+j,q] * x[n,c,q + OFFSET(i,j)] for kern[n,g,t,q] = bias[g*KK+t] +
   sum_r w2d[g*KK+t, r] * f[n,r,q] (g = c / (C/G)), rows [R0, R1) of the outputs.  The kernels of
   a block of 16 positions are generated into the calling thread's KK*16 floats of ws (thread t's
   at ws + t * ws_stride, ws_stride >= KK*16, given by the caller: nothing sized by K on the
   stack; the caller spaces the threads' buffers a page apart: packed, each thread's writes
   pulled the other's lines over and two threads ran 1.5x slower) and aggregated while
   in L1, so no kernel tensor is written to memory at all (the unfused path writes and reads
   back KK*G floats a position).  xt: the zero-extended rows as in mmdw_aggregate_rows; f: (N, R,
   H*W); w2d: (G*KK, R); bias: (G*KK) or NULL; out: (N, C, H, W). */
void mmdw_aggregate_pointwise_rows(const float *xt, const float *f, const float *w2d,
                                   const float *bias, float *out, float *ws, long ws_stride,
                                   long N, long C,
                                   long G, long R, long H, long W, long K, long R0, long R1,
                                   int nthreads) {
    const long cg = C / G, hw = H * W, p = (K - 1) / 2, lt = (R1 - R0) * W,
               base = p * (W + 1), L = lt + (K - 1) * (W + 1), kk = K * K;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G; ++t) {
        const long n = t / G, g = t % G, c0 = g * cg;
        float *kern = ws + (long)omp_get_thread_num() * ws_stride;
        const float *fn = f + n * R * hw + R0 * W;
        float *on = out + n * C * hw + R0 * W;
        for (long q0 = 0; q0 < lt; q0 += BLK) {
            const long nb = MIN(BLK, lt - q0);
            /* tap rows that reach a map row from some row of the block (rows rb0..rb1) */
            const long rb0 = R0 + q0 / W, rb1 = R0 + (q0 + nb - 1) / W,
                       i0 = MAX(0, p - rb1), i1 = MIN(K, H + p - rb0);
            generate_block(kern, w2d + g * kk * R, bias ? bias + g * kk : NULL, fn + q0, hw, R,
                           K, W, q0 % W, nb, i0, i1);
            aggregate_block(kern, BLK, xt + (n * C + c0) * L + base + q0, on + c0 * hw + q0,
                            c0, c0 + cg, L, hw, W, K, nb, i0, i1);
        }
    }
}

/* The two transposes of mmdw_aggregate_rows, for the I-D-DW backward a row tile at a time (same
   xt layout, same weights w (Nw = N)).  Column-wrapped taps are not special-cased: the input
   gradient's weights are column-masked (their products are zero), and the kernel gradient of a
   masked tap is garbage that the caller zeroes with mmdw_mask_columns.
   Input gradient (mmdw_scatter_rows): gx (N, C, H*W) += the in-map part of sum over taps of
   w * go scattered into the xt layout (xt position PB*(W+1) + q + OFFSET(i,j) receives
   w[n,g,i*K+j,q] * go[n,c,R0*W + q]; xt position s is map position R0*W + s - PB*(W+1)).
   Kernel gradient (mmdw_correlate_rows): gw (N, G, K*K, (R1-R0)*W) =
   sum_{c in g} go[n,c,R0*W+q] * xt[n,c,PB*(W+1)+q+OFFSET(i,j)]. */

/* xo[v] += sum_j wi[j*lt + v - j] * g0[v - j] of U channels (channels L / hw apart), taps j
   restricted to 0 <= v - j < lt: one position of a tap row pass (see scatter_channels) */
static inline __attribute__((always_inline)) void scatter_point(
    const int U, const float *wi, long lt, const float *g0, long hw, float *xo, long K, long v) {
    const long j0 = MAX(0, v - lt + 1), j1 = MIN(K - 1, v);
    for (int u = 0; u < U; ++u) {
        float a = xo[u * hw + v];
        for (long j = j0; j <= j1; ++j) a += wi[j * lt + v - j] * g0[u * hw + v - j];
        xo[u * hw + v] = a;
    }
}

/* The input gradient of U <= 4 channels of one group, in gather form one tap row at a time: for
   tap row i, xt position i*W + v receives sum_j w[i*K+j, v - j] * go[c, v - j] over the j with
   0 <= v - j < lt (tap (i, j) of output q reads xt position q + i*W + j), for the v in
   [0, lt + K - 1) whose position is in the map; it is added into gx.  For v in [K - 1, lt) every
   tap is in the tile: blocks of 16 (then one of 8) accumulate the K products in registers and
   touch gx once per tap row (the scatter form read and wrote an xt-sized buffer once per tap:
   K*K passes over it, three loads and a store per product, then a pass adding it into gx); the
   K - 1 positions at each end of a row pass (some taps outside the tile) and the last few go
   one by one.  wg: the group's (K*K, lt) weights; g0: the first channel's go at the tile
   (channels hw apart); gx0: its gradient row (channels hw apart); m0: the map position of xt
   position 0 (R0*W - PB*(W+1), may be negative). */
static inline __attribute__((always_inline)) void scatter_channels(
    const int U, const float *wg, long lt, const float *g0, long hw, float *gx0, long m0,
    long K, long W) {
    const long nv = lt + K - 1;
    for (long i = 0; i < K; ++i) {
        const float *wi = wg + i * K * lt;
        const long mi = m0 + i * W;  /* map position of v = 0 in this row pass */
        float *xo = gx0 + mi;        /* only dereferenced at in-map positions */
        const long vlo = MAX(0, -mi), vhi = MIN(nv, hw - mi);
        long v = vlo;
        for (; v < MIN(vhi, K - 1); ++v) scatter_point(U, wi, lt, g0, hw, xo, K, v);
        const long vb = MIN(vhi, lt);
        for (; v + BLK <= vb; v += BLK) {
            vf8 acc[4][2];
            for (int u = 0; u < U; ++u) {
                acc[u][0] = load8(xo + u * hw + v);
                acc[u][1] = load8(xo + u * hw + v + 8);
            }
            for (long j = 0; j < K; ++j) {
                const float *wr = wi + j * lt + v - j, *gr = g0 + v - j;
                const vf8 w0 = load8(wr), w1 = load8(wr + 8);
                for (int u = 0; u < U; ++u) {
                    acc[u][0] += w0 * load8(gr + u * hw);
                    acc[u][1] += w1 * load8(gr + u * hw + 8);
                }
            }
            for (int u = 0; u < U; ++u) {
                store8(xo + u * hw + v, acc[u][0]);
                store8(xo + u * hw + v + 8, acc[u][1]);
            }
        }
        if (v + 8 <= vb) {
            vf8 acc[4];
            for (int u = 0; u < U; ++u) acc[u] = load8(xo + u * hw + v);
            for (long j = 0; j < K; ++j) {
                const vf8 w0 = load8(wi + j * lt + v - j);
                for (int u = 0; u < U; ++u) acc[u] += w0 * load8(g0 + u * hw + v - j);
            }
            for (int u = 0; u < U; ++u) store8(xo + u * hw + v, acc[u]);
            v += 8;
        }
        for (; v < vhi; ++v) scatter_point(U, wi, lt, g0, hw, xo, K, v);
    }
}

void mmdw_scatter_rows(const float *go, const float *w, float *gx, long N, long C, long G,
                       long H, long W, long K, long R0, long R1, int nthreads) {
    const long cg = C / G, hw = H * W, lt = (R1 - R0) * W, kk = K * K, nch = (cg + 3) / 4,
               m0 = R0 * W - (K - 1) / 2 * (W + 1);
    /* (image, group, 4 channels) work items: each writes its own channels of gx */
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * G * nch; ++t) {
        const long ng = t / nch, n = ng / G, g = ng % G, c = (t % nch) * 4,
                   u = MIN(4, cg - c), off = (n * C + g * cg + c) * hw;
        const float *wg = w + ng * kk * lt, *g0 = go + off + R0 * W;
        /* the u channels share each weight load (8, 6, 4 or 2 accumulators) */
        if (u == 4) scatter_channels(4, wg, lt, g0, hw, gx + off, m0, K, W);
        else if (u == 3) scatter_channels(3, wg, lt, g0, hw, gx + off, m0, K, W);
        else if (u == 2) scatter_channels(2, wg, lt, g0, hw, gx + off, m0, K, W);
        else scatter_channels(1, wg, lt, g0, hw, gx + off, m0, K, W);
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
        const float *g0 = go + (n * C + g * cg) * hw + R0 * W, *x0 = xt + (n * C + g * cg) * L + base;
        for (long q0 = 0; q0 < lt; q0 += BLK) {
            const long nb = MIN(BLK, lt - q0);
            long ij = 0;
            if (nb == BLK)  /* 4 taps at a time share each gradient load: 8 vector accumulators */
                for (; ij + 4 <= kk; ij += 4) {
                    vf8 acc[4][2] = {{0}};
                    long off[4];
                    for (int u = 0; u < 4; ++u) off[u] = OFFSET((ij + u) / K, (ij + u) % K);
                    for (long c = 0; c < cg; ++c) {
                        const float *gr = g0 + c * hw + q0, *xr = x0 + c * L + q0;
                        const vf8 a = load8(gr), b = load8(gr + 8);
                        for (int u = 0; u < 4; ++u) {
                            acc[u][0] += a * load8(xr + off[u]);
                            acc[u][1] += b * load8(xr + off[u] + 8);
                        }
                    }
                    for (int u = 0; u < 4; ++u) {
                        store8(wg + (ij + u) * lt + q0, acc[u][0]);
                        store8(wg + (ij + u) * lt + q0 + 8, acc[u][1]);
                    }
                }
            for (; ij < kk; ++ij) {
                const long o = OFFSET(ij / K, ij % K);
                float acc[BLK] = {0};
                for (long c = 0; c < cg; ++c) {
                    const float *gr = g0 + c * hw + q0, *xr = x0 + c * L + q0 + o;
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
                for (; c0 < C; c0 += BLK) {  /* 8 vector accumulators (explicit vf8: gcc left the
                                                 array form scalar) */
                    vf8 acc[4][2];
                    const vf8 b0 = bias ? load8(bias + c0) : (vf8){0},
                              b1 = bias ? load8(bias + c0 + 8) : (vf8){0};
                    for (int u = 0; u < 4; ++u) { acc[u][0] = b0; acc[u][1] = b1; }
                    for (long i = 0; i < K; ++i) {
                        const long hs = h + i - p;
                        if (hs < 0 || hs >= H) continue;
                        const float *xrow = x + ((n * H + hs) * W + v - p) * C + c0;
                        const float *wrow = wn + i * K * C + c0;
                        for (long j = 0; j < K; ++j) {
                            const float *xi = xrow + j * C, *wi = wrow + j * C;
                            const vf8 w0 = load8(wi), w1 = load8(wi + 8);
                            for (int u = 0; u < 4; ++u) {
                                acc[u][0] += w0 * load8(xi + u * C);
                                acc[u][1] += w1 * load8(xi + u * C + 8);
                            }
                        }
                    }
                    for (int u = 0; u < 4; ++u) {
                        store8(o + u * C + c0, acc[u][0]);
                        store8(o + u * C + c0 + 8, acc[u][1]);
                    }
                }
                v += 3;
                continue;
            }
            for (; c0 + BLK <= C; c0 += BLK) {
                vf8 a0 = bias ? load8(bias + c0) : (vf8){0},
                    a1 = bias ? load8(bias + c0 + 8) : (vf8){0};
                for (long i = 0; i < K; ++i) {
                    const long hs = h + i - p;
                    if (hs < 0 || hs >= H) continue;
                    for (long j = 0; j < K; ++j) {
                        const long vs = v + j - p;
                        if (vs < 0 || vs >= W) continue;
                        const float *xi = x + ((n * H + hs) * W + vs) * C + c0;
                        const float *wi = wn + (i * K + j) * C + c0;
                        a0 += load8(wi) * load8(xi);
                        a1 += load8(wi + 8) * load8(xi + 8);
                    }
                }
                store8(o + c0, a0);
                store8(o + c0 + 8, a1);
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

/* Kernel gradient of mmdw_ddw_nhwc (the D-DW backward, channels-last): gk[n, i*K+j, c] =
   sum_{h,v} go[n,h,v,c] * x[n, h+i-PB, v+j-PB, c] (zero outside the map); x, go: (N, H, W, C);
   gk: (N, K*K, C).  Work items are (image, 16 channels); a tap row i is swept over the map for
   DJ taps at a time, their 2*DJ vector accumulators in registers while the gradient vector of
   each pixel is loaded once (aten's grouped-conv gradient, which this replaces, ran 10-20x the
   forward's time).  Columns at the map's edge drop the taps that read outside it. */
#define DJ 4
void mmdw_ddw_nhwc_grad_kernels(const float *x, const float *go, float *gk, long N, long C,
                                long H, long W, long K, int nthreads) {
    const long p = (K - 1) / 2, kk = K * K, ncb = (C + BLK - 1) / BLK;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (long t = 0; t < N * ncb; ++t) {
        const long n = t / ncb, c0 = (t % ncb) * BLK, nc = MIN(BLK, C - c0);
        const float *xn = x + n * H * W * C + c0, *gn = go + n * H * W * C + c0;
        float *gkn = gk + n * kk * C + c0;
        for (long i = 0; i < K; ++i) {
            const long h0 = MAX(0, p - i), h1 = MIN(H, H + p - i);  /* rows h+i-PB in the map */
            for (long j0 = 0; j0 < K; j0 += DJ) {
                const long nj = MIN(DJ, K - j0);
                /* columns v whose DJ taps all land in the map */
                const long v0 = MIN(W, MAX(0, p - j0)), v1 = MAX(v0, MIN(W, W + p - j0 - nj + 1));
                if (nc == BLK) {
                    vf8 acc[DJ][2];
                    for (int u = 0; u < DJ; ++u) acc[u][0] = acc[u][1] = (vf8){0};
                    for (long h = h0; h < h1; ++h) {
                        const float *gr = gn + h * W * C, *xr = xn + (h + i - p) * W * C;
                        for (long v = 0; v < W; ++v) {
                            const vf8 g0 = load8(gr + v * C), g1 = load8(gr + v * C + 8);
                            const float *xv = xr + (v + j0 - p) * C;
                            if (v >= v0 && v < v1 && nj == DJ) {
                                for (int u = 0; u < DJ; ++u) {
                                    acc[u][0] += g0 * load8(xv + u * C);
                                    acc[u][1] += g1 * load8(xv + u * C + 8);
                                }
                            } else {
                                for (int u = 0; u < DJ; ++u) {
                                    const long vs = v + j0 + u - p;
                                    if (u < nj && vs >= 0 && vs < W) {
                                        acc[u][0] += g0 * load8(xv + u * C);
                                        acc[u][1] += g1 * load8(xv + u * C + 8);
                                    }
                                }
                            }
                        }
                    }
                    for (long u = 0; u < nj; ++u) {
                        store8(gkn + (i * K + j0 + u) * C, acc[u][0]);
                        store8(gkn + (i * K + j0 + u) * C + 8, acc[u][1]);
                    }
                } else {  /* the channel tail: scalar */
                    for (long u = 0; u < nj; ++u)
                        for (long c = 0; c < nc; ++c) {
                            float a = 0.f;
                            for (long h = h0; h < h1; ++h)
                                for (long v = 0; v < W; ++v) {
                                    const long vs = v + j0 + u - p;
                                    if (vs < 0 || vs >= W) continue;
                                    a += gn[(h * W + v) * C + c] *
                                         xn[((h + i - p) * W + vs) * C + c];
                                }
                            gkn[(i * K + j0 + u) * C + c] = a;
                        }
                }
            }
        }
    }
}

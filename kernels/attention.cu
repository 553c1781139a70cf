// attention.cu: causal grouped-query attention, forward and backward,
// flash-attention style (no [T, S] score matrix ever reaches device memory).
//
// Layouts (engine.Backend.Attention): q, out, dout, dq [B, T, Hq, D];
// k, v, dk, dv [B, S, Hkv, D]; lse, delta [B, Hq, T]. Query head h reads kv
// head h / (Hq/Hkv). Query t sees keys s <= t + (S - T) (S >= T), and
// always its own key s = t + (S - T), so no softmax row is empty. The
// options (engine.AttentionOptions; attention.cuh: scale, soft cap,
// sliding window, packed segments, dropout) arrive as the trailing
// parameters, computed by the host as the CPU backend computes them. A
// block starts at the first key (forward, dq) or stops after the last
// query (dkv) that any of its rows can see, so a sliding window costs in
// proportion to the window.
//
// All math is float32; q/k/v/out/dout/gradients are float32 or bfloat16
// per their *_dt code, lse float32 or bfloat16, delta float32.
//
// Kernel families, each instantiated for DMAX = 32, 64, 128, 256 (any
// D <= DMAX works: tiles are zero-padded to DMAX; the backend picks the
// smallest DMAX >= D). 128 threads = 4 warps per block; a warp owns R rows
// (R = 8, or 4 for DMAX 256) of the block's BR = 4R rows.
//
//   gt_attn_fwd_*   grid (ceil(T/BR), Hq, B). The block's query rows
//       (pre-scaled) sit in shared memory; K/V tiles of 32 keys stream
//       through shared memory. Scores: lane j computes key j's dot product
//       with each of the warp's R rows (row values are broadcast reads),
//       soft-capped when asked. Online softmax per row (running max m,
//       per-lane partial sums l), probabilities (times the dropout mask)
//       go through a per-warp shared buffer, and P·V is accumulated with
//       lanes over the head dimension (column lane+32c); out is scaled by
//       1/Σ and dropout's 1/(1 − p) once.
//   gt_attn_bwd_dq_*  same grid: recomputes P = exp(s - lse) tile by tile,
//       dS = P ⊙ (dP·M/(1 − p) - delta) ⊙ (1 − th²) (dP = dout·vᵀ, M the
//       dropout mask, th the soft cap's tanh; the factors are 1 without
//       those options), dq += scale·dS·K (read-add-write once).
//   gt_attn_bwd_dkv_* grid (ceil(S/BR), Hkv, B): a block owns BR keys and
//       visits every query head of its kv group and every query tile that
//       sees them, accumulating dv += (P·M)ᵀ·dout/(1 − p) and dk +=
//       scale·dSᵀ·q in registers; one read-add-write of dk, dv at the end.
//       No atomics: the backward pass is deterministic.
//   gt_attn_delta   delta[b,h,t] = Σ_d dout·out (one warp per row).
//
// Dynamic shared memory (bytes), with BR = 4R and LDP = DMAX + 4:
//   fwd  4·(BR·DMAX + 2·32·LDP + BR·32)
//   dq   4·(2·BR·DMAX + 2·32·LDP + BR·32)
//   dkv  4·(2·BR·DMAX + 2·32·LDP + 2·BR·32)
// (GT_ATTN_*_SMEM in launch.cuh, which the Go side reads too; each kernel
// static_asserts that its layout ends where that figure says.)
//
// Shared-memory access patterns: tiles read with a lane per row (keys in
// fwd/dq, queries in dkv) use rows of LDP = DMAX + 4 floats, so the 8
// lanes of each quarter-warp's 16-byte loads hit distinct banks; tiles read
// only by broadcast (every lane the same row) or with lanes along a row are
// unpadded.
#include "attention.cuh"

#if GT_EMU
struct gt_f4 {
  float x, y, z, w;
};
#else
typedef float4 gt_f4;
#endif

#define ATT_THREADS GT_ATTN_THREADS
// Minimum resident blocks per SM for the register allocator: 3 for the
// forward and dq kernels (<= 168 registers), and for dkv at DMAX <= 64
// (left free, ptxas took up to 190 once the options came); 2 for dkv at
// DMAX 128/256 (two register accumulator sets; <= 255), which is what
// their shared memory allows anyway. Without a minimum, ptxas capped some
// at 128 and spilled.
#define ATT_MINB 3
#define ATT_MINB_DKV(DMAX) ((DMAX) <= 64 ? 3 : 2)
#define ATT_WARPS GT_ATTN_WARPS
#define ATT_TILE GT_ATTN_TILE  // keys (fwd, dq) or queries (dkv) per streamed tile: one per lane

template <int DMAX>
struct AttCfg {
  static constexpr int R = GT_ATTN_ROWS_PER_WARP(DMAX);    // rows per warp
  static constexpr int BR = GT_ATTN_ROWS_PER_BLOCK(DMAX);  // rows per block
  static constexpr int LDP = DMAX + GT_ATTN_PAD;           // padded row length (lane-per-row tiles)
  static constexpr int NC = DMAX / 32;           // head-dim columns per lane
};

__device__ __forceinline__ gt_f4 ld4(const float* p) { return *reinterpret_cast<const gt_f4*>(p); }

__device__ __forceinline__ float dot4(gt_f4 a, gt_f4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

// att_load_tile fills dst[r*ld + d] (r < rows, d < DMAX) with
// mul·src[base + r·stride + d] for r < valid and d < D, else 0.
template <int DMAX>
__device__ __forceinline__ void att_load_tile(float* dst, int ld, int rows, const void* src, int dt, long long base,
                                              long long stride, int valid, int D, float mul) {
  for (int i = threadIdx.x; i < rows * DMAX; i += ATT_THREADS) {
    int r = i / DMAX, d = i % DMAX;
    dst[r * ld + d] = (r < valid && d < D) ? mul * ldx(src, dt, base + r * stride + d) : 0.f;
  }
}

// att_row_masks sets bit i of vis when query row t0 + i (i < R) of batch b
// sees key kj (of the block's keys < kend), and bit i of kept when dropout
// keeps that probability too (head h). Computed per tile before the score
// loop, in a loop that is not unrolled, so that nothing per row (key
// indices, ids, 64-bit dropout counters) stays in registers across it.
template <int R>
__device__ __forceinline__ void att_row_masks(const AttnOpt& o, int b, int h, int T, int S, int Hq, int t0, int kj,
                                              int kend, unsigned& vis, unsigned& kept) {
  const int off = S - T;
  bool any_id = true;
  int kid = 0;
  if (kj < kend) kid = attn_kid(o, b, T, off, kj, any_id);
  vis = kept = 0;
#pragma unroll 1
  for (int i = 0; i < R; i++) {
    const int t = t0 + i;
    if (!attn_row_sees(o, b, T, off, t, kj, kid, any_id)) continue;  // rows past T see nothing
    vis |= 1u << i;
    if (attn_kept(o, attn_drop_row(b, h, t, Hq, T, S), kj)) kept |= 1u << i;
  }
}

// att_key_masks is att_row_masks for the dk/dv kernel, whose lane is query
// t (of batch b, head h) and whose rows are keys key0 + i (i < nkeys).
template <int R>
__device__ __forceinline__ void att_key_masks(const AttnOpt& o, int b, int h, int T, int S, int Hq, int t, int key0,
                                              int nkeys, unsigned& vis, unsigned& kept) {
  const int off = S - T, qi = t < T ? t + off : -1, qid = attn_qid(o, b, T, t);
  const unsigned long long drow = attn_drop_row(b, h, t, Hq, T, S);
  vis = kept = 0;
#pragma unroll 1
  for (int i = 0; i < min(R, nkeys); i++) {
    bool any_id;
    const int j = key0 + i, kid = attn_kid(o, b, T, off, j, any_id);
    if (!attn_sees(o, qi, qid, j, kid, any_id)) continue;
    vis |= 1u << i;
    if (attn_kept(o, drow, j)) kept |= 1u << i;
  }
}

// ================================ forward ================================

template <int DMAX>
__device__ __forceinline__ void attn_fwd(void* out, int out_dt, void* lse, int lse_dt, const void* q, int q_dt,
                                         const void* k, int k_dt, const void* v, int v_dt, int T, int S, int Hq,
                                         int Hkv, int D, const AttnOpt& o) {
  typedef AttCfg<DMAX> C;
  constexpr int R = C::R, BR = C::BR, LDP = C::LDP, NC = C::NC;
  if (D > DMAX) __trap();
  float* sQ = GT_DYN_SMEM(float);      // [BR][DMAX], pre-scaled
  float* sK = sQ + BR * DMAX;          // [32][LDP]
  float* sV = sK + ATT_TILE * LDP;     // [32][LDP]
  float* sP = sV + ATT_TILE * LDP;     // [4 warps][R][32]
  static_assert(4 * (BR * DMAX + 2 * ATT_TILE * LDP + BR * ATT_TILE) == GT_ATTN_FWD_SMEM(DMAX), "launch.cuh");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int t0 = blockIdx.x * BR, h = blockIdx.y, b = blockIdx.z;
  const int kvh = h / (Hq / Hkv), off = S - T;
  const long long ldq = (long long)Hq * D, ldk = (long long)Hkv * D;
  const long long qbase = ((long long)b * T * Hq + h) * D + t0 * ldq;
  const long long kbase = ((long long)b * S * Hkv + kvh) * D;
  const int nq = min(BR, T - t0);
  const int D4 = (D + 3) & ~3;
  att_load_tile<DMAX>(sQ, DMAX, BR, q, q_dt, qbase, ldq, nq, D, o.scale);

  float m[R], l[R], acc[R][NC];
#pragma unroll
  for (int i = 0; i < R; i++) {
    m[i] = neg_inf();
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < NC; c++) acc[i][c] = 0.f;
  }
  float* myP = sP + warp * R * ATT_TILE;
  const float* myQ = sQ + warp * R * DMAX;
  const int kbeg = attn_key_begin(o, b, T, off, t0, nq);  // earlier keys are hidden from every row
  const int kend = min(S, t0 + nq - 1 + off + 1);          // keys some row of the block sees
  // bfloat16 q, k, v: two passes, the row statistics first (no V), then
  // P = bf16(exp(s − lse)) normalised and O += P·V without rescaling.
  // Otherwise one online-softmax pass.
  const bool bf = q_dt == GT_BF16 && k_dt == GT_BF16 && v_dt == GT_BF16;
  for (int pass = bf ? 0 : 1; pass < 2; pass++) {
    const bool fixed = bf && pass == 1;  // m holds lse: P needs no running max
    for (int k0 = kbeg; k0 < kend; k0 += ATT_TILE) {
      const int nk = min(ATT_TILE, kend - k0);
      __syncthreads();  // the previous tile's readers are done
      att_load_tile<DMAX>(sK, LDP, ATT_TILE, k, k_dt, kbase + k0 * ldk, ldk, nk, D, 1.f);
      if (pass == 1) att_load_tile<DMAX>(sV, LDP, ATT_TILE, v, v_dt, kbase + k0 * ldk, ldk, nk, D, 1.f);
      __syncthreads();
      // Which rows see key k0+lane (at most kend − 1: a loaded key), and keep it.
      const int kj = k0 + lane;
      unsigned vis, kept;
      att_row_masks<R>(o, b, h, T, S, Hq, t0 + warp * R, kj, kend, vis, kept);
      // Scores: lane = key k0+lane.
      float s[R];
#pragma unroll
      for (int i = 0; i < R; i++) s[i] = 0.f;
      const float* kr = sK + lane * LDP;
      for (int d = 0; d < D4; d += 4) {
        gt_f4 kv = ld4(kr + d);
#pragma unroll
        for (int i = 0; i < R; i++) s[i] = dot4(ld4(myQ + i * DMAX + d), kv, s[i]);
      }
#pragma unroll
      for (int i = 0; i < R; i++) {
        const bool sees = (vis >> i) & 1u;
        float th, si = o.softcap > 0.f ? attn_cap(o, s[i], th) : s[i];
        if (fixed) {  // dropout zeroes the dropped probabilities
          myP[i * ATT_TILE + lane] = (kept >> i) & 1u ? round_bf16(expf(si - m[i])) : 0.f;
          continue;
        }
        // Online softmax. A row may see nothing yet (a window or segment
        // starts later): its max stays −inf and exponentials are taken
        // against 0 instead, which leaves l and the accumulators at 0.
        float mn = fmaxf(m[i], warp_max(sees ? si : neg_inf()));
        const float mref = mn == neg_inf() ? 0.f : mn;
        float alpha = expf(m[i] - mref);
        float p = sees ? expf(si - mref) : 0.f;
        l[i] = fmaf(l[i], alpha, p);
        m[i] = mn;
        if (pass == 0) continue;
#pragma unroll
        for (int c = 0; c < NC; c++) acc[i][c] *= alpha;
        myP[i * ATT_TILE + lane] = (kept >> i) & 1u ? p : 0.f;  // dropout: the sum l keeps every probability
      }
      if (pass == 0) continue;
      __syncwarp();
      // O += P·V: lane = columns lane + 32c. P is 0 past nk; V rows are zero there.
      for (int j = 0; j < nk; j += 4) {
        float vv[4][NC];
#pragma unroll
        for (int jj = 0; jj < 4; jj++)
#pragma unroll
          for (int c = 0; c < NC; c++) vv[jj][c] = sV[(j + jj) * LDP + lane + 32 * c];
#pragma unroll
        for (int i = 0; i < R; i++) {
          gt_f4 p4 = ld4(myP + i * ATT_TILE + j);
#pragma unroll
          for (int c = 0; c < NC; c++) {
            float a = acc[i][c];
            a = fmaf(p4.x, vv[0][c], a);
            a = fmaf(p4.y, vv[1][c], a);
            a = fmaf(p4.z, vv[2][c], a);
            acc[i][c] = fmaf(p4.w, vv[3][c], a);
          }
        }
      }
      __syncwarp();
    }
    if (pass == 1) break;
    // End of the statistics pass: m becomes lse (float32, unrounded), stored now.
#pragma unroll
    for (int i = 0; i < R; i++) {
      const int t = t0 + warp * R + i;
      m[i] += logf(warp_sum(l[i]));
      if (lane == 0 && t < T) stx(lse, lse_dt, ((long long)b * Hq + h) * T + t, m[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < R; i++) {
    const int r = warp * R + i, t = t0 + r;
    float sum = bf ? 1.f : warp_sum(l[i]);
    if (t >= T) continue;
    // 1/Σ (float32: P was not normalised) times dropout's 1/(1 − p).
    float inv = (bf ? 1.f : 1.f / sum) * o.keep_scale;
    if (out) {
#pragma unroll
      for (int c = 0; c < NC; c++) {
        int d = lane + 32 * c;
        if (d < D) stx(out, out_dt, qbase + r * ldq + d, acc[i][c] * inv);
      }
    }
    if (lane == 0 && !bf) stx(lse, lse_dt, ((long long)b * Hq + h) * T + t, m[i] + logf(sum));
  }
}

// ============================ backward: delta ============================

extern "C" __global__ void __launch_bounds__(256)
    gt_attn_delta(float* delta, const void* dout, int dout_dt, const void* out, int out_dt, int rows, int T, int Hq,
                  int D) {
  const int lane = threadIdx.x & 31;
  const long long nw = ((long long)gridDim.x * blockDim.x) >> 5;
  for (long long u = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; u < rows; u += nw) {
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s = fmaf(ldx(dout, dout_dt, u * D + d), ldx(out, out_dt, u * D + d), s);
    s = warp_sum(s);
    // u = (b·T + t)·Hq + h  ->  delta[(b·Hq + h)·T + t]
    long long h = u % Hq, bt = u / Hq, t = bt % T, b = bt / T;
    if (lane == 0) delta[(b * Hq + h) * T + t] = s;
  }
}

// =============================== backward: dq ===============================

template <int DMAX>
__device__ __forceinline__ void attn_bwd_dq(void* dq, int dq_dt, const void* dout, int dout_dt, const void* q,
                                            int q_dt, const void* k, int k_dt, const void* v, int v_dt,
                                            const void* lse, int lse_dt, const float* delta, int T, int S, int Hq,
                                            int Hkv, int D, const AttnOpt& o) {
  typedef AttCfg<DMAX> C;
  constexpr int R = C::R, BR = C::BR, LDP = C::LDP, NC = C::NC;
  if (D > DMAX) __trap();
  float* sQ = GT_DYN_SMEM(float);   // [BR][DMAX], pre-scaled
  float* sO = sQ + BR * DMAX;       // [BR][DMAX] dout
  float* sK = sO + BR * DMAX;       // [32][LDP]
  float* sV = sK + ATT_TILE * LDP;  // [32][LDP]
  float* sS = sV + ATT_TILE * LDP;  // [4 warps][R][32] dS
  static_assert(4 * (2 * BR * DMAX + 2 * ATT_TILE * LDP + BR * ATT_TILE) == GT_ATTN_DQ_SMEM(DMAX), "launch.cuh");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int t0 = blockIdx.x * BR, h = blockIdx.y, b = blockIdx.z;
  const int kvh = h / (Hq / Hkv), off = S - T;
  const long long ldq = (long long)Hq * D, ldk = (long long)Hkv * D;
  const long long qbase = ((long long)b * T * Hq + h) * D + t0 * ldq;
  const long long kbase = ((long long)b * S * Hkv + kvh) * D;
  const long long lbase = ((long long)b * Hq + h) * T;
  const int nq = min(BR, T - t0);
  const int D4 = (D + 3) & ~3;
  att_load_tile<DMAX>(sQ, DMAX, BR, q, q_dt, qbase, ldq, nq, D, o.scale);
  att_load_tile<DMAX>(sO, DMAX, BR, dout, dout_dt, qbase, ldq, nq, D, 1.f);

  float L[R], Dl[R], acc[R][NC];
#pragma unroll
  for (int i = 0; i < R; i++) {
    int t = t0 + warp * R + i;
    bool ok = t < T;
    L[i] = ok ? ldx(lse, lse_dt, lbase + t) : 0.f;
    Dl[i] = ok ? delta[lbase + t] : 0.f;
#pragma unroll
    for (int c = 0; c < NC; c++) acc[i][c] = 0.f;
  }
  float* myS = sS + warp * R * ATT_TILE;
  const float* myQ = sQ + warp * R * DMAX;
  const float* myO = sO + warp * R * DMAX;
  const bool bf = q_dt == GT_BF16 && k_dt == GT_BF16 && v_dt == GT_BF16;  // dS rounded to bfloat16
  const int kbeg = attn_key_begin(o, b, T, off, t0, nq);
  const int kend = min(S, t0 + nq - 1 + off + 1);
  for (int k0 = kbeg; k0 < kend; k0 += ATT_TILE) {
    const int nk = min(ATT_TILE, kend - k0);
    __syncthreads();
    att_load_tile<DMAX>(sK, LDP, ATT_TILE, k, k_dt, kbase + k0 * ldk, ldk, nk, D, 1.f);
    att_load_tile<DMAX>(sV, LDP, ATT_TILE, v, v_dt, kbase + k0 * ldk, ldk, nk, D, 1.f);
    __syncthreads();
    const int kj = k0 + lane;
    unsigned vis, kept;
    att_row_masks<R>(o, b, h, T, S, Hq, t0 + warp * R, kj, kend, vis, kept);
    // Lane = key: s = q·k (scaled), dp = dout·v.
    float s[R], dp[R];
#pragma unroll
    for (int i = 0; i < R; i++) s[i] = dp[i] = 0.f;
    const float* kr = sK + lane * LDP;
    const float* vr = sV + lane * LDP;
    for (int d = 0; d < D4; d += 4) {
      gt_f4 kv = ld4(kr + d), vv = ld4(vr + d);
#pragma unroll
      for (int i = 0; i < R; i++) {
        s[i] = dot4(ld4(myQ + i * DMAX + d), kv, s[i]);
        dp[i] = dot4(ld4(myO + i * DMAX + d), vv, dp[i]);
      }
    }
#pragma unroll
    for (int i = 0; i < R; i++) {
      float ds = 0.f;
      if ((vis >> i) & 1u) {
        float th = 0.f, si = o.softcap > 0.f ? attn_cap(o, s[i], th) : s[i];
        const float p = expf(si - L[i]);
        // dP through the dropout mask: dropped 0, kept times 1/(1 − p).
        const float g = (kept >> i) & 1u ? dp[i] * o.keep_scale : 0.f;
        ds = p * (g - Dl[i]);
        if (o.softcap > 0.f) ds *= 1.f - th * th;
      }
      myS[i * ATT_TILE + lane] = bf ? round_bf16(ds) : ds;
    }
    __syncwarp();
    // acc += dS·K: lane = columns.
    for (int j = 0; j < nk; j += 4) {
      float kk[4][NC];
#pragma unroll
      for (int jj = 0; jj < 4; jj++)
#pragma unroll
        for (int c = 0; c < NC; c++) kk[jj][c] = sK[(j + jj) * LDP + lane + 32 * c];
#pragma unroll
      for (int i = 0; i < R; i++) {
        gt_f4 d4 = ld4(myS + i * ATT_TILE + j);
#pragma unroll
        for (int c = 0; c < NC; c++) {
          float a = acc[i][c];
          a = fmaf(d4.x, kk[0][c], a);
          a = fmaf(d4.y, kk[1][c], a);
          a = fmaf(d4.z, kk[2][c], a);
          acc[i][c] = fmaf(d4.w, kk[3][c], a);
        }
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int i = 0; i < R; i++) {
    const int r = warp * R + i;
    if (t0 + r >= T) continue;
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int d = lane + 32 * c;
      if (d < D) {
        long long gi = qbase + r * ldq + d;
        stx(dq, dq_dt, gi, ldx(dq, dq_dt, gi) + o.scale * acc[i][c]);
      }
    }
  }
}

// ============================= backward: dk, dv =============================

template <int DMAX>
__device__ __forceinline__ void attn_bwd_dkv(void* dk, int dk_dt, void* dv, int dv_dt, const void* dout,
                                             int dout_dt, const void* q, int q_dt, const void* k, int k_dt,
                                             const void* v, int v_dt, const void* lse, int lse_dt,
                                             const float* delta, int T, int S, int Hq, int Hkv, int D,
                                             const AttnOpt& o) {
  typedef AttCfg<DMAX> C;
  constexpr int R = C::R, BR = C::BR, LDP = C::LDP, NC = C::NC;
  if (D > DMAX) __trap();
  float* sK = GT_DYN_SMEM(float);   // [BR][DMAX] the block's keys
  float* sV = sK + BR * DMAX;       // [BR][DMAX]
  float* sQ = sV + BR * DMAX;       // [32][LDP] query tile, pre-scaled
  float* sO = sQ + ATT_TILE * LDP;  // [32][LDP] dout tile
  float* sP = sO + ATT_TILE * LDP;  // [4 warps][R][32] P
  float* sS = sP + BR * ATT_TILE;   // [4 warps][R][32] dS
  static_assert(4 * (2 * BR * DMAX + 2 * ATT_TILE * LDP + 2 * BR * ATT_TILE) == GT_ATTN_DKV_SMEM(DMAX), "launch.cuh");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int s0 = blockIdx.x * BR, kvh = blockIdx.y, b = blockIdx.z;
  const int group = Hq / Hkv, off = S - T;
  const long long ldq = (long long)Hq * D, ldk = (long long)Hkv * D;
  const long long kbase = ((long long)b * S * Hkv + kvh) * D + s0 * ldk;
  const int nk = min(BR, S - s0);
  const int D4 = (D + 3) & ~3;
  const bool needK = dk != nullptr, needV = dv != nullptr;
  att_load_tile<DMAX>(sK, DMAX, BR, k, k_dt, kbase, ldk, nk, D, 1.f);
  att_load_tile<DMAX>(sV, DMAX, BR, v, v_dt, kbase, ldk, nk, D, 1.f);

  float accK[R][NC], accV[R][NC];
#pragma unroll
  for (int i = 0; i < R; i++)
#pragma unroll
    for (int c = 0; c < NC; c++) accK[i][c] = accV[i][c] = 0.f;
  const int wkey = s0 + warp * R, wkeys = nk - warp * R;  // the warp's first key, and how many it has
  float* myP = sP + warp * R * ATT_TILE;
  float* myS = sS + warp * R * ATT_TILE;
  const float* myK = sK + warp * R * DMAX;
  const float* myV = sV + warp * R * DMAX;
  const int tfirst = max(0, s0 - off);                     // the first query that sees key s0
  const int tend = attn_query_end(o, b, T, off, s0, nk);  // later queries see none of the block's keys
  const bool bf = q_dt == GT_BF16 && k_dt == GT_BF16 && v_dt == GT_BF16;  // P and dS rounded to bfloat16
  for (int h = kvh * group; h < (kvh + 1) * group; h++) {
    const long long qhead = ((long long)b * T * Hq + h) * D;
    const long long lbase = ((long long)b * Hq + h) * T;
    for (int tq0 = tfirst; tq0 < tend; tq0 += ATT_TILE) {
      const int nq = min(ATT_TILE, T - tq0);
      __syncthreads();
      att_load_tile<DMAX>(sQ, LDP, ATT_TILE, q, q_dt, qhead + tq0 * ldq, ldq, nq, D, o.scale);
      att_load_tile<DMAX>(sO, LDP, ATT_TILE, dout, dout_dt, qhead + tq0 * ldq, ldq, nq, D, 1.f);
      __syncthreads();
      // Lane = query tq0+lane; which of the warp's keys it sees, and keeps.
      const int t = tq0 + lane;
      const bool qok = lane < nq;
      unsigned vis, kept;
      att_key_masks<R>(o, b, h, T, S, Hq, qok ? t : T, wkey, wkeys, vis, kept);
      const float Lj = qok ? ldx(lse, lse_dt, lbase + t) : 0.f;
      const float Dj = qok && needK ? delta[lbase + t] : 0.f;
      float s[R], dp[R];
#pragma unroll
      for (int i = 0; i < R; i++) s[i] = dp[i] = 0.f;
      const float* qr = sQ + lane * LDP;
      const float* orow = sO + lane * LDP;
      for (int d = 0; d < D4; d += 4) {
        gt_f4 qv = ld4(qr + d);
#pragma unroll
        for (int i = 0; i < R; i++) s[i] = dot4(ld4(myK + i * DMAX + d), qv, s[i]);
        if (needK) {
          gt_f4 ov = ld4(orow + d);
#pragma unroll
          for (int i = 0; i < R; i++) dp[i] = dot4(ld4(myV + i * DMAX + d), ov, dp[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < R; i++) {
        float p = 0.f, ds = 0.f;
        if ((vis >> i) & 1u) {
          float th = 0.f, si = o.softcap > 0.f ? attn_cap(o, s[i], th) : s[i];
          p = expf(si - Lj);
          // Dropout: dP through the mask, and P·M for dv (after rounding).
          const bool keep = (kept >> i) & 1u;
          ds = p * ((keep ? dp[i] * o.keep_scale : 0.f) - Dj);  // from the unrounded P
          if (o.softcap > 0.f) ds *= 1.f - th * th;
          if (bf) p = round_bf16(p);
          if (!keep) p = 0.f;
        }
        myP[i * ATT_TILE + lane] = p;
        myS[i * ATT_TILE + lane] = bf ? round_bf16(ds) : ds;
      }
      __syncwarp();
      // dv += P·dout, dk += dS·q (q pre-scaled): lane = columns. Rows past
      // nq are zero in both tiles and in P, dS.
      for (int j = 0; j < nq; j += 4) {
        float oo[4][NC], qq[4][NC];
#pragma unroll
        for (int jj = 0; jj < 4; jj++)
#pragma unroll
          for (int c = 0; c < NC; c++) {
            oo[jj][c] = sO[(j + jj) * LDP + lane + 32 * c];
            qq[jj][c] = sQ[(j + jj) * LDP + lane + 32 * c];
          }
#pragma unroll
        for (int i = 0; i < R; i++) {
          gt_f4 p4 = ld4(myP + i * ATT_TILE + j), d4 = ld4(myS + i * ATT_TILE + j);
#pragma unroll
          for (int c = 0; c < NC; c++) {
            float a = accV[i][c], g = accK[i][c];
            a = fmaf(p4.x, oo[0][c], a);
            a = fmaf(p4.y, oo[1][c], a);
            a = fmaf(p4.z, oo[2][c], a);
            accV[i][c] = fmaf(p4.w, oo[3][c], a);
            g = fmaf(d4.x, qq[0][c], g);
            g = fmaf(d4.y, qq[1][c], g);
            g = fmaf(d4.z, qq[2][c], g);
            accK[i][c] = fmaf(d4.w, qq[3][c], g);
          }
        }
      }
      __syncwarp();
    }
  }
#pragma unroll
  for (int i = 0; i < R; i++) {
    const int r = warp * R + i;
    if (r >= nk) continue;
#pragma unroll
    for (int c = 0; c < NC; c++) {
      int d = lane + 32 * c;
      if (d >= D) continue;
      long long gi = kbase + r * ldk + d;
      if (needV) stx(dv, dv_dt, gi, ldx(dv, dv_dt, gi) + o.keep_scale * accV[i][c]);
      if (needK) stx(dk, dk_dt, gi, ldx(dk, dk_dt, gi) + accK[i][c]);
    }
  }
}

// ============================== entry points ==============================

#define GT_ATTN_ENTRIES(DM)                                                                                        \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS, ATT_MINB)                                              \
      gt_attn_fwd_##DM(void* out, int out_dt, void* lse, int lse_dt, const void* q, int q_dt, const void* k,      \
                       int k_dt, const void* v, int v_dt, int T, int S, int Hq, int Hkv, int D,                   \
                       GT_ATTN_OPT_PARAMS) {                                                                       \
    attn_fwd<DM>(out, out_dt, lse, lse_dt, q, q_dt, k, k_dt, v, v_dt, T, S, Hq, Hkv, D, GT_ATTN_OPT);              \
  }                                                                                                                \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS, ATT_MINB) gt_attn_bwd_dq_##DM(                         \
      void* dq, int dq_dt, const void* dout, int dout_dt, const void* q, int q_dt, const void* k, int k_dt,       \
      const void* v, int v_dt, const void* lse, int lse_dt, const float* delta, int T, int S, int Hq, int Hkv,    \
      int D, GT_ATTN_OPT_PARAMS) {                                                                                 \
    attn_bwd_dq<DM>(dq, dq_dt, dout, dout_dt, q, q_dt, k, k_dt, v, v_dt, lse, lse_dt, delta, T, S, Hq, Hkv, D,    \
                    GT_ATTN_OPT);                                                                                  \
  }                                                                                                                \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS, ATT_MINB_DKV(DM)) gt_attn_bwd_dkv_##DM(                    \
      void* dk, int dk_dt, void* dv, int dv_dt, const void* dout, int dout_dt, const void* q, int q_dt,           \
      const void* k, int k_dt, const void* v, int v_dt, const void* lse, int lse_dt, const float* delta, int T,   \
      int S, int Hq, int Hkv, int D, GT_ATTN_OPT_PARAMS) {                                                         \
    attn_bwd_dkv<DM>(dk, dk_dt, dv, dv_dt, dout, dout_dt, q, q_dt, k, k_dt, v, v_dt, lse, lse_dt, delta, T, S,    \
                     Hq, Hkv, D, GT_ATTN_OPT);                                                                     \
  }

GT_ATTN_ENTRIES(32)
GT_ATTN_ENTRIES(64)
GT_ATTN_ENTRIES(128)
GT_ATTN_ENTRIES(256)

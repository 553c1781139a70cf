// attention_tc.cu: causal grouped-query attention on tensor cores
// (FlashAttention-2 style), forward and backward, for bfloat16 q/k/v and
// head dimensions up to 128. Same contract as attention.cu (layouts, GQA
// mapping, causal offset S - T, the options of attention.cuh, *_dt codes,
// backward accumulating), except that q, k, v, dout are rounded to
// bfloat16 when they are stored as float32 (the backend sends only
// bfloat16 q/k/v here). With a soft cap the base-2 logit is
// cap(scale·s)·log2(e) instead of scale·log2(e)·s, in every kernel alike.
//
// Every product is mma.sync m16n8k16 (bf16 in, float32 accumulate) on
// fragments loaded with ldmatrix from shared-memory tiles whose rows are
// padded by 8 elements (16 bytes), so the 8 row addresses of an ldmatrix
// hit distinct bank groups. Tiles are [rows][DP + 8] bfloat16 with the head
// dimension zero-padded to DP = 64 or 128 (any D <= DP works; D = 80 runs
// the 128 variant with 48 zero columns). Rows stream in with cp.async
// (double buffered) when the source is bfloat16, 16-byte aligned and
// D % 8 == 0; otherwise a scalar path converts and zero-fills.
//
// 128 threads = 4 warps; TC_ROWS = 64 rows per block, 16 per warp.
//
//   gt_attn_fwd_tc_*  grid (ceil(T/64), Hq, B). A warp keeps its 16 query
//       rows as A fragments in registers; key tiles of BC = 64 stream
//       through two shared-memory stages, twice. Pass 1 (K only): S = Q·Kᵀ
//       (float32 accumulators) and the online row max and sum (base-2
//       exponentials of scale·log2(e)·s; a row's values live in the 4 lanes
//       of a quad), giving lse. Pass 2 (K and V): S again, the normalised
//       P = exp2(scale·log2(e)·s − lse·log2(e)) rounded to bfloat16 in
//       registers as the A operand of O += P·V, no rescaling: P's rounding
//       point depends on no tile schedule (engine.Backend's bfloat16
//       attention contract), and the backward kernels recompute the same P.
//       Both passes share one cp.async pipeline (pass 2's first tile loads
//       during pass 1's last). Key tiles entirely above the causal diagonal,
//       or left of every row's window or segment (attn_key_begin), are
//       never loaded; only tiles that cross the diagonal, a window's edge
//       or the end of S, or reach query positions with segments, are
//       masked. Dropout zeroes dropped P; out is scaled by 1/(1 − p).
//   gt_attn_bwd_dq_tc_*  same grid: per key tile (BC = 64 for DP 64, 32 for
//       DP 128) recompute P = exp(scale·q·k - lse), dP = dout·Vᵀ,
//       dS = P ⊙ (dP·M/(1 − p) - delta) ⊙ (1 − th²) from the unrounded P
//       (M the dropout mask, th the soft cap's tanh), dq_acc += dS·K (dS
//       rounded to bfloat16 as the A operand); dq += scale·dq_acc once.
//   gt_attn_bwd_dkv_tc_*  grid (ceil(S/64), Hkv, B): a warp owns 16 keys;
//       the block visits every query head of its kv group and every query
//       tile (BQ = BC rows) that sees its keys (up to attn_query_end),
//       computing the transposed products Sᵀ = K·Qᵀ and dPᵀ = V·doutᵀ, then
//       dv_acc += (P·M)ᵀ·dout and dk_acc += dSᵀ·Q (P and dS, computed from
//       the unrounded P, rounded to bfloat16 as A operands); dk +=
//       scale·dk_acc, dv += dv_acc/(1 − p) once.
//       No atomics: deterministic, GQA summed in float32 registers.
// delta = rowsum(dout ⊙ out) comes from gt_attn_delta (attention.cu).
//
// Dynamic shared memory (bytes), LD = DP + 8, BF = 64 (forward key tile),
// BC = backward tile rows (64 for DP 64, 32 for DP 128):
//   fwd  2·(64·LD + 4·BF·LD)                  DP 64: 46080   DP 128: 87040
//   dq   2·(2·64·LD + 4·BC·LD)                DP 64: 55296   DP 128: 69632
//   dkv  2·(2·64·LD + 4·BC·LD) + 4·4·BC       DP 64: 56320   DP 128: 70144
// (GT_ATTN_TC_*_SMEM in launch.cuh, which the Go side reads too; each
// kernel static_asserts that its layout matches.)
#include "attention.cuh"
#include "ptx.cuh"

#define TC_THREADS GT_ATTN_THREADS
#define TC_ROWS GT_ATTN_TC_ROWS  // query rows (fwd, dq) or keys (dkv) per block: 4 warps x 16
#define TC_PAD GT_ATTN_TC_PAD    // bfloat16 elements of padding per shared-memory row
#define TC_FWD_BC GT_ATTN_TC_FWD_TILE
// At least 2 resident blocks per SM (<= 255 registers): without a minimum
// ptxas sized some variants for its own occupancy guess (128) and spilled.
#define TC_MINB 2
#define TC_LOG2E 1.4426950408889634f
#define TC_LN2 0.6931471805599453f

template <int DP>
struct TcCfg {
  static constexpr int LD = DP + TC_PAD;     // shared-memory row length (elements)
  static constexpr int KT = DP / 16;         // k-steps over the head dimension
  static constexpr int NT = DP / 8;          // n8 tiles over the head dimension
  static constexpr int BC = GT_ATTN_TC_BWD_TILE(DP);  // backward streamed tile rows
};

// tc_vec reports whether a [rows, D] operand with rows H·D elements apart
// can be copied with 16-byte cp.async: bfloat16, aligned, D % 8 == 0.
__device__ __forceinline__ bool tc_vec(const void* p, int dt, int D) {
  return dt == GT_BF16 && (reinterpret_cast<uintptr_t>(p) & 15) == 0 && (D & 7) == 0;
}

// tc_load copies ROWS rows of DP columns into dst (row length LD):
// element (r, d) = src[base + r·stride + d] as bfloat16 for r < valid and
// d < D, else 0. vec: cp.async (the caller commits and waits); otherwise
// plain loads and stores (visible after the next __syncthreads).
template <int DP, int ROWS>
__device__ __forceinline__ void tc_load(uint16_t* dst, const void* src, int dt, long long base, long long stride,
                                        int valid, int D, bool vec) {
  constexpr int CH = DP / 8, LD = DP + TC_PAD;
  for (int i = threadIdx.x; i < ROWS * CH; i += TC_THREADS) {
    const int r = i / CH, c = (i % CH) * 8;
    uint16_t* d = dst + r * LD + c;
    const int avail = r < valid ? min(max(D - c, 0), 8) : 0;
    const long long off = base + r * stride + c;
    if (vec) {
      cp_async16(d, avail > 0 ? static_cast<const uint16_t*>(src) + off : src, avail * 2);
    } else {
#pragma unroll
      for (int e = 0; e < 8; e++) d[e] = e < avail ? f2bf(ldx(src, dt, off + e)) : (uint16_t)0;
    }
  }
}

// tc_ld_a loads the A fragment of rows row0..row0+15, columns k0..k0+15 of
// a [rows][LD] tile.
template <int LD>
__device__ __forceinline__ void tc_ld_a(uint32_t a[4], const uint16_t* tile, int row0, int k0, int lane) {
  ldmatrix_x4(a, tile + (row0 + (lane & 15)) * LD + k0 + (lane >> 4) * 8);
}

// tc_ld_b_rows loads the B fragments of two n8 tiles, n = n0..n0+15, for
// k = k0..k0+15 from a tile stored [n][k] (B = tileᵀ: QKᵀ, K·Qᵀ, V·doutᵀ).
template <int LD>
__device__ __forceinline__ void tc_ld_b_rows(uint32_t b[2][2], const uint16_t* tile, int n0, int k0, int lane) {
  const int i = lane >> 3, r = lane & 7;
  uint32_t x[4];
  ldmatrix_x4(x, tile + (n0 + r + (i >> 1) * 8) * LD + k0 + (i & 1) * 8);
  b[0][0] = x[0], b[0][1] = x[1], b[1][0] = x[2], b[1][1] = x[3];
}

// tc_ld_b_cols loads the B fragments of two n8 tiles, n = n0..n0+15, for
// k = k0..k0+15 from a tile stored [k][n] (P·V, dS·K, Pᵀ·dout, dSᵀ·Q).
template <int LD>
__device__ __forceinline__ void tc_ld_b_cols(uint32_t b[2][2], const uint16_t* tile, int n0, int k0, int lane) {
  const int i = lane >> 3, r = lane & 7;
  uint32_t x[4];
  ldmatrix_x4_trans(x, tile + (k0 + r + (i & 1) * 8) * LD + n0 + (i >> 1) * 8);
  b[0][0] = x[0], b[0][1] = x[1], b[1][0] = x[2], b[1][1] = x[3];
}

// tc_a_from_acc packs accumulator tiles 2kk and 2kk+1 (16 rows x 16
// columns of a float32 result) into the bfloat16 A fragment of the k-step
// kk: the C layout of two n8 tiles is the A layout of one k16 step.
__device__ __forceinline__ void tc_a_from_acc(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = pack_bf16x2(c0[0], c0[1]);
  a[1] = pack_bf16x2(c0[2], c0[3]);
  a[2] = pack_bf16x2(c1[0], c1[1]);
  a[3] = pack_bf16x2(c1[2], c1[3]);
}

// tc_mma_rows accumulates acc[n] += A·Bᵀ over the head dimension for N n8
// tiles (N/8·... keys or queries) where A is the warp's 16 rows of tileA
// (from row rowA) and B's rows are the N·8 rows of tileB: the score
// products Q·Kᵀ, dout·Vᵀ, K·Qᵀ, V·doutᵀ.
template <int DP, int N>
__device__ __forceinline__ void tc_mma_rows(float acc[N][4], const uint16_t* tileA, int rowA, const uint16_t* tileB,
                                            int lane) {
  constexpr int LD = DP + TC_PAD;
#pragma unroll
  for (int kk = 0; kk < DP / 16; kk++) {
    uint32_t a[4];
    tc_ld_a<LD>(a, tileA, rowA, kk * 16, lane);
#pragma unroll
    for (int np = 0; np < N / 2; np++) {
      uint32_t b[2][2];
      tc_ld_b_rows<LD>(b, tileB, np * 16, kk * 16, lane);
      mma_bf16_16816(acc[2 * np], a, b[0], acc[2 * np]);
      mma_bf16_16816(acc[2 * np + 1], a, b[1], acc[2 * np + 1]);
    }
  }
}

// tc_mma_acc accumulates acc[n] += P·tile over the head dimension, where P
// (16 x 8·NP float32 accumulator tiles) is rounded to bfloat16 and tile is
// [8·NP][LD] (k = its rows): P·V, dS·K, Pᵀ·dout, dSᵀ·Q.
template <int DP, int NP>
__device__ __forceinline__ void tc_mma_acc(float acc[DP / 8][4], const float p[NP][4], const uint16_t* tile,
                                           int lane) {
  constexpr int LD = DP + TC_PAD;
#pragma unroll
  for (int kk = 0; kk < NP / 2; kk++) {
    uint32_t a[4];
    tc_a_from_acc(a, p[2 * kk], p[2 * kk + 1]);
#pragma unroll
    for (int np = 0; np < DP / 16; np++) {
      uint32_t b[2][2];
      tc_ld_b_cols<LD>(b, tile, np * 16, kk * 16, lane);
      mma_bf16_16816(acc[2 * np], a, b[0], acc[2 * np]);
      mma_bf16_16816(acc[2 * np + 1], a, b[1], acc[2 * np + 1]);
    }
  }
}

template <int N>
__device__ __forceinline__ void tc_zero(float acc[N][4]) {
#pragma unroll
  for (int i = 0; i < N; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) acc[i][e] = 0.f;
}

// tc_store_rows adds (acc) or writes the warp's 16 x DP accumulator tile,
// times mul, to rows row0.. of dst (row stride ld) for rows < nrows and
// columns < D.
template <int DP>
__device__ __forceinline__ void tc_store_rows(void* dst, int dt, long long base, long long ld, int row0, int nrows,
                                              int D, const float acc[DP / 8][4], const float mul[2], bool add,
                                              int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < DP / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int r = row0 + g + 8 * (e >> 1), d = n * 8 + 2 * t + (e & 1);
      if (r >= nrows || d >= D) continue;
      const long long i = base + r * ld + d;
      const float v = acc[n][e] * mul[e >> 1];
      stx(dst, dt, i, add ? ldx(dst, dt, i) + v : v);
    }
}

// TcQueryBlock is the geometry of a (64 queries, head, batch) block of the
// forward and dq kernels, and the double-buffered K/V tile stream it reads.
template <int DP, int BC>
struct TcQueryBlock {
  const void *k, *v;
  int k_dt, v_dt, D;
  int t0, h, b, off, nq, kbeg, kend, ntiles;
  long long ldq, ldk, qbase, kbase, lbase;
  bool vk, vv;

  // Every thread of the block constructs it (attn_key_begin's reductions).
  __device__ __forceinline__ TcQueryBlock(const void* k_, int k_dt_, const void* v_, int v_dt_, int T, int S, int Hq,
                                          int Hkv, int D_, const AttnOpt& o)
      : k(k_), v(v_), k_dt(k_dt_), v_dt(v_dt_), D(D_) {
    t0 = blockIdx.x * TC_ROWS, h = blockIdx.y, b = blockIdx.z;
    off = S - T;
    ldq = (long long)Hq * D, ldk = (long long)Hkv * D;
    qbase = ((long long)b * T * Hq + h) * D + t0 * ldq;
    kbase = ((long long)b * S * Hkv + h / (Hq / Hkv)) * D;
    lbase = ((long long)b * Hq + h) * T;
    nq = min(TC_ROWS, T - t0);
    // Keys some row of the block sees: earlier (window, segments) and
    // later (causal) tiles are never loaded.
    kbeg = attn_key_begin(o, b, T, off, t0, nq);
    kend = min(S, t0 + nq + off);
    ntiles = (kend - kbeg + BC - 1) / BC;
    vk = tc_vec(k, k_dt, D), vv = tc_vec(v, v_dt, D);
  }

  // load_kv starts copying key tile j into stage j & 1 of sK and sV.
  __device__ __forceinline__ void load_kv(uint16_t* sK, uint16_t* sV, int j) const {
    const int k0 = kbeg + j * BC, n = min(BC, kend - k0);
    tc_load<DP, BC>(sK + (j & 1) * BC * (DP + TC_PAD), k, k_dt, kbase + k0 * ldk, ldk, n, D, vk);
    tc_load<DP, BC>(sV + (j & 1) * BC * (DP + TC_PAD), v, v_dt, kbase + k0 * ldk, ldk, n, D, vv);
  }

  // load_step starts the copies of step `step` of the forward's two passes
  // over n key tiles into stage step & 1: K tile step (pass 1, which reads
  // no V), or K and V tile step − n (pass 2).
  __device__ __forceinline__ void load_step(uint16_t* sK, uint16_t* sV, int step, int n) const {
    const int j = step < n ? step : step - n, k0 = kbeg + j * BC, rows = min(BC, kend - k0);
    const long long base = kbase + k0 * ldk;
    tc_load<DP, BC>(sK + (step & 1) * BC * (DP + TC_PAD), k, k_dt, base, ldk, rows, D, vk);
    if (step >= n) tc_load<DP, BC>(sV + (step & 1) * BC * (DP + TC_PAD), v, v_dt, base, ldk, rows, D, vv);
  }
};

// tc_one_id reports to the whole warp (every lane calls it) whether the
// example ids of query positions [a0, a0 + na) and [c0, c0 + nc) of batch
// b (valid positions, na, nc >= 0) are all one id: then segments hide
// nothing between them, and a tile inside one packed example needs no
// per-element segment mask.
__device__ __forceinline__ bool tc_one_id(const AttnOpt& o, int b, int T, int a0, int na, int c0, int nc, int lane) {
  const int* ids = o.seg + (long long)b * T;
  const int x = ids[na > 0 ? a0 : c0];
  bool one = true;
  for (int i = lane; i < na; i += 32) one &= ids[a0 + i] == x;
  for (int i = lane; i < nc; i += 32) one &= ids[c0 + i] == x;
  return __all_sync(0xffffffffu, one);
}

// TcRows decides which keys the lane's rows g and g+8 of a warp's 16
// query rows see, and which key tiles the whole warp sees unmasked. The
// per-element answers come as bit masks over the lane's accumulator
// elements (bit 4·nn + e for n8 tile nn, element e: row e >> 1, key
// k0 + 8·nn + 2·(lane & 3) + (e & 1)), computed before the tile's products
// in loops that are not unrolled, so no per-row state stays in registers
// across the kernel's main loop.
struct TcRows {
  int row0;            // the lane's first row (the second is row0 + 8)
  int all_lo, all_hi;  // keys [all_lo, all_hi] are seen by all 16 rows by the causal and window rules
  int b, T, S;

  __device__ __forceinline__ TcRows(const AttnOpt& o, int b_, int T_, int S_, int wrow, int g)
      : row0(wrow + g), b(b_), T(T_), S(S_) {
    all_hi = wrow + 15 < T ? wrow + S - T : -1;
    all_lo = o.window > 0 ? wrow + 15 + S - T - o.window + 1 : 0;
  }

  // masked reports whether key tile [k0, k0 + n) needs a mask for the
  // warp: it crosses the diagonal, a window's left edge or S, or (with
  // segments) reaches query positions whose ids are not all the rows' one.
  // Every lane of the warp calls it (tc_one_id).
  __device__ __forceinline__ bool masked(const AttnOpt& o, int k0, int n, int lane) const {
    if (k0 + n - 1 > all_hi || k0 < all_lo) return true;
    const int off = S - T, u0 = max(k0, off) - off;  // the tile's first key that is a query position
    // Here the warp's 16 rows are < T and the tile's keys < S.
    return o.seg && k0 + n > off && !tc_one_id(o, b, T, row0 - (lane >> 2), 16, u0, k0 + n - off - u0, lane);
  }

  // vis_bits sets the bits of the elements whose row sees its key, for
  // ST n8 tiles from key k0 (every bit when the tile needs no mask).
  template <int ST>
  __device__ __forceinline__ unsigned vis_bits(const AttnOpt& o, int k0, int lane) const {
    if (!masked(o, k0, 8 * ST, lane)) return ~0u;
    unsigned bits = 0;
#pragma unroll 1
    for (int i = 0; i < 4 * ST; i++) {
      const int t = row0 + 8 * ((i >> 1) & 1), j = k0 + 8 * (i >> 2) + 2 * (lane & 3) + (i & 1), off = S - T;
      bool any_id = true;
      int kid = 0;
      if (j < S) kid = attn_kid(o, b, T, off, j, any_id);
      if (attn_row_sees(o, b, T, off, t, j, kid, any_id)) bits |= 1u << i;
    }
    return bits;
  }

  // keep_bits sets the bits of the elements dropout keeps (query head h;
  // every bit without dropout).
  template <int ST>
  __device__ __forceinline__ unsigned keep_bits(const AttnOpt& o, int h, int Hq, int k0, int lane) const {
    if (o.drop == 0) return ~0u;
    unsigned bits = 0;
#pragma unroll 1
    for (int i = 0; i < 4 * ST; i++) {
      const int t = row0 + 8 * ((i >> 1) & 1), j = k0 + 8 * (i >> 2) + 2 * (lane & 3) + (i & 1);
      if (attn_kept(o, attn_drop_row(b, h, t, Hq, T, S), j)) bits |= 1u << i;
    }
    return bits;
  }
};

// tc_bit reports bit i of bits (i a compile-time constant in the unrolled
// element loops).
__device__ __forceinline__ bool tc_bit(unsigned bits, int i) { return (bits >> i) & 1u; }

// tc_logit is a raw score s = q·k as the softmax's base-2 exponent:
// scale·s·log2(e), or with a soft cap cap(scale·s)·log2(e), whose tanh
// goes to th (the backward pass's 1 − th²).
__device__ __forceinline__ float tc_logit(const AttnOpt& o, float s, float sl2, float& th) {
  if (o.softcap > 0.f) return attn_cap(o, s * o.scale, th) * TC_LOG2E;
  return s * sl2;
}

// ================================ forward ================================

// tc_fwd_scores computes the warp's 16 x 64 raw scores S = Q·Kᵀ (Q as A
// fragments in registers) against the key tile cK.
template <int DP>
__device__ __forceinline__ void tc_fwd_scores(float s[TC_FWD_BC / 8][4], const uint32_t qf[DP / 16][4],
                                              const uint16_t* cK, int lane) {
  constexpr int LD = DP + TC_PAD, ST = TC_FWD_BC / 8;
  tc_zero<ST>(s);
#pragma unroll
  for (int kk = 0; kk < DP / 16; kk++)
#pragma unroll
    for (int np = 0; np < ST / 2; np++) {
      uint32_t bf[2][2];
      tc_ld_b_rows<LD>(bf, cK, np * 16, kk * 16, lane);
      mma_bf16_16816(s[2 * np], qf[kk], bf[0], s[2 * np]);
      mma_bf16_16816(s[2 * np + 1], qf[kk], bf[1], s[2 * np + 1]);
    }
}

template <int DP>
__device__ __forceinline__ void attn_fwd_tc(void* out, int out_dt, void* lse, int lse_dt, const void* q, int q_dt,
                                            const void* k, int k_dt, const void* v, int v_dt, int T, int S, int Hq,
                                            int Hkv, int D, const AttnOpt& o) {
  typedef TcCfg<DP> C;
  constexpr int LD = C::LD, KT = C::KT, NT = C::NT, BC = TC_FWD_BC, ST = BC / 8;
  if (D > DP) __trap();
  uint16_t* sQ = GT_DYN_SMEM(uint16_t);  // [64][LD]
  uint16_t* sK = sQ + TC_ROWS * LD;      // [2][BC][LD]
  uint16_t* sV = sK + 2 * BC * LD;       // [2][BC][LD]
  static_assert(2 * (TC_ROWS + 4 * BC) * LD == GT_ATTN_TC_FWD_SMEM(DP), "launch.cuh");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const TcQueryBlock<DP, BC> blk(k, k_dt, v, v_dt, T, S, Hq, Hkv, D, o);
  tc_load<DP, TC_ROWS>(sQ, q, q_dt, blk.qbase, blk.ldq, blk.nq, D, tc_vec(q, q_dt, D));
  cp_async_commit();
  blk.load_step(sK, sV, 0, blk.ntiles);
  cp_async_commit();
  cp_async_wait<1>();
  __syncthreads();
  uint32_t qf[KT][4];
#pragma unroll
  for (int kk = 0; kk < KT; kk++) tc_ld_a<LD>(qf[kk], sQ, warp * 16, kk * 16, lane);

  const TcRows rows(o, blk.b, T, S, blk.t0 + warp * 16, g);
  const float sl2 = o.scale * TC_LOG2E;
  // Two passes over the same key tiles, one cp.async stream: step j < n
  // loads K tile j (pass 1), step n + j loads K and V tile j (pass 2); the
  // next step's tiles are in flight while this one computes.
  const int n = blk.ntiles;
  auto advance = [&](int step) {
    if (step + 1 < 2 * n) blk.load_step(sK, sV, step + 1, n);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // step's tiles visible to every warp
  };
  // Pass 1: the row statistics, online max m and sum l of exp2(x − m),
  // x the base-2 logit (tc_logit). A row that sees no key yet (a window or
  // segment starts later; a row past T) keeps m = −inf, and its
  // exponentials are taken against 0 instead, which leaves l at 0.
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  for (int j = 0; j < n; j++) {
    advance(j);
    const unsigned vis = rows.vis_bits<ST>(o, blk.kbeg + j * BC, lane);
    float s[ST][4];
    tc_fwd_scores<DP>(s, qf, sK + (j & 1) * BC * LD, lane);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nn = 0; nn < ST; nn++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float th, x = tc_logit(o, s[nn][e], sl2, th);
        if (!tc_bit(vis, 4 * nn + e)) x = -INFINITY;
        s[nn][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    float mref[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float mn = fmaxf(m[r], mx[r]);
      mref[r] = mn == -INFINITY ? 0.f : mn;
      l[r] *= exp2f(m[r] - mref[r]);
      m[r] = mn;
    }
#pragma unroll
    for (int nn = 0; nn < ST; nn++)
#pragma unroll
      for (int e = 0; e < 4; e++) l[e >> 1] += exp2f(s[nn][e] - mref[e >> 1]);  // this lane's share
    __syncthreads();  // every warp is done with stage j & 1 before it is refilled
  }
  // lse (float32, from unrounded values); L = lse·log2(e) as the backward
  // kernels compute it, so both recompute the same P.
  float L[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const float ls = (m[r] + log2f(l[r])) * TC_LN2;
    L[r] = ls * TC_LOG2E;
    const int row = blk.t0 + warp * 16 + g + 8 * r;
    if (t == 0 && row < T) stx(lse, lse_dt, blk.lbase + row, ls);
  }
  // Pass 2: P = exp2(x − L), normalised, rounded to bfloat16 as the A
  // operand of O += P·V (tc_mma_acc); no rescaling. Dropout zeroes the
  // dropped probabilities; out is scaled by 1/(1 − p) once.
  float acc[NT][4];
  tc_zero<NT>(acc);
  for (int j = 0; j < n; j++) {
    advance(n + j);
    const int k0 = blk.kbeg + j * BC;
    const unsigned vis = rows.vis_bits<ST>(o, k0, lane) & rows.keep_bits<ST>(o, blk.h, Hq, k0, lane);
    float s[ST][4];
    tc_fwd_scores<DP>(s, qf, sK + ((n + j) & 1) * BC * LD, lane);
#pragma unroll
    for (int nn = 0; nn < ST; nn++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float th, p = exp2f(tc_logit(o, s[nn][e], sl2, th) - L[e >> 1]);
        s[nn][e] = tc_bit(vis, 4 * nn + e) ? p : 0.f;
      }
    tc_mma_acc<DP, ST>(acc, s, sV + ((n + j) & 1) * BC * LD, lane);
    __syncthreads();
  }
  cp_async_wait<0>();
  const float keep[2] = {o.keep_scale, o.keep_scale};
  if (out) tc_store_rows<DP>(out, out_dt, blk.qbase, blk.ldq, warp * 16, blk.nq, D, acc, keep, false, lane);
}

// ============================ backward: dq ============================

template <int DP>
__device__ __forceinline__ void attn_bwd_dq_tc(void* dq, int dq_dt, const void* dout, int dout_dt, const void* q,
                                               int q_dt, const void* k, int k_dt, const void* v, int v_dt,
                                               const void* lse, int lse_dt, const float* delta, int T, int S, int Hq,
                                               int Hkv, int D, const AttnOpt& o) {
  typedef TcCfg<DP> C;
  constexpr int LD = C::LD, NT = C::NT, BC = C::BC, ST = BC / 8;
  if (D > DP) __trap();
  uint16_t* sQ = GT_DYN_SMEM(uint16_t);  // [64][LD]
  uint16_t* sO = sQ + TC_ROWS * LD;      // [64][LD] dout
  uint16_t* sK = sO + TC_ROWS * LD;      // [2][BC][LD]
  uint16_t* sV = sK + 2 * BC * LD;       // [2][BC][LD]
  static_assert(2 * (2 * TC_ROWS + 4 * BC) * LD == GT_ATTN_TC_DQ_SMEM(DP), "launch.cuh");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
  const TcQueryBlock<DP, BC> blk(k, k_dt, v, v_dt, T, S, Hq, Hkv, D, o);
  tc_load<DP, TC_ROWS>(sQ, q, q_dt, blk.qbase, blk.ldq, blk.nq, D, tc_vec(q, q_dt, D));
  tc_load<DP, TC_ROWS>(sO, dout, dout_dt, blk.qbase, blk.ldq, blk.nq, D, tc_vec(dout, dout_dt, D));
  blk.load_kv(sK, sV, 0);
  cp_async_commit();

  const TcRows rows(o, blk.b, T, S, blk.t0 + warp * 16, g);
  float L[2], Dl[2];  // lse·log2(e) and delta of rows g, g+8
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = blk.t0 + warp * 16 + g + 8 * r;
    L[r] = row < T ? ldx(lse, lse_dt, blk.lbase + row) * TC_LOG2E : 0.f;
    Dl[r] = row < T ? delta[blk.lbase + row] : 0.f;
  }
  const float sl2 = o.scale * TC_LOG2E;
  float acc[NT][4];
  tc_zero<NT>(acc);
  for (int j = 0; j < blk.ntiles; j++) {
    if (j + 1 < blk.ntiles) blk.load_kv(sK, sV, j + 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint16_t* cK = sK + (j & 1) * BC * LD;
    const uint16_t* cV = sV + (j & 1) * BC * LD;
    const int k0 = blk.kbeg + j * BC;
    const unsigned vis = rows.vis_bits<ST>(o, k0, lane), keep = rows.keep_bits<ST>(o, blk.h, Hq, k0, lane);
    float s[ST][4], dp[ST][4];
    tc_zero<ST>(s);
    tc_zero<ST>(dp);
    tc_mma_rows<DP, ST>(s, sQ, warp * 16, cK, lane);
    tc_mma_rows<DP, ST>(dp, sO, warp * 16, cV, lane);
#pragma unroll
    for (int n = 0; n < ST; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e >> 1;
        float th = 0.f, p = exp2f(tc_logit(o, s[n][e], sl2, th) - L[r]);
        if (!tc_bit(vis, 4 * n + e)) p = 0.f;
        // dS = P ⊙ (dP·M/(1 − p) − delta), times the soft cap's 1 − th².
        const float dpm = tc_bit(keep, 4 * n + e) ? dp[n][e] * o.keep_scale : 0.f;
        float ds = p * (dpm - Dl[r]);
        if (o.softcap > 0.f) ds *= 1.f - th * th;
        s[n][e] = ds;
      }
    tc_mma_acc<DP, ST>(acc, s, cK, lane);
    __syncthreads();
  }
  cp_async_wait<0>();
  const float mul[2] = {o.scale, o.scale};
  tc_store_rows<DP>(dq, dq_dt, blk.qbase, blk.ldq, warp * 16, blk.nq, D, acc, mul, true, lane);
}

// ============================ backward: dk, dv ============================

template <int DP>
__device__ __forceinline__ void attn_bwd_dkv_tc(void* dk, int dk_dt, void* dv, int dv_dt, const void* dout,
                                                int dout_dt, const void* q, int q_dt, const void* k, int k_dt,
                                                const void* v, int v_dt, const void* lse, int lse_dt,
                                                const float* delta, int T, int S, int Hq, int Hkv, int D,
                                                const AttnOpt& o) {
  typedef TcCfg<DP> C;
  constexpr int LD = C::LD, NT = C::NT, BQ = C::BC, QT = BQ / 8;
  if (D > DP) __trap();
  uint16_t* sK = GT_DYN_SMEM(uint16_t);  // [64][LD] the block's keys
  uint16_t* sV = sK + TC_ROWS * LD;      // [64][LD]
  uint16_t* sQ = sV + TC_ROWS * LD;      // [2][BQ][LD]
  uint16_t* sO = sQ + 2 * BQ * LD;       // [2][BQ][LD] dout
  float* sL = reinterpret_cast<float*>(sO + 2 * BQ * LD);  // [2][BQ] lse·log2(e)
  float* sD = sL + 2 * BQ;                                  // [2][BQ] delta
  static_assert(2 * (2 * TC_ROWS + 4 * BQ) * LD + 4 * 4 * BQ == GT_ATTN_TC_DKV_SMEM(DP), "launch.cuh");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int s0 = blockIdx.x * TC_ROWS, kvh = blockIdx.y, b = blockIdx.z;
  const int group = Hq / Hkv, off = S - T;
  const long long ldq = (long long)Hq * D, ldk = (long long)Hkv * D;
  const long long kbase = ((long long)b * S * Hkv + kvh) * D + s0 * ldk;
  const int nk = min(TC_ROWS, S - s0);
  const bool needK = dk != nullptr, needV = dv != nullptr;
  const bool vq = tc_vec(q, q_dt, D), vo = tc_vec(dout, dout_dt, D);
  const int tfirst = max(0, s0 - off);                     // the first query that sees key s0
  const int tend = attn_query_end(o, b, T, off, s0, nk);  // later queries see none of the block's keys
  const int per_head = (tend - tfirst + BQ - 1) / BQ;
  const int ntiles = tend > tfirst ? group * per_head : 0;
  // Tile j: query head kvh·group + j / per_head, rows from tfirst + (j % per_head)·BQ.
  auto load_q = [&](int j) {
    const int hh = kvh * group + j / per_head, tq0 = tfirst + (j % per_head) * BQ, n = min(BQ, T - tq0);
    const long long qb = ((long long)b * T * Hq + hh) * D + tq0 * ldq;
    const long long lb = ((long long)b * Hq + hh) * T + tq0;
    tc_load<DP, BQ>(sQ + (j & 1) * BQ * LD, q, q_dt, qb, ldq, n, D, vq);
    tc_load<DP, BQ>(sO + (j & 1) * BQ * LD, dout, dout_dt, qb, ldq, n, D, vo);
    for (int i = threadIdx.x; i < BQ; i += TC_THREADS) {
      sL[(j & 1) * BQ + i] = i < n ? ldx(lse, lse_dt, lb + i) * TC_LOG2E : 0.f;
      sD[(j & 1) * BQ + i] = i < n && needK ? delta[lb + i] : 0.f;
    }
  };
  tc_load<DP, TC_ROWS>(sK, k, k_dt, kbase, ldk, nk, D, tc_vec(k, k_dt, D));
  tc_load<DP, TC_ROWS>(sV, v, v_dt, kbase, ldk, nk, D, tc_vec(v, v_dt, D));
  if (ntiles > 0) load_q(0);
  cp_async_commit();

  const int wkey = s0 + warp * 16;  // the warp's first key
  const float sl2 = o.scale * TC_LOG2E;
  int kid[2];  // example ids of the lane's keys (rows g, g+8)
  bool any_id[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int key = wkey + g + 8 * r;
    any_id[r] = true;
    kid[r] = key < S ? attn_kid(o, b, T, off, key, any_id[r]) : 0;
  }
  float accK[NT][4], accV[NT][4];
  tc_zero<NT>(accK);
  tc_zero<NT>(accV);
  for (int j = 0; j < ntiles; j++) {
    if (j + 1 < ntiles) load_q(j + 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint16_t* cQ = sQ + (j & 1) * BQ * LD;
    const uint16_t* cO = sO + (j & 1) * BQ * LD;
    const float* cL = sL + (j & 1) * BQ;
    const float* cD = sD + (j & 1) * BQ;
    const int tq0 = tfirst + (j % per_head) * BQ;
    // Transposed scores: rows = the warp's keys, columns = the tile's queries.
    float s[QT][4], dp[QT][4];
    tc_zero<QT>(s);
    tc_mma_rows<DP, QT>(s, sK, warp * 16, cQ, lane);
    if (needK) {
      tc_zero<QT>(dp);
      tc_mma_rows<DP, QT>(dp, sV, warp * 16, cO, lane);
    }
    // Mask where a query is past T, a key is past S or after the query,
    // or out of the query's window; with segments wherever a key is a
    // query position, unless the warp's keys and the tile's queries all
    // belong to one example (then every key and query are < S and T).
    const bool mask = tq0 + BQ > T || wkey + 15 > min(tq0 + off, S - 1) ||
                      (o.window > 0 && tq0 + BQ - 1 + off - wkey >= o.window) ||
                      (o.seg && wkey + 16 > off &&
                       !tc_one_id(o, b, T, max(wkey, off) - off, wkey + 16 - max(wkey, off), tq0, BQ, lane));
    const int hh = kvh * group + j / per_head;  // the tile's query head
#pragma unroll
    for (int n = 0; n < QT; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e >> 1, c = n * 8 + 2 * t + (e & 1), key = wkey + g + 8 * r, tq = tq0 + c;
        float th = 0.f, p = exp2f(tc_logit(o, s[n][e], sl2, th) - cL[c]);
        if (mask && (tq >= T || key >= S || !attn_sees(o, tq + off, attn_qid(o, b, T, tq), key, kid[r], any_id[r])))
          p = 0.f;
        // Dropout: dP through the mask (dSᵀ from the undropped P), and
        // P·M for dv; dS times the soft cap's 1 − th².
        const bool kept = p == 0.f || attn_kept(o, attn_drop_row(b, hh, tq, Hq, T, S), key);
        if (needK) {
          float ds = p * ((kept ? dp[n][e] * o.keep_scale : 0.f) - cD[c]);  // dSᵀ
          if (o.softcap > 0.f) ds *= 1.f - th * th;
          dp[n][e] = ds;
        }
        s[n][e] = kept ? p : 0.f;
      }
    if (needV) tc_mma_acc<DP, QT>(accV, s, cO, lane);
    if (needK) tc_mma_acc<DP, QT>(accK, dp, cQ, lane);
    __syncthreads();
  }
  cp_async_wait<0>();
  const float keep[2] = {o.keep_scale, o.keep_scale}, sc[2] = {o.scale, o.scale};
  if (needV) tc_store_rows<DP>(dv, dv_dt, kbase, ldk, warp * 16, nk, D, accV, keep, true, lane);
  if (needK) tc_store_rows<DP>(dk, dk_dt, kbase, ldk, warp * 16, nk, D, accK, sc, true, lane);
}

// ============================== entry points ==============================

#define GT_ATTN_TC_ENTRIES(DP)                                                                                     \
  extern "C" __global__ void __launch_bounds__(TC_THREADS, TC_MINB)                                                \
      gt_attn_fwd_tc_##DP(void* out, int out_dt, void* lse, int lse_dt, const void* q, int q_dt, const void* k,   \
                          int k_dt, const void* v, int v_dt, int T, int S, int Hq, int Hkv, int D,                 \
                          GT_ATTN_OPT_PARAMS) {                                                                    \
    attn_fwd_tc<DP>(out, out_dt, lse, lse_dt, q, q_dt, k, k_dt, v, v_dt, T, S, Hq, Hkv, D, GT_ATTN_OPT);           \
  }                                                                                                                \
  extern "C" __global__ void __launch_bounds__(TC_THREADS, TC_MINB) gt_attn_bwd_dq_tc_##DP(                        \
      void* dq, int dq_dt, const void* dout, int dout_dt, const void* q, int q_dt, const void* k, int k_dt,       \
      const void* v, int v_dt, const void* lse, int lse_dt, const float* delta, int T, int S, int Hq, int Hkv,    \
      int D, GT_ATTN_OPT_PARAMS) {                                                                                 \
    attn_bwd_dq_tc<DP>(dq, dq_dt, dout, dout_dt, q, q_dt, k, k_dt, v, v_dt, lse, lse_dt, delta, T, S, Hq, Hkv, D, \
                       GT_ATTN_OPT);                                                                               \
  }                                                                                                                \
  extern "C" __global__ void __launch_bounds__(TC_THREADS, TC_MINB) gt_attn_bwd_dkv_tc_##DP(                       \
      void* dk, int dk_dt, void* dv, int dv_dt, const void* dout, int dout_dt, const void* q, int q_dt,           \
      const void* k, int k_dt, const void* v, int v_dt, const void* lse, int lse_dt, const float* delta, int T,   \
      int S, int Hq, int Hkv, int D, GT_ATTN_OPT_PARAMS) {                                                         \
    attn_bwd_dkv_tc<DP>(dk, dk_dt, dv, dv_dt, dout, dout_dt, q, q_dt, k, k_dt, v, v_dt, lse, lse_dt, delta, T, S, \
                        Hq, Hkv, D, GT_ATTN_OPT);                                                                  \
  }

GT_ATTN_TC_ENTRIES(64)
GT_ATTN_TC_ENTRIES(128)

// attention.cuh: engine.AttentionOptions as both attention families see
// them (attention.cu, attention_tc.cu): the visibility rule (causal,
// sliding window, packed segments), the soft cap, the dropout mask, and the
// block-wide key and query ranges that let a block skip tiles no row of it
// can see. The CPU backend (engine/cpu/attention.go) is the reference for
// every rule here.
#ifndef GOTUNE_KERNELS_ATTENTION_CUH
#define GOTUNE_KERNELS_ATTENTION_CUH

#include "common.cuh"

// AttnOpt is one call's options, assembled from the entry point's
// parameters (kernels.def) by GT_ATTN_OPT.
struct AttnOpt {
  float scale;       // score multiplier (1/sqrt(D) unless the model sets one)
  float softcap;     // > 0: a scaled score s becomes softcap·tanh(s/softcap)
  int window;        // > 0: the query at key index i sees key j only when i − j < window
  const int* seg;    // Int32 [B, T] example ids, or null
  unsigned drop;     // DropoutKeep's threshold; 0: no dropout
  float keep_scale;  // 1/(1 − p): what a kept probability counts
  unsigned long long seed;  // the dropout mask's seed
};

// GT_ATTN_OPT_PARAMS are the option parameters every attention entry point
// ends with (the order of kernels.def), GT_ATTN_OPT the AttnOpt built from them.
#define GT_ATTN_OPT_PARAMS \
  float scale, const int *seg, float softcap, int window, int drop, float keep_scale, unsigned long long seed
#define GT_ATTN_OPT (AttnOpt{scale, softcap, window, seg, (unsigned)drop, keep_scale, seed})

// The dropout mask is gt_dropout_keep (common.cuh), engine.DropoutKeep bit
// for bit.

// attn_drop_row is engine.AttentionDropoutCounter for key 0 of query t in
// batch b, query head h: the counter of key j is this plus j.
__device__ __forceinline__ unsigned long long attn_drop_row(int b, int h, int t, int Hq, int T, int S) {
  return ((unsigned long long)((long long)b * Hq + h) * (unsigned long long)T + (unsigned long long)t) *
         (unsigned long long)S;
}

// attn_kept reports whether dropout keeps the probability whose counter
// is row + j (always, without dropout).
__device__ __forceinline__ bool attn_kept(const AttnOpt& o, unsigned long long row, int j) {
  return o.drop == 0 || gt_dropout_keep(o.seed, row + (unsigned long long)j, o.drop);
}

// ---- soft cap ----

// attn_cap returns the capped score softcap·tanh(s/softcap) of a scaled
// score s and sets th = tanh(s/softcap), whose 1 − th² is the cap's
// derivative (the backward pass multiplies dS by it). Only with softcap > 0.
__device__ __forceinline__ float attn_cap(const AttnOpt& o, float s, float& th) {
  th = tanhf(s / o.softcap);
  return o.softcap * th;
}

// ---- visibility ----

// attn_sees reports whether the query at key index qi = t + S − T (−1 for
// a padding row past T: it sees nothing), with example id qid, sees key j
// whose id is kid; any_id: j is before the queries, or there are no
// segments (every query may see it).
__device__ __forceinline__ bool attn_sees(const AttnOpt& o, int qi, int qid, int j, int kid, bool any_id) {
  return j <= qi && (o.window <= 0 || qi - j < o.window) && (any_id || kid == qid);
}

// attn_qid is the example id of query t (0 without segments or past T).
__device__ __forceinline__ int attn_qid(const AttnOpt& o, int b, int T, int t) {
  return o.seg && t < T ? o.seg[(long long)b * T + t] : 0;
}

// attn_row_sees is attn_sees for query t of batch b, its key index and id
// derived on the spot (the SIMT kernels hold R rows per thread and no
// registers to spare): the id is read only when it decides.
__device__ __forceinline__ bool attn_row_sees(const AttnOpt& o, int b, int T, int off, int t, int j, int kid,
                                              bool any_id) {
  return attn_sees(o, t < T ? t + off : -1, any_id ? 0 : attn_qid(o, b, T, t), j, kid, any_id);
}

// attn_kid is the example id of key j (keys before the queries, j < off,
// and calls without segments: 0 and any_id).
__device__ __forceinline__ int attn_kid(const AttnOpt& o, int b, int T, int off, int j, bool& any_id) {
  any_id = !o.seg || j < off;
  return any_id ? 0 : o.seg[(long long)b * T + j - off];
}

// ---- block-wide ranges (every thread of the block calls these) ----

// attn_block_min returns the minimum of v over the block (GT_ATTN_THREADS
// threads). Back-to-back calls are safe: the first barrier protects the
// scratch from the last readers.
__device__ __forceinline__ int attn_block_min(int v) {
  __shared__ int gt_attn_min_scratch[GT_ATTN_WARPS];
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, m));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) gt_attn_min_scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  int r = gt_attn_min_scratch[0];
#pragma unroll
  for (int w = 1; w < GT_ATTN_WARPS; w++) r = min(r, gt_attn_min_scratch[w]);
  return r;
}

// attn_id_range sets [lo, hi] to the smallest and largest example id of
// positions u0..u0+n−1 of batch b's ids: a position whose id is outside it
// shares an id with none of them.
__device__ __forceinline__ void attn_id_range(const int* ids, int u0, int n, int& lo, int& hi) {
  int mn = 0x7fffffff, nhi = 0x7fffffff;  // nhi = ~max (~ reverses the order without overflow)
  for (int i = threadIdx.x; i < n; i += GT_ATTN_THREADS) {
    mn = min(mn, ids[u0 + i]);
    nhi = min(nhi, ~ids[u0 + i]);
  }
  lo = attn_block_min(mn);
  hi = ~attn_block_min(nhi);
}

// attn_key_begin returns the first key that any query t0..t0+nq−1 of
// batch b may see (off = S − T): 0; later under a sliding window (the
// window of the block's first row); later still with segments, when no
// key before the queries is visible: the first query position whose id is
// in the block's id range (its own rows qualify, so this is at most t0).
// Skipped keys are hidden from every row, so skipping them changes no sum.
__device__ __forceinline__ int attn_key_begin(const AttnOpt& o, int b, int T, int off, int t0, int nq) {
  int k = o.window > 0 ? max(0, t0 + off - o.window + 1) : 0;
  if (!o.seg || k < off) return k;
  const int* ids = o.seg + (long long)b * T;
  int lo, hi;
  attn_id_range(ids, t0, nq, lo, hi);
  int first = t0;  // each thread scans its positions upward and stops at its first hit
  for (int u = k - off + (int)threadIdx.x; u < t0; u += GT_ATTN_THREADS)
    if (ids[u] >= lo && ids[u] <= hi) {
      first = u;
      break;
    }
  return max(k, off + attn_block_min(first));
}

// attn_query_end returns one past the last query of batch b that may see
// any of keys s0..s0+nk−1: T; less under a sliding window; less with
// segments when every key is a query position (s0 >= off): one past the
// last query whose id is in the keys' id range (the last key's own query
// qualifies). tfirst = max(0, s0 − off) is the first query (causal).
__device__ __forceinline__ int attn_query_end(const AttnOpt& o, int b, int T, int off, int s0, int nk) {
  int e = T;
  if (o.window > 0) e = min(T, max(0, s0 + nk - 1 + o.window - off));
  if (!o.seg || s0 < off) return e;
  const int* ids = o.seg + (long long)b * T;
  int lo, hi;
  attn_id_range(ids, s0 - off, nk, lo, hi);
  const int own = s0 + nk - 1 - off;  // the last key's own query
  int last = own;                     // each thread scans its positions downward and stops at its first hit
  for (int u = e - 1 - (int)threadIdx.x; u > own; u -= GT_ATTN_THREADS)
    if (ids[u] >= lo && ids[u] <= hi) {
      last = u;
      break;
    }
  return 1 + ~attn_block_min(~last);
}

#endif  // GOTUNE_KERNELS_ATTENTION_CUH

// gemm.cu: the fused matrix products behind Gemm, LoRA and the adapters.
//
// Both kernels compute, for every (m, n) of the [m, n] output,
//   v = alpha·(Σ_k opA[m,k]·opB[k,n] + Σ_j A2[m,j]·opB2[j,n])
// and then the fused epilogue (in this order):
//   v += bias[n]                              (bias non-null)
//   aux_mode 1: aux[m,n] = v; v = act(v)      (keep the pre-activation)
//   aux_mode 2: v *= act'(aux[m,n])           (activation backward)
//   otherwise:  v = act(v)
//   v += res[m,n]                             (res non-null)
//   v += beta·C[m,n]                          (beta != 0; C is not read when beta == 0)
//   C[m,n] = v
// The second operand pair (a2, b2) streams through the same k-loop as the
// first, so X·Wᵀ + (s·X·Aᵀ)·Bᵀ (LoRA) and dY·W + U·A (its input gradient)
// are one pass over the output. With gridDim.z > 1 the k-range is split
// across z-slices that add their partial products atomically into a
// float32 C (weight gradients: beta = 1, no bias/aux/res, act identity).
#include "common.cuh"
#include "ptx.cuh"

struct GemmEpilogue {
  void* c;
  int c_dt, ldc;
  const void* bias;
  int bias_dt;
  const void* res;
  int ldr;
  void* aux;
  int ldaux, aux_mode;
  int m, n;
  float beta;
  int act;
  bool split;
};

// gemm_store_general is the full epilogue. It is not inlined: the 16-64
// output elements per thread would otherwise each carry a copy of every
// activation function (tanh, erf, exp), multiplying the kernel's code size.
GT_NOINLINE __device__ void gemm_store_general(const GemmEpilogue& e, int m, int n, float v) {
  long long ci = (long long)m * e.ldc + n;
  if (e.bias) v += ldx(e.bias, e.bias_dt, n);
  if (e.aux && e.aux_mode == 2) {
    v *= act_grad(ldx(e.aux, e.c_dt, (long long)m * e.ldaux + n), e.act);
  } else {
    if (e.aux && e.aux_mode == 1) stx(e.aux, e.c_dt, (long long)m * e.ldaux + n, v);
    v = act_f(v, e.act);
  }
  if (e.res) v += ldx(e.res, e.c_dt, (long long)m * e.ldr + n);
  if (e.beta != 0.f) v += e.beta * ldx(e.c, e.c_dt, ci);
  stx(e.c, e.c_dt, ci, v);
}

__device__ __forceinline__ void gemm_store(const GemmEpilogue& e, int m, int n, float v) {
  if (m >= e.m || n >= e.n) return;
  long long ci = (long long)m * e.ldc + n;
  if (e.split) {
    atomicAdd(static_cast<float*>(e.c) + ci, v);
    return;
  }
  if (e.act != 0 || (e.aux && e.aux_mode != 0)) {
    gemm_store_general(e, m, n, v);
    return;
  }
  // Inline fast path: no activation and no aux (plain GEMM, LoRA, gradients).
  if (e.bias) v += ldx(e.bias, e.bias_dt, n);
  if (e.res) v += ldx(e.res, e.c_dt, (long long)m * e.ldr + n);
  if (e.beta != 0.f) v += e.beta * ldx(e.c, e.c_dt, ci);
  stx(e.c, e.c_dt, ci, v);
}

// split_range gives this z-slice's k-tiles [*kb, *ke) of total; it traps
// on a split launch whose epilogue cannot be done with atomic adds.
__device__ __forceinline__ bool split_setup(const GemmEpilogue& e, float beta, int total, int* kb, int* ke) {
  int z = (int)gridDim.z;
  if (z > 1 && (e.c_dt != GT_F32 || beta != 1.f || e.bias || e.res || e.aux_mode != 0 || e.act != 0)) __trap();
  *kb = (int)((long long)total * blockIdx.z / z);
  *ke = (int)((long long)total * (blockIdx.z + 1) / z);
  return z > 1;
}

// ============================ float32 (SIMT) ============================
// 64x64 output tile per 256-thread block, k-step 16; thread (ty, tx) owns
// rows ty+16i and columns tx+16j (i, j < 4), so shared-memory reads of a
// warp touch consecutive words.
#define F32_BM GT_GEMM_F32_TILE
#define F32_BN GT_GEMM_F32_TILE
#define F32_BK GT_GEMM_F32_K

extern "C" __global__ void __launch_bounds__(GT_GEMM_THREADS)
    gt_gemm_f32(void* c, int c_dt, int ldc, const void* a, int lda, int trans_a, const void* b, int ldb,
                int trans_b, const void* a2, int lda2, const void* b2, int ldb2, int trans_b2, int k2,
                const void* bias, int bias_dt, const void* res, int ldr, void* aux, int ldaux, int aux_mode,
                int m, int n, int k, float alpha, float beta, int act) {
  __shared__ float sA[F32_BK][F32_BM + 4];
  __shared__ float sB[F32_BK][F32_BN + 4];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int m0 = blockIdx.y * F32_BM, n0 = blockIdx.x * F32_BN;
  const float* A = static_cast<const float*>(a);
  const float* B = static_cast<const float*>(b);
  const float* A2 = static_cast<const float*>(a2);
  const float* B2 = static_cast<const float*>(b2);
  if (!A2 || !B2) k2 = 0;
  const int kt1 = (k + F32_BK - 1) / F32_BK, kt2 = (k2 + F32_BK - 1) / F32_BK;
  GemmEpilogue e{c, c_dt, ldc, bias, bias_dt, res, ldr, aux, ldaux, aux_mode, m, n, beta, act, false};
  int kb, ke;
  e.split = split_setup(e, beta, kt1 + kt2, &kb, &ke);

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

  for (int kt = kb; kt < ke; kt++) {
    const bool first = kt < kt1;
    const int k0 = (first ? kt : kt - kt1) * F32_BK;
    const int kl = first ? k : k2;
    // A tile -> sA[kk][mm]
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int e_ = tid + GT_GEMM_THREADS * i, kk, mm;
      float v = 0.f;
      if (first && trans_a) {  // a is [k, m]: contiguous along m
        mm = e_ & 63, kk = e_ >> 6;
        if (m0 + mm < m && k0 + kk < kl) v = A[(long long)(k0 + kk) * lda + m0 + mm];
      } else {  // [m, k]: contiguous along k
        kk = e_ & 15, mm = e_ >> 4;
        if (m0 + mm < m && k0 + kk < kl)
          v = first ? A[(long long)(m0 + mm) * lda + k0 + kk] : A2[(long long)(m0 + mm) * lda2 + k0 + kk];
      }
      sA[kk][mm] = v;
    }
    // B tile -> sB[kk][nn]
    const bool tb = first ? trans_b : trans_b2;
    const float* Bp = first ? B : B2;
    const int ldbp = first ? ldb : ldb2;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int e_ = tid + GT_GEMM_THREADS * i, kk, nn;
      float v = 0.f;
      if (tb) {  // [n, k]
        kk = e_ & 15, nn = e_ >> 4;
        if (n0 + nn < n && k0 + kk < kl) v = Bp[(long long)(n0 + nn) * ldbp + k0 + kk];
      } else {  // [k, n]
        nn = e_ & 63, kk = e_ >> 6;
        if (n0 + nn < n && k0 + kk < kl) v = Bp[(long long)(k0 + kk) * ldbp + n0 + nn];
      }
      sB[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < F32_BK; kk++) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; i++) av[i] = sA[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; j++) bv[j] = sB[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) gemm_store(e, m0 + ty + 16 * i, n0 + tx + 16 * j, alpha * acc[i][j]);
}

// ===================== bfloat16 (mma.sync tensor cores) =====================
// 128x128 output tile per 256-thread block (8 warps as 2 (m) x 4 (n), each
// warp 64x32 = 4x4 m16n8 fragments), k-step 32, a 3-stage cp.async
// pipeline in dynamic shared memory. Each operand tile is stored in its
// global layout, padded by 8 elements (16 bytes) per row so the 8 row
// addresses of every ldmatrix hit distinct bank groups:
//   k-contiguous ([m or n][k]):  128 rows x 40   -> ldmatrix
//   k-major      ([k][m or n]):   32 rows x 136  -> ldmatrix.trans
#define BF_BM GT_GEMM_BF16_TILE
#define BF_BN GT_GEMM_BF16_TILE
#define BF_BK GT_GEMM_BF16_K
#define BF_STAGES GT_GEMM_BF16_STAGES
#define BF_KC_LD (BF_BK + GT_GEMM_BF16_PAD)  // row length of a k-contiguous tile
#define BF_KM_LD (BF_BM + GT_GEMM_BF16_PAD)  // row length of a k-major tile
#define BF_SLOT GT_GEMM_BF16_SLOT            // elements per operand slot
static_assert(BF_SLOT >= BF_BK * BF_KM_LD, "a k-major tile must fit an operand slot");
// Dynamic shared memory of gt_gemm_bf16: stages x 2 operands x slot bytes.
#define BF_SMEM_BYTES GT_GEMM_BF16_SMEM

struct BfOperand {
  const uint16_t* p;
  int ld;
  bool kcontig;  // tile rows are m (or n), k contiguous in memory
  bool vec;      // 16-byte aligned rows: cp.async path
};

// load_operand copies the 128 x 32 tile at (rows mn0.., k k0..) into dst.
// Elements outside [0, mnl) x [0, kl) are zero, so ragged edges add nothing.
__device__ __forceinline__ void load_operand(uint16_t* dst, const BfOperand& o, int mn0, int mnl, int k0, int kl,
                                             int tid) {
#pragma unroll
  for (int h = 0; h < 2; h++) {
    int cidx = tid + GT_GEMM_THREADS * h;  // 512 chunks of 8 elements
    int row, col, gmn, gk;
    uint16_t* d;
    if (o.kcontig) {
      row = cidx >> 2, col = (cidx & 3) * 8;
      gmn = mn0 + row, gk = k0 + col;
      d = dst + row * BF_KC_LD + col;
    } else {
      row = cidx >> 4, col = (cidx & 15) * 8;
      gk = k0 + row, gmn = mn0 + col;
      d = dst + row * BF_KM_LD + col;
    }
    // Elements available along the contiguous direction, 0..8.
    int avail;
    long long off;
    if (o.kcontig) {
      avail = gmn < mnl ? min(max(kl - gk, 0), 8) : 0;
      off = (long long)gmn * o.ld + gk;
    } else {
      avail = gk < kl ? min(max(mnl - gmn, 0), 8) : 0;
      off = (long long)gk * o.ld + gmn;
    }
    if (o.vec) {
      cp_async16(d, avail > 0 ? o.p + off : o.p, avail * 2);
    } else {
#pragma unroll
      for (int e = 0; e < 8; e++) d[e] = e < avail ? o.p[off + e] : (uint16_t)0;
    }
  }
}

__device__ __forceinline__ bool aligned16(const void* p, int ld) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0 && (ld & 7) == 0;
}

// bf16_mainloop runs the k-tiles [kb, ke) of one 128x128 output tile
// through the cp.async pipeline and the mma.sync fragments into acc.
// load_tile(kt, stage) fills stage's two operand slots with k-tile kt
// (tiles below kt1 are the first operand pair, whose layouts a_kc1 /
// b_kc1 give; later ones the second pair: A k-contiguous, B b_kc2). A
// loader may also store synchronously (dequantizing operands): the
// barrier at the top of each iteration publishes both kinds of store.
template <typename TileLoader>
__device__ __forceinline__ void bf16_mainloop(uint16_t* smem, int kb, int ke, int kt1, bool a_kc1, bool b_kc1,
                                              bool b_kc2, TileLoader& load_tile, float (&acc)[4][4][4]) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;  // warp's 64x32 sub-tile
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int r = 0; r < 4; r++) acc[i][j][r] = 0.f;

  const int nk = ke - kb;
#pragma unroll
  for (int s = 0; s < BF_STAGES - 1; s++) {
    if (s < nk) load_tile(kb + s, s);
    cp_async_commit();
  }
  for (int it = 0; it < nk; it++) {
    cp_async_wait<BF_STAGES - 2>();
    __syncthreads();  // tile `it` visible to all; stage of tile it-1 free
    {
      int nxt = it + BF_STAGES - 1;
      if (nxt < nk) load_tile(kb + nxt, nxt % BF_STAGES);
      cp_async_commit();
    }
    const int kt = kb + it;
    const bool a_kc = kt < kt1 ? a_kc1 : true;
    const bool b_kc = kt < kt1 ? b_kc1 : b_kc2;
    const uint16_t* sA = smem + (it % BF_STAGES) * 2 * BF_SLOT;
    const uint16_t* sB = sA + BF_SLOT;
#pragma unroll
    for (int ks = 0; ks < BF_BK / 16; ks++) {
      uint32_t af[4][4], bfr[4][2];
#pragma unroll
      for (int mt = 0; mt < 4; mt++) {
        int mb = wm * 64 + mt * 16;
        if (a_kc) {
          ldmatrix_x4(af[mt], sA + (mb + (lane & 15)) * BF_KC_LD + ks * 16 + (lane >> 4) * 8);
        } else {
          int i = lane >> 3, r = lane & 7;
          ldmatrix_x4_trans(af[mt], sA + (ks * 16 + r + (i >> 1) * 8) * BF_KM_LD + mb + (i & 1) * 8);
        }
      }
#pragma unroll
      for (int np = 0; np < 2; np++) {
        int nb = wn * 32 + np * 16;
        int i = lane >> 3, r = lane & 7;
        uint32_t q[4];
        if (b_kc) {
          ldmatrix_x4(q, sB + (nb + r + (i >> 1) * 8) * BF_KC_LD + ks * 16 + (i & 1) * 8);
        } else {
          ldmatrix_x4_trans(q, sB + (ks * 16 + r + (i & 1) * 8) * BF_KM_LD + nb + (i >> 1) * 8);
        }
        bfr[2 * np][0] = q[0];
        bfr[2 * np][1] = q[1];
        bfr[2 * np + 1][0] = q[2];
        bfr[2 * np + 1][1] = q[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) mma_bf16_16816(acc[mt][nt], af[mt], bfr[nt], acc[mt][nt]);
    }
  }
  cp_async_wait<0>();
}

// bf16_store hands the 128x128 tile at (m0, n0) to the epilogue.
__device__ __forceinline__ void bf16_store(const GemmEpilogue& e, int m0, int n0, float alpha,
                                           const float (&acc)[4][4][4]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 2, wn = warp & 3;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 4; mt++)
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int r = 0; r < 4; r++) {
        int row = m0 + wm * 64 + mt * 16 + g + 8 * (r >> 1);
        int col = n0 + wn * 32 + nt * 8 + 2 * t + (r & 1);
        gemm_store(e, row, col, alpha * acc[mt][nt][r]);
      }
}

extern "C" __global__ void __launch_bounds__(GT_GEMM_THREADS)
    gt_gemm_bf16(void* c, int c_dt, int ldc, const void* a, int lda, int trans_a, const void* b, int ldb,
                 int trans_b, const void* a2, int lda2, const void* b2, int ldb2, int trans_b2, int k2,
                 const void* bias, int bias_dt, const void* res, int ldr, void* aux, int ldaux, int aux_mode,
                 int m, int n, int k, float alpha, float beta, int act) {
  uint16_t* smem = GT_DYN_SMEM(uint16_t);
  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * BF_BM, n0 = blockIdx.x * BF_BN;
  if (!a2 || !b2) k2 = 0;
  const int kt1 = (k + BF_BK - 1) / BF_BK, kt2 = (k2 + BF_BK - 1) / BF_BK;
  GemmEpilogue e{c, c_dt, ldc, bias, bias_dt, res, ldr, aux, ldaux, aux_mode, m, n, beta, act, false};
  int kb, ke;
  e.split = split_setup(e, beta, kt1 + kt2, &kb, &ke);

  const BfOperand opA1{static_cast<const uint16_t*>(a), lda, !trans_a, aligned16(a, lda)};
  const BfOperand opB1{static_cast<const uint16_t*>(b), ldb, trans_b != 0, aligned16(b, ldb)};
  const BfOperand opA2{static_cast<const uint16_t*>(a2), lda2, true, aligned16(a2, lda2)};
  const BfOperand opB2{static_cast<const uint16_t*>(b2), ldb2, trans_b2 != 0, aligned16(b2, ldb2)};

  auto load_tile = [&](int kt, int stage) {
    uint16_t* sA = smem + stage * 2 * BF_SLOT;
    uint16_t* sB = sA + BF_SLOT;
    if (kt < kt1) {
      load_operand(sA, opA1, m0, m, kt * BF_BK, k, tid);
      load_operand(sB, opB1, n0, n, kt * BF_BK, k, tid);
    } else {
      load_operand(sA, opA2, m0, m, (kt - kt1) * BF_BK, k2, tid);
      load_operand(sB, opB2, n0, n, (kt - kt1) * BF_BK, k2, tid);
    }
  };

  float acc[4][4][4];
  bf16_mainloop(smem, kb, ke, kt1, opA1.kcontig, opB1.kcontig, opB2.kcontig, load_tile, acc);
  bf16_store(e, m0, n0, alpha, acc);
}

// gemm_q.cu: the matrix product over a block-quantized weight (QLoRA's
// NF4/FP4 and int8 bases): c = alpha·a·op(W) + beta·c with a bfloat16,
// W [w_rows, w_cols] dequantized while it is loaded into shared memory,
// tile by tile, so no bfloat16 copy of W ever exists in global memory.
// The pipeline, fragments and epilogue are gt_gemm_bf16's
// (bf16_mainloop, bf16_store in gemm.cu); only the B operand's loader
// differs: a synchronous dequantizing store instead of cp.async.
//
// Element i = r·w_cols + c of W (its flat row-major index) has code
// q_i (bits 4: byte i/2, the even element in the high nibble; bits 8:
// byte i) and block b = i / block_size, and is
//   bf16(code[q_i] · absmax_b),
//   absmax_b = absmax[b], or, with absmax null (double quantization),
//   nested_code[qabsmax[b]] · nested_absmax[b / nested_block] + offset,
// every product and sum rounded to float32 on its own (__fmul_rn and
// __fadd_rn: no FMA contraction, so the CPU reference computes the same
// bits).
#include "common.cuh"
#include "ptx.cuh"

struct QuantOperand {
  const uint8_t* codes;
  const float* code;
  const float* absmax;
  const uint8_t* qabsmax;
  const float* nested_code;
  const float* nested_absmax;
  float offset;
  int bits, block, nested_block, cols;
};

__device__ __forceinline__ float quant_absmax(const QuantOperand& q, long long b) {
  if (q.absmax) return q.absmax[b];
  return __fadd_rn(__fmul_rn(q.nested_code[q.qabsmax[b]], q.nested_absmax[b / q.nested_block]), q.offset);
}

__device__ __forceinline__ int quant_code(const QuantOperand& q, long long i) {
  if (q.bits == 8) return q.codes[i];
  uint8_t byte = q.codes[i >> 1];
  return (i & 1) ? (byte & 15) : (byte >> 4);
}

// load_quant fills a 128 x 32 B tile like load_operand (gemm.cu) does, in
// the same shared-memory layout, from W: with kcontig the tile's rows are
// W's rows mn0.. and its columns W's columns k0.. (op(W) = Wᵀ); otherwise
// its rows are W's rows k0.. and its columns W's columns mn0.. Each thread
// dequantizes two runs of 8 consecutive elements of one W row.
__device__ __forceinline__ void load_quant(uint16_t* dst, const QuantOperand& q, bool kcontig, int mn0, int mnl,
                                           int k0, int kl, int tid) {
#pragma unroll
  for (int h = 0; h < 2; h++) {
    int cidx = tid + GT_GEMM_THREADS * h;
    int row, col, wr, wc, avail;
    uint16_t* d;
    if (kcontig) {
      row = cidx >> 2, col = (cidx & 3) * 8;
      wr = mn0 + row, wc = k0 + col;
      d = dst + row * BF_KC_LD + col;
      avail = wr < mnl ? min(max(kl - wc, 0), 8) : 0;
    } else {
      row = cidx >> 4, col = (cidx & 15) * 8;
      wr = k0 + row, wc = mn0 + col;
      d = dst + row * BF_KM_LD + col;
      avail = wr < kl ? min(max(mnl - wc, 0), 8) : 0;
    }
    long long i0 = (long long)wr * q.cols + wc, blk = -1;
    float am = 0.f;
    for (int e = 0; e < 8; e++) {
      uint16_t v = 0;
      if (e < avail) {
        long long i = i0 + e, b = i / q.block;
        if (b != blk) am = quant_absmax(q, b), blk = b;
        v = f2bf(__fmul_rn(q.code[quant_code(q, i)], am));
      }
      d[e] = v;
    }
  }
}

extern "C" __global__ void __launch_bounds__(GT_GEMM_THREADS)
    gt_gemm_q(void* c, int c_dt, int ldc, const void* a, int lda, const void* codes, const void* code,
              const void* absmax, const void* qabsmax, const void* nested_code, const void* nested_absmax,
              float offset, int bits, int block_size, int nested_block, int w_cols, int trans_w, int m, int n,
              int k, float alpha, float beta) {
  uint16_t* smem = GT_DYN_SMEM(uint16_t);
  const int tid = threadIdx.x;
  const int m0 = blockIdx.y * BF_BM, n0 = blockIdx.x * BF_BN;
  const int kt1 = (k + BF_BK - 1) / BF_BK;
  GemmEpilogue e{c, c_dt, ldc, nullptr, 0, nullptr, 0, nullptr, 0, 0, m, n, beta, 0, false};
  const BfOperand opA{static_cast<const uint16_t*>(a), lda, true, aligned16(a, lda)};
  const QuantOperand opB{static_cast<const uint8_t*>(codes), static_cast<const float*>(code),
                         static_cast<const float*>(absmax), static_cast<const uint8_t*>(qabsmax),
                         static_cast<const float*>(nested_code), static_cast<const float*>(nested_absmax),
                         offset, bits, block_size, nested_block, w_cols};
  const bool b_kc = trans_w != 0;

  auto load_tile = [&](int kt, int stage) {
    uint16_t* sA = smem + stage * 2 * BF_SLOT;
    load_operand(sA, opA, m0, m, kt * BF_BK, k, tid);
    load_quant(sA + BF_SLOT, opB, b_kc, n0, n, kt * BF_BK, k, tid);
  };

  float acc[4][4][4];
  bf16_mainloop(smem, 0, kt1, kt1, true, b_kc, b_kc, load_tile, acc);
  bf16_store(e, m0, n0, alpha, acc);
}

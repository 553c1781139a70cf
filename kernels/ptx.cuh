// ptx.cuh: the only place kernels reach inline PTX. Each helper is the
// instruction itself under nvcc's device pass and, in the CPU emulator, a
// scalar implementation of exactly what the PTX ISA documents for it, with
// warp-wide data exchange where the instruction is warp-wide. Kernels using
// these helpers therefore run the same fragment bookkeeping on both sides,
// and a layout mistake gives wrong numbers in the emulator too.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16", .bf16):
//   lane = 32-thread lane id, g = lane >> 2 (groupID), t = lane & 3.
//   A (16x16, row-major), four .b32 registers, two bf16 each, low half first:
//     a[0] = A[g   ][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]
//     a[2] = A[g   ][2t+8, +9]   a[3] = A[g+8][2t+8, +9]
//   B (16x8, "col": element B[k][n]), two registers:
//     b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   C and D (16x8 float32), four registers:
//     c[0] = C[g][2t]  c[1] = C[g][2t+1]  c[2] = C[g+8][2t]  c[3] = C[g+8][2t+1]
// ldmatrix .m8n8 .b16 (.x4): lanes 8i..8i+7 give the row addresses of
// matrix i; lane l receives in register i matrix i's elements
//   [l/4][2(l%4)], [l/4][2(l%4)+1]         (no .trans)
//   [2(l%4)][l/4], [2(l%4)+1][l/4]         (.trans)
// low half first.
#ifndef GOTUNE_KERNELS_PTX_CUH
#define GOTUNE_KERNELS_PTX_CUH

#include "common.cuh"

#if defined(__CUDA_ARCH__)
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// mma_bf16_16816 computes d = A·B + c for one warp (m16n8k16, bf16 inputs,
// float32 accumulation). d may alias c.
__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2],
                                               const float c[4]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#elif GT_EMU
  struct Frag {
    uint32_t a[4];
    uint32_t b[2];
    float c[4];
  } mine;
  for (int i = 0; i < 4; i++) mine.a[i] = a[i], mine.c[i] = c[i];
  mine.b[0] = b[0];
  mine.b[1] = b[1];
  const unsigned char* all = gtemu::warp_exchange(&mine, sizeof mine);
  auto fr = [&](int l) -> const Frag& { return *reinterpret_cast<const Frag*>(all + 64 * l); };
  auto half = [](uint32_t w, int hi) { return bf2f((uint16_t)(hi ? w >> 16 : w & 0xffffu)); };
  int lane = (int)gtemu::lane_id(), g = lane >> 2, t = lane & 3;
  // Gather this lane's two rows of A and two columns of B from the lanes
  // that hold them, inverting the documented layouts.
  float Ar[2][16], Bc[2][16];
  for (int h = 0; h < 2; h++) {
    int r = g + 8 * h;
    for (int k = 0; k < 16; k++) Ar[h][k] = half(fr((r & 7) * 4 + ((k & 7) >> 1)).a[(r >> 3) + 2 * (k >> 3)], k & 1);
  }
  for (int j = 0; j < 2; j++) {
    int n = 2 * t + j;
    for (int k = 0; k < 16; k++) Bc[j][k] = half(fr(n * 4 + ((k & 7) >> 1)).b[k >> 3], k & 1);
  }
  float out[4];
  for (int i = 0; i < 4; i++) {
    int r = g + 8 * (i >> 1), n = 2 * t + (i & 1);
    float s = 0.f;  // bf16 products are exact in float32
    for (int k = 0; k < 16; k++) s += Ar[i >> 1][k] * Bc[i & 1][k];
    out[i] = fr((r & 7) * 4 + (n >> 1)).c[2 * (r >> 3) + (n & 1)] + s;
  }
  gtemu::warp_exchange_done();
  for (int i = 0; i < 4; i++) d[i] = out[i];
#endif
}

#if GT_EMU
namespace gtemu {
// ldmatrix_emu implements ldmatrix.sync.aligned.m8n8.x{nmat}[.trans].shared.b16.
inline void ldmatrix_emu(uint32_t* r, const void* row_addr, int nmat, bool trans) {
  // The hardware faults on a misaligned row address; so does the emulator.
  if (reinterpret_cast<uintptr_t>(row_addr) & 15) fail("ldmatrix: row address not 16-byte aligned");
  const unsigned char* all = warp_exchange(&row_addr, sizeof row_addr);
  auto addr = [&](int l) {
    const uint16_t* p;
    std::memcpy(&p, all + 64 * l, sizeof p);
    return p;
  };
  int lane = (int)lane_id();
  uint32_t out[4];
  for (int i = 0; i < nmat; i++) {
    uint16_t lo, hi;
    if (!trans) {
      const uint16_t* row = addr(8 * i + lane / 4);
      lo = row[2 * (lane % 4)];
      hi = row[2 * (lane % 4) + 1];
    } else {
      lo = addr(8 * i + 2 * (lane % 4))[lane / 4];
      hi = addr(8 * i + 2 * (lane % 4) + 1)[lane / 4];
    }
    out[i] = (uint32_t)lo | ((uint32_t)hi << 16);
  }
  warp_exchange_done();
  for (int i = 0; i < nmat; i++) r[i] = out[i];
}
}  // namespace gtemu
#endif

// ldmatrix_x4 loads four 8x8 bf16 matrices from shared memory (no transpose).
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem_row)));
#elif GT_EMU
  gtemu::ldmatrix_emu(r, smem_row, 4, false);
#endif
}

// ldmatrix_x4_trans loads four 8x8 bf16 matrices, each transposed.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem_row)));
#elif GT_EMU
  gtemu::ldmatrix_emu(r, smem_row, 4, true);
#endif
}

// cp_async16 starts a 16-byte global->shared copy that reads src_bytes
// (0..16) bytes and zero-fills the rest. Both addresses 16-byte aligned;
// src must be a valid address even when src_bytes is 0.
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src, int src_bytes) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem_dst)), "l"(gmem_src),
               "r"(src_bytes));
#elif GT_EMU
  if ((reinterpret_cast<uintptr_t>(smem_dst) | reinterpret_cast<uintptr_t>(gmem_src)) & 15)
    gtemu::fail("cp.async: address not 16-byte aligned");
  if (src_bytes < 0 || src_bytes > 16) gtemu::fail("cp.async: src-size outside 0..16");
  gtemu::cp_async_enqueue(smem_dst, gmem_src, 16, src_bytes);
#endif
}

// cp_async_commit closes the current group of cp.async copies.
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::);
#elif GT_EMU
  gtemu::cp_async_commit();
#endif
}

// cp_async_wait waits until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#elif GT_EMU
  gtemu::cp_async_wait(N);
#endif
}

#endif  // GOTUNE_KERNELS_PTX_CUH

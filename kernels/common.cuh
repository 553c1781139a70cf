// common.cuh: what every gotune kernel source includes: the CUDA/emulator
// switch, the kernel declarations from kernels.def, dtype-generic loads and
// stores, bfloat16 conversion, activations and block reductions.
//
// Compiled by nvcc (CUDA: __CUDACC__ defined; __CUDA_ARCH__ in the device
// pass) and by g++ for the CPU emulator, whose build force-includes
// emu/cuda_emu.h (g++ -include) to supply the CUDA dialect. This header
// never includes the emulator itself: production kernel sources do not
// depend on it.
#ifndef GOTUNE_KERNELS_COMMON_CUH
#define GOTUNE_KERNELS_COMMON_CUH

#if defined(__CUDACC__)
#include <stdint.h>
#define GT_EMU 0
#elif defined(GOTUNE_CUDA_EMU_H)
#define GT_EMU 1
#else
#error "build the kernels with nvcc, or for the CPU emulator with g++ -include emu/cuda_emu.h (kernels/Makefile)"
#endif

// Launch constants (threads, tiles, shared memory): the one source that
// the backend's generated Go code reads too.
#include "launch.cuh"

// Every entry point, declared from the one list. A definition whose
// parameters differ from kernels.def fails to compile (conflicting
// extern "C" declarations), which keeps the list honest.
#define GT_KERNEL(name, rule, params) extern "C" __global__ void name params;
#include "kernels.def"
#undef GT_KERNEL

// Dynamic shared memory (the launch's sharedMemBytes).
#if GT_EMU
#define GT_DYN_SMEM(T) reinterpret_cast<T*>(::gtemu::tl_launch->dyn_smem)
#else
extern __shared__ __align__(16) unsigned char gt_dyn_smem_[];
#define GT_DYN_SMEM(T) reinterpret_cast<T*>(gt_dyn_smem_)
#endif

// GT_NOINLINE keeps a device function out of line (code size).
#if GT_EMU
#define GT_NOINLINE
#else
#define GT_NOINLINE __noinline__
#endif

// dtype codes (engine.DType).
#define GT_F32 0
#define GT_BF16 1

// Grid-stride loop over [0, n): correct for any grid size.
#define GT_GRID_STRIDE(i, n)                                                       \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
       i += (long long)gridDim.x * blockDim.x)

// ---- bfloat16 (raw bits in a uint16_t) ----

__device__ __forceinline__ float bf2f(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

// f2bf rounds to nearest, ties to even (NaN stays NaN).
__device__ __forceinline__ uint16_t f2bf(float f) {
#if defined(__CUDA_ARCH__)
  uint16_t r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
#elif GT_EMU
  return __float2bfloat16(f).x;
#else
  return 0;  // nvcc host pass: device code is never run there
#endif
}

// round_bf16 rounds to the nearest bfloat16, kept as float (a rounding
// point inside a float32 computation).
__device__ __forceinline__ float round_bf16(float f) { return bf2f(f2bf(f)); }

// pack_bf16x2 packs two floats as bfloat16, a in the low half.
__device__ __forceinline__ uint32_t pack_bf16x2(float a, float b) {
  return (uint32_t)f2bf(a) | ((uint32_t)f2bf(b) << 16);
}

// ---- dtype-generic element access ----

__device__ __forceinline__ float ldx(const void* p, int dt, long long i) {
  return dt == GT_BF16 ? bf2f(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void stx(void* p, int dt, long long i, float v) {
  if (dt == GT_BF16)
    static_cast<uint16_t*>(p)[i] = f2bf(v);
  else
    static_cast<float*>(p)[i] = v;
}

// ---- dropout masks (engine.DropoutKeep) ----

// gt_splitmix64 is engine.SplitMix64: SplitMix64's finaliser.
__device__ __forceinline__ unsigned long long gt_splitmix64(unsigned long long x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// gt_dropout_keep is engine.DropoutKeep: element counter of the mask with
// this seed is kept when the top 24 bits (engine's dropoutBits) of its hash
// reach threshold (engine.DropoutThreshold).
__device__ __forceinline__ bool gt_dropout_keep(unsigned long long seed, unsigned long long counter,
                                                unsigned threshold) {
  return (unsigned)(gt_splitmix64(seed ^ (counter * 0x9E3779B97F4A7C15ull)) >> 40) >= threshold;
}

// gt_seed64 joins a 64-bit seed passed as two int kernel arguments.
__device__ __forceinline__ unsigned long long gt_seed64(int lo, int hi) {
  return ((unsigned long long)(unsigned)hi << 32) | (unsigned)lo;
}

// atomic_addx adds v to element i atomically. bfloat16 goes through a
// compare-and-swap on the aligned 32-bit word holding the element.
__device__ __forceinline__ void atomic_addx(void* p, int dt, long long i, float v) {
  if (dt != GT_BF16) {
    atomicAdd(static_cast<float*>(p) + i, v);
    return;
  }
  uint16_t* h = static_cast<uint16_t*>(p) + i;
  unsigned* w = reinterpret_cast<unsigned*>(reinterpret_cast<uintptr_t>(h) & ~uintptr_t(3));
  unsigned shift = (reinterpret_cast<uintptr_t>(h) & 2) ? 16u : 0u;
  unsigned old = *w, assumed;
  do {
    assumed = old;
    float cur = bf2f((uint16_t)((assumed >> shift) & 0xffffu));
    unsigned nb = f2bf(cur + v);
    unsigned nw = (assumed & ~(0xffffu << shift)) | (nb << shift);
    old = atomicCAS(w, assumed, nw);
  } while (old != assumed);
}

// ---- activations (engine.Act codes) ----

#define GT_ACT_IDENTITY 0
#define GT_ACT_RELU 1
#define GT_ACT_SILU 2
#define GT_ACT_GELU_TANH 3
#define GT_ACT_GELU 4
#define GT_ACT_TANH 5
#define GT_ACT_SIGMOID 6

#define GT_GELU_C 0.7978845608028654f    // sqrt(2/pi)
#define GT_GELU_A 0.044715f
#define GT_INV_SQRT2 0.7071067811865476f
#define GT_INV_SQRT_2PI 0.3989422804014327f

__device__ __forceinline__ float gt_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// The forms below avoid cancellation, so the float32 results stay within
// a few ulp of a float64 evaluation over the whole range: 1+tanh(u) is
// written 2·sigmoid(2u), 1+erf(z) as erfc(−z), 1−s as sigmoid(−x), and
// 1−tanh²(x) as 4e/(1+e)² with e = exp(−2|x|).
__device__ __forceinline__ float act_f(float x, int act) {
  switch (act) {
    case GT_ACT_RELU:
      return x > 0.f ? x : 0.f;
    case GT_ACT_SILU:
      return x * gt_sigmoid(x);
    case GT_ACT_GELU_TANH:
      return x * gt_sigmoid(2.f * GT_GELU_C * (x + GT_GELU_A * x * x * x));
    case GT_ACT_GELU:
      return 0.5f * x * erfcf(-x * GT_INV_SQRT2);
    case GT_ACT_TANH:
      return tanhf(x);
    case GT_ACT_SIGMOID:
      return gt_sigmoid(x);
    default:
      return x;
  }
}

// act_grad is f'(x); ReLU'(0) = 0 as in PyTorch.
__device__ __forceinline__ float act_grad(float x, int act) {
  switch (act) {
    case GT_ACT_RELU:
      return x > 0.f ? 1.f : 0.f;
    case GT_ACT_SILU:
      return gt_sigmoid(x) * (1.f + x * gt_sigmoid(-x));
    case GT_ACT_GELU_TANH: {
      float u2 = 2.f * GT_GELU_C * (x + GT_GELU_A * x * x * x);
      float s = gt_sigmoid(u2);
      return s + 2.f * x * s * gt_sigmoid(-u2) * GT_GELU_C * (1.f + 3.f * GT_GELU_A * x * x);
    }
    case GT_ACT_GELU:
      return 0.5f * erfcf(-x * GT_INV_SQRT2) + x * GT_INV_SQRT_2PI * expf(-0.5f * x * x);
    case GT_ACT_TANH: {
      float e = expf(-2.f * fabsf(x));
      return 4.f * e / ((1.f + e) * (1.f + e));
    }
    case GT_ACT_SIGMOID:
      return gt_sigmoid(x) * gt_sigmoid(-x);
    default:
      return 1.f;
  }
}

// ---- reductions (blockDim.x a multiple of 32, at most 1024; 1-D blocks) ----

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// block_sum returns the sum of v over the block to every thread. Every
// thread of the block must call it (it holds barriers); back-to-back calls
// are safe (the first barrier protects the scratch from the last readers).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float gt_red_scratch[32];
  v = warp_sum(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) gt_red_scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.f;
  int nw = (int)(blockDim.x >> 5);
  for (int i = 0; i < nw; i++) t += gt_red_scratch[i];
  return t;
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float gt_max_scratch[32];
  v = warp_max(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) gt_max_scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = gt_max_scratch[0];
  int nw = (int)(blockDim.x >> 5);
  for (int i = 1; i < nw; i++) t = fmaxf(t, gt_max_scratch[i]);
  return t;
}

#endif  // GOTUNE_KERNELS_COMMON_CUH

// cuda_emu.h: the CUDA C++ dialect the gotune kernels use, re-expressed as
// plain C++17 so g++ can compile kernels/*.cu into the CPU emulator.
//
// The emulator build force-includes this header ahead of the kernel
// sources (g++ -include emu/cuda_emu.h; kernels/Makefile, CMakeLists.txt);
// the kernel headers never include it, and it never runs under nvcc.
//
// Execution model (see runtime.cpp): one launch runs its blocks one after
// another on the calling OS thread; the threads of a block are fibers
// (cooperatively scheduled user-level contexts) on that OS thread. A fiber
// runs until it waits at a barrier (__syncthreads, __syncwarp or any warp
// collective, which all contain one) or exits. Hence:
//   - __shared__ variables are `static thread_local`: every fiber of the
//     running block sees the same object, and the next block reuses it, just
//     as a GPU reuses a multiprocessor's shared memory. Two host threads
//     launching at once each get their own.
//   - threadIdx/blockIdx/blockDim/gridDim read the running fiber's state.
//   - warp collectives exchange values through a per-warp scratch area
//     between two warp barriers, so every lane really contributes its own
//     value, as on the hardware.
#ifndef GOTUNE_CUDA_EMU_H
#define GOTUNE_CUDA_EMU_H

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#error "cuda_emu.h is for the CPU emulator only; nvcc must not include it"
#endif

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static thread_local
#define __constant__ static const
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __grid_constant__

namespace gtemu {

// dim3 mirrors CUDA's vector of three unsigned dimensions.
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Fiber is the state of one emulated GPU thread (defined in runtime.cpp;
// only the leading fields are visible here).
struct FiberView {
  dim3 tid;
  unsigned lane;   // threadIdx linearised % 32
  unsigned warp;   // threadIdx linearised / 32
};

// LaunchView is the per-launch state kernels can see.
struct LaunchView {
  dim3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  unsigned char* dyn_smem;
};

// The fiber and launch running on this OS thread.
extern thread_local FiberView* tl_fiber;
extern thread_local LaunchView* tl_launch;

// Barriers. Each returns once every live thread of the block (or warp) has
// arrived; threads that already exited count as arrived, as on sm_70+.
void syncthreads();
void syncwarp();

// Warp exchange: every lane publishes `bytes` bytes (<= 64); after the call
// `all` points at the 32 published slots (slot stride 64 bytes), valid until
// warp_exchange_done(), which every lane must call next.
const unsigned char* warp_exchange(const void* mine, size_t bytes);
void warp_exchange_done();
// warp_live_mask has bit l set when lane l of the caller's warp exists.
unsigned warp_live_mask();

// Deferred cp.async copies (see ptx.cuh): queued per thread, performed at
// the wait that retires their group, so a kernel that reads shared memory
// before waiting sees stale data here too.
void cp_async_enqueue(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int keep_groups);

// fail reports a kernel-detected fault (an emulated trap) and aborts the launch.
[[noreturn]] void fail(const char* what);

}  // namespace gtemu

using gtemu::dim3;

#define threadIdx (::gtemu::tl_fiber->tid)
#define blockIdx (::gtemu::tl_launch->block_idx)
#define blockDim (::gtemu::tl_launch->block_dim)
#define gridDim (::gtemu::tl_launch->grid_dim)
#define warpSize 32

inline void __syncthreads() { gtemu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)mask;  // the emulator requires full-warp participation
  gtemu::syncwarp();
}
inline void __trap() { gtemu::fail("__trap() called"); }

// ---- warp collectives ----
namespace gtemu {
template <typename T>
inline T shfl_from(T v, int src_lane) {
  static_assert(sizeof(T) <= 64 && std::is_trivially_copyable<T>::value, "shuffle type");
  const unsigned char* all = warp_exchange(&v, sizeof(T));
  T out;
  std::memcpy(&out, all + 64 * (src_lane & 31), sizeof(T));
  warp_exchange_done();
  return out;
}
inline unsigned lane_id() { return tl_fiber->lane; }
}  // namespace gtemu

template <typename T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  unsigned lane = gtemu::lane_id();
  int base = lane & ~(width - 1);
  return gtemu::shfl_from(v, base + (src & (width - 1)));
}
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  int lane = (int)gtemu::lane_id();
  int src = lane ^ mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  return gtemu::shfl_from(v, src);
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  int lane = (int)gtemu::lane_id();
  int src = lane + (int)delta;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  return gtemu::shfl_from(v, src);
}
template <typename T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  int lane = (int)gtemu::lane_id();
  int src = lane - (int)delta;
  if (src < (lane & ~(width - 1))) src = lane;
  return gtemu::shfl_from(v, src);
}
inline unsigned __ballot_sync(unsigned, int pred) {
  int p = pred != 0;
  const unsigned char* all = gtemu::warp_exchange(&p, sizeof p);
  unsigned bits = 0;
  for (int l = 0; l < 32; l++) {
    int q;
    std::memcpy(&q, all + 64 * l, sizeof q);
    if (q) bits |= 1u << l;
  }
  gtemu::warp_exchange_done();
  return bits;
}
inline int __any_sync(unsigned m, int pred) { return __ballot_sync(m, pred) != 0; }
inline int __all_sync(unsigned m, int pred) {
  // Lanes that do not exist (a partial last warp) do not vote.
  return __ballot_sync(m, pred) == gtemu::warp_live_mask();
}

// ---- atomics (real atomics: blocks may run on several host threads) ----
inline float atomicAdd(float* p, float v) {
  uint32_t* u = reinterpret_cast<uint32_t*>(p);
  uint32_t old = __atomic_load_n(u, __ATOMIC_RELAXED);
  for (;;) {
    float f;
    std::memcpy(&f, &old, 4);
    float nf = f + v;
    uint32_t nu;
    std::memcpy(&nu, &nf, 4);
    if (__atomic_compare_exchange_n(u, &old, nu, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return f;
  }
}
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned val) {
  __atomic_compare_exchange_n(p, &cmp, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return cmp;  // the old value, whether or not the swap happened
}
inline int atomicCAS(int* p, int cmp, int val) {
  __atomic_compare_exchange_n(p, &cmp, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return cmp;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- math intrinsics ----
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
// Round-to-nearest product and sum that the compiler never contracts into
// an FMA (g++ in ISO C++ mode does not contract; a separate statement
// keeps it so under any -ffp-contract).
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
inline float __fadd_rn(float a, float b) {
  volatile float r = a + b;
  return r;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline unsigned __float_as_uint(float f) {
  unsigned i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// ---- bfloat16 (cuda_bf16.h subset, round-to-nearest-even) ----
struct __nv_bfloat16 {
  uint16_t x;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  __nv_bfloat16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.x = (uint16_t)((u >> 16) | 0x40u);  // quiet NaN, sign kept
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    r.x = (uint16_t)(u >> 16);
  }
  return r;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) {
  uint32_t u = (uint32_t)b.x << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}

// Shared-memory address conversion: the emulator keeps generic pointers.
inline size_t __cvta_generic_to_shared(const void* p) { return (size_t)p; }

#endif  // GOTUNE_CUDA_EMU_H

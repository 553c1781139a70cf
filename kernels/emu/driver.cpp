// driver.cpp: the CUDA driver API subset gotune uses (the list in
// cuda/driver.go), implemented on the host so libcuda.so built from this
// directory can stand in for NVIDIA's. Device memory is host memory,
// streams run synchronously, events read the host clock, and
// cuLaunchKernel runs the kernels of kernels/*.cu compiled as C++.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "runtime.h"  // the CUDA dialect (cuda_emu.h), ahead of the kernel headers
#include "../common.cuh"

#define GT_API extern "C" __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

namespace {

// ---- status codes (cuda.h values) ----
enum : int {
  OK = 0,
  ERR_INVALID_VALUE = 1,
  ERR_OUT_OF_MEMORY = 2,
  ERR_NOT_INITIALIZED = 3,
  ERR_NO_DEVICE = 100,
  ERR_INVALID_DEVICE = 101,
  ERR_INVALID_IMAGE = 200,
  ERR_INVALID_CONTEXT = 201,
  ERR_NO_BINARY_FOR_GPU = 209,
  ERR_INVALID_HANDLE = 400,
  ERR_NOT_FOUND = 500,
  ERR_NOT_READY = 600,
  ERR_ILLEGAL_ADDRESS = 700,
  ERR_LAUNCH_OUT_OF_RESOURCES = 701,
  ERR_LAUNCH_FAILED = 719,
  ERR_UNKNOWN = 999,
};

struct ErrName {
  int code;
  const char* name;
  const char* text;
};
const ErrName kErrors[] = {
    {OK, "CUDA_SUCCESS", "no error"},
    {ERR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {ERR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {ERR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {ERR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {ERR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {ERR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {ERR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {ERR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {ERR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {ERR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {ERR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {ERR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {ERR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {ERR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {ERR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

// ---- kernels: the X-macro table ----

// Invoker unpacks cuLaunchKernel's void** parameters by the kernel's own
// C++ signature (the one declared from kernels.def), so a parameter list
// can never disagree with the function it calls.
template <typename F>
struct Invoker;
template <typename... Args>
struct Invoker<void (*)(Args...)> {
  template <size_t... I>
  static void call(void (*f)(Args...), void** p, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(p[I])...);
  }
  static void run(void* fn, void** params) {
    call(reinterpret_cast<void (*)(Args...)>(fn), params, std::index_sequence_for<Args...>{});
  }
  static constexpr int arity = sizeof...(Args);
};

struct KernelInfo {
  const char* name;
  const char* rule;
  void* fn;
  void (*run)(void* fn, void** params);
  int arity;
  int max_dyn_smem;  // per CUfunction attribute 8; shared by every module
};

#define GT_KERNEL(name, rule, params)                                                             \
  {#name, #rule, reinterpret_cast<void*>(&name), &Invoker<decltype(&name)>::run,                  \
   Invoker<decltype(&name)>::arity, 48 * 1024},
KernelInfo g_kernels[] = {
#include "../kernels.def"
};
#undef GT_KERNEL
constexpr int kNumKernels = sizeof(g_kernels) / sizeof(g_kernels[0]);

// ---- handles ----
struct Ctx {
  int magic = 0x43545847;  // "GXTC"
};
struct Module {
  int magic = 0x444f4d47;
};
struct Stream {
  int magic = 0x52545347;
};
struct Event {
  int magic = 0x54564547;
  bool recorded = false;
  std::chrono::steady_clock::time_point t;
};

std::mutex g_mu;  // guards everything below
bool g_init = false;
// kMaxDevices bounds GOTUNE_EMU_DEVICES: one primary context per device.
constexpr int kMaxDevices = 16;
Ctx g_ctx[kMaxDevices];
int g_ctx_refs[kMaxDevices] = {};
std::map<uintptr_t, size_t> g_allocs;       // device allocations: base -> bytes
std::map<uintptr_t, size_t> g_host_allocs;  // pinned host allocations
std::unordered_map<Module*, bool> g_modules;
std::unordered_map<Stream*, bool> g_streams;
std::unordered_map<Event*, bool> g_events;
thread_local Ctx* tl_ctx = nullptr;
size_t g_allocated = 0;

// Emulated device: reports an H200-like sm_90 part so gotune's capability
// checks pass; the emulator's "memory" is the host's.
constexpr size_t kDeviceMem = size_t(16) << 30;

// memLimit is the device memory cuMemAlloc_v2 hands out before it fails
// with CUDA_ERROR_OUT_OF_MEMORY: GOTUNE_EMU_MEM_LIMIT bytes when set (so
// tests can run a device out of memory), else kDeviceMem.
static size_t memLimit() {
  static const size_t limit = [] {
    const char* e = std::getenv("GOTUNE_EMU_MEM_LIMIT");
    return e && *e ? size_t(std::strtoull(e, nullptr, 10)) : kDeviceMem;
  }();
  return limit;
}
const char kDeviceName[] = "gotune CPU emulator (sm_90)";

// deviceCount is GOTUNE_EMU_DEVICES (1 to kMaxDevices; default 1): the
// number of devices the emulator reports, so data-parallel runs can give
// each process its own ordinal. Every device's memory is the host's.
static int deviceCount() {
  static const int n = [] {
    const char* e = std::getenv("GOTUNE_EMU_DEVICES");
    int v = e && *e ? std::atoi(e) : 1;
    return v < 1 ? 1 : (v > kMaxDevices ? kMaxDevices : v);
  }();
  return n;
}

static bool validDevice(CUdevice dev) { return dev >= 0 && dev < deviceCount(); }

// isContext reports whether p is one of the devices' primary contexts.
static bool isContext(const void* p) {
  for (const Ctx& c : g_ctx)
    if (&c == p) return true;
  return false;
}

#define REQUIRE_INIT() \
  do {                 \
    if (!g_init) return ERR_NOT_INITIALIZED; \
  } while (0)

// valid_range reports whether [p, p+n) lies inside one device allocation.
bool valid_range(CUdeviceptr p, size_t n) {
  if (n == 0) return true;
  auto it = g_allocs.upper_bound((uintptr_t)p);
  if (it == g_allocs.begin()) return false;
  --it;
  return (uintptr_t)p >= it->first && (uintptr_t)p + n <= it->first + it->second;
}

CUresult memset_n(CUdeviceptr dst, const void* pattern, size_t elem, size_t n) {
  std::lock_guard<std::mutex> l(g_mu);
  REQUIRE_INIT();
  if (!valid_range(dst, n * elem)) return ERR_INVALID_VALUE;
  unsigned char* d = reinterpret_cast<unsigned char*>(dst);
  for (size_t i = 0; i < n; i++) std::memcpy(d + i * elem, pattern, elem);
  return OK;
}

}  // namespace

// ======================= the driver API =======================

GT_API CUresult cuInit(unsigned int flags) {
  if (flags != 0) return ERR_INVALID_VALUE;
  std::lock_guard<std::mutex> l(g_mu);
  g_init = true;
  return OK;
}

GT_API CUresult cuDriverGetVersion(int* version) {
  if (!version) return ERR_INVALID_VALUE;
  *version = 12080;  // a CUDA 12.8-era driver
  return OK;
}

GT_API CUresult cuGetErrorName(CUresult err, const char** name) {
  if (!name) return ERR_INVALID_VALUE;
  for (const ErrName& e : kErrors)
    if (e.code == err) {
      *name = e.name;
      return OK;
    }
  *name = nullptr;
  return ERR_INVALID_VALUE;
}

GT_API CUresult cuGetErrorString(CUresult err, const char** str) {
  if (!str) return ERR_INVALID_VALUE;
  for (const ErrName& e : kErrors)
    if (e.code == err) {
      *str = e.text;
      return OK;
    }
  *str = nullptr;
  return ERR_INVALID_VALUE;
}

GT_API CUresult cuDeviceGetCount(int* count) {
  if (!count) return ERR_INVALID_VALUE;
  REQUIRE_INIT();
  *count = deviceCount();
  return OK;
}

GT_API CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
  if (!dev) return ERR_INVALID_VALUE;
  REQUIRE_INIT();
  if (!validDevice(ordinal)) return ERR_INVALID_DEVICE;
  *dev = ordinal;
  return OK;
}

GT_API CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (!name || len <= 0) return ERR_INVALID_VALUE;
  REQUIRE_INIT();
  if (!validDevice(dev)) return ERR_INVALID_DEVICE;
  std::snprintf(name, (size_t)len, "%s", kDeviceName);
  return OK;
}

GT_API CUresult cuDeviceGetAttribute(int* value, int attrib, CUdevice dev) {
  if (!value) return ERR_INVALID_VALUE;
  REQUIRE_INIT();
  if (!validDevice(dev)) return ERR_INVALID_DEVICE;
  switch (attrib) {
    case 1: *value = 1024; return OK;             // max threads per block
    case 8: *value = 48 * 1024; return OK;        // shared memory per block
    case 10: *value = 32; return OK;              // warp size
    case 13: *value = 1980000; return OK;         // clock rate, kHz
    case 16: *value = 132; return OK;             // multiprocessors
    case 36: *value = 2619000; return OK;         // memory clock, kHz
    case 37: *value = 6144; return OK;            // memory bus width, bits
    case 38: *value = 50 * 1024 * 1024; return OK;  // L2 bytes
    case 75: *value = 9; return OK;               // compute capability major
    case 76: *value = 0; return OK;               // minor
    case 97: *value = 227 * 1024; return OK;      // opt-in shared memory per block
    default: return ERR_INVALID_VALUE;
  }
}

GT_API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
  if (!bytes) return ERR_INVALID_VALUE;
  REQUIRE_INIT();
  if (!validDevice(dev)) return ERR_INVALID_DEVICE;
  *bytes = kDeviceMem;
  return OK;
}

GT_API CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice dev) {
  if (!ctx) return ERR_INVALID_VALUE;
  std::lock_guard<std::mutex> l(g_mu);
  REQUIRE_INIT();
  if (!validDevice(dev)) return ERR_INVALID_DEVICE;
  g_ctx_refs[dev]++;
  *ctx = &g_ctx[dev];
  return OK;
}

GT_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  std::lock_guard<std::mutex> l(g_mu);
  REQUIRE_INIT();
  if (!validDevice(dev)) return ERR_INVALID_DEVICE;
  if (g_ctx_refs[dev] <= 0) return ERR_INVALID_CONTEXT;
  g_ctx_refs[dev]--;
  return OK;
}

GT_API CUresult cuCtxSetCurrent(void* ctx) {
  REQUIRE_INIT();
  if (ctx && !isContext(ctx)) return ERR_INVALID_CONTEXT;
  tl_ctx = static_cast<Ctx*>(ctx);
  return OK;
}

GT_API CUresult cuCtxGetCurrent(void** ctx) {
  if (!ctx) return ERR_INVALID_VALUE;
  REQUIRE_INIT();
  *ctx = tl_ctx;
  return OK;
}

#define REQUIRE_CTX()                                   \
  do {                                                  \
    if (!g_init) return ERR_NOT_INITIALIZED;            \
    if (!tl_ctx) return ERR_INVALID_CONTEXT;            \
  } while (0)

GT_API CUresult cuCtxSynchronize(void) {
  REQUIRE_CTX();
  return OK;  // every operation already completed synchronously
}

GT_API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
  if (!free_bytes || !total) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  std::lock_guard<std::mutex> l(g_mu);
  *total = kDeviceMem;
  *free_bytes = g_allocated < kDeviceMem ? kDeviceMem - g_allocated : 0;
  return OK;
}

GT_API CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  if (!dptr || bytes == 0) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  size_t rounded = (bytes + 255) & ~size_t(255);
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (rounded > memLimit() || g_allocated > memLimit() - rounded) return ERR_OUT_OF_MEMORY;
  }
  void* p = std::aligned_alloc(256, rounded);
  if (!p) return ERR_OUT_OF_MEMORY;
  // Fresh device memory holds garbage on a GPU; 0xFF bytes are NaN in both
  // float32 and bfloat16, so code that reads memory nobody wrote fails.
  std::memset(p, 0xFF, rounded);
  std::lock_guard<std::mutex> l(g_mu);
  g_allocs[(uintptr_t)p] = bytes;
  g_allocated += rounded;
  *dptr = (CUdeviceptr)(uintptr_t)p;
  return OK;
}

GT_API CUresult cuMemFree_v2(CUdeviceptr dptr) {
  REQUIRE_CTX();
  if (dptr == 0) return OK;
  std::lock_guard<std::mutex> l(g_mu);
  auto it = g_allocs.find((uintptr_t)dptr);
  if (it == g_allocs.end()) return ERR_INVALID_VALUE;
  g_allocated -= (it->second + 255) & ~size_t(255);
  g_allocs.erase(it);
  std::free(reinterpret_cast<void*>(dptr));
  return OK;
}

GT_API CUresult cuMemAllocHost_v2(void** pp, size_t bytes) {
  if (!pp || bytes == 0) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  void* p = std::aligned_alloc(256, (bytes + 255) & ~size_t(255));
  if (!p) return ERR_OUT_OF_MEMORY;
  std::lock_guard<std::mutex> l(g_mu);
  g_host_allocs[(uintptr_t)p] = bytes;
  *pp = p;
  return OK;
}

GT_API CUresult cuMemFreeHost(void* p) {
  REQUIRE_CTX();
  std::lock_guard<std::mutex> l(g_mu);
  auto it = g_host_allocs.find((uintptr_t)p);
  if (it == g_host_allocs.end()) return ERR_INVALID_VALUE;
  g_host_allocs.erase(it);
  std::free(p);
  return OK;
}

GT_API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
  REQUIRE_CTX();
  return memset_n(dst, &v, 1, n);
}
GT_API CUresult cuMemsetD16_v2(CUdeviceptr dst, unsigned short v, size_t n) {
  REQUIRE_CTX();
  if (dst & 1) return ERR_INVALID_VALUE;
  return memset_n(dst, &v, 2, n);
}
GT_API CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned int v, size_t n) {
  REQUIRE_CTX();
  if (dst & 3) return ERR_INVALID_VALUE;
  return memset_n(dst, &v, 4, n);
}

namespace {
bool valid_stream(void* s) {
  std::lock_guard<std::mutex> l(g_mu);
  return s == nullptr || g_streams.count(static_cast<Stream*>(s)) > 0;
}
}  // namespace

GT_API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void* s) {
  if (!valid_stream(s)) return ERR_INVALID_HANDLE;
  return cuMemsetD8_v2(dst, v, n);
}
GT_API CUresult cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, void* s) {
  if (!valid_stream(s)) return ERR_INVALID_HANDLE;
  return cuMemsetD16_v2(dst, v, n);
}
GT_API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, void* s) {
  if (!valid_stream(s)) return ERR_INVALID_HANDLE;
  return cuMemsetD32_v2(dst, v, n);
}

GT_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
  REQUIRE_CTX();
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (!valid_range(dst, bytes)) return ERR_INVALID_VALUE;
  }
  if (bytes && !src) return ERR_INVALID_VALUE;
  if (bytes) std::memcpy(reinterpret_cast<void*>(dst), src, bytes);
  return OK;
}

GT_API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
  REQUIRE_CTX();
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (!valid_range(src, bytes)) return ERR_INVALID_VALUE;
  }
  if (bytes && !dst) return ERR_INVALID_VALUE;
  if (bytes) std::memcpy(dst, reinterpret_cast<const void*>(src), bytes);
  return OK;
}

GT_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  REQUIRE_CTX();
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (!valid_range(dst, bytes) || !valid_range(src, bytes)) return ERR_INVALID_VALUE;
  }
  if (bytes) std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes);
  return OK;
}

GT_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, void* s) {
  if (!valid_stream(s)) return ERR_INVALID_HANDLE;
  return cuMemcpyHtoD_v2(dst, src, bytes);
}
GT_API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, void* s) {
  if (!valid_stream(s)) return ERR_INVALID_HANDLE;
  return cuMemcpyDtoH_v2(dst, src, bytes);
}
GT_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, void* s) {
  if (!valid_stream(s)) return ERR_INVALID_HANDLE;
  return cuMemcpyDtoD_v2(dst, src, bytes);
}

GT_API CUresult cuStreamCreate(void** s, unsigned int flags) {
  if (!s || flags > 1) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  Stream* st = new Stream();
  std::lock_guard<std::mutex> l(g_mu);
  g_streams[st] = true;
  *s = st;
  return OK;
}

GT_API CUresult cuStreamSynchronize(void* s) {
  REQUIRE_CTX();
  return valid_stream(s) ? OK : ERR_INVALID_HANDLE;
}

GT_API CUresult cuStreamDestroy_v2(void* s) {
  REQUIRE_CTX();
  std::lock_guard<std::mutex> l(g_mu);
  auto it = g_streams.find(static_cast<Stream*>(s));
  if (it == g_streams.end()) return ERR_INVALID_HANDLE;
  g_streams.erase(it);
  delete static_cast<Stream*>(s);
  return OK;
}

GT_API CUresult cuEventCreate(void** e, unsigned int flags) {
  if (!e) return ERR_INVALID_VALUE;
  (void)flags;
  REQUIRE_CTX();
  Event* ev = new Event();
  std::lock_guard<std::mutex> l(g_mu);
  g_events[ev] = true;
  *e = ev;
  return OK;
}

namespace {
Event* find_event(void* e) {
  std::lock_guard<std::mutex> l(g_mu);
  auto it = g_events.find(static_cast<Event*>(e));
  return it == g_events.end() ? nullptr : it->first;
}
}  // namespace

GT_API CUresult cuEventRecord(void* e, void* s) {
  REQUIRE_CTX();
  Event* ev = find_event(e);
  if (!ev || !valid_stream(s)) return ERR_INVALID_HANDLE;
  ev->t = std::chrono::steady_clock::now();  // all prior work on s is done
  ev->recorded = true;
  return OK;
}

// Every call completes before it returns: there is never anything to wait for.
GT_API CUresult cuStreamWaitEvent(void* s, void* e, unsigned int flags) {
  REQUIRE_CTX();
  if (flags != 0) return ERR_INVALID_VALUE;
  return find_event(e) && valid_stream(s) ? OK : ERR_INVALID_HANDLE;
}

GT_API CUresult cuEventSynchronize(void* e) {
  REQUIRE_CTX();
  return find_event(e) ? OK : ERR_INVALID_HANDLE;
}

GT_API CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
  if (!ms) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  Event* a = find_event(start);
  Event* b = find_event(end);
  if (!a || !b) return ERR_INVALID_HANDLE;
  if (!a->recorded || !b->recorded) return ERR_INVALID_HANDLE;  // as CUDA does for unrecorded events
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return OK;
}

GT_API CUresult cuEventDestroy_v2(void* e) {
  REQUIRE_CTX();
  std::lock_guard<std::mutex> l(g_mu);
  auto it = g_events.find(static_cast<Event*>(e));
  if (it == g_events.end()) return ERR_INVALID_HANDLE;
  g_events.erase(it);
  delete static_cast<Event*>(e);
  return OK;
}

GT_API CUresult cuModuleLoadData(void** m, const void* image) {
  if (!m || !image) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  // Any image is accepted: the emulator's kernels are compiled in, and
  // functions are found by name.
  Module* mod = new Module();
  std::lock_guard<std::mutex> l(g_mu);
  g_modules[mod] = true;
  *m = mod;
  return OK;
}

GT_API CUresult cuModuleUnload(void* m) {
  REQUIRE_CTX();
  std::lock_guard<std::mutex> l(g_mu);
  auto it = g_modules.find(static_cast<Module*>(m));
  if (it == g_modules.end()) return ERR_INVALID_HANDLE;
  g_modules.erase(it);
  delete static_cast<Module*>(m);
  return OK;
}

GT_API CUresult cuModuleGetFunction(void** f, void* m, const char* name) {
  if (!f || !name) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (!g_modules.count(static_cast<Module*>(m))) return ERR_INVALID_HANDLE;
  }
  for (KernelInfo& k : g_kernels)
    if (std::strcmp(k.name, name) == 0) {
      *f = &k;
      return OK;
    }
  return ERR_NOT_FOUND;
}

namespace {
KernelInfo* find_function(void* f) {
  for (KernelInfo& k : g_kernels)
    if (&k == f) return &k;
  return nullptr;
}
}  // namespace

GT_API CUresult cuFuncGetAttribute(int* value, int attrib, void* f) {
  if (!value) return ERR_INVALID_VALUE;
  REQUIRE_CTX();
  KernelInfo* k = find_function(f);
  if (!k) return ERR_INVALID_HANDLE;
  switch (attrib) {
    case 0: *value = 1024; return OK;  // max threads per block
    case 1: *value = 0; return OK;     // static shared bytes (not measured here)
    case 3: *value = 0; return OK;     // local bytes
    case 4: *value = 0; return OK;     // registers (not meaningful on a CPU)
    case 8: {
      std::lock_guard<std::mutex> l(g_mu);
      *value = k->max_dyn_smem;
      return OK;
    }
    default: return ERR_INVALID_VALUE;
  }
}

GT_API CUresult cuFuncSetAttribute(void* f, int attrib, int value) {
  REQUIRE_CTX();
  KernelInfo* k = find_function(f);
  if (!k) return ERR_INVALID_HANDLE;
  if (attrib != 8) return ERR_INVALID_VALUE;
  if (value < 0 || value > 227 * 1024) return ERR_INVALID_VALUE;
  std::lock_guard<std::mutex> l(g_mu);
  k->max_dyn_smem = value;
  return OK;
}

GT_API CUresult cuLaunchKernel(void* f, unsigned gridX, unsigned gridY, unsigned gridZ, unsigned blockX,
                               unsigned blockY, unsigned blockZ, unsigned sharedMemBytes, void* s,
                               void** kernelParams, void** extra) {
  REQUIRE_CTX();
  KernelInfo* k = find_function(f);
  if (!k || !valid_stream(s)) return ERR_INVALID_HANDLE;
  if (extra) return ERR_INVALID_VALUE;  // gotune passes parameters only through kernelParams
  if (!kernelParams && k->arity > 0) return ERR_INVALID_VALUE;
  for (int i = 0; i < k->arity; i++)
    if (!kernelParams[i]) return ERR_INVALID_VALUE;
  // The hardware's limits, so a launch that would fail on a GPU fails here.
  if (gridX == 0 || gridY == 0 || gridZ == 0 || blockX == 0 || blockY == 0 || blockZ == 0) return ERR_INVALID_VALUE;
  if (gridY > 65535 || gridZ > 65535 || gridX > 2147483647u) return ERR_INVALID_VALUE;
  if (blockX > 1024 || blockY > 1024 || blockZ > 64 || (uint64_t)blockX * blockY * blockZ > 1024)
    return ERR_INVALID_VALUE;
  int max_dyn;
  {
    std::lock_guard<std::mutex> l(g_mu);
    max_dyn = k->max_dyn_smem;
  }
  if ((int)sharedMemBytes > max_dyn) return ERR_INVALID_VALUE;

  struct Ctx {
    KernelInfo* k;
    void** params;
  } ctx{k, kernelParams};
  gtemu::KernelThunk thunk{[](void* c) {
                             Ctx* x = static_cast<Ctx*>(c);
                             x->k->run(x->k->fn, x->params);
                           },
                           &ctx};
  gtemu::dim3 grid{gridX, gridY, gridZ}, block{blockX, blockY, blockZ};
  std::string err;
  if (!gtemu::launch(thunk, grid, block, sharedMemBytes, &err)) {
    std::fprintf(stderr, "gotune emulator: kernel %s failed: %s\n", k->name, err.c_str());
    return ERR_LAUNCH_FAILED;
  }
  return OK;
}

// gotune_emu_kernel_count is not part of the CUDA API: gotune's tests use
// its presence to tell the emulator from a real driver.
GT_API int gotune_emu_kernel_count(void) { return kNumKernels; }

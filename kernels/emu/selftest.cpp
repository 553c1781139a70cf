// selftest.cpp: runs every gotune kernel through a driver-API library
// (normally the emulator, emu/build/libcuda.so; a real libcuda.so.1 works
// too) on random inputs at several shapes and compares with a naive
// float64 reference computed here. Outputs are poisoned with NaN before
// each launch, so an element the kernel failed to write fails the check.
//
//   selftest [path/to/libcuda.so]      exit status 0 when every check passes
//
// Environment: SELFTEST_SEED (replay), SELFTEST_ONLY=ew,gemm,quant,lora,adapter,
// SELFTEST_VERBOSE=1 (print every check), SELFTEST_FATBIN=path (the image
// given to cuModuleLoadData: needed with a real driver, e.g.
// SELFTEST_FATBIN=kernels/gotune.fatbin selftest libcuda.so.1).
//
// Tolerances (relative: ||out - ref|| / ||ref||): float32 1e-5; anything
// that stores or reads bfloat16 1e-2 (the reference uses the same
// bf16-rounded inputs, so only accumulation and output rounding differ).
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../launch.cuh"  // threads, tiles and shared memory: the kernels' own figures

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

namespace {

// ---- driver entry points ----
struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGet)(int*, int);
  CUresult (*cuDevicePrimaryCtxRetain)(void**, int);
  CUresult (*cuCtxSetCurrent)(void*);
  CUresult (*cuMemAlloc_v2)(CUdeviceptr*, size_t);
  CUresult (*cuMemFree_v2)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void*, size_t);
  CUresult (*cuMemcpyDtoH_v2)(void*, CUdeviceptr, size_t);
  CUresult (*cuMemsetD32_v2)(CUdeviceptr, unsigned, size_t);
  CUresult (*cuModuleLoadData)(void**, const void*);
  CUresult (*cuModuleGetFunction)(void**, void*, const char*);
  CUresult (*cuFuncSetAttribute)(void*, int, int);
  CUresult (*cuLaunchKernel)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*,
                             void**, void**);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuGetErrorName)(CUresult, const char**);
} D;

void* g_module = nullptr;
int g_failures = 0, g_checks = 0;

void check_cu(CUresult r, const char* what) {
  if (r != 0) {
    const char* name = "?";
    D.cuGetErrorName(r, &name);
    std::fprintf(stderr, "FATAL: %s: %s (%d)\n", what, name, r);
    std::exit(2);
  }
}

template <typename T>
void load_sym(void* lib, T& fn, const char* name) {
  fn = reinterpret_cast<T>(dlsym(lib, name));
  if (!fn) {
    std::fprintf(stderr, "FATAL: symbol %s missing\n", name);
    std::exit(2);
  }
}

// ---- host-side bf16 (round to nearest even), matching the kernels ----
uint16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
float bf2f(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::mt19937_64 rng;  // seeded in main: SELFTEST_SEED, else fresh
std::vector<float> randn(size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Buf is a device buffer of float32 or bfloat16 elements mirroring host floats.
struct Buf {
  CUdeviceptr p = 0;
  size_t n = 0;
  int dt = 0;
  Buf() = default;
  Buf(size_t n_, int dt_) : n(n_), dt(dt_) { check_cu(D.cuMemAlloc_v2(&p, std::max<size_t>(1, n) * esz() + 64), "alloc"); }
  size_t esz() const { return dt == 1 ? 2 : 4; }
  // upload rounds to the dtype and returns what the device holds.
  std::vector<float> upload(std::vector<float> v) {
    if (dt == 1) {
      std::vector<uint16_t> h(v.size());
      for (size_t i = 0; i < v.size(); i++) h[i] = f2bf(v[i]), v[i] = bf2f(h[i]);
      check_cu(D.cuMemcpyHtoD_v2(p, h.data(), h.size() * 2), "upload");
    } else {
      check_cu(D.cuMemcpyHtoD_v2(p, v.data(), v.size() * 4), "upload");
    }
    return v;
  }
  std::vector<float> download() const {
    std::vector<float> v(n);
    if (dt == 1) {
      std::vector<uint16_t> h(n);
      check_cu(D.cuMemcpyDtoH_v2(h.data(), p, n * 2), "download");
      for (size_t i = 0; i < n; i++) v[i] = bf2f(h[i]);
    } else {
      check_cu(D.cuMemcpyDtoH_v2(v.data(), p, n * 4), "download");
    }
    return v;
  }
  void poison() { check_cu(D.cuMemsetD32_v2(p, 0xFFFFFFFFu, (n * esz() + 3) / 4), "poison"); }
};

struct Args {
  std::deque<uint64_t> store;
  std::vector<void*> ptrs;
  Args& ptr(const Buf& b) { return raw(&b.p, 8); }
  Args& ptr(CUdeviceptr p) { return raw(&p, 8); }
  Args& null() {
    CUdeviceptr z = 0;
    return raw(&z, 8);
  }
  Args& i(int v) { return raw(&v, 4); }
  Args& f(float v) { return raw(&v, 4); }
  Args& raw(const void* v, size_t n) {
    store.push_back(0);
    std::memcpy(&store.back(), v, n);
    ptrs.push_back(&store.back());
    return *this;
  }
};

// launch uses one block size for every kernel it tests.
static_assert(GT_GEMM_THREADS == GT_EW_THREADS, "selftest: give launch() a block-size parameter");

void launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned smem, Args& a) {
  void* f;
  check_cu(D.cuModuleGetFunction(&f, g_module, name), name);
  if (smem > 48 * 1024) check_cu(D.cuFuncSetAttribute(f, 8, (int)smem), "set smem");
  check_cu(D.cuLaunchKernel(f, gx, gy, gz, GT_EW_THREADS, 1, 1, smem, nullptr, a.ptrs.data(), nullptr), name);
  check_cu(D.cuCtxSynchronize(), name);
}
unsigned ew_grid(long long n) {
  return (unsigned)std::max(1LL, std::min((n + GT_EW_THREADS - 1) / GT_EW_THREADS, (long long)GT_MAX_GRID_X));
}

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref, double tol) {
  g_checks++;
  double num = 0, den = 0;
  bool nan = false;
  for (size_t i = 0; i < ref.size(); i++) {
    if (!std::isfinite(got[i])) nan = true;
    double d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (nan || !(rel <= tol)) {
    g_failures++;
    std::printf("FAIL %-60s rel=%.3g tol=%.0e%s\n", what.c_str(), rel, tol, nan ? " (non-finite output)" : "");
  } else if (std::getenv("SELFTEST_VERBOSE")) {
    std::printf("ok   %-60s rel=%.3g\n", what.c_str(), rel);
  }
}

// ref_splitmix64 restates SplitMix64's finaliser (Steele, Lea and Flood
// 2014); main checks its first output from state 0, 0xE220A8397B1DCDAF.
uint64_t ref_splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// ref_dropout_keep is engine.DropoutKeep's definition.
bool ref_dropout_keep(uint64_t seed, uint64_t i, unsigned thr) {
  return (unsigned)(ref_splitmix64(seed ^ (i * 0x9E3779B97F4A7C15ull)) >> 40) >= thr;
}

double act_f(double x, int act) {
  switch (act) {
    case 1: return x > 0 ? x : 0;
    case 2: return x / (1 + std::exp(-x));
    case 3: return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case 4: return 0.5 * x * std::erfc(-x * 0.7071067811865476);
    case 5: return std::tanh(x);
    case 6: return 1 / (1 + std::exp(-x));
    default: return x;
  }
}
double act_g(double x, int act) {
  const double c = 0.7978845608028654, a = 0.044715;
  switch (act) {
    case 1: return x > 0 ? 1 : 0;
    case 2: {
      double s = 1 / (1 + std::exp(-x));
      return s * (1 + x * (1 - s));
    }
    case 3: {
      double t = std::tanh(c * (x + a * x * x * x));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * a * x * x);
    }
    case 4: return 0.5 * std::erfc(-x * 0.7071067811865476) + x * 0.3989422804014327 * std::exp(-0.5 * x * x);
    case 5: {
      double t = std::tanh(x);
      return 1 - t * t;
    }
    case 6: {
      double s = 1 / (1 + std::exp(-x));
      return s * (1 - s);
    }
    default: return 1;
  }
}

// activation_tail_tests checks each activation and its derivative element
// by element at points across the range, tails included, where naive
// float32 formulas cancel (e.g. GELU at x = -3.3).
void activation_tail_tests() {
  const float xs[] = {-12.f, -6.f, -3.3f, -1.f, -1e-3f, 0.f, 1e-3f, 0.7f, 3.3f, 6.f, 12.f};
  Buf x(1, 0), y(1, 0), g(1, 0);
  for (int act = 0; act <= 6; act++)
    for (float xv : xs) {
      if (act == 1 && xv == 0.f) continue;  // ReLU'(0) is a convention, checked elsewhere
      x.upload({xv});
      y.poison();
      Args f;
      f.ptr(y).i(0).ptr(x).i(0).i(1).i(act);
      launch("gt_activation", 1, 1, 1, 0, f);
      char nm[96];
      std::snprintf(nm, sizeof nm, "gt_activation act%d x=%g", act, xv);
      expect_close(nm, y.download(), {act_f(xv, act)}, 1e-5);
      g.upload({0.f});
      Buf one(1, 0);
      one.upload({1.f});
      Args b;
      b.ptr(g).i(0).ptr(one).i(0).ptr(x).i(0).i(1).i(act);
      launch("gt_activation_backward", 1, 1, 1, 0, b);
      std::snprintf(nm, sizeof nm, "gt_activation_backward act%d x=%g", act, xv);
      expect_close(nm, g.download(), {act_g(xv, act)}, 1e-5);
    }
}

// ---------------------------- GEMM ----------------------------
struct GemmCase {
  int m, n, k, k2;
  bool ta, tb, tb2;
  bool bias, res;
  int aux_mode, act;
  float alpha, beta;
  int splits;
  int pad;  // extra leading-dimension elements (0: packed)
};

void test_gemm(bool bf, const GemmCase& c) {
  int dt = bf ? 1 : 0;
  int cdt = (bf && c.splits == 1 && (c.m + c.n) % 2 == 0) ? 1 : 0;  // bf16 outputs on some bf16 cases
  int lda = (c.ta ? c.m : c.k) + c.pad, ldb = (c.tb ? c.k : c.n) + c.pad;
  int lda2 = c.k2 + c.pad, ldb2 = (c.tb2 ? c.k2 : c.n) + c.pad;
  int ldc = c.n + c.pad;
  size_t asz = (size_t)(c.ta ? c.k : c.m) * lda, bsz = (size_t)(c.tb ? c.n : c.k) * ldb;
  size_t a2sz = (size_t)c.m * lda2, b2sz = (size_t)(c.tb2 ? c.n : c.k2) * ldb2, csz = (size_t)c.m * ldc;
  Buf A(asz, dt), B(bsz, dt), A2(a2sz, dt), B2(b2sz, dt), C(csz, cdt), bias(c.n, cdt), R(csz, cdt), X(csz, cdt);
  auto a = A.upload(randn(asz)), b = B.upload(randn(bsz)), a2 = A2.upload(randn(a2sz)), b2 = B2.upload(randn(b2sz));
  auto bi = bias.upload(randn(c.n)), r = R.upload(randn(csz));
  std::vector<float> c0 = randn(csz), x0 = randn(csz);
  if (c.beta != 0.f || c.splits > 1) c0 = C.upload(c0);
  else C.poison();
  if (c.aux_mode == 2) x0 = X.upload(x0);
  else X.poison();
  std::vector<double> ref(csz), xref(csz);
  for (int i = 0; i < c.m; i++)
    for (int j = 0; j < c.n; j++) {
      double s = 0;
      for (int q = 0; q < c.k; q++)
        s += (double)(c.ta ? a[(size_t)q * lda + i] : a[(size_t)i * lda + q]) *
             (c.tb ? b[(size_t)j * ldb + q] : b[(size_t)q * ldb + j]);
      for (int q = 0; q < c.k2; q++)
        s += (double)a2[(size_t)i * lda2 + q] * (c.tb2 ? b2[(size_t)j * ldb2 + q] : b2[(size_t)q * ldb2 + j]);
      double v = c.alpha * s;
      size_t ci = (size_t)i * ldc + j;
      if (c.splits > 1) {
        ref[ci] = c0[ci] + v;
        continue;
      }
      if (c.bias) v += bi[j];
      if (c.aux_mode == 2) {
        v *= act_g(x0[ci], c.act);
      } else {
        if (c.aux_mode == 1) xref[ci] = v;
        v = act_f(v, c.act);
      }
      if (c.res) v += r[ci];
      if (c.beta != 0) v += c.beta * c0[ci];
      ref[ci] = v;
    }
  Args args;
  args.ptr(C).i(cdt).i(ldc).ptr(A).i(lda).i(c.ta).ptr(B).i(ldb).i(c.tb);
  if (c.k2 > 0) args.ptr(A2).i(lda2).ptr(B2).i(ldb2).i(c.tb2).i(c.k2);
  else args.null().i(0).null().i(0).i(0).i(0);
  if (c.bias) args.ptr(bias).i(cdt);
  else args.null().i(0);
  if (c.res) args.ptr(R).i(ldc);
  else args.null().i(0);
  if (c.aux_mode) args.ptr(X).i(ldc).i(c.aux_mode);
  else args.null().i(0).i(0);
  args.i(c.m).i(c.n).i(c.k).f(c.alpha).f(c.beta).i(c.act);
  int bm = bf ? GT_GEMM_BF16_TILE : GT_GEMM_F32_TILE, bn = bm;
  launch(bf ? "gt_gemm_bf16" : "gt_gemm_f32", (c.n + bn - 1) / bn, (c.m + bm - 1) / bm, c.splits, bf ? GT_GEMM_BF16_SMEM : 0,
         args);
  char name[256];
  std::snprintf(name, sizeof name, "%s m%d n%d k%d k2=%d t%d%d%d bias%d res%d aux%d act%d b%.1f s%d pad%d c_dt%d",
                bf ? "gemm_bf16" : "gemm_f32", c.m, c.n, c.k, c.k2, c.ta, c.tb, c.tb2, c.bias, c.res, c.aux_mode,
                c.act, c.beta, c.splits, c.pad, cdt);
  // Compare only the [m, n] block (padding columns are never written).
  auto pick = [&](const std::vector<float>& full, const std::vector<double>& r_, std::vector<float>* g,
                  std::vector<double>* rr) {
    for (int i = 0; i < c.m; i++)
      for (int j = 0; j < c.n; j++) {
        g->push_back(full[(size_t)i * ldc + j]);
        rr->push_back(r_[(size_t)i * ldc + j]);
      }
  };
  std::vector<float> g;
  std::vector<double> rr;
  pick(C.download(), ref, &g, &rr);
  double tol = (bf || cdt) ? 1e-2 : 1e-5;
  expect_close(name, g, rr, tol);
  if (c.aux_mode == 1) {
    g.clear();
    rr.clear();
    pick(X.download(), xref, &g, &rr);
    expect_close(std::string(name) + " aux", g, rr, tol);
  }
}

void gemm_tests() {
  std::vector<GemmCase> cases = {
      {1, 1, 1, 0, false, true, false, false, false, 0, 0, 1.f, 0.f, 1, 0},
      {17, 33, 45, 0, false, true, false, true, false, 0, 2, 1.f, 0.f, 1, 0},
      {128, 128, 64, 0, false, false, false, false, false, 0, 0, 0.5f, 0.f, 1, 0},
      {130, 70, 67, 0, true, false, false, false, true, 0, 0, 1.f, 1.f, 1, 0},
      {64, 136, 40, 0, true, true, false, false, false, 0, 3, 1.f, 0.f, 1, 0},
      {70, 129, 33, 0, false, true, false, true, true, 1, 4, 1.f, 0.f, 1, 0},
      {45, 37, 70, 0, false, false, false, false, false, 2, 2, 1.f, 1.f, 1, 0},
      {96, 80, 64, 16, false, true, true, true, false, 0, 0, 1.f, 0.f, 1, 0},
      {33, 50, 48, 7, false, false, false, false, false, 0, 0, 1.f, 1.f, 1, 0},
      {40, 24, 256, 0, true, false, false, false, false, 0, 0, 1.f, 1.f, 3, 0},
      {72, 56, 40, 24, false, true, true, true, true, 1, 5, 0.7f, 0.5f, 1, 8},
      {31, 65, 131, 3, true, true, true, false, false, 0, 6, 1.f, 0.f, 1, 3},
      {200, 16, 96, 0, false, true, false, false, false, 0, 1, 2.f, 0.f, 1, 0},
      {16, 96, 260, 0, true, false, false, false, false, 0, 0, 1.f, 1.f, 4, 1},
  };
  for (const auto& c : cases) {
    test_gemm(false, c);
    test_gemm(true, c);
  }
}

// ------------------------- LoRA and adapter recipes -------------------------
void lora_test(bool bf, int M, int K, int N, int r) {
  int dt = bf ? 1 : 0;
  float s = 0.5f;
  const char* gk = bf ? "gt_gemm_bf16" : "gt_gemm_f32";
  int bm = bf ? GT_GEMM_BF16_TILE : GT_GEMM_F32_TILE;
  unsigned smem = bf ? GT_GEMM_BF16_SMEM : 0;
  auto gx = [&](int n) { return (unsigned)((n + bm - 1) / bm); };
  Buf X(M * K, dt), W(N * K, dt), Am(r * K, dt), Bm(N * r, dt), bias(N, dt), T(M * r, dt), Y(M * N, dt);
  Buf dY(M * N, dt), U(M * r, dt), dX(M * K, dt), dA(r * K, 0), dB(N * r, 0);
  auto x = X.upload(randn(M * K)), w = W.upload(randn(N * K, 0.1f)), am = Am.upload(randn(r * K, 0.1f)),
       bm_ = Bm.upload(randn(N * r, 0.1f)), bi = bias.upload(randn(N));
  auto dy = dY.upload(randn(M * N));
  auto dx0 = dX.upload(randn(M * K));
  auto da0 = dA.upload(randn(r * K)), db0 = dB.upload(randn(N * r));
  T.poison();
  Y.poison();
  U.poison();
  // fwd 1: T = s·X·Aᵀ
  {
    Args a;
    a.ptr(T).i(dt).i(r).ptr(X).i(K).i(0).ptr(Am).i(K).i(1).null().i(0).null().i(0).i(0).i(0).null().i(0).null().i(0)
        .null().i(0).i(0).i(M).i(r).i(K).f(s).f(0.f).i(0);
    launch(gk, gx(r), gx(M), 1, smem, a);
  }
  // fwd 2: Y = X·Wᵀ + b + T·Bᵀ
  {
    Args a;
    a.ptr(Y).i(dt).i(N).ptr(X).i(K).i(0).ptr(W).i(K).i(1).ptr(T).i(r).ptr(Bm).i(r).i(1).i(r).ptr(bias).i(dt).null()
        .i(0).null().i(0).i(0).i(M).i(N).i(K).f(1.f).f(0.f).i(0);
    launch(gk, gx(N), gx(M), 1, smem, a);
  }
  // bwd 1: U = s·dY·B
  {
    Args a;
    a.ptr(U).i(dt).i(r).ptr(dY).i(N).i(0).ptr(Bm).i(r).i(0).null().i(0).null().i(0).i(0).i(0).null().i(0).null()
        .i(0).null().i(0).i(0).i(M).i(r).i(N).f(s).f(0.f).i(0);
    launch(gk, gx(r), gx(M), 1, smem, a);
  }
  // bwd 2: dX += dY·W + U·A
  {
    Args a;
    a.ptr(dX).i(dt).i(K).ptr(dY).i(N).i(0).ptr(W).i(K).i(0).ptr(U).i(r).ptr(Am).i(K).i(0).i(r).null().i(0).null()
        .i(0).null().i(0).i(0).i(M).i(K).i(N).f(1.f).f(1.f).i(0);
    launch(gk, gx(K), gx(M), 1, smem, a);
  }
  // bwd 3: dB += dYᵀ·T (split-K 2)
  {
    Args a;
    a.ptr(dB).i(0).i(r).ptr(dY).i(N).i(1).ptr(T).i(r).i(0).null().i(0).null().i(0).i(0).i(0).null().i(0).null()
        .i(0).null().i(0).i(0).i(N).i(r).i(M).f(1.f).f(1.f).i(0);
    launch(gk, gx(r), gx(N), 2, smem, a);
  }
  // bwd 4: dA += Uᵀ·X
  {
    Args a;
    a.ptr(dA).i(0).i(K).ptr(U).i(r).i(1).ptr(X).i(K).i(0).null().i(0).null().i(0).i(0).i(0).null().i(0).null()
        .i(0).null().i(0).i(0).i(r).i(K).i(M).f(1.f).f(1.f).i(0);
    launch(gk, gx(K), gx(r), 1, smem, a);
  }
  // float64 reference from the same (rounded) inputs.
  std::vector<double> t(M * r), y(M * N), u(M * r), dxr(M * K), dar(r * K), dbr(N * r);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < r; j++) {
      double acc = 0;
      for (int q = 0; q < K; q++) acc += (double)x[i * K + q] * am[j * K + q];
      t[i * r + j] = s * acc;
    }
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double acc = bi[j];
      for (int q = 0; q < K; q++) acc += (double)x[i * K + q] * w[j * K + q];
      for (int q = 0; q < r; q++) acc += t[i * r + q] * bm_[j * r + q];
      y[i * N + j] = acc;
    }
  for (int i = 0; i < M; i++)
    for (int j = 0; j < r; j++) {
      double acc = 0;
      for (int q = 0; q < N; q++) acc += (double)dy[i * N + q] * bm_[q * r + j];
      u[i * r + j] = s * acc;
    }
  for (int i = 0; i < M; i++)
    for (int j = 0; j < K; j++) {
      double acc = dx0[i * K + j];
      for (int q = 0; q < N; q++) acc += (double)dy[i * N + q] * w[q * K + j];
      for (int q = 0; q < r; q++) acc += u[i * r + q] * am[q * K + j];
      dxr[i * K + j] = acc;
    }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < r; j++) {
      double acc = db0[i * r + j];
      for (int q = 0; q < M; q++) acc += (double)dy[q * N + i] * t[q * r + j];
      dbr[i * r + j] = acc;
    }
  for (int i = 0; i < r; i++)
    for (int j = 0; j < K; j++) {
      double acc = da0[i * K + j];
      for (int q = 0; q < M; q++) acc += u[q * r + i] * x[q * K + j];
      dar[i * K + j] = acc;
    }
  char nm[128];
  std::snprintf(nm, sizeof nm, "lora %s M%d K%d N%d r%d", bf ? "bf16" : "f32", M, K, N, r);
  double tol = bf ? 1e-2 : 1e-5;
  expect_close(std::string(nm) + " Y", Y.download(), y, tol);
  expect_close(std::string(nm) + " dX", dX.download(), dxr, tol);
  expect_close(std::string(nm) + " dA", dA.download(), dar, tol);
  expect_close(std::string(nm) + " dB", dB.download(), dbr, tol);
}

void adapter_test(bool bf, int M, int Dm, int r, int act) {
  int dt = bf ? 1 : 0;
  const char* gk = bf ? "gt_gemm_bf16" : "gt_gemm_f32";
  int bm = bf ? GT_GEMM_BF16_TILE : GT_GEMM_F32_TILE;
  unsigned smem = bf ? GT_GEMM_BF16_SMEM : 0;
  auto gx = [&](int n) { return (unsigned)((n + bm - 1) / bm); };
  Buf X(M * Dm, dt), Wd(r * Dm, dt), bd(r, dt), Wu(Dm * r, dt), bu(Dm, dt), Z(M * r, dt), H(M * r, dt), Y(M * Dm, dt);
  Buf dY(M * Dm, dt), dZ(M * r, dt), dX(M * Dm, dt);
  auto x = X.upload(randn(M * Dm)), wd = Wd.upload(randn(r * Dm, 0.2f)), bdv = bd.upload(randn(r)),
       wu = Wu.upload(randn(Dm * r, 0.2f)), buv = bu.upload(randn(Dm));
  auto dy = dY.upload(randn(M * Dm));
  auto dx0 = dX.upload(randn(M * Dm));
  Z.poison();
  H.poison();
  Y.poison();
  dZ.poison();
  {
    Args a;  // H = act(X·Wdᵀ + bd), Z saved
    a.ptr(H).i(dt).i(r).ptr(X).i(Dm).i(0).ptr(Wd).i(Dm).i(1).null().i(0).null().i(0).i(0).i(0).ptr(bd).i(dt).null()
        .i(0).ptr(Z).i(r).i(1).i(M).i(r).i(Dm).f(1.f).f(0.f).i(act);
    launch(gk, gx(r), gx(M), 1, smem, a);
  }
  {
    Args a;  // Y = X + H·Wuᵀ + bu
    a.ptr(Y).i(dt).i(Dm).ptr(H).i(r).i(0).ptr(Wu).i(r).i(1).null().i(0).null().i(0).i(0).i(0).ptr(bu).i(dt).ptr(X)
        .i(Dm).null().i(0).i(0).i(M).i(Dm).i(r).f(1.f).f(0.f).i(0);
    launch(gk, gx(Dm), gx(M), 1, smem, a);
  }
  {
    Args a;  // dZ = (dY·Wu) ⊙ act'(Z)
    a.ptr(dZ).i(dt).i(r).ptr(dY).i(Dm).i(0).ptr(Wu).i(r).i(0).null().i(0).null().i(0).i(0).i(0).null().i(0).null()
        .i(0).ptr(Z).i(r).i(2).i(M).i(r).i(Dm).f(1.f).f(0.f).i(act);
    launch(gk, gx(r), gx(M), 1, smem, a);
  }
  {
    Args a;  // dX += dY + dZ·Wd
    a.ptr(dX).i(dt).i(Dm).ptr(dZ).i(r).i(0).ptr(Wd).i(Dm).i(0).null().i(0).null().i(0).i(0).i(0).null().i(0).ptr(dY)
        .i(Dm).null().i(0).i(0).i(M).i(Dm).i(r).f(1.f).f(1.f).i(0);
    launch(gk, gx(Dm), gx(M), 1, smem, a);
  }
  std::vector<double> z(M * r), h(M * r), y(M * Dm), dz(M * r), dxr(M * Dm);
  auto zq = Z.download();  // act' uses the stored pre-activation, as the kernels do
  for (int i = 0; i < M; i++)
    for (int j = 0; j < r; j++) {
      double acc = bdv[j];
      for (int q = 0; q < Dm; q++) acc += (double)x[i * Dm + q] * wd[j * Dm + q];
      z[i * r + j] = acc;
      h[i * r + j] = act_f(acc, act);
    }
  auto hq = H.download();
  for (int i = 0; i < M; i++)
    for (int j = 0; j < Dm; j++) {
      double acc = x[i * Dm + j] + buv[j];
      for (int q = 0; q < r; q++) acc += (double)hq[i * r + q] * wu[j * r + q];
      y[i * Dm + j] = acc;
    }
  for (int i = 0; i < M; i++)
    for (int j = 0; j < r; j++) {
      double acc = 0;
      for (int q = 0; q < Dm; q++) acc += (double)dy[i * Dm + q] * wu[q * r + j];
      dz[i * r + j] = acc * act_g(zq[i * r + j], act);
    }
  auto dzq = dZ.download();
  for (int i = 0; i < M; i++)
    for (int j = 0; j < Dm; j++) {
      double acc = dx0[i * Dm + j] + dy[i * Dm + j];
      for (int q = 0; q < r; q++) acc += (double)dzq[i * r + q] * wd[q * Dm + j];
      dxr[i * Dm + j] = acc;
    }
  char nm[128];
  std::snprintf(nm, sizeof nm, "adapter %s M%d D%d r%d act%d", bf ? "bf16" : "f32", M, Dm, r, act);
  double tol = bf ? 1e-2 : 1e-5;
  expect_close(std::string(nm) + " Z", zq, z, tol);
  expect_close(std::string(nm) + " H", hq, h, tol);
  expect_close(std::string(nm) + " Y", Y.download(), y, tol);
  expect_close(std::string(nm) + " dZ", dzq, dz, tol);
  expect_close(std::string(nm) + " dX", dX.download(), dxr, tol);
}

// ------------------------- elementwise and reductions -------------------------
using Ref = std::function<double(size_t)>;

void elementwise_tests() {
  for (int dt : {0, 1}) {
    double tol = dt ? 1e-2 : 1e-5;
    for (int n : {1, 255, 1000, 70001}) {
      std::string sfx = std::string(dt ? " bf16" : " f32") + " n=" + std::to_string(n);
      Buf a(n, dt), b(n, dt), d(n, dt), f32(n, 0);
      auto av = a.upload(randn(n)), bv = b.upload(randn(n));
      auto run = [&](const char* name, Args& args, const Ref& ref, const Buf& out) {
        launch(name, ew_grid(n), 1, 1, 0, args);
        std::vector<double> r(n);
        for (int i = 0; i < n; i++) r[i] = ref(i);
        expect_close(name + sfx, out.download(), r, tol);
      };
      {
        d.poison();
        Args x;
        x.ptr(d).i(dt).i(n).f(1.25f);
        run("gt_fill", x, [](size_t) { return 1.25; }, d);
      }
      {
        d.poison();
        Args x;
        x.ptr(d).i(dt).ptr(a).i(dt).ptr(b).i(dt).i(n);
        run("gt_add", x, [&](size_t i) { return (double)av[i] + bv[i]; }, d);
      }
      {
        d.poison();
        Args x;
        x.ptr(d).i(dt).ptr(a).i(dt).ptr(b).i(dt).i(n);
        run("gt_mul", x, [&](size_t i) { return (double)av[i] * bv[i]; }, d);
      }
      {
        auto d0 = d.upload(randn(n));
        Args x;
        x.ptr(d).i(dt).ptr(a).i(dt).i(n).f(-0.75f);
        run("gt_axpy", x, [&](size_t i) { return d0[i] - 0.75 * av[i]; }, d);
      }
      {
        auto d0 = d.upload(randn(n));
        Args x;
        x.ptr(d).i(dt).i(n).f(3.f);
        run("gt_scale", x, [&](size_t i) { return 3.0 * d0[i]; }, d);
      }
      for (float p : {0.f, 0.25f}) {
        d.poison();
        const unsigned long long seed = 0x0123456789ABCDEFull + n;
        const unsigned thr = (unsigned)std::lround((double)p * (1 << 24));
        Args x;
        x.ptr(d).i(dt).ptr(a).i(dt).i(n).i((int)(unsigned)seed).i((int)(unsigned)(seed >> 32)).i((int)thr).f(1.f / (1.f - p));
        run("gt_dropout", x, [&](size_t i) { return ref_dropout_keep(seed, i, thr) ? av[i] / (1.0 - p) : 0.0; }, d);
      }
      for (int act = 0; act <= 6; act++) {
        d.poison();
        Args x;
        x.ptr(d).i(dt).ptr(a).i(dt).i(n).i(act);
        run("gt_activation", x, [&](size_t i) { return act_f(av[i], act); }, d);
        auto d0 = d.upload(randn(n));
        Args y;
        y.ptr(d).i(dt).ptr(b).i(dt).ptr(a).i(dt).i(n).i(act);
        run("gt_activation_backward", y, [&](size_t i) { return d0[i] + bv[i] * act_g(av[i], act); }, d);
      }
      for (int act : {2, 3}) {  // gated activations: SwiGLU (silu) and GeGLU (gelu_tanh)
        std::string k = act == 2 ? "gt_swiglu" : "gt_geglu";
        d.poison();
        Args x;
        x.ptr(d).i(dt).ptr(a).i(dt).ptr(b).i(dt).i(n);
        run(k.c_str(), x, [&](size_t i) { return act_f(av[i], act) * bv[i]; }, d);
        Buf dg(n, dt), du(n, dt);
        auto g0 = dg.upload(randn(n)), u0 = du.upload(randn(n));
        auto dov = d.upload(randn(n));
        Args y;
        y.ptr(dg).i(dt).ptr(du).i(dt).ptr(d).i(dt).ptr(a).i(dt).ptr(b).i(dt).i(n);
        launch((k + "_backward").c_str(), ew_grid(n), 1, 1, 0, y);
        std::vector<double> rg(n), ru(n);
        for (int i = 0; i < n; i++) {
          rg[i] = g0[i] + dov[i] * bv[i] * act_g(av[i], act);
          ru[i] = u0[i] + dov[i] * act_f(av[i], act);
        }
        expect_close(k + "_backward dgate" + sfx, dg.download(), rg, tol);
        expect_close(k + "_backward dup" + sfx, du.download(), ru, tol);
      }
      {  // conversion through copy_block: f32 -> dt
        f32.upload(randn(n));
        auto src = f32.download();
        d.poison();
        Args x;
        x.ptr(d).i(dt).i(n).ptr(f32).i(0).i(n).i(1).i(n).i(0);
        run("gt_copy_block", x, [&](size_t i) { return (double)src[i]; }, d);
      }
      {
        Buf ss(1, 0);
        ss.upload({0.5f});
        Args x;
        x.ptr(ss).ptr(a).i(dt).i(n);
        launch("gt_sum_squares", ew_grid(n), 1, 1, 0, x);
        double s = 0.5;
        for (int i = 0; i < n; i++) s += (double)av[i] * av[i];
        expect_close("gt_sum_squares" + sfx, ss.download(), {s}, 1e-5);
      }
      {  // AdamW (state float32, param dt)
        Buf p(n, dt), m(n, 0), v(n, 0);
        auto p0 = p.upload(randn(n)), m0 = m.upload(randn(n, 0.1f));
        auto vr = randn(n, 0.1f);
        for (auto& q : vr) q = q * q;
        auto v0 = v.upload(vr);
        float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
        int step = 3;
        double bc1 = 1 - std::pow(0.9, step), bc2 = 1 - std::pow(0.999, step);
        Args x;
        x.ptr(p).i(dt).ptr(a).i(dt).ptr(m).i(0).ptr(v).i(0).i(n).f(lr).f(b1).f(b2).f(eps).f(wd).f((float)bc1).f(
            (float)bc2);
        launch("gt_adamw", ew_grid(n), 1, 1, 0, x);
        std::vector<double> rp(n);
        for (int i = 0; i < n; i++) {
          double g = av[i], pp = p0[i] * (1 - (double)lr * wd);
          double mi = b1 * (double)m0[i] + (1 - (double)b1) * g, vi = b2 * (double)v0[i] + (1 - (double)b2) * g * g;
          rp[i] = pp - lr / bc1 * mi / (std::sqrt(vi) / std::sqrt(bc2) + eps);
        }
        expect_close("gt_adamw" + sfx, p.download(), rp, tol);
      }
    }
    // Row-structured kernels.
    for (auto rc : std::vector<std::pair<int, int>>{{1, 1}, {3, 7}, {37, 300}, {64, 1000}}) {
      int rows = rc.first, cols = rc.second, n = rows * cols;
      std::string sfx = std::string(dt ? " bf16" : " f32") + " " + std::to_string(rows) + "x" + std::to_string(cols);
      Buf x(n, dt), w(cols, dt), bb(cols, dt), out(n, dt), g(n, dt);
      auto xv = x.upload(randn(n)), wv = w.upload(randn(cols)), bv = bb.upload(randn(cols)), gv = g.upload(randn(n));
      {
        out.poison();
        Args a;
        a.ptr(out).i(dt).ptr(x).i(dt).ptr(w).i(dt).i(n).i(cols);
        launch("gt_mul_cols", ew_grid(n), 1, 1, 0, a);
        std::vector<double> r(n);
        for (int i = 0; i < n; i++) r[i] = (double)xv[i] * wv[i % cols];
        expect_close("gt_mul_cols" + sfx, out.download(), r, tol);
      }
      {
        auto o0 = out.upload(randn(n));
        Args a;
        a.ptr(out).i(dt).ptr(bb).i(dt).i(n).i(cols);
        launch("gt_add_bias", ew_grid(n), 1, 1, 0, a);
        std::vector<double> r(n);
        for (int i = 0; i < n; i++) r[i] = (double)o0[i] + bv[i % cols];
        expect_close("gt_add_bias" + sfx, out.download(), r, tol);
      }
      {
        Buf dst(cols, 0);
        auto d0 = dst.upload(randn(cols));
        Args a;
        a.ptr(dst).i(0).ptr(x).i(dt).i(rows).i(cols);
        launch("gt_sum_rows", (cols + GT_COLS_PER_BLOCK - 1) / GT_COLS_PER_BLOCK, 1, 1, 0, a);
        std::vector<double> r(cols);
        for (int j = 0; j < cols; j++) {
          r[j] = d0[j];
          for (int i = 0; i < rows; i++) r[j] += xv[i * cols + j];
        }
        expect_close("gt_sum_rows" + sfx, dst.download(), r, 1e-5);
      }
      {
        Buf dst(rows, 0);
        dst.poison();
        Args a;
        a.ptr(dst).i(0).ptr(x).i(dt).i(rows).i(cols);
        launch("gt_row_sum_squares", rows, 1, 1, 0, a);
        std::vector<double> r(rows, 0);
        for (int i = 0; i < n; i++) r[i / cols] += (double)xv[i] * xv[i];
        expect_close("gt_row_sum_squares" + sfx, dst.download(), r, 1e-5);
      }
      {  // RMSNorm forward and backward
        Buf rstd(rows, 0), dx(n, dt), dw(cols, dt);
        out.poison();
        rstd.poison();
        float eps = 1e-5f;
        Args a;
        a.ptr(out).i(dt).ptr(rstd).ptr(x).i(dt).ptr(w).i(dt).i(rows).i(cols).f(eps);
        launch("gt_rmsnorm", rows, 1, 1, 0, a);
        auto dx0 = dx.upload(randn(n));
        auto dw0 = dw.upload(randn(cols));
        Args b;
        b.ptr(dx).i(dt).ptr(dw).i(dt).ptr(g).i(dt).ptr(x).i(dt).ptr(w).i(dt).ptr(rstd).i(rows).i(cols);
        launch("gt_rmsnorm_backward", rows, 1, 1, 0, b);
        std::vector<double> ro(n), rr(rows), rdx(n), rdw(cols);
        for (int j = 0; j < cols; j++) rdw[j] = dw0[j];
        for (int i = 0; i < rows; i++) {
          double ss = 0, dot = 0;
          for (int j = 0; j < cols; j++) ss += (double)xv[i * cols + j] * xv[i * cols + j];
          double r = 1 / std::sqrt(ss / cols + eps);
          rr[i] = r;
          for (int j = 0; j < cols; j++) {
            ro[i * cols + j] = xv[i * cols + j] * r * wv[j];
            dot += (double)gv[i * cols + j] * wv[j] * xv[i * cols + j];
          }
          for (int j = 0; j < cols; j++) {
            rdx[i * cols + j] = dx0[i * cols + j] + r * wv[j] * gv[i * cols + j] - xv[i * cols + j] * r * r * r * dot / cols;
            rdw[j] += (double)gv[i * cols + j] * xv[i * cols + j] * r;
          }
        }
        expect_close("gt_rmsnorm out" + sfx, out.download(), ro, tol);
        expect_close("gt_rmsnorm rstd" + sfx, rstd.download(), rr, tol);
        expect_close("gt_rmsnorm_backward dx" + sfx, dx.download(), rdx, tol);
        expect_close("gt_rmsnorm_backward dw" + sfx, dw.download(), rdw, tol);
      }
      {  // LayerNorm forward and backward
        Buf mean(rows, 0), rstd(rows, 0), dx(n, dt), dw(cols, 0), db(cols, dt);
        out.poison();
        float eps = 1e-5f;
        Args a;
        a.ptr(out).i(dt).ptr(mean).ptr(rstd).ptr(x).i(dt).ptr(w).i(dt).ptr(bb).i(dt).i(rows).i(cols).f(eps);
        launch("gt_layernorm", rows, 1, 1, 0, a);
        auto dx0 = dx.upload(randn(n));
        auto dw0 = dw.upload(randn(cols)), db0 = db.upload(randn(cols));
        Args b;
        b.ptr(dx).i(dt).ptr(dw).i(0).ptr(db).i(dt).ptr(g).i(dt).ptr(x).i(dt).ptr(w).i(dt).ptr(mean).ptr(rstd).i(rows).i(
            cols);
        launch("gt_layernorm_backward", rows, 1, 1, 0, b);
        std::vector<double> ro(n), rdx(n), rdw(cols), rdb(cols);
        for (int j = 0; j < cols; j++) rdw[j] = dw0[j], rdb[j] = db0[j];
        for (int i = 0; i < rows; i++) {
          double mu = 0, var = 0;
          for (int j = 0; j < cols; j++) mu += xv[i * cols + j];
          mu /= cols;
          for (int j = 0; j < cols; j++) var += (xv[i * cols + j] - mu) * (xv[i * cols + j] - mu);
          double r = 1 / std::sqrt(var / cols + eps), sa = 0, sc = 0;
          for (int j = 0; j < cols; j++) {
            double xh = (xv[i * cols + j] - mu) * r, gh = (double)gv[i * cols + j] * wv[j];
            ro[i * cols + j] = xh * wv[j] + bv[j];
            sa += gh;
            sc += gh * xh;
          }
          sa /= cols;
          sc /= cols;
          for (int j = 0; j < cols; j++) {
            double xh = (xv[i * cols + j] - mu) * r, gh = (double)gv[i * cols + j] * wv[j];
            rdx[i * cols + j] = dx0[i * cols + j] + r * (gh - sa - xh * sc);
            rdw[j] += gv[i * cols + j] * xh;
            rdb[j] += gv[i * cols + j];
          }
        }
        // cols == 1 makes x̂ = 0 and the row's gradient vanish; tolerance still applies.
        expect_close("gt_layernorm out" + sfx, out.download(), ro, tol);
        expect_close("gt_layernorm_backward dx" + sfx, dx.download(), rdx, cols == 1 ? 1e-2 : tol);
        expect_close("gt_layernorm_backward dw" + sfx, dw.download(), rdw, tol);
        expect_close("gt_layernorm_backward db" + sfx, db.download(), rdb, tol);
      }
      for (float cap : {0.f, 3.f}) {  // cross-entropy, in place (dlogits aliases logits); soft-capped logits
        std::string what = std::string("gt_cross_entropy") + (cap > 0 ? " soft_cap" : "");
        Buf lg(n, dt), losses(rows, 0);
        auto lv = lg.upload(randn(n, 2.f));
        std::vector<int> labels(rows);
        for (int i = 0; i < rows; i++) labels[i] = (i % 5 == 3) ? -100 : (int)(rng() % cols);
        CUdeviceptr lab;
        check_cu(D.cuMemAlloc_v2(&lab, rows * 4), "alloc");
        check_cu(D.cuMemcpyHtoD_v2(lab, labels.data(), rows * 4), "upload");
        losses.poison();
        Args a;
        a.ptr(losses).ptr(lg).i(dt).ptr(lg).i(dt).ptr(lab).i(rows).i(cols).f(0.5f).f(cap);
        launch("gt_cross_entropy", rows, 1, 1, 0, a);
        std::vector<double> rl(rows), rg(n);
        for (int i = 0; i < rows; i++) {
          double mx = -1e30, s = 0;
          for (int j = 0; j < cols; j++) mx = std::max(mx, (double)lv[i * cols + j]);
          for (int j = 0; j < cols; j++) s += std::exp(lv[i * cols + j] - mx);
          double lse = std::log(s) + mx;
          bool ign = labels[i] < 0;
          rl[i] = ign ? 0 : lse - lv[i * cols + labels[i]];
          for (int j = 0; j < cols; j++) {
            double y = lv[i * cols + j], slope = cap > 0 ? 1 - (y / cap) * (y / cap) : 1;
            rg[i * cols + j] = ign ? 0 : 0.5 * (std::exp(y - lse) - (j == labels[i] ? 1 : 0)) * slope;
          }
        }
        expect_close(what + " loss" + sfx, losses.download(), rl, tol);
        expect_close(what + " dlogits" + sfx, lg.download(), rg, tol);
        D.cuMemFree_v2(lab);
      }
      {  // embedding forward/backward (ids include an out-of-range one)
        int vocab = cols + 3, dim = 5;
        Buf table(vocab * dim, dt), emb(rows * dim, dt), dtable(vocab * dim, 0);
        auto tv = table.upload(randn(vocab * dim));
        std::vector<int> ids(rows);
        for (int i = 0; i < rows; i++) ids[i] = (i == 2) ? vocab : (int)(rng() % vocab);
        CUdeviceptr idp;
        check_cu(D.cuMemAlloc_v2(&idp, rows * 4), "alloc");
        check_cu(D.cuMemcpyHtoD_v2(idp, ids.data(), rows * 4), "upload");
        emb.poison();
        Args a;
        a.ptr(emb).i(dt).ptr(table).i(dt).ptr(idp).i(rows * dim).i(dim).i(vocab);
        launch("gt_embedding", ew_grid(rows * dim), 1, 1, 0, a);
        auto dtv = dtable.upload(randn(vocab * dim));
        Buf go(rows * dim, dt);
        auto gov = go.upload(randn(rows * dim));
        Args b;
        b.ptr(dtable).i(0).ptr(go).i(dt).ptr(idp).i(rows * dim).i(dim).i(vocab);
        launch("gt_embedding_backward", ew_grid(rows * dim), 1, 1, 0, b);
        std::vector<double> re(rows * dim), rt(dtv.begin(), dtv.end());
        for (int i = 0; i < rows; i++)
          for (int j = 0; j < dim; j++) {
            bool ok = ids[i] >= 0 && ids[i] < vocab;
            re[i * dim + j] = ok ? tv[ids[i] * dim + j] : 0;
            if (ok) rt[ids[i] * dim + j] += gov[i * dim + j];
          }
        expect_close("gt_embedding" + sfx, emb.download(), re, tol);
        expect_close("gt_embedding_backward" + sfx, dtable.download(), rt, 1e-5);
        D.cuMemFree_v2(idp);
      }
    }
    {  // RoPE, both layouts, forward and inverse
      int B = 2, T = 5, H = 3, Dh = 8, maxPos = 16, off = 4;
      int n = B * T * H * Dh;
      Buf x(n, dt), cs(maxPos * Dh / 2, 0), sn(maxPos * Dh / 2, 0);
      std::vector<float> cv(maxPos * Dh / 2), sv(maxPos * Dh / 2);
      for (int p = 0; p < maxPos; p++)
        for (int i = 0; i < Dh / 2; i++) {
          double ang = p * std::pow(10000.0, -2.0 * i / Dh);
          cv[p * Dh / 2 + i] = (float)std::cos(ang);
          sv[p * Dh / 2 + i] = (float)std::sin(ang);
        }
      cs.upload(cv);
      sn.upload(sv);
      for (int inter = 0; inter < 2; inter++)
        for (int inv = 0; inv < 2; inv++) {
          auto xv = x.upload(randn(n));
          Args a;
          a.ptr(x).i(dt).ptr(cs).ptr(sn).i(0).i(n / 2).i(T).i(H).i(Dh).i(off).i(inter).i(inv);
          launch("gt_rope", ew_grid(n / 2), 1, 1, 0, a);
          std::vector<double> r(xv.begin(), xv.end());
          for (int v = 0; v < B * T * H; v++) {
            int t = (v / H) % T, pos = off + t;
            for (int i = 0; i < Dh / 2; i++) {
              int ia = inter ? v * Dh + 2 * i : v * Dh + i, ib = inter ? ia + 1 : ia + Dh / 2;
              double c = cv[pos * Dh / 2 + i], s = (inv ? -1 : 1) * sv[pos * Dh / 2 + i];
              r[ia] = xv[ia] * c - xv[ib] * s;
              r[ib] = xv[ib] * c + xv[ia] * s;
            }
          }
          expect_close(std::string("gt_rope inter") + std::to_string(inter) + " inv" + std::to_string(inv) +
                           (dt ? " bf16" : " f32"),
                       x.download(), r, tol);
        }
    }
    {  // copy_block with strides and accumulate
      int rows = 7, cols = 9, ss = 13, ds = 11;
      Buf src(rows * ss, 0), dst(rows * ds, dt);
      auto sv = src.upload(randn(rows * ss));
      auto d0 = dst.upload(randn(rows * ds));
      Args a;
      a.ptr(dst).i(dt).i(ds).ptr(src).i(0).i(ss).i(rows).i(cols).i(1);
      launch("gt_copy_block", ew_grid(rows * cols), 1, 1, 0, a);
      std::vector<double> r(d0.begin(), d0.end());
      for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) r[i * ds + j] += sv[i * ss + j];
      expect_close(std::string("gt_copy_block strided accumulate") + (dt ? " bf16" : " f32"), dst.download(), r, tol);
    }
  }
}

}  // namespace

// ---------------------------- quantized GEMM ----------------------------
// gemm_q_test runs gt_gemm_q on a random [rows, cols] weight of random
// codes (bits 4 or 8) with a plain or double-quantized absmax, as
// c = alpha·a·op(W) + beta·c, against the documented dequantization
// (bf16(code[q]·absmax), float32 products and sums) in float64.
void gemm_q_test(int m, int rows, int cols, int bits, bool nested, bool trans_w, int c_dt, float beta) {
  const int block = bits == 4 ? 64 : cols, nested_block = 256;
  const long long nw = (long long)rows * cols, blocks = (nw + block - 1) / block;
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> codes((bits == 4 ? (nw + 1) / 2 : nw) + 4), qabs(blocks + 4);
  for (auto& b : codes) b = (uint8_t)byte(rng);
  for (auto& b : qabs) b = (uint8_t)byte(rng);
  std::vector<float> code = randn(1 << bits), nested_code = randn(256);
  std::vector<float> absmax = randn(blocks), nested_abs = randn((blocks + nested_block - 1) / nested_block);
  const float offset = 0.37f;
  auto absmax_of = [&](long long b) {
    if (!nested) return absmax[b];
    volatile float p = nested_code[qabs[b]] * nested_abs[b / nested_block];
    volatile float s = p + offset;
    return (float)s;
  };
  std::vector<double> w(nw);
  for (long long i = 0; i < nw; i++) {
    int q = bits == 8 ? codes[i] : ((i & 1) ? codes[i >> 1] & 15 : codes[i >> 1] >> 4);
    volatile float v = code[q] * absmax_of(i / block);
    w[i] = bf2f(f2bf(v));
  }
  auto upload_bytes = [](const std::vector<uint8_t>& v) {
    Buf b((v.size() + 3) / 4, 0);
    check_cu(D.cuMemcpyHtoD_v2(b.p, v.data(), v.size()), "upload bytes");
    return b;
  };
  Buf Codes = upload_bytes(codes), QAbs = upload_bytes(qabs);
  Buf Code(code.size(), 0), NCode(256, 0), Abs(absmax.size(), 0), NAbs(nested_abs.size(), 0);
  Code.upload(code), NCode.upload(nested_code), Abs.upload(absmax), NAbs.upload(nested_abs);
  const int k = trans_w ? cols : rows, n = trans_w ? rows : cols;
  Buf A((size_t)m * k, 1), C((size_t)m * n, c_dt);
  auto a = A.upload(randn((size_t)m * k));
  std::vector<float> c0 = randn((size_t)m * n);
  if (beta != 0.f) c0 = C.upload(c0);
  else C.poison();
  const float alpha = -0.75f;
  std::vector<double> ref((size_t)m * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int q = 0; q < k; q++) s += (double)a[(size_t)i * k + q] * (trans_w ? w[(size_t)j * cols + q] : w[(size_t)q * cols + j]);
      ref[(size_t)i * n + j] = alpha * s + (beta != 0.f ? beta * c0[(size_t)i * n + j] : 0.0);
    }
  Args args;
  args.ptr(C).i(c_dt).i(n).ptr(A).i(k).ptr(Codes).ptr(Code);
  if (nested) args.null().ptr(QAbs).ptr(NCode).ptr(NAbs);
  else args.ptr(Abs).null().null().null();
  args.f(offset).i(bits).i(block).i(nested_block).i(cols).i(trans_w).i(m).i(n).i(k).f(alpha).f(beta);
  launch("gt_gemm_q", (n + GT_GEMM_BF16_TILE - 1) / GT_GEMM_BF16_TILE, (m + GT_GEMM_BF16_TILE - 1) / GT_GEMM_BF16_TILE, 1,
         GT_GEMM_BF16_SMEM, args);
  char name[160];
  std::snprintf(name, sizeof name, "gemm_q m%d W[%d,%d] bits%d nested%d trans_w%d c_dt%d beta%.0f", m, rows, cols, bits,
                nested, trans_w, c_dt, beta);
  expect_close(name, C.download(), ref, 1e-2);
}

void gemm_q_tests() {
  for (int bits : {4, 8})
    for (bool nested : {false, true})
      for (bool tw : {true, false}) {
        gemm_q_test(37, 70, 45, bits, nested, tw, 0, 0.f);
        gemm_q_test(130, 96, 136, bits, nested, tw, 1, 1.f);
      }
  gemm_q_test(9, 300, 200, 4, true, true, 0, 1.f);  // several nested blocks
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "libcuda.so.1";
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "FATAL: dlopen %s: %s\n", path, dlerror());
    return 2;
  }
  load_sym(lib, D.cuInit, "cuInit");
  load_sym(lib, D.cuDeviceGet, "cuDeviceGet");
  load_sym(lib, D.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  load_sym(lib, D.cuCtxSetCurrent, "cuCtxSetCurrent");
  load_sym(lib, D.cuMemAlloc_v2, "cuMemAlloc_v2");
  load_sym(lib, D.cuMemFree_v2, "cuMemFree_v2");
  load_sym(lib, D.cuMemcpyHtoD_v2, "cuMemcpyHtoD_v2");
  load_sym(lib, D.cuMemcpyDtoH_v2, "cuMemcpyDtoH_v2");
  load_sym(lib, D.cuMemsetD32_v2, "cuMemsetD32_v2");
  load_sym(lib, D.cuModuleLoadData, "cuModuleLoadData");
  load_sym(lib, D.cuModuleGetFunction, "cuModuleGetFunction");
  load_sym(lib, D.cuFuncSetAttribute, "cuFuncSetAttribute");
  load_sym(lib, D.cuLaunchKernel, "cuLaunchKernel");
  load_sym(lib, D.cuCtxSynchronize, "cuCtxSynchronize");
  load_sym(lib, D.cuGetErrorName, "cuGetErrorName");
  if (ref_splitmix64(0) != 0xE220A8397B1DCDAFull) {
    std::fprintf(stderr, "FATAL: ref_splitmix64 is not SplitMix64\n");
    return 2;
  }
  check_cu(D.cuInit(0), "cuInit");
  int dev;
  check_cu(D.cuDeviceGet(&dev, 0), "cuDeviceGet");
  void* ctx;
  check_cu(D.cuDevicePrimaryCtxRetain(&ctx, dev), "ctx");
  check_cu(D.cuCtxSetCurrent(ctx), "ctx");
  // The fatbin for a real driver; any bytes for the emulator.
  std::vector<char> image;
  if (const char* fb = std::getenv("SELFTEST_FATBIN")) {
    FILE* f = std::fopen(fb, "rb");
    if (!f) {
      std::fprintf(stderr, "FATAL: open %s\n", fb);
      return 2;
    }
    char buf[65536];
    size_t k;
    while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) image.insert(image.end(), buf, buf + k);
    std::fclose(f);
  } else {
    image.assign(16, '\0');
  }
  check_cu(D.cuModuleLoadData(&g_module, image.data()), "cuModuleLoadData");

  // Fresh inputs on every run; the seed is printed so a failure can be replayed.
  unsigned long long seed = std::getenv("SELFTEST_SEED") ? std::strtoull(std::getenv("SELFTEST_SEED"), nullptr, 10)
                                                          : ((unsigned long long)std::random_device{}() << 32) ^
                                                                std::random_device{}();
  rng.seed(seed);
  std::printf("selftest: %s, seed %llu (SELFTEST_SEED=%llu replays it)\n", path, seed, seed);
  const char* only = std::getenv("SELFTEST_ONLY");  // "gemm", "lora", "adapter", "ew"
  auto want = [&](const char* s) { return !only || std::strstr(only, s); };
  if (want("ew")) {
    activation_tail_tests();
    elementwise_tests();
  }
  if (want("gemm")) gemm_tests();
  if (want("quant")) gemm_q_tests();
  if (want("lora"))
    for (bool bf : {false, true}) {
      lora_test(bf, 37, 72, 48, 1);
      lora_test(bf, 64, 64, 40, 16);
      lora_test(bf, 50, 33, 130, 7);
      lora_test(bf, 20, 48, 24, 256);
    }
  if (want("adapter"))
    for (bool bf : {false, true}) {
      adapter_test(bf, 37, 48, 8, 2);
      adapter_test(bf, 64, 33, 5, 1);
      adapter_test(bf, 19, 130, 16, 4);
    }
  std::printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
  return g_failures == 0 ? 0 : 1;
}

// runtime.cpp: the execution engine of the CPU emulator: fibers for GPU
// threads, block and warp barriers, warp data exchange, deferred cp.async
// copies, and a small pool of host threads that run a grid's blocks.
//
// Why fibers: __syncthreads needs every thread of a block to be suspended
// mid-kernel, but blocks of 256 OS threads would be slow to create and to
// switch. A fiber switch here is a handful of register moves (x86-64
// assembly below; ucontext elsewhere), so a block with thousands of
// barriers still runs in milliseconds.
#include "runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace gtemu {

thread_local FiberView* tl_fiber = nullptr;
thread_local LaunchView* tl_launch = nullptr;

namespace {

constexpr size_t kStackSize = 128 * 1024;  // per fiber; kernels use little stack
constexpr size_t kGuard = 4096;             // one PROT_NONE page under each stack
constexpr size_t kSlot = 64;                // bytes per lane in the warp exchange

// ---- context switching ----
#if defined(__x86_64__)
extern "C" void gtemu_ctx_switch(void** save_sp, void* new_sp);
extern "C" void gtemu_ctx_trampoline();
// gtemu_ctx_switch saves the callee-saved registers of the System V ABI on
// the current stack, stores the stack pointer in *save_sp, and resumes the
// context whose stack pointer is new_sp. The trampoline starts a fresh
// fiber: r12 holds the argument and r13 the entry function, both placed
// there by make_context through the register slots of the initial frame.
asm(R"(
  .text
  .globl gtemu_ctx_switch
  .hidden gtemu_ctx_switch
  .type gtemu_ctx_switch,@function
gtemu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gtemu_ctx_switch,.-gtemu_ctx_switch

  .globl gtemu_ctx_trampoline
  .hidden gtemu_ctx_trampoline
  .type gtemu_ctx_trampoline,@function
gtemu_ctx_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size gtemu_ctx_trampoline,.-gtemu_ctx_trampoline
)");

struct Context {
  void* sp = nullptr;
};
inline void make_context(Context* c, char* stack_lo, size_t size, void (*fn)(void*), void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack_lo) + size) & ~uintptr_t(15);
  // sp ≡ 8 (mod 16) so that, after six pops and the ret into the
  // trampoline, rsp is 16-byte aligned at its call, as the ABI requires.
  void** sp = reinterpret_cast<void**>(top - 72);
  sp[0] = nullptr;                                          // r15
  sp[1] = nullptr;                                          // r14
  sp[2] = reinterpret_cast<void*>(fn);                      // r13
  sp[3] = arg;                                              // r12
  sp[4] = nullptr;                                          // rbx
  sp[5] = nullptr;                                          // rbp
  sp[6] = reinterpret_cast<void*>(&gtemu_ctx_trampoline);  // return address
  c->sp = sp;
}
inline void switch_context(Context* from, Context* to) { gtemu_ctx_switch(&from->sp, to->sp); }
#else
struct Context {
  ucontext_t uc;
};
inline void make_context(Context* c, char* stack_lo, size_t size, void (*fn)(void*), void* arg) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack_lo;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = nullptr;
  uintptr_t a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&c->uc, reinterpret_cast<void (*)()>(fn), 2, (unsigned)(a & 0xffffffffu), (unsigned)(a >> 32));
  // fn receives the two halves; see fiber_entry_split below.
}
inline void switch_context(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
#endif

struct Barrier {
  int arrived = 0;
  unsigned gen = 0;
};

struct Copy {
  void* dst;
  const void* src;
  int bytes;
  int src_bytes;
};

struct Fiber : FiberView {
  Context ctx;
  char* stack_lo = nullptr;
  bool done = false;
  const unsigned* wait_gen_ptr = nullptr;  // blocked while *wait_gen_ptr == wait_gen
  unsigned wait_gen = 0;
  std::vector<Copy> open_group;
  std::deque<std::vector<Copy>> groups;
};

struct KernelFailure {};

// Executor runs blocks on one host thread; it owns that thread's fibers.
struct Executor {
  std::vector<Fiber> fibers;
  char* stacks = nullptr;
  size_t stacks_count = 0;
  Context sched;
  LaunchView lv;
  int nthreads = 0, nwarps = 0;
  Barrier block_bar;
  int live_block = 0;
  std::vector<Barrier> warp_bar;
  std::vector<int> live_warp;
  std::vector<unsigned> warp_mask;
  std::vector<unsigned char> exch;
  uint64_t progress = 0;
  bool failed = false;
  std::string fail_msg;
  const KernelThunk* thunk = nullptr;

  ~Executor() {
    if (stacks) munmap(stacks, stacks_count * (kStackSize + kGuard));
  }

  void ensure_stacks(size_t n) {
    if (n <= stacks_count) return;
    if (stacks) munmap(stacks, stacks_count * (kStackSize + kGuard));
    size_t per = kStackSize + kGuard;
    void* p = mmap(nullptr, n * per, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "gotune emulator: cannot map %zu fiber stacks\n", n);
      std::abort();
    }
    stacks = static_cast<char*>(p);
    stacks_count = n;
    for (size_t i = 0; i < n; i++) mprotect(stacks + i * per, kGuard, PROT_NONE);
  }
};

thread_local Executor* tl_exec = nullptr;

Executor& exec() {
  if (!tl_exec) tl_exec = new Executor();  // lives as long as its thread
  return *tl_exec;
}

inline Fiber* cur() { return static_cast<Fiber*>(tl_fiber); }

void yield_to_scheduler() {
  Executor& ex = *tl_exec;
  switch_context(&cur()->ctx, &ex.sched);
}

void wait_at(Barrier& b, int live) {
  Executor& ex = *tl_exec;
  ex.progress++;
  unsigned g = b.gen;
  if (++b.arrived >= live) {
    b.arrived = 0;
    b.gen++;
    return;
  }
  Fiber* f = cur();
  f->wait_gen_ptr = &b.gen;
  f->wait_gen = g;
  yield_to_scheduler();
}

void release_if_complete(Barrier& b, int live) {
  if (b.arrived > 0 && b.arrived >= live) {
    b.arrived = 0;
    b.gen++;
  }
}

void fiber_body(void* arg) {
  Fiber* f = static_cast<Fiber*>(arg);
  Executor& ex = *tl_exec;
  ex.thunk->fn(ex.thunk->ctx);
  // Thread exit: it no longer takes part in barriers.
  f->done = true;
  ex.progress++;
  ex.live_block--;
  ex.live_warp[f->warp]--;
  release_if_complete(ex.block_bar, ex.live_block);
  release_if_complete(ex.warp_bar[f->warp], ex.live_warp[f->warp]);
  switch_context(&f->ctx, &ex.sched);
  std::abort();  // a finished fiber is never resumed
}

#if !defined(__x86_64__)
void fiber_entry_split(unsigned lo, unsigned hi) {
  fiber_body(reinterpret_cast<void*>((uintptr_t)lo | ((uintptr_t)hi << 32)));
}
#endif

// run_block executes one block of the launch on this host thread.
bool run_block(Executor& ex, dim3 bidx, std::string* err) {
  ex.lv.block_idx = bidx;
  tl_launch = &ex.lv;
  int n = ex.nthreads;
  ex.block_bar = Barrier{};
  ex.live_block = n;
  for (int w = 0; w < ex.nwarps; w++) {
    ex.warp_bar[w] = Barrier{};
    ex.live_warp[w] = std::min(32, n - 32 * w);
  }
  dim3 bd = ex.lv.block_dim;
  for (int i = 0; i < n; i++) {
    Fiber& f = ex.fibers[i];
    f.tid.x = i % bd.x;
    f.tid.y = (i / bd.x) % bd.y;
    f.tid.z = i / (bd.x * bd.y);
    f.lane = i % 32;
    f.warp = i / 32;
    f.done = false;
    f.wait_gen_ptr = nullptr;
    f.open_group.clear();
    f.groups.clear();
    f.stack_lo = ex.stacks + i * (kStackSize + kGuard) + kGuard;
#if defined(__x86_64__)
    make_context(&f.ctx, f.stack_lo, kStackSize, &fiber_body, &f);
#else
    make_context(&f.ctx, f.stack_lo, kStackSize, reinterpret_cast<void (*)(void*)>(&fiber_entry_split), &f);
#endif
  }
  int remaining = n;
  while (remaining > 0) {
    bool ran = false;
    for (int i = 0; i < n; i++) {
      Fiber& f = ex.fibers[i];
      if (f.done) continue;
      if (f.wait_gen_ptr && *f.wait_gen_ptr == f.wait_gen) continue;
      f.wait_gen_ptr = nullptr;
      tl_fiber = &f;
      switch_context(&ex.sched, &f.ctx);
      tl_fiber = nullptr;
      ran = true;
      if (ex.failed) {
        *err = ex.fail_msg;
        return false;
      }
      if (f.done) remaining--;
    }
    if (!ran) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "deadlock in block (%u,%u,%u): %d live threads all wait at barriers that cannot complete "
                    "(divergent __syncthreads/__syncwarp or warp collective)",
                    bidx.x, bidx.y, bidx.z, remaining);
      *err = buf;
      return false;
    }
  }
  return true;
}

// ---- the block pool ----
struct Job {
  const KernelThunk* thunk;
  dim3 grid, block;
  unsigned smem;
  uint64_t nblocks;
  std::atomic<uint64_t> next{0};
  std::atomic<int> active{0};
  std::mutex mu;
  std::string err;
  bool failed = false;
};

bool run_blocks(Job& job) {
  Executor& ex = exec();
  int n = (int)(job.block.x * job.block.y * job.block.z);
  ex.nthreads = n;
  ex.nwarps = (n + 31) / 32;
  if ((int)ex.fibers.size() < n) ex.fibers.resize(n);
  ex.ensure_stacks(n);
  ex.warp_bar.assign(ex.nwarps, Barrier{});
  ex.live_warp.assign(ex.nwarps, 0);
  ex.warp_mask.assign(ex.nwarps, 0);
  for (int w = 0; w < ex.nwarps; w++) {
    int lanes = std::min(32, n - 32 * w);
    ex.warp_mask[w] = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
  }
  ex.exch.assign((size_t)ex.nwarps * 32 * kSlot, 0);
  ex.failed = false;
  ex.fail_msg.clear();
  ex.thunk = job.thunk;
  // Dynamic shared memory: a fresh buffer per host thread per launch,
  // poisoned with 0xFF bytes (a float/bfloat16 NaN) so reading what no
  // thread wrote shows up in results.
  std::vector<unsigned char> dyn((size_t)job.smem + 128, 0xFF);
  unsigned char* dyn_aligned =
      reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(dyn.data()) + 127) & ~uintptr_t(127));
  ex.lv.block_dim = job.block;
  ex.lv.grid_dim = job.grid;
  ex.lv.dyn_smem = dyn_aligned;
  bool ok = true;
  for (;;) {
    uint64_t b = job.next.fetch_add(1);
    if (b >= job.nblocks) break;
    {
      std::lock_guard<std::mutex> l(job.mu);
      if (job.failed) break;
    }
    dim3 bidx;
    bidx.x = (unsigned)(b % job.grid.x);
    bidx.y = (unsigned)((b / job.grid.x) % job.grid.y);
    bidx.z = (unsigned)(b / ((uint64_t)job.grid.x * job.grid.y));
    std::string err;
    if (!run_block(ex, bidx, &err)) {
      std::lock_guard<std::mutex> l(job.mu);
      if (!job.failed) {
        job.failed = true;
        job.err = err;
      }
      ok = false;
      break;
    }
  }
  tl_launch = nullptr;
  return ok;
}

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; i++) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return (int)threads_.size(); }

  // run executes every block of job, on the caller's thread and the workers.
  void run(Job& job) {
    {
      std::lock_guard<std::mutex> l(mu_);
      job_ = &job;
      seq_++;
      pending_ = (int)threads_.size();
    }
    cv_.notify_all();
    run_blocks(job);
    std::unique_lock<std::mutex> l(mu_);
    done_cv_.wait(l, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || seq_ != seen; });
        if (stop_) return;
        seen = seq_;
        job = job_;
      }
      run_blocks(*job);
      {
        std::lock_guard<std::mutex> l(mu_);
        pending_--;
      }
      done_cv_.notify_all();
    }
  }
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  Job* job_ = nullptr;
  uint64_t seq_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

std::mutex launch_mu;  // one grid at a time: launches are synchronous anyway

int pool_workers() {
  // GOTUNE_EMU_THREADS sets the number of host threads running blocks
  // (default: all cores, at most 8). 1 runs everything on the caller.
  const char* e = std::getenv("GOTUNE_EMU_THREADS");
  int n = e ? std::atoi(e) : (int)std::min(8u, std::max(1u, std::thread::hardware_concurrency()));
  if (n < 1) n = 1;
  return n - 1;
}

Pool& pool() {
  // Leaked on purpose: worker threads must not be joined from a static
  // destructor while the Go runtime may still call in.
  static Pool* p = new Pool(pool_workers());
  return *p;
}

}  // namespace

// ---- the API seen by kernels (cuda_emu.h) ----

void syncthreads() {
  Executor& ex = *tl_exec;
  wait_at(ex.block_bar, ex.live_block);
}

void syncwarp() {
  Executor& ex = *tl_exec;
  unsigned w = cur()->warp;
  wait_at(ex.warp_bar[w], ex.live_warp[w]);
}

unsigned warp_live_mask() { return tl_exec->warp_mask[cur()->warp]; }

const unsigned char* warp_exchange(const void* mine, size_t bytes) {
  Executor& ex = *tl_exec;
  Fiber* f = cur();
  unsigned char* base = ex.exch.data() + (size_t)f->warp * 32 * kSlot;
  std::memcpy(base + f->lane * kSlot, mine, bytes);
  syncwarp();
  return base;
}

void warp_exchange_done() { syncwarp(); }

void cp_async_enqueue(void* dst, const void* src, int bytes, int src_bytes) {
  cur()->open_group.push_back(Copy{dst, src, bytes, src_bytes});
}

void cp_async_commit() {
  Fiber* f = cur();
  f->groups.push_back(std::move(f->open_group));
  f->open_group.clear();
}

void cp_async_wait(int keep_groups) {
  Fiber* f = cur();
  while ((int)f->groups.size() > keep_groups) {
    for (const Copy& c : f->groups.front()) {
      int s = std::max(0, std::min(c.src_bytes, c.bytes));
      if (s > 0) std::memcpy(c.dst, c.src, (size_t)s);
      if (s < c.bytes) std::memset(static_cast<char*>(c.dst) + s, 0, (size_t)(c.bytes - s));
    }
    f->groups.pop_front();
  }
}

void fail(const char* what) {
  Executor& ex = *tl_exec;
  ex.failed = true;
  ex.fail_msg = what;
  switch_context(&cur()->ctx, &ex.sched);
  std::abort();
}

// ---- the API seen by the driver (runtime.h) ----

bool launch(const KernelThunk& thunk, dim3 grid, dim3 block, unsigned smem, std::string* err) {
  Job job;
  job.thunk = &thunk;
  job.grid = grid;
  job.block = block;
  job.smem = smem;
  job.nblocks = (uint64_t)grid.x * grid.y * grid.z;
  std::lock_guard<std::mutex> l(launch_mu);
  if (job.nblocks > 1 && pool().workers() > 0) {
    pool().run(job);
  } else {
    run_blocks(job);
  }
  if (job.failed) {
    *err = job.err;
    return false;
  }
  return true;
}

}  // namespace gtemu

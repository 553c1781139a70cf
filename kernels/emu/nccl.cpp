// nccl.cpp: the NCCL subset gotune uses (the list in cuda/nccl.go),
// implemented between processes on one machine so libnccl.so.2 built from
// this file can stand in for NVIDIA's next to the driver emulator.
//
// Device memory of the emulator is host memory in each process, so a
// collective copies each rank's input into that rank's slot of a POSIX
// shared-memory segment (named by the unique id), meets the other ranks at
// a barrier, and reads every slot back. Reductions add the slots in rank
// order, so every rank computes bit-identical results. Streams are
// ignored: like the driver emulator, every call completes before it
// returns.
//
// Failure detection: every rank records its pid in the segment; a rank
// waiting at a barrier checks that its peers are alive (kill(pid, 0), and
// /proc/<pid>/stat for zombies) and gives up after GOTUNE_EMU_NCCL_TIMEOUT_S
// seconds (default 600). The first rank to see a failure marks the
// segment aborted with the reason, which every other rank then reports
// (ncclGetLastError), so no rank waits for a peer that is gone.
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NCCL_API extern "C" __attribute__((visibility("default")))

typedef int ncclResult_t;
typedef int ncclDataType_t;
typedef int ncclRedOp_t;
typedef void* cudaStream_t;

namespace {

// ncclResult_t values (nccl.h).
enum : int {
  kSuccess = 0,
  kUnhandledCudaError = 1,
  kSystemError = 2,
  kInternalError = 3,
  kInvalidArgument = 4,
  kInvalidUsage = 5,
  kRemoteError = 6,
};

// ncclDataType_t values (nccl.h).
enum : int {
  kInt8 = 0,
  kUint8 = 1,
  kInt32 = 2,
  kUint32 = 3,
  kInt64 = 4,
  kUint64 = 5,
  kFloat16 = 6,
  kFloat32 = 7,
  kFloat64 = 8,
  kBfloat16 = 9,
};

// ncclRedOp_t values (nccl.h).
enum : int { kSum = 0, kProd = 1, kMax = 2, kMin = 3, kAvg = 4 };

constexpr int kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
constexpr char kIdMagic[] = "gotune-emu-nccl";
constexpr int kMaxRanks = 64;
constexpr size_t kSlotBytes = size_t(4) << 20;  // per rank, per chunk of a collective
constexpr size_t kHeaderBytes = 4096;
constexpr int kReasonBytes = 512;

struct Header {
  std::atomic<int32_t> nranks;        // set by the first rank to attach
  std::atomic<uint32_t> joined;       // ranks attached so far
  std::atomic<uint32_t> arrived;      // ranks at the current barrier
  std::atomic<uint32_t> generation;   // barrier generation: the futex word
  std::atomic<uint32_t> aborted;      // non-zero once any rank gave up
  std::atomic<int32_t> pids[kMaxRanks];
  char reason[kReasonBytes];          // why the communicator was aborted
};
static_assert(sizeof(Header) <= kHeaderBytes, "header fits its page");

struct Comm {
  Header* h = nullptr;
  unsigned char* slots = nullptr;
  size_t bytes = 0;
  int rank = 0;
  int nranks = 0;
  int async_error = kSuccess;
  char last_error[kReasonBytes] = {};
};

double timeoutSeconds() {
  const char* e = std::getenv("GOTUNE_EMU_NCCL_TIMEOUT_S");
  double v = e && *e ? std::atof(e) : 600;
  return v > 0 ? v : 600;
}

double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// alive reports whether process pid still runs (a zombie does not).
bool alive(int pid) {
  if (pid <= 0) return true;  // not attached yet
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  char path[64], buf[256];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return true;
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* close = std::strrchr(buf, ')');  // the state follows "(comm) "
  return !(close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X'));
}

void futexWait(std::atomic<uint32_t>* w, uint32_t v, double seconds) {
  timespec ts{0, long(seconds * 1e9)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAIT, v, &ts, nullptr, 0);
}

void futexWakeAll(std::atomic<uint32_t>* w) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// fail records an error on the communicator and returns its code.
int fail(Comm* c, int code, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
int fail(Comm* c, int code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
  va_end(ap);
  c->async_error = code;
  return code;
}

// abortAll marks the segment aborted (first reason wins) and wakes every
// waiter, so all ranks stop instead of waiting for the failed one.
void abortAll(Comm* c, const char* reason) {
  uint32_t expected = 0;
  if (c->h->aborted.compare_exchange_strong(expected, 1)) {
    std::snprintf(c->h->reason, sizeof c->h->reason, "%s", reason);
    c->h->aborted.store(2, std::memory_order_release);  // reason written
  }
  c->h->generation.fetch_add(1);  // waiters recheck
  futexWakeAll(&c->h->generation);
}

int reportAbort(Comm* c) {
  for (int i = 0; i < 1000 && c->h->aborted.load(std::memory_order_acquire) == 1; i++) usleep(100);
  return fail(c, kRemoteError, "rank %d: communicator aborted: %s", c->rank, c->h->reason);
}

// deadPeer returns a dead peer's rank, or -1.
int deadPeer(Comm* c) {
  for (int r = 0; r < c->nranks; r++)
    if (r != c->rank && !alive(c->h->pids[r].load())) return r;
  return -1;
}

// waitFor waits until done() holds, checking for aborts, dead peers and
// the timeout. what names the wait in error messages.
template <typename Done>
int waitFor(Comm* c, Done done, const char* what) {
  const double start = now(), limit = timeoutSeconds();
  double nextCheck = start;
  while (!done()) {
    if (c->h->aborted.load(std::memory_order_acquire)) return reportAbort(c);
    double t = now();
    if (t >= nextCheck) {
      int r = deadPeer(c);
      if (r >= 0) {
        char msg[kReasonBytes];
        std::snprintf(msg, sizeof msg, "rank %d (pid %d) exited while rank %d waited in %s", r,
                      (int)c->h->pids[r].load(), c->rank, what);
        abortAll(c, msg);
        return fail(c, kRemoteError, "%s", msg);
      }
      nextCheck = t + 0.05;
    }
    if (t - start > limit) {
      char msg[kReasonBytes];
      std::snprintf(msg, sizeof msg, "rank %d timed out after %.0f s in %s (GOTUNE_EMU_NCCL_TIMEOUT_S)", c->rank,
                    limit, what);
      abortAll(c, msg);
      return fail(c, kSystemError, "%s", msg);
    }
    uint32_t g = c->h->generation.load();
    if (!done()) futexWait(&c->h->generation, g, 0.02);
  }
  return kSuccess;
}

// barrier returns once every rank has reached it (or a failure ended it).
int barrier(Comm* c, const char* what) {
  Header* h = c->h;
  if (h->aborted.load(std::memory_order_acquire)) return reportAbort(c);
  uint32_t gen = h->generation.load(std::memory_order_acquire);
  if (h->arrived.fetch_add(1, std::memory_order_acq_rel) == uint32_t(c->nranks - 1)) {
    h->arrived.store(0, std::memory_order_relaxed);
    h->generation.fetch_add(1, std::memory_order_release);
    futexWakeAll(&h->generation);
    return kSuccess;
  }
  return waitFor(c, [&] { return h->generation.load(std::memory_order_acquire) != gen; }, what);
}

unsigned char* slot(Comm* c, int r) { return c->slots + size_t(r) * kSlotBytes; }

size_t typeSize(ncclDataType_t t) {
  switch (t) {
    case kInt8: case kUint8: return 1;
    case kFloat16: case kBfloat16: return 2;
    case kInt32: case kUint32: case kFloat32: return 4;
    case kInt64: case kUint64: case kFloat64: return 8;
    default: return 0;
  }
}

float bf16ToFloat(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t floatToBf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

template <typename T>
T combine(T a, T b, ncclRedOp_t op) {
  switch (op) {
    case kProd: return a * b;
    case kMax: return b > a ? b : a;
    case kMin: return b < a ? b : a;
    default: return a + b;  // kSum, kAvg (divided at the end)
  }
}

// reduceInto writes out[i] = op over ranks r of src(r)[i], for n elements.
template <typename T, typename Src>
void reduceTyped(T* out, size_t n, int nranks, ncclRedOp_t op, Src src) {
  for (size_t i = 0; i < n; i++) {
    T acc = reinterpret_cast<const T*>(src(0))[i];
    for (int r = 1; r < nranks; r++) acc = combine(acc, reinterpret_cast<const T*>(src(r))[i], op);
    if (op == kAvg) acc = T(acc / T(nranks));
    out[i] = acc;
  }
}

template <typename Src>
int reduceInto(void* out, size_t n, ncclDataType_t t, int nranks, ncclRedOp_t op, Src src) {
  switch (t) {
    case kInt8: reduceTyped(static_cast<int8_t*>(out), n, nranks, op, src); return kSuccess;
    case kUint8: reduceTyped(static_cast<uint8_t*>(out), n, nranks, op, src); return kSuccess;
    case kInt32: reduceTyped(static_cast<int32_t*>(out), n, nranks, op, src); return kSuccess;
    case kUint32: reduceTyped(static_cast<uint32_t*>(out), n, nranks, op, src); return kSuccess;
    case kInt64: reduceTyped(static_cast<int64_t*>(out), n, nranks, op, src); return kSuccess;
    case kUint64: reduceTyped(static_cast<uint64_t*>(out), n, nranks, op, src); return kSuccess;
    case kFloat32: reduceTyped(static_cast<float*>(out), n, nranks, op, src); return kSuccess;
    case kFloat64: reduceTyped(static_cast<double*>(out), n, nranks, op, src); return kSuccess;
    case kBfloat16: {
      // Accumulate in float32 and round once, as NCCL's bf16 reductions
      // do per step of its ring; the emulator's one step is the whole sum.
      uint16_t* o = static_cast<uint16_t*>(out);
      for (size_t i = 0; i < n; i++) {
        float acc = bf16ToFloat(reinterpret_cast<const uint16_t*>(src(0))[i]);
        for (int r = 1; r < nranks; r++)
          acc = combine(acc, bf16ToFloat(reinterpret_cast<const uint16_t*>(src(r))[i]), op);
        if (op == kAvg) acc /= float(nranks);
        o[i] = floatToBf16(acc);
      }
      return kSuccess;
    }
    default: return kInvalidArgument;
  }
}

// check validates the arguments every collective shares.
int check(Comm* c, ncclDataType_t t, ncclRedOp_t op) {
  if (!c || !c->h) return kInvalidArgument;
  if (typeSize(t) == 0) return fail(c, kInvalidArgument, "unsupported ncclDataType_t %d", t);
  if (op < kSum || op > kAvg) return fail(c, kInvalidArgument, "unsupported ncclRedOp_t %d", op);
  if (c->h->aborted.load(std::memory_order_acquire)) return reportAbort(c);
  return kSuccess;
}

const char* errorString(ncclResult_t r) {
  switch (r) {
    case kSuccess: return "no error";
    case kUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case kSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case kInternalError: return "internal error - please report this issue to the NCCL developers";
    case kInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case kInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case kRemoteError: return "remote process exited or there was a network error";
    default: return "unknown result code";
  }
}

}  // namespace

// ======================= the NCCL API =======================

NCCL_API ncclResult_t ncclGetUniqueId(void* id) {
  if (!id) return kInvalidArgument;
  unsigned char rnd[8] = {};
  if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
    uint64_t t = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
    std::memcpy(rnd, &t, sizeof rnd);
  }
  char* p = static_cast<char*>(id);
  std::memset(p, 0, kUniqueIdBytes);
  std::snprintf(p, kUniqueIdBytes, "%s:/gotune-nccl-%d-%02x%02x%02x%02x%02x%02x%02x%02x", kIdMagic, (int)getpid(),
                rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  return kSuccess;
}

// ncclCommInitRank takes the unique id by value (a 128-byte struct); the
// C ABI passes such a struct in memory, which a struct parameter matches.
struct UniqueId {
  char internal[kUniqueIdBytes];
};

NCCL_API ncclResult_t ncclCommInitRank(void** comm, int nranks, UniqueId id, int rank) {
  if (!comm || nranks < 1 || nranks > kMaxRanks || rank < 0 || rank >= nranks) return kInvalidArgument;
  id.internal[kUniqueIdBytes - 1] = 0;
  size_t magicLen = std::strlen(kIdMagic);
  if (std::strncmp(id.internal, kIdMagic, magicLen) != 0 || id.internal[magicLen] != ':') return kInvalidArgument;
  const char* name = id.internal + magicLen + 1;
  Comm* c = new Comm();
  c->rank = rank;
  c->nranks = nranks;
  c->bytes = kHeaderBytes + size_t(nranks) * kSlotBytes;
  int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)c->bytes) != 0) {
    if (fd >= 0) close(fd);
    delete c;
    return kSystemError;
  }
  void* m = mmap(nullptr, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    delete c;
    return kSystemError;
  }
  c->h = static_cast<Header*>(m);
  c->slots = static_cast<unsigned char*>(m) + kHeaderBytes;
  int32_t expected = 0;
  if (!c->h->nranks.compare_exchange_strong(expected, nranks) && expected != nranks) {
    munmap(m, c->bytes);
    delete c;
    return kInvalidUsage;
  }
  c->h->pids[rank].store(getpid());
  c->h->joined.fetch_add(1);
  c->h->generation.fetch_add(1);
  futexWakeAll(&c->h->generation);
  int r = waitFor(c, [&] { return c->h->joined.load() >= uint32_t(nranks); }, "ncclCommInitRank");
  if (r == kSuccess) r = barrier(c, "ncclCommInitRank");
  if (rank == 0) shm_unlink(name);  // every rank has it mapped (or init failed)
  if (r != kSuccess) {
    std::fprintf(stderr, "gotune emulated NCCL: %s\n", c->last_error);
    munmap(m, c->bytes);
    delete c;
    return r;
  }
  *comm = c;
  return kSuccess;
}

NCCL_API ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                                    void* comm, cudaStream_t) {
  Comm* c = static_cast<Comm*>(comm);
  if (int r = check(c, t, op)) return r;
  const size_t es = typeSize(t), chunk = kSlotBytes / es;
  for (size_t off = 0; off < count; off += chunk) {
    size_t n = count - off < chunk ? count - off : chunk;
    std::memcpy(slot(c, c->rank), static_cast<const char*>(send) + off * es, n * es);
    if (int r = barrier(c, "ncclAllReduce")) return r;
    reduceInto(static_cast<char*>(recv) + off * es, n, t, c->nranks, op, [&](int r) { return slot(c, r); });
    if (int r = barrier(c, "ncclAllReduce")) return r;
  }
  return kSuccess;
}

NCCL_API ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recvcount, ncclDataType_t t,
                                        ncclRedOp_t op, void* comm, cudaStream_t) {
  Comm* c = static_cast<Comm*>(comm);
  if (int r = check(c, t, op)) return r;
  const size_t es = typeSize(t), chunk = kSlotBytes / es / size_t(c->nranks);
  for (size_t off = 0; off < recvcount; off += chunk) {
    size_t n = recvcount - off < chunk ? recvcount - off : chunk;
    for (int d = 0; d < c->nranks; d++)
      std::memcpy(slot(c, c->rank) + size_t(d) * n * es,
                  static_cast<const char*>(send) + (size_t(d) * recvcount + off) * es, n * es);
    if (int r = barrier(c, "ncclReduceScatter")) return r;
    reduceInto(static_cast<char*>(recv) + off * es, n, t, c->nranks, op,
               [&](int r) { return slot(c, r) + size_t(c->rank) * n * es; });
    if (int r = barrier(c, "ncclReduceScatter")) return r;
  }
  return kSuccess;
}

NCCL_API ncclResult_t ncclAllGather(const void* send, void* recv, size_t sendcount, ncclDataType_t t, void* comm,
                                    cudaStream_t) {
  Comm* c = static_cast<Comm*>(comm);
  if (int r = check(c, t, kSum)) return r;
  const size_t es = typeSize(t), chunk = kSlotBytes / es;
  for (size_t off = 0; off < sendcount; off += chunk) {
    size_t n = sendcount - off < chunk ? sendcount - off : chunk;
    std::memcpy(slot(c, c->rank), static_cast<const char*>(send) + off * es, n * es);
    if (int r = barrier(c, "ncclAllGather")) return r;
    for (int s = 0; s < c->nranks; s++)
      std::memcpy(static_cast<char*>(recv) + (size_t(s) * sendcount + off) * es, slot(c, s), n * es);
    if (int r = barrier(c, "ncclAllGather")) return r;
  }
  return kSuccess;
}

NCCL_API ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t t, int root,
                                    void* comm, cudaStream_t) {
  Comm* c = static_cast<Comm*>(comm);
  if (int r = check(c, t, kSum)) return r;
  if (root < 0 || root >= c->nranks) return fail(c, kInvalidArgument, "broadcast root %d of %d ranks", root, c->nranks);
  const size_t es = typeSize(t), chunk = kSlotBytes / es;
  for (size_t off = 0; off < count; off += chunk) {
    size_t n = count - off < chunk ? count - off : chunk;
    if (c->rank == root) std::memcpy(slot(c, root), static_cast<const char*>(send) + off * es, n * es);
    if (int r = barrier(c, "ncclBroadcast")) return r;
    std::memcpy(static_cast<char*>(recv) + off * es, slot(c, root), n * es);
    if (int r = barrier(c, "ncclBroadcast")) return r;
  }
  return kSuccess;
}

NCCL_API ncclResult_t ncclCommDestroy(void* comm) {
  Comm* c = static_cast<Comm*>(comm);
  if (!c) return kInvalidArgument;
  munmap(c->h, c->bytes);
  delete c;
  return kSuccess;
}

NCCL_API ncclResult_t ncclCommAbort(void* comm) {
  Comm* c = static_cast<Comm*>(comm);
  if (!c) return kInvalidArgument;
  char msg[kReasonBytes];
  std::snprintf(msg, sizeof msg, "rank %d aborted the communicator", c->rank);
  abortAll(c, msg);
  // The mapping stays: another thread of this process may still be inside
  // a collective on it (that is why one aborts), and it returns on its own.
  return kSuccess;
}

NCCL_API ncclResult_t ncclCommGetAsyncError(void* comm, ncclResult_t* err) {
  Comm* c = static_cast<Comm*>(comm);
  if (!c || !err) return kInvalidArgument;
  *err = c->async_error;
  if (*err == kSuccess && c->h->aborted.load(std::memory_order_acquire)) *err = reportAbort(c);
  return kSuccess;
}

NCCL_API const char* ncclGetErrorString(ncclResult_t r) { return errorString(r); }

NCCL_API const char* ncclGetLastError(void* comm) {
  Comm* c = static_cast<Comm*>(comm);
  return c ? c->last_error : "";
}

// gotune_emu_nccl is not part of NCCL: gotune's tests use its presence to
// tell the emulator from the real library.
NCCL_API int gotune_emu_nccl(void) { return 1; }

//go:build cgo

package cuda

/*
#cgo LDFLAGS: -ldl
#include "dlopen.h"
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Our own declarations of the NCCL types (nccl.go lists the symbols): no
// NCCL header or library is needed to build gotune.
typedef int ncclResult_t;
typedef void *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;

// GT_NCCL_CTX_FAIL is OR-ed into a result when cuCtxSetCurrent failed
// before the NCCL call (the same convention as the driver wrappers).
#define GT_NCCL_CTX_FAIL (1 << 20)

static struct {
	ncclResult_t (*ncclGetUniqueId)(ncclUniqueId *);
	ncclResult_t (*ncclCommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
	ncclResult_t (*ncclAllReduce)(const void *, void *, size_t, int, int, ncclComm_t, void *);
	ncclResult_t (*ncclReduceScatter)(const void *, void *, size_t, int, int, ncclComm_t, void *);
	ncclResult_t (*ncclAllGather)(const void *, void *, size_t, int, ncclComm_t, void *);
	ncclResult_t (*ncclBroadcast)(const void *, void *, size_t, int, int, ncclComm_t, void *);
	ncclResult_t (*ncclCommDestroy)(ncclComm_t);
	ncclResult_t (*ncclCommAbort)(ncclComm_t);
	ncclResult_t (*ncclCommGetAsyncError)(ncclComm_t, ncclResult_t *);
	const char *(*ncclGetErrorString)(ncclResult_t);
	const char *(*ncclGetLastError)(ncclComm_t); // optional (NCCL >= 2.13)
	int (*cuCtxSetCurrent)(void *);
} gn;

static int gn_open(const char *path, char *err, int errlen) {
	void *h = gt_dlopen(path, err, errlen);
	if (!h) return 1;
#define SYM(name) GT_DLSYM(h, gn.name, #name, err, errlen);
	SYM(ncclGetUniqueId) SYM(ncclCommInitRank) SYM(ncclAllReduce) SYM(ncclReduceScatter)
	SYM(ncclAllGather) SYM(ncclBroadcast) SYM(ncclCommDestroy) SYM(ncclCommAbort)
	SYM(ncclCommGetAsyncError) SYM(ncclGetErrorString)
#undef SYM
	*(void **)(&gn.ncclGetLastError) = dlsym(h, "ncclGetLastError");
	return 0;
}

// gn_set_ctx_fn hands over the driver's cuCtxSetCurrent, so NCCL (which
// uses the runtime API, bound to the current context) runs in the
// backend's primary context on whatever OS thread cgo picked.
static void gn_set_ctx_fn(void *f) { *(void **)(&gn.cuCtxSetCurrent) = f; }

#define NSETCTX(ctx) do { \
	int r_ = gn.cuCtxSetCurrent((void *)(ctx)); \
	if (r_ != 0) return r_ | GT_NCCL_CTX_FAIL; \
} while (0)

static ncclResult_t gn_unique_id(void *id) { return gn.ncclGetUniqueId((ncclUniqueId *)id); }
static ncclResult_t gn_init_rank(uintptr_t ctx, uintptr_t *comm, int n, const void *id, int rank) {
	NSETCTX(ctx);
	ncclUniqueId u;
	memcpy(&u, id, sizeof u);
	ncclComm_t c = 0;
	ncclResult_t r = gn.ncclCommInitRank(&c, n, u, rank);
	*comm = (uintptr_t)c;
	return r;
}
static ncclResult_t gn_all_reduce(uintptr_t ctx, uintptr_t send, uintptr_t recv, size_t n, int dt, int op, uintptr_t comm, uintptr_t s) {
	NSETCTX(ctx);
	return gn.ncclAllReduce((const void *)send, (void *)recv, n, dt, op, (ncclComm_t)comm, (void *)s);
}
static ncclResult_t gn_reduce_scatter(uintptr_t ctx, uintptr_t send, uintptr_t recv, size_t n, int dt, int op, uintptr_t comm, uintptr_t s) {
	NSETCTX(ctx);
	return gn.ncclReduceScatter((const void *)send, (void *)recv, n, dt, op, (ncclComm_t)comm, (void *)s);
}
static ncclResult_t gn_all_gather(uintptr_t ctx, uintptr_t send, uintptr_t recv, size_t n, int dt, uintptr_t comm, uintptr_t s) {
	NSETCTX(ctx);
	return gn.ncclAllGather((const void *)send, (void *)recv, n, dt, (ncclComm_t)comm, (void *)s);
}
static ncclResult_t gn_broadcast(uintptr_t ctx, uintptr_t send, uintptr_t recv, size_t n, int dt, int root, uintptr_t comm, uintptr_t s) {
	NSETCTX(ctx);
	return gn.ncclBroadcast((const void *)send, (void *)recv, n, dt, root, (ncclComm_t)comm, (void *)s);
}
static ncclResult_t gn_destroy(uintptr_t ctx, uintptr_t comm) { NSETCTX(ctx); return gn.ncclCommDestroy((ncclComm_t)comm); }
static ncclResult_t gn_abort(uintptr_t ctx, uintptr_t comm) { NSETCTX(ctx); return gn.ncclCommAbort((ncclComm_t)comm); }
static ncclResult_t gn_async_error(uintptr_t comm, int *e) { return gn.ncclCommGetAsyncError((ncclComm_t)comm, e); }
static const char *gn_error_string(ncclResult_t r) { return gn.ncclGetErrorString(r); }
static const char *gn_last_error(uintptr_t comm) { return gn.ncclGetLastError ? gn.ncclGetLastError((ncclComm_t)comm) : ""; }
*/
import "C"

import "unsafe"

func ncclOpen(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [512]C.char
	if C.gn_open(cpath, &buf[0], C.int(len(buf))) != 0 {
		return errorString(C.GoString(&buf[0]))
	}
	C.gn_set_ctx_fn(drvCtxSetCurrentFn())
	return nil
}

func ncclUniqueIDRaw(id *[ncclUniqueIDBytes]byte) ncclResult {
	return ncclResult(C.gn_unique_id(unsafe.Pointer(&id[0])))
}

func ncclInitRank(ctx uintptr, n int, id *[ncclUniqueIDBytes]byte, rank int) (uintptr, ncclResult) {
	var comm C.uintptr_t
	r := C.gn_init_rank(C.uintptr_t(ctx), &comm, C.int(n), unsafe.Pointer(&id[0]), C.int(rank))
	return uintptr(comm), ncclResult(r)
}

func ncclAllReduceRaw(ctx uintptr, send, recv DevicePtr, n uint64, dt, op int, comm, s uintptr) ncclResult {
	return ncclResult(C.gn_all_reduce(C.uintptr_t(ctx), C.uintptr_t(send), C.uintptr_t(recv), C.size_t(n), C.int(dt), C.int(op), C.uintptr_t(comm), C.uintptr_t(s)))
}

func ncclReduceScatterRaw(ctx uintptr, send, recv DevicePtr, n uint64, dt, op int, comm, s uintptr) ncclResult {
	return ncclResult(C.gn_reduce_scatter(C.uintptr_t(ctx), C.uintptr_t(send), C.uintptr_t(recv), C.size_t(n), C.int(dt), C.int(op), C.uintptr_t(comm), C.uintptr_t(s)))
}

func ncclAllGatherRaw(ctx uintptr, send, recv DevicePtr, n uint64, dt int, comm, s uintptr) ncclResult {
	return ncclResult(C.gn_all_gather(C.uintptr_t(ctx), C.uintptr_t(send), C.uintptr_t(recv), C.size_t(n), C.int(dt), C.uintptr_t(comm), C.uintptr_t(s)))
}

func ncclBroadcastRaw(ctx uintptr, send, recv DevicePtr, n uint64, dt, root int, comm, s uintptr) ncclResult {
	return ncclResult(C.gn_broadcast(C.uintptr_t(ctx), C.uintptr_t(send), C.uintptr_t(recv), C.size_t(n), C.int(dt), C.int(root), C.uintptr_t(comm), C.uintptr_t(s)))
}

func ncclDestroyRaw(ctx, comm uintptr) ncclResult {
	return ncclResult(C.gn_destroy(C.uintptr_t(ctx), C.uintptr_t(comm)))
}

func ncclAbortRaw(ctx, comm uintptr) ncclResult {
	return ncclResult(C.gn_abort(C.uintptr_t(ctx), C.uintptr_t(comm)))
}

func ncclAsyncErrorRaw(comm uintptr) (ncclResult, ncclResult) {
	var e C.int
	r := C.gn_async_error(C.uintptr_t(comm), &e)
	return ncclResult(e), ncclResult(r)
}

func ncclErrorStringRaw(r ncclResult) string { return C.GoString(C.gn_error_string(C.ncclResult_t(r))) }

func ncclLastErrorRaw(comm uintptr) string { return C.GoString(C.gn_last_error(C.uintptr_t(comm))) }

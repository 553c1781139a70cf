//go:build cgo

package cuda

/*
#cgo LDFLAGS: -ldl
#include "dlopen.h"
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

// cuBLAS, loaded at run time for benchmarks only (gotune computes nothing
// with it). Declarations are our own: cublasHandle_t is an opaque pointer,
// enums are ints, statuses are ints (0 = CUBLAS_STATUS_SUCCESS).
typedef int (*gtb_create_t)(void **);
typedef int (*gtb_destroy_t)(void *);
typedef int (*gtb_set_stream_t)(void *, void *);
typedef int (*gtb_sgemm_t)(void *, int, int, int, int, int, const float *, const float *, int,
	const float *, int, const float *, float *, int);
typedef int (*gtb_gemmex_t)(void *, int, int, int, int, int, const void *, const void *, int, int,
	const void *, int, int, const void *, void *, int, int, int, int);
typedef int (*gtb_ctx_set_t)(void *);

static struct {
	gtb_create_t create;
	gtb_destroy_t destroy;
	gtb_set_stream_t set_stream;
	gtb_sgemm_t sgemm;
	gtb_gemmex_t gemmex;
	gtb_ctx_set_t ctx_set; // the driver's cuCtxSetCurrent, resolved from libcuda
} gtb;

static int gtb_open(const char *path, const char *driver, char *err, int errlen) {
	void *h = gt_dlopen(path, err, errlen);
	if (!h) return 1;
	// RTLD_NOLOAD: the driver is already loaded by the cuda package.
	void *d = dlopen(driver, RTLD_NOW | RTLD_NOLOAD);
	if (d) *(void **)(&gtb.ctx_set) = dlsym(d, "cuCtxSetCurrent");
#define SYM(field, name) GT_DLSYM(h, gtb.field, name, err, errlen);
	SYM(create, "cublasCreate_v2")
	SYM(destroy, "cublasDestroy_v2")
	SYM(set_stream, "cublasSetStream_v2")
	SYM(sgemm, "cublasSgemm_v2")
	SYM(gemmex, "cublasGemmEx")
#undef SYM
	if (!gtb.ctx_set) {
		gt_set_err(err, errlen, "cannot find cuCtxSetCurrent in the loaded driver");
		return 1;
	}
	return 0;
}

// Every wrapper makes the context current on its thread first, as the
// driver wrappers do (see the package doc); a failure there is reported
// with GT_CTX_FAIL set, like theirs.
#define GTB_CTX(ctx) do { int r_ = gtb.ctx_set((void *)(ctx)); if (r_) return r_ | (1 << 20); } while (0)

static int gtb_create(uintptr_t ctx, uintptr_t *h, uintptr_t stream) {
	GTB_CTX(ctx);
	void *p = 0;
	int r = gtb.create(&p);
	if (r) return r;
	*h = (uintptr_t)p;
	return gtb.set_stream(p, (void *)stream);
}
static int gtb_destroy(uintptr_t ctx, uintptr_t h) { GTB_CTX(ctx); return gtb.destroy((void *)h); }
static int gtb_sgemm(uintptr_t ctx, uintptr_t h, int ta, int tb, int m, int n, int k, float alpha,
		unsigned long long a, int lda, unsigned long long b, int ldb, float beta, unsigned long long c, int ldc) {
	GTB_CTX(ctx);
	return gtb.sgemm((void *)h, ta, tb, m, n, k, &alpha, (const float *)a, lda, (const float *)b, ldb, &beta, (float *)c, ldc);
}
static int gtb_gemmex(uintptr_t ctx, uintptr_t h, int ta, int tb, int m, int n, int k, float alpha,
		unsigned long long a, int atype, int lda, unsigned long long b, int btype, int ldb, float beta,
		unsigned long long c, int ctype, int ldc) {
	GTB_CTX(ctx);
	// computeType CUBLAS_COMPUTE_32F (68), algo CUBLAS_GEMM_DEFAULT (-1).
	return gtb.gemmex((void *)h, ta, tb, m, n, k, &alpha, (const void *)a, atype, lda, (const void *)b, btype, ldb,
		&beta, (void *)c, ctype, ldc, 68, -1);
}
*/
import "C"

import "unsafe"

func blasOpen(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	cdrv := C.CString(state.path)
	defer C.free(unsafe.Pointer(cdrv))
	var buf [512]C.char
	if C.gtb_open(cpath, cdrv, &buf[0], C.int(len(buf))) != 0 {
		return errorString(C.GoString(&buf[0]))
	}
	return nil
}

func blasCreate(ctx, stream uintptr) (uintptr, int) {
	var h C.uintptr_t
	r := C.gtb_create(C.uintptr_t(ctx), &h, C.uintptr_t(stream))
	return uintptr(h), int(r)
}

func blasDestroy(ctx, h uintptr) int { return int(C.gtb_destroy(C.uintptr_t(ctx), C.uintptr_t(h))) }

func blasSgemm(ctx, h uintptr, ta, tb, m, n, k int, alpha float32, a DevicePtr, lda int, b DevicePtr, ldb int, beta float32, c DevicePtr, ldc int) int {
	return int(C.gtb_sgemm(C.uintptr_t(ctx), C.uintptr_t(h), C.int(ta), C.int(tb), C.int(m), C.int(n), C.int(k), C.float(alpha),
		C.ulonglong(a), C.int(lda), C.ulonglong(b), C.int(ldb), C.float(beta), C.ulonglong(c), C.int(ldc)))
}

func blasGemmEx(ctx, h uintptr, ta, tb, m, n, k int, alpha float32, a DevicePtr, at, lda int, b DevicePtr, bt, ldb int, beta float32, c DevicePtr, ct, ldc int) int {
	return int(C.gtb_gemmex(C.uintptr_t(ctx), C.uintptr_t(h), C.int(ta), C.int(tb), C.int(m), C.int(n), C.int(k), C.float(alpha),
		C.ulonglong(a), C.int(at), C.int(lda), C.ulonglong(b), C.int(bt), C.int(ldb), C.float(beta), C.ulonglong(c), C.int(ct), C.int(ldc)))
}

//go:build cgo

package cuda

/*
#cgo LDFLAGS: -ldl
#include "dlopen.h"
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Our own minimal declarations of the driver API types: no CUDA headers
// are needed to build gotune (see driver.go for the symbol list).
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef void *CUevent;

// GT_CTX_FAIL is OR-ed into a wrapper's result when cuCtxSetCurrent, not
// the call itself, failed: the Go side then names the right call.
#define GT_CTX_FAIL (1 << 20)

static struct {
	CUresult (*cuInit)(unsigned int);
	CUresult (*cuDriverGetVersion)(int *);
	CUresult (*cuGetErrorName)(CUresult, const char **);
	CUresult (*cuGetErrorString)(CUresult, const char **);
	CUresult (*cuDeviceGetCount)(int *);
	CUresult (*cuDeviceGet)(CUdevice *, int);
	CUresult (*cuDeviceGetName)(char *, int, CUdevice);
	CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
	CUresult (*cuDeviceTotalMem_v2)(size_t *, CUdevice);
	CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
	CUresult (*cuDevicePrimaryCtxRelease_v2)(CUdevice);
	CUresult (*cuCtxSetCurrent)(CUcontext);
	CUresult (*cuCtxGetCurrent)(CUcontext *);
	CUresult (*cuCtxSynchronize)(void);
	CUresult (*cuMemGetInfo_v2)(size_t *, size_t *);
	CUresult (*cuMemAlloc_v2)(CUdeviceptr *, size_t);
	CUresult (*cuMemFree_v2)(CUdeviceptr);
	CUresult (*cuMemAllocHost_v2)(void **, size_t);
	CUresult (*cuMemFreeHost)(void *);
	CUresult (*cuMemsetD8_v2)(CUdeviceptr, unsigned char, size_t);
	CUresult (*cuMemsetD16_v2)(CUdeviceptr, unsigned short, size_t);
	CUresult (*cuMemsetD32_v2)(CUdeviceptr, unsigned int, size_t);
	CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
	CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, CUstream);
	CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned int, size_t, CUstream);
	CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void *, size_t);
	CUresult (*cuMemcpyDtoH_v2)(void *, CUdeviceptr, size_t);
	CUresult (*cuMemcpyDtoD_v2)(CUdeviceptr, CUdeviceptr, size_t);
	CUresult (*cuMemcpyHtoDAsync_v2)(CUdeviceptr, const void *, size_t, CUstream);
	CUresult (*cuMemcpyDtoHAsync_v2)(void *, CUdeviceptr, size_t, CUstream);
	CUresult (*cuMemcpyDtoDAsync_v2)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
	CUresult (*cuStreamCreate)(CUstream *, unsigned int);
	CUresult (*cuStreamSynchronize)(CUstream);
	CUresult (*cuStreamDestroy_v2)(CUstream);
	CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned int);
	CUresult (*cuEventCreate)(CUevent *, unsigned int);
	CUresult (*cuEventRecord)(CUevent, CUstream);
	CUresult (*cuEventSynchronize)(CUevent);
	CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
	CUresult (*cuEventDestroy_v2)(CUevent);
	CUresult (*cuModuleLoadData)(CUmodule *, const void *);
	CUresult (*cuModuleUnload)(CUmodule);
	CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
	CUresult (*cuFuncGetAttribute)(int *, int, CUfunction);
	CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
	CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned,
		unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **);
} gt;

// gt_open loads the library and resolves every symbol. It returns 0, or 1
// with a message in err (dlopen's, or the first missing symbol's name).
static int gt_open(const char *path, char *err, int errlen) {
	void *h = gt_dlopen(path, err, errlen);
	if (!h) return 1;
#define SYM(name) GT_DLSYM(h, gt.name, #name, err, errlen);
	SYM(cuInit) SYM(cuDriverGetVersion) SYM(cuGetErrorName) SYM(cuGetErrorString)
	SYM(cuDeviceGetCount) SYM(cuDeviceGet) SYM(cuDeviceGetName) SYM(cuDeviceGetAttribute)
	SYM(cuDeviceTotalMem_v2) SYM(cuDevicePrimaryCtxRetain) SYM(cuDevicePrimaryCtxRelease_v2)
	SYM(cuCtxSetCurrent) SYM(cuCtxGetCurrent) SYM(cuCtxSynchronize) SYM(cuMemGetInfo_v2)
	SYM(cuMemAlloc_v2) SYM(cuMemFree_v2) SYM(cuMemAllocHost_v2) SYM(cuMemFreeHost)
	SYM(cuMemsetD8_v2) SYM(cuMemsetD16_v2) SYM(cuMemsetD32_v2)
	SYM(cuMemsetD8Async) SYM(cuMemsetD16Async) SYM(cuMemsetD32Async)
	SYM(cuMemcpyHtoD_v2) SYM(cuMemcpyDtoH_v2) SYM(cuMemcpyDtoD_v2)
	SYM(cuMemcpyHtoDAsync_v2) SYM(cuMemcpyDtoHAsync_v2) SYM(cuMemcpyDtoDAsync_v2)
	SYM(cuStreamCreate) SYM(cuStreamSynchronize) SYM(cuStreamDestroy_v2) SYM(cuStreamWaitEvent)
	SYM(cuEventCreate) SYM(cuEventRecord) SYM(cuEventSynchronize)
	SYM(cuEventElapsedTime) SYM(cuEventDestroy_v2)
	SYM(cuModuleLoadData) SYM(cuModuleUnload) SYM(cuModuleGetFunction)
	SYM(cuFuncGetAttribute) SYM(cuFuncSetAttribute) SYM(cuLaunchKernel)
#undef SYM
	return 0;
}

// SETCTX makes ctx current on the calling OS thread. A cgo call runs on one
// OS thread from start to end, so the context stays current for the call
// that follows inside the same wrapper: this is how gotune binds contexts to
// threads without locking goroutines (see the package doc).
#define SETCTX(ctx) do { \
	CUresult r_ = gt.cuCtxSetCurrent((CUcontext)(ctx)); \
	if (r_ != 0) return r_ | GT_CTX_FAIL; \
} while (0)

static CUresult gt_init(void) { return gt.cuInit(0); }
// gt_ctx_set_fn lends cuCtxSetCurrent to the NCCL wrappers (nccl_cgo.go).
static void *gt_ctx_set_fn(void) { return *(void **)(&gt.cuCtxSetCurrent); }
static CUresult gt_driver_version(int *v) { return gt.cuDriverGetVersion(v); }
static CUresult gt_error_name(CUresult e, const char **s) { return gt.cuGetErrorName(e, s); }
static CUresult gt_error_string(CUresult e, const char **s) { return gt.cuGetErrorString(e, s); }
static CUresult gt_device_count(int *n) { return gt.cuDeviceGetCount(n); }
static CUresult gt_device_get(int *dev, int ord) { return gt.cuDeviceGet(dev, ord); }
static CUresult gt_device_name(char *buf, int len, int dev) { return gt.cuDeviceGetName(buf, len, dev); }
static CUresult gt_device_attr(int *v, int attr, int dev) { return gt.cuDeviceGetAttribute(v, attr, dev); }
static CUresult gt_device_total_mem(size_t *b, int dev) { return gt.cuDeviceTotalMem_v2(b, dev); }
static CUresult gt_primary_retain(uintptr_t *ctx, int dev) {
	CUcontext c = 0;
	CUresult r = gt.cuDevicePrimaryCtxRetain(&c, dev);
	*ctx = (uintptr_t)c;
	return r;
}
static CUresult gt_primary_release(int dev) { return gt.cuDevicePrimaryCtxRelease_v2(dev); }
static CUresult gt_ctx_sync(uintptr_t ctx) { SETCTX(ctx); return gt.cuCtxSynchronize(); }
static CUresult gt_mem_info(uintptr_t ctx, size_t *f, size_t *t) { SETCTX(ctx); return gt.cuMemGetInfo_v2(f, t); }
static CUresult gt_mem_alloc(uintptr_t ctx, CUdeviceptr *p, size_t n) { SETCTX(ctx); return gt.cuMemAlloc_v2(p, n); }
static CUresult gt_mem_free(uintptr_t ctx, CUdeviceptr p) { SETCTX(ctx); return gt.cuMemFree_v2(p); }
static CUresult gt_mem_alloc_host(uintptr_t ctx, void **p, size_t n) { SETCTX(ctx); return gt.cuMemAllocHost_v2(p, n); }
static CUresult gt_mem_free_host(uintptr_t ctx, void *p) { SETCTX(ctx); return gt.cuMemFreeHost(p); }
static CUresult gt_memset(uintptr_t ctx, int width, CUdeviceptr dst, unsigned int v, size_t n, uintptr_t s, int async) {
	SETCTX(ctx);
	switch (width) {
	case 1: return async ? gt.cuMemsetD8Async(dst, (unsigned char)v, n, (CUstream)s) : gt.cuMemsetD8_v2(dst, (unsigned char)v, n);
	case 2: return async ? gt.cuMemsetD16Async(dst, (unsigned short)v, n, (CUstream)s) : gt.cuMemsetD16_v2(dst, (unsigned short)v, n);
	default: return async ? gt.cuMemsetD32Async(dst, v, n, (CUstream)s) : gt.cuMemsetD32_v2(dst, v, n);
	}
}
static CUresult gt_htod(uintptr_t ctx, CUdeviceptr dst, const void *src, size_t n, uintptr_t s, int async) {
	SETCTX(ctx);
	return async ? gt.cuMemcpyHtoDAsync_v2(dst, src, n, (CUstream)s) : gt.cuMemcpyHtoD_v2(dst, src, n);
}
static CUresult gt_dtoh(uintptr_t ctx, void *dst, CUdeviceptr src, size_t n, uintptr_t s, int async) {
	SETCTX(ctx);
	return async ? gt.cuMemcpyDtoHAsync_v2(dst, src, n, (CUstream)s) : gt.cuMemcpyDtoH_v2(dst, src, n);
}
static CUresult gt_dtod(uintptr_t ctx, CUdeviceptr dst, CUdeviceptr src, size_t n, uintptr_t s, int async) {
	SETCTX(ctx);
	return async ? gt.cuMemcpyDtoDAsync_v2(dst, src, n, (CUstream)s) : gt.cuMemcpyDtoD_v2(dst, src, n);
}
static CUresult gt_stream_create(uintptr_t ctx, uintptr_t *s) {
	SETCTX(ctx);
	CUstream q = 0;
	CUresult r = gt.cuStreamCreate(&q, 0);
	*s = (uintptr_t)q;
	return r;
}
static CUresult gt_stream_sync(uintptr_t ctx, uintptr_t s) { SETCTX(ctx); return gt.cuStreamSynchronize((CUstream)s); }
static CUresult gt_stream_destroy(uintptr_t ctx, uintptr_t s) { SETCTX(ctx); return gt.cuStreamDestroy_v2((CUstream)s); }
static CUresult gt_stream_wait_event(uintptr_t ctx, uintptr_t s, uintptr_t e) { SETCTX(ctx); return gt.cuStreamWaitEvent((CUstream)s, (CUevent)e, 0); }
static CUresult gt_event_create(uintptr_t ctx, uintptr_t *e) {
	SETCTX(ctx);
	CUevent q = 0;
	CUresult r = gt.cuEventCreate(&q, 0);
	*e = (uintptr_t)q;
	return r;
}
static CUresult gt_event_record(uintptr_t ctx, uintptr_t e, uintptr_t s) { SETCTX(ctx); return gt.cuEventRecord((CUevent)e, (CUstream)s); }
static CUresult gt_event_sync(uintptr_t ctx, uintptr_t e) { SETCTX(ctx); return gt.cuEventSynchronize((CUevent)e); }
static CUresult gt_event_elapsed(uintptr_t ctx, float *ms, uintptr_t a, uintptr_t b) { SETCTX(ctx); return gt.cuEventElapsedTime(ms, (CUevent)a, (CUevent)b); }
static CUresult gt_event_destroy(uintptr_t ctx, uintptr_t e) { SETCTX(ctx); return gt.cuEventDestroy_v2((CUevent)e); }
static CUresult gt_module_load(uintptr_t ctx, uintptr_t *m, const void *image) {
	SETCTX(ctx);
	CUmodule q = 0;
	CUresult r = gt.cuModuleLoadData(&q, image);
	*m = (uintptr_t)q;
	return r;
}
static CUresult gt_module_unload(uintptr_t ctx, uintptr_t m) { SETCTX(ctx); return gt.cuModuleUnload((CUmodule)m); }
static CUresult gt_module_function(uintptr_t ctx, uintptr_t *f, uintptr_t m, const char *name) {
	SETCTX(ctx);
	CUfunction q = 0;
	CUresult r = gt.cuModuleGetFunction(&q, (CUmodule)m, name);
	*f = (uintptr_t)q;
	return r;
}
static CUresult gt_func_get_attr(uintptr_t ctx, int *v, int attr, uintptr_t f) { SETCTX(ctx); return gt.cuFuncGetAttribute(v, attr, (CUfunction)f); }
static CUresult gt_func_set_attr(uintptr_t ctx, uintptr_t f, int attr, int v) { SETCTX(ctx); return gt.cuFuncSetAttribute((CUfunction)f, attr, v); }

// gt_launch launches f with nargs parameters packed in buf; offs[i] is the
// byte offset of parameter i. cuLaunchKernel copies the values before it
// returns, so buf (Go memory without Go pointers) is not retained.
#define GT_MAX_ARGS 64
static CUresult gt_launch(uintptr_t ctx, uintptr_t f,
		unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
		unsigned shmem, uintptr_t s, void *buf, const int32_t *offs, int nargs) {
	void *params[GT_MAX_ARGS];
	if (nargs > GT_MAX_ARGS) return 1; // CUDA_ERROR_INVALID_VALUE
	for (int i = 0; i < nargs; i++) params[i] = (char *)buf + offs[i];
	SETCTX(ctx);
	return gt.cuLaunchKernel((CUfunction)f, gx, gy, gz, bx, by, bz, shmem, (CUstream)s,
		nargs ? params : 0, 0);
}
*/
import "C"

import (
	"unsafe"
)

// ctxFailFlag marks a result whose cuCtxSetCurrent step failed (GT_CTX_FAIL).
const ctxFailFlag = 1 << 20

// cgoEnabled is true in builds that can load the driver.
const cgoEnabled = true

func drvOpen(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [512]C.char
	if C.gt_open(cpath, &buf[0], C.int(len(buf))) != 0 {
		return errorString(C.GoString(&buf[0]))
	}
	return nil
}

func drvInit() CUresult { return CUresult(C.gt_init()) }

// drvCtxSetCurrentFn returns the driver's cuCtxSetCurrent, which the NCCL
// wrappers call to run in a backend's context.
func drvCtxSetCurrentFn() unsafe.Pointer { return C.gt_ctx_set_fn() }

func drvDriverVersion() (int, CUresult) {
	var v C.int
	r := C.gt_driver_version(&v)
	return int(v), CUresult(r)
}

func drvErrorName(code CUresult) (string, bool) {
	var s *C.char
	if C.gt_error_name(C.CUresult(code), &s) != 0 || s == nil {
		return "", false
	}
	return C.GoString(s), true
}

func drvErrorString(code CUresult) (string, bool) {
	var s *C.char
	if C.gt_error_string(C.CUresult(code), &s) != 0 || s == nil {
		return "", false
	}
	return C.GoString(s), true
}

func drvDeviceCount() (int, CUresult) {
	var n C.int
	r := C.gt_device_count(&n)
	return int(n), CUresult(r)
}

func drvDeviceGet(ordinal int) (int, CUresult) {
	var d C.int
	r := C.gt_device_get(&d, C.int(ordinal))
	return int(d), CUresult(r)
}

func drvDeviceName(dev int) (string, CUresult) {
	var buf [256]C.char
	r := C.gt_device_name(&buf[0], C.int(len(buf)), C.int(dev))
	buf[len(buf)-1] = 0
	return C.GoString(&buf[0]), CUresult(r)
}

func drvDeviceAttr(dev, attr int) (int, CUresult) {
	var v C.int
	r := C.gt_device_attr(&v, C.int(attr), C.int(dev))
	return int(v), CUresult(r)
}

func drvDeviceTotalMem(dev int) (uint64, CUresult) {
	var b C.size_t
	r := C.gt_device_total_mem(&b, C.int(dev))
	return uint64(b), CUresult(r)
}

func drvPrimaryCtxRetain(dev int) (uintptr, CUresult) {
	var c C.uintptr_t
	r := C.gt_primary_retain(&c, C.int(dev))
	return uintptr(c), CUresult(r)
}

func drvPrimaryCtxRelease(dev int) CUresult { return CUresult(C.gt_primary_release(C.int(dev))) }

func drvCtxSynchronize(ctx uintptr) CUresult { return CUresult(C.gt_ctx_sync(C.uintptr_t(ctx))) }

func drvMemGetInfo(ctx uintptr) (free, total uint64, r CUresult) {
	var f, t C.size_t
	r = CUresult(C.gt_mem_info(C.uintptr_t(ctx), &f, &t))
	return uint64(f), uint64(t), r
}

func drvMemAlloc(ctx uintptr, bytes uint64) (DevicePtr, CUresult) {
	var p C.CUdeviceptr
	r := C.gt_mem_alloc(C.uintptr_t(ctx), &p, C.size_t(bytes))
	return DevicePtr(p), CUresult(r)
}

func drvMemFree(ctx uintptr, p DevicePtr) CUresult {
	return CUresult(C.gt_mem_free(C.uintptr_t(ctx), C.CUdeviceptr(p)))
}

func drvMemAllocHost(ctx uintptr, bytes uint64) (unsafe.Pointer, CUresult) {
	var p unsafe.Pointer
	r := C.gt_mem_alloc_host(C.uintptr_t(ctx), &p, C.size_t(bytes))
	return p, CUresult(r)
}

func drvMemFreeHost(ctx uintptr, p unsafe.Pointer) CUresult {
	return CUresult(C.gt_mem_free_host(C.uintptr_t(ctx), p))
}

func b2i(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func drvMemset(ctx uintptr, width int, dst DevicePtr, value uint32, n uint64, stream uintptr, async bool) CUresult {
	return CUresult(C.gt_memset(C.uintptr_t(ctx), C.int(width), C.CUdeviceptr(dst), C.uint(value),
		C.size_t(n), C.uintptr_t(stream), b2i(async)))
}

func drvMemcpyHtoD(ctx uintptr, dst DevicePtr, src unsafe.Pointer, n uint64, stream uintptr, async bool) CUresult {
	return CUresult(C.gt_htod(C.uintptr_t(ctx), C.CUdeviceptr(dst), src, C.size_t(n), C.uintptr_t(stream), b2i(async)))
}

func drvMemcpyDtoH(ctx uintptr, dst unsafe.Pointer, src DevicePtr, n uint64, stream uintptr, async bool) CUresult {
	return CUresult(C.gt_dtoh(C.uintptr_t(ctx), dst, C.CUdeviceptr(src), C.size_t(n), C.uintptr_t(stream), b2i(async)))
}

func drvMemcpyDtoD(ctx uintptr, dst, src DevicePtr, n uint64, stream uintptr, async bool) CUresult {
	return CUresult(C.gt_dtod(C.uintptr_t(ctx), C.CUdeviceptr(dst), C.CUdeviceptr(src), C.size_t(n), C.uintptr_t(stream), b2i(async)))
}

func drvStreamCreate(ctx uintptr) (uintptr, CUresult) {
	var s C.uintptr_t
	r := C.gt_stream_create(C.uintptr_t(ctx), &s)
	return uintptr(s), CUresult(r)
}

func drvStreamSynchronize(ctx, s uintptr) CUresult {
	return CUresult(C.gt_stream_sync(C.uintptr_t(ctx), C.uintptr_t(s)))
}

func drvStreamDestroy(ctx, s uintptr) CUresult {
	return CUresult(C.gt_stream_destroy(C.uintptr_t(ctx), C.uintptr_t(s)))
}

func drvStreamWaitEvent(ctx, s, e uintptr) CUresult {
	return CUresult(C.gt_stream_wait_event(C.uintptr_t(ctx), C.uintptr_t(s), C.uintptr_t(e)))
}

func drvEventCreate(ctx uintptr) (uintptr, CUresult) {
	var e C.uintptr_t
	r := C.gt_event_create(C.uintptr_t(ctx), &e)
	return uintptr(e), CUresult(r)
}

func drvEventRecord(ctx, e, s uintptr) CUresult {
	return CUresult(C.gt_event_record(C.uintptr_t(ctx), C.uintptr_t(e), C.uintptr_t(s)))
}

func drvEventSynchronize(ctx, e uintptr) CUresult {
	return CUresult(C.gt_event_sync(C.uintptr_t(ctx), C.uintptr_t(e)))
}

func drvEventElapsed(ctx, start, end uintptr) (float32, CUresult) {
	var ms C.float
	r := C.gt_event_elapsed(C.uintptr_t(ctx), &ms, C.uintptr_t(start), C.uintptr_t(end))
	return float32(ms), CUresult(r)
}

func drvEventDestroy(ctx, e uintptr) CUresult {
	return CUresult(C.gt_event_destroy(C.uintptr_t(ctx), C.uintptr_t(e)))
}

func drvModuleLoad(ctx uintptr, image []byte) (uintptr, CUresult) {
	// The driver parses the image during the call and keeps its own copy;
	// a C copy keeps the cgo pointer rules simple (image may be read-only
	// embedded data).
	cimg := C.CBytes(image)
	defer C.free(cimg)
	var m C.uintptr_t
	r := C.gt_module_load(C.uintptr_t(ctx), &m, cimg)
	return uintptr(m), CUresult(r)
}

func drvModuleUnload(ctx, m uintptr) CUresult {
	return CUresult(C.gt_module_unload(C.uintptr_t(ctx), C.uintptr_t(m)))
}

func drvModuleGetFunction(ctx, m uintptr, name string) (uintptr, CUresult) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var f C.uintptr_t
	r := C.gt_module_function(C.uintptr_t(ctx), &f, C.uintptr_t(m), cname)
	return uintptr(f), CUresult(r)
}

func drvFuncGetAttr(ctx, f uintptr, attr int) (int, CUresult) {
	var v C.int
	r := C.gt_func_get_attr(C.uintptr_t(ctx), &v, C.int(attr), C.uintptr_t(f))
	return int(v), CUresult(r)
}

func drvFuncSetAttr(ctx, f uintptr, attr, value int) CUresult {
	return CUresult(C.gt_func_set_attr(C.uintptr_t(ctx), C.uintptr_t(f), C.int(attr), C.int(value)))
}

func drvLaunch(ctx, f uintptr, grid, block [3]uint32, shmem uint32, stream uintptr, buf []byte, offs []int32) CUresult {
	var bufp unsafe.Pointer
	var offp *C.int32_t
	if len(offs) > 0 {
		bufp = unsafe.Pointer(&buf[0])
		offp = (*C.int32_t)(unsafe.Pointer(&offs[0]))
	}
	return CUresult(C.gt_launch(C.uintptr_t(ctx), C.uintptr_t(f),
		C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]),
		C.uint(block[0]), C.uint(block[1]), C.uint(block[2]),
		C.uint(shmem), C.uintptr_t(stream), bufp, offp, C.int(len(offs))))
}
